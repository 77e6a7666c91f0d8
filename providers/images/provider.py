"""The images provider: the Image kind on every runtime. An Image is built from a context with
buildah and pushed to the Environment's registry as `<registry>/<name>:<identity>`; a plan reads
the registry (one HEAD of the manifest per image) and rebuilds only when the identity changed.

Images are content addressed and may be shared, so destroy forgets an image and leaves it in
the registry."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from substratus_artifacts.registry import LOOPBACK, RegistryClient
from substratus_artifacts.statcache import StatCache
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import IMAGE_KINDS, Address
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.diagnostics import Diagnostics
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PART_OF_LABEL,
    ApplyRequest,
    Batch,
    CheckRequest,
    CheckResponse,
    HandlerTable,
    LiveObject,
    PlanItem,
    PlannedChange,
    ProviderContext,
    ProviderDiagnostic,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_cli.resource import Resource
from substratus_cli.retry import RetryPolicy
from substratus_providers.images import kaniko
from substratus_providers.images.buildah import Buildah
from substratus_providers.images.context import (
    BuildInputs,
    ContextError,
    Identity,
    changed_paths,
    context_files,
    dockerfile_path,
    git_identity,
    identity,
)
from substratus_providers.images.git import checkout, resolve
from substratus_providers.images.google_token import credentials_and_source

# A registry's 5xx, 429 and reset connections are sent again, a plan's reads for 15 s at most.
REGISTRY_RETRY = RetryPolicy(first_delay=0.5, max_delay=4.0, tries=5, deadline=30.0,
                             read_deadline=15.0)
SHOWN_PATHS = 3


class ImagesProvider(HandlerTable):
    name = "images"
    kinds = frozenset(IMAGE_KINDS)
    kind_order = IMAGE_KINDS

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.images = Images(context)
        self.handlers = {"Image": self.images}

    def expand(self, resources: Sequence[Resource],
               environment: EnvironmentSpec) -> list[Resource]:
        return with_built_images(resources)

    def check(self, request: CheckRequest) -> CheckResponse:
        in_cluster = self.context.cluster_jobs is not None
        return CheckResponse(tuple(d for r in request.resources for d in check_image(
            r, self.context.workdir, self.context.settings.get("registry"), in_cluster)))



# What a workload runs on, which its in-cluster build needs too.
INFRASTRUCTURE = ("Cluster", "NodePool", "Bucket")
# The Image a workload's spec.build makes is named after the workload (as its objects are).
BUILT_NAMES = {"Dataset": "dataset", "Model": "model", "ModelServer": "server",
               "Notebook": "notebook"}


def with_built_images(resources: Sequence[Resource]) -> list[Resource]:
    """`resources`, plus an Image for each workload's spec.build, which the workload depends on
    (its file and lines are the build's own, so a diagnostic points at spec.build)."""
    out = list(resources)
    declared = {r.address: r for r in resources}
    taken = Diagnostics()
    for n, r in enumerate(resources):
        build = r.spec.get("build")
        if r.kind not in BUILT_NAMES or not isinstance(build, Mapping):
            continue
        a = Address("Image", r.address.namespace, f"{BUILT_NAMES[r.kind]}-{r.name}")
        if a in declared:
            other = declared[a]
            taken.error(f"{r.kind} {r.name!r} builds {a.short()}, which {other.file}:"
                        f"{other.line} declares too", detail="rename that Image",
                        file=r.file, line=r.line_of("spec.build"), field="spec.build")
            continue
        lines = {"spec" + k.removeprefix("spec.build"): v for k, v in r.field_lines.items()
                 if k == "spec.build" or k.startswith("spec.build.")}
        # The workload's labels go on its Image (and on an in-cluster build's Job and pod); a
        # build in the cluster depends on what the workload runs on (its Cluster, NodePools).
        under = tuple(d for d in r.refs if d.kind in INFRASTRUCTURE) \
            if build.get("builder") == "cluster" else ()
        out.append(Resource(a, dict(build), file=r.file, line=r.line_of("spec.build"),
                            labels=dict(r.labels), field_lines=lines, refs=under))
        out[n] = dataclasses.replace(r, refs=(*r.refs, a))
    taken.raise_if_errors()
    return out


def check_image(r: Resource, workdir: Path, registry: Any,
                in_cluster: bool = False) -> list[ProviderDiagnostic]:
    """What cannot be built as declared, each at its field (the files are walked, not read).
    `in_cluster`: the runtime can run builds in its cluster (the kubernetes runtime)."""
    def problem(summary: str, path: str, detail: str = "") -> list[ProviderDiagnostic]:
        return [ProviderDiagnostic(f"Image {r.name!r}: {summary}", detail, r.address, path)]

    if not registry:
        return problem("there is no registry to push it to", "kind",
                       "set `registry: HOST/REPOSITORY` in the Environment")
    if r.spec.get("builder") == "cluster" and not in_cluster:
        return problem("`builder: cluster` builds with a kaniko Job, which needs the kubernetes "
                       "runtime", "spec.builder",
                       "set `runtime: kubernetes` in the Environment, or remove `builder` to "
                       "build on this machine with buildah")
    git = r.spec.get("git")
    if git:
        path = PurePosixPath(str(git.get("path") or "."))
        if path.is_absolute() or ".." in path.parts:
            return problem(f"the path {str(path)!r} must be a folder of the repository (a "
                           "relative path without '..')", "spec.git.path")
        dockerfile = PurePosixPath(str(r.spec.get("dockerfile") or "Dockerfile"))
        if dockerfile.is_absolute() or ".." in dockerfile.parts:
            return problem(f"the dockerfile {r.spec.get('dockerfile')!r} must be a path inside "
                           "the context (relative, without '..')", "spec.dockerfile")
        return []
    context = PurePosixPath(str(r.spec.get("context", "")))
    if context.is_absolute() or ".." in context.parts:
        return problem(f"the context {str(context)!r} must be a folder of the workspace "
                       "(a relative path without '..')", "spec.context")
    inputs = inputs_of(r, workdir)
    if not inputs.context.is_dir():
        return problem(f"the context {str(context)!r} is not a folder", "spec.context")
    try:
        dockerfile_path(inputs)
    except ContextError as e:
        return problem(str(e), "spec.dockerfile")
    try:
        context_files(inputs)
    except ContextError as e:
        return problem(str(e), "spec.context")
    return []


def inputs_of(r: Resource, workdir: Path) -> BuildInputs:
    return BuildInputs(workdir / str(r.spec.get("context", "")),
                       str(r.spec.get("dockerfile") or "Dockerfile"),
                       dict(r.spec.get("buildArgs") or {}), r.spec.get("target"),
                       tuple(r.spec.get("tags") or ()))


class Images:
    """The Image kind's handler: identity from the files, presence from the registry."""

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        registry = str(context.settings.get("registry") or "")
        self.host, _, self.prefix = registry.partition("/")
        self._client: RegistryClient | None = None
        self._adc = False  # the client's credentials are an Application Default Credentials token
        self._identities = context.data_dir / "cache" / "images"
        # What a read computed, for the plan of the same run (apply computes it again).
        self._read: dict[Address, Identity] = {}

    # -- where an image goes ---------------------------------------------------------------

    @property
    def identities_read(self) -> dict[Address, int]:
        """Per image read in this run, the bytes of its context hashed to know its identity."""
        return {a: i.bytes_hashed for a, i in self._read.items()}

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            credentials, self._adc = credentials_and_source(self.host)
            self._client = RegistryClient(self.host, credentials=credentials,
                                          retry=REGISTRY_RETRY)
        return self._client

    def repository(self, a: Address) -> str:
        name = a.name if a.namespace == "default" else f"{a.namespace}-{a.name}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _identity(self, r: Resource) -> Identity:
        field = "spec.git" if r.spec.get("git") else "spec.context"
        try:
            git = r.spec.get("git")
            if git:
                commit = resolve(str(git["url"]), branch=git.get("branch"), tag=git.get("tag"),
                                 ref=git.get("ref"))
                return git_identity(git, commit, inputs_of(r, self.context.workdir))
            return identity(inputs_of(r, self.context.workdir),
                            StatCache(self.context.data_dir / "cache" / "stat.json"))
        except ContextError as e:
            raise ProviderError(f"{r.file}:{r.line_of(field)}: {field}: Image {r.name!r}: "
                                f"{e}") from None

    # -- KindHandler -----------------------------------------------------------------------

    def read(self, request: ReadRequest) -> ReadResponse:
        before = self.client.requests
        objects = {}
        for a in request.addresses:
            r = request.resources.get(a)
            if r is not None:
                self._read[a] = self._identity(r)
            tags = [self._read[a].tag] if r is not None else []
            recorded = request.recorded.get(a, {})
            if recorded.get("tag") and recorded["tag"] not in tags:
                tags.append(str(recorded["tag"]))
            for tag in tags:
                found = self.client.head_manifest(self.repository(a), tag)
                if found is not None:
                    pushed = recorded.get("digest") if recorded.get("tag") == tag else None
                    objects[a] = self._live(a, tag, found.digest, request.part_of, pushed)
                    break
        return ReadResponse(objects, requests=self.client.requests - before)

    def _live(self, a: Address, tag: str, digest: str, part_of: str,
              pushed: Any = None) -> LiveObject:
        """`pushed`: the digest substratus recorded pushing at this tag, if it did."""
        repository = f"{self.host}/{self.repository(a)}"
        # Content addressed: a tag holds what these files build, whoever pushed it.
        labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, PART_OF_LABEL: part_of}
        return LiveObject(a, {"identity": tag}, {"image": f"{repository}:{tag}",
                                                 "digest": digest, "tag": tag,
                                                 "ref": f"{repository}@{digest}"},
                          labels, digest, private={"pushed": pushed} if pushed else {})

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        r, live = item.desired, item.live
        assert r is not None
        want = self._read.get(r.address) or self._identity(r)
        repository = f"{self.host}/{self.repository(r.address)}"
        status = {"image": f"{repository}:{want.tag}", "tag": want.tag, "digest": UNKNOWN}
        private = {"identity": want.digest}
        notes = (self._builder(r),)
        if live is None:
            return PlannedChange(r.address, Action.CREATE, "", (), status, private=private,
                                 notes=notes)
        pushed = live.private.get("pushed")
        if live.spec.get("identity") == want.tag and pushed in (None, live.status["digest"]):
            return PlannedChange(r.address, Action.NOOP, "", (), dict(live.status),
                                 private=private)
        if live.spec.get("identity") == want.tag:
            why = (f"{live.status['image']} is not the image substratus pushed there (it was "
                   f"{pushed}): push again")
            return PlannedChange(r.address, Action.UPDATE, why, (FieldChange(
                "status.digest", pushed, live.status["digest"]),), status, private=private,
                notes=notes)
        changes = (FieldChange("spec.identity", live.spec.get("identity"), want.tag),
                   FieldChange("status.digest", live.status.get("digest"), UNKNOWN))
        return PlannedChange(r.address, Action.UPDATE, self._why(str(live.spec["identity"]),
                                                                 want, r),
                             changes, status, private=private, notes=notes)

    def _builder(self, r: Resource) -> str:
        """Which builder an apply uses, as the plan shows it."""
        if r.spec.get("builder") == "cluster":
            return (f"built by a kaniko Job in namespace {r.address.namespace} "
                    f"({self._kaniko_image()}), its context uploaded to "
                    f"{self.context.artifacts_url}")
        return "built by buildah on this machine"

    def _kaniko_image(self) -> str:
        settings = self.context.settings.get("kubernetes") or {}
        return str(settings.get("kanikoImage") or kaniko.KANIKO_IMAGE)

    def _why(self, old_tag: str, want: Identity, r: Resource) -> str:
        """Which files changed, when this machine remembers what the old image was built from."""
        old = self._remembered(old_tag)
        if old is None:
            return "the build's files, args or target changed: rebuild"
        if want.commit is not None and old.commit not in (None, want.commit):
            git = r.spec.get("git") or {}
            named = (f"the branch {git['branch']}" if git.get("branch") else
                     f"the tag {git['tag']}" if git.get("tag") else
                     f"the ref {git['ref']}" if git.get("ref") else "HEAD")
            return (f"{named} of {git.get('url')} moved ({str(old.commit)[:12]} -> "
                    f"{want.commit[:12]}): rebuild")
        paths = changed_paths(old, want)
        if not paths:
            return "the Dockerfile, build args or target changed: rebuild"
        shown = ", ".join(paths[:SHOWN_PATHS]) + (", ..." if len(paths) > SHOWN_PATHS else "")
        files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        return f"{files} of the context changed ({shown}): rebuild"

    def apply(self, request: ApplyRequest) -> LiveObject:
        r = request.desired
        assert r is not None
        built = self._identity(r)
        if built.digest != request.private.get("identity"):
            raise ProviderError(f"the context of Image {r.name!r} changed since the plan",
                                hint="plan again")
        a = r.address
        destinations = [f"{self.host}/{self.repository(a)}:{tag}"
                        for tag in (built.tag, *(r.spec.get("tags") or ()))]
        if r.spec.get("builder") == "cluster":
            digest = self._build_in_cluster(r, built, destinations)
        else:
            digest = self._build_here(r, built, destinations)
        self._remember(built)
        return self._live(a, built.tag, digest, self.context.part_of, pushed=digest)

    def _build_here(self, r: Resource, built: Identity, destinations: list[str]) -> str:
        """buildah on this machine; the digest buildah pushed."""
        a = r.address
        logs = self.context.data_dir / "runtime" / "logs" / "Image" / a.namespace / a.name
        builder = Buildah.find(self.context.data_dir / "buildah",
                               insecure=[self.host] if self._loopback() else [])
        local = f"localhost/{self.repository(a)}:{built.tag}"
        with self._context(r, built) as inputs:
            builder.build(inputs, local, logs / f"{built.tag}.build.log")
        push_log = logs / f"{built.tag}.push.log"
        with self._push_auth() as authfile:
            digest = builder.push(local, destinations[0], push_log, authfile=authfile)
            for destination in destinations[1:]:
                builder.push(local, destination, push_log, authfile=authfile)
        return digest

    @contextlib.contextmanager
    def _push_auth(self) -> Iterator[Path | None]:
        """What buildah logs in with: Docker's config.json; or, when the credentials are an
        Application Default Credentials token, a file of its own (0600) for the push alone,
        removed after it."""
        credentials = self.client.credentials
        if not self._adc or credentials is None:
            yield self._authfile()
            return
        pair = base64.b64encode(":".join(credentials).encode()).decode()
        with tempfile.TemporaryDirectory(prefix="substratus-auth-") as folder:  # 0700
            path = Path(folder) / "auth.json"
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                json.dump({"auths": {self.host: {"auth": pair}}}, f)
            yield path

    def _build_in_cluster(self, r: Resource, built: Identity, destinations: list[str]) -> str:
        """A kaniko Job on the runtime's cluster, its context uploaded to the artifact store;
        the digest the registry serves afterwards (the Job's log is not trusted for it)."""
        jobs = self.context.cluster_jobs
        if jobs is None:
            raise ProviderError(f"Image {r.name!r}: `builder: cluster` needs the kubernetes "
                                "runtime")
        a = r.address
        with self._context(r, built) as inputs:
            url = kaniko.upload_context(self.context.artifact_store(), inputs, built,
                                        self._scratch())
            manifest = kaniko.job_manifest(
                name=a.name, namespace=a.namespace,
                part_of=self.context.part_of, labels=r.labels, image=self._kaniko_image(),
                context_url=url, inputs=inputs, destinations=destinations,
                insecure=self._loopback())
        kaniko.run_build(jobs, manifest, destinations[0])
        found = self.client.head_manifest(self.repository(a), built.tag)
        if found is None:
            raise ProviderError(f"the kaniko Job building {destinations[0]} completed, but "
                                f"registry {self.host} has no such image",
                                hint="the builder pushed elsewhere, or the push was removed: "
                                     "apply again")
        return found.digest

    @contextlib.contextmanager
    def _context(self, r: Resource, built: Identity) -> Iterator[BuildInputs]:
        """The build's inputs: the workspace's folder, or the commit's tree checked out for it."""
        inputs = inputs_of(r, self.context.workdir)
        git = r.spec.get("git")
        if not git or built.commit is None:
            yield inputs
            return
        cache = self.context.data_dir / "cache" / "git"
        with tempfile.TemporaryDirectory(dir=self._scratch(), prefix="tree-") as tree:
            try:
                checkout(str(git["url"]), built.commit, cache, Path(tree))
            except ContextError as e:
                raise ProviderError(f"Image {r.name!r}: {e}") from None
            folder = Path(tree) / str(git.get("path") or "")
            yield dataclasses.replace(inputs, context=folder)

    def _scratch(self) -> Path:
        """Where a build's temporary files go (a git tree, a context tarball): beside the
        workspace's data, not in a /tmp that may be memory."""
        path = self.context.data_dir / "cache" / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def delete(self, request: ApplyRequest) -> None:
        """Forgotten, not deleted: the image may be shared and running; it stays pushed."""

    def ready(self, live: LiveObject) -> Readiness:
        return Readiness(True, message=str(live.status.get("ref", "")))

    # -- what this machine remembers and is -------------------------------------------------

    def _remember(self, built: Identity) -> None:
        self._identities.mkdir(parents=True, exist_ok=True)
        path = self._identities / f"{built.tag}.json"
        path.write_text(json.dumps({"digest": built.digest, "files": built.files,
                                    "dockerfile": built.dockerfile_sha256,
                                    "commit": built.commit}))

    def _remembered(self, tag: str) -> Identity | None:
        path = self._identities / f"{tag}.json"
        try:
            doc: Mapping[str, Any] = json.loads(path.read_text())
            files = tuple((str(p), str(m), str(s)) for p, m, s in doc["files"])
            commit = doc.get("commit")
            return Identity(str(doc["digest"]), files, str(doc["dockerfile"]), 0,
                            str(commit) if commit else None)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _loopback(self) -> bool:
        return self.host.rsplit(":", 1)[0] in LOOPBACK or self.host in LOOPBACK

    def _authfile(self) -> Path | None:
        """Docker's config.json, where the registry's credentials are (buildah reads it too)."""
        folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
        config = Path(folder) / "config.json"
        return config if config.is_file() else None
