"""The resource file schema: one pydantic model per kind's spec, the document envelope around it,
and the JSON Schema editors use (`substratus schema`)."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    model_validator,
)
from pydantic.fields import ComputedFieldInfo, FieldInfo
from pydantic_core import PydanticCustomError

from substratus_cli.address import DNS_LABEL, KINDS
from substratus_cli.resource import API_VERSION
from substratus_cli.secrets import SECRET_REF
from substratus_cli.stacks.parameters import IDENTIFIER, Parameter

_SHA256 = re.compile(r"[0-9a-f]{64}")
_STORAGE_SCHEMES = ("file://", "gs://")
# Where the schema says it lives (its `$id`): one per apiVersion.
SCHEMA_ID = "https://substratus.ai/schemas/v1/resource.schema.json"
# The pydantic error type of a rule across fields (see `_Model._cross_field`).
CROSS_FIELD = "cross_field"


def _dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"invalid sha256 {value!r}: expected 64 lowercase hexadecimal digits")
    return value


def _artifacts_url(value: str) -> str:
    # An artifact store may also be a registry repository (the store package's oci.py).
    return _storage_url(value, (*_STORAGE_SCHEMES, "oci://"),
                        "file://PATH, gs://BUCKET/PREFIX or oci://HOST[:PORT]/REPOSITORY")


def _storage_url(value: str, schemes: tuple[str, ...] = _STORAGE_SCHEMES,
                 expected: str = "file://PATH or gs://BUCKET/PREFIX") -> str:
    if not value.startswith(schemes):
        raise ValueError(f"invalid location {value!r}: expected {expected}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"invalid location {value!r}: control characters (a NUL, a newline) "
                         "cannot be in a path or object name")
    path = value.split("://", 1)[1]
    # Linux's limits: PATH_MAX 4096 bytes, NAME_MAX 255 bytes a component (GCS: 1024 a name).
    if len(path.encode()) > 1024 or any(len(part.encode()) > 255 for part in path.split("/")):
        raise ValueError(f"invalid location {value[:60]!r}...: longer than a path can be (a "
                         "folder or object name of at most 255 bytes, 1024 in all)")
    return value


def _secret_refs(value: str) -> str:
    # Whatever looks like a secret reference must be one, or it would reach the workload as text.
    rest = SECRET_REF.sub("", value)
    if "${{" in rest:
        raise ValueError(
            f"invalid secret reference in {value!r}: expected ${{{{ secrets.NAME.KEY }}}}"
        )
    return value


def _quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a number or a quantity like \"500m\", got {value!r}")
    return value


Name = Annotated[
    str, AfterValidator(_dns_label),
    Field(json_schema_extra={"pattern": f"^{DNS_LABEL.pattern}$", "maxLength": 63}),
]
Sha256 = Annotated[
    str, AfterValidator(_sha256), Field(json_schema_extra={"pattern": "^[0-9a-f]{64}$"})
]
StorageURL = Annotated[
    str, AfterValidator(_storage_url), Field(json_schema_extra={"pattern": "^(file|gs)://"})
]
ArtifactsURL = Annotated[
    str, AfterValidator(_artifacts_url), Field(json_schema_extra={"pattern": "^(file|gs|oci)://"})
]
MaybeSecret = Annotated[str, AfterValidator(_secret_refs)]


def _no_secret_refs(value: str) -> str:
    # A URL is shown, planned and recorded as written: a secret in it would be one of them.
    if "${{" in value:
        raise ValueError("a URL cannot hold a secret reference (it is shown in plans and kept "
                         "in state); send the secret in `headers` (e.g. Authorization)")
    return value


# The fields a number goes to: Kubernetes' replicas and counts are int32, a parameter count int64.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # ASCII without spaces and control characters
# The labels substratus sets on what it creates (ownership: provider.MANAGED_BY_LABEL and
# PART_OF_LABEL; the Kubernetes provider's selectors): a file setting one would fight them.
RESERVED_LABELS = ("app.kubernetes.io/managed-by", "substratus.ai/part-of", "substratus.ai/kind",
                   "substratus.ai/name")


def _http_url(value: str) -> str:
    # What the loader fetches: checked here so that validate, not apply, refuses it.
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported url {value[:60]!r}: a url source is fetched over http:// or "
                         "https:// (a file on this machine is a `path` source)")
    if not _URL_CHARS.fullmatch(value):
        raise ValueError("a url is ASCII without spaces or control characters: percent-encode "
                         "them (%20), and write an international domain name in its xn-- form")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError as error:
        raise ValueError(f"invalid url {value[:60]!r}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"invalid url {value[:60]!r}: it names no host")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"invalid header name {value[:40]!r}: use letters, digits and "
                         "!#$%&'*+.^_`|~- only (no spaces, colons or line breaks)")
    return value


def _header_value(value: str) -> str:
    # HTTP sends header values as latin-1 bytes; control characters (CR and LF above all) would
    # end the header and start another.
    bad = next((c for c in value if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F
                or ord(c) > 0xFF), None)
    if bad is not None:
        raise ValueError(f"a header value cannot hold {bad!r}: no line breaks, control "
                         "characters or characters beyond latin-1")
    return value


def _label_key(value: str) -> str:
    # LiveObject.owner trusts these: a file that sets them would forge or fight ownership.
    if value in RESERVED_LABELS:
        raise ValueError(f"label {value!r} is reserved: substratus sets it itself (reserved: "
                         f"{', '.join(RESERVED_LABELS)})")
    return value


PlainURL = Annotated[str, AfterValidator(_no_secret_refs)]
HttpURL = Annotated[PlainURL, AfterValidator(_http_url)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[MaybeSecret, AfterValidator(_header_value)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
Int32 = Annotated[int, Field(le=INT32_MAX)]
Quantity = Annotated[str | int | float, BeforeValidator(_quantity)]


def _written_name(name: str, field: FieldInfo | ComputedFieldInfo) -> str:
    """A field's title is the key written in files (hover shows it): releaseChannel, not Release
    Channel."""
    return (field.alias if isinstance(field, FieldInfo) else None) or name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              field_title_generator=_written_name)

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        """Rules across fields, checked on the input as written (see `_cross_field`)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # An "after" validator only runs once every field is valid; checking the raw input
        # instead reports these rules together with the field errors, as users expect.
        problems = cls._problems(data) if isinstance(data, dict) else []
        if not problems:
            return handler(data)
        errors: list[Any] = []
        try:
            handler(data)
        except ValidationError as error:
            errors = [_reraisable(e) for e in error.errors()]
        errors += [_cross_field_error(p, (), data) for p in problems]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _cross_field_error(message: str, loc: tuple[Any, ...], data: Any) -> dict[str, Any]:
    return {"type": PydanticCustomError(CROSS_FIELD, message), "loc": loc, "input": data}


def _reraisable(error: Any) -> dict[str, Any]:
    if error["type"] == CROSS_FIELD:
        return _cross_field_error(error["msg"], error["loc"], error["input"])
    return {k: error[k] for k in ("type", "loc", "input", "ctx") if k in error}


def _given(data: dict[Any, Any], *keys: str) -> list[str]:
    return [k for k in keys if data.get(k) is not None]


def _one_of(data: dict[Any, Any], *keys: str, required: bool = True) -> list[str]:
    given = _given(data, *keys)
    if len(given) > 1 or (required and not given):
        return [f"give {'exactly' if required else 'at most'} one of {', '.join(keys)}"]
    return []


class Ref(_Model):
    """A reference to another resource by name, in the referrer's namespace."""

    name: Name = Field(description="The referenced resource's `metadata.name`.",
                       examples=["favorite-colors"])


# Environment


class EnvironmentKubernetes(_Model):
    """Where on Kubernetes the workspace's resources run: a kubeconfig context, or a declared
    `Cluster` reached with the endpoint and CA GKE reports."""

    context: str | None = Field(default=None, description=(
        "The kubeconfig context to use; the current context when not given."))
    namespace: Name = Field(default="default", description=(
        "The namespace the resources go in (created if missing)."), examples=["ml"])
    cluster: Ref | None = Field(default=None, description=(
        "A `Cluster` resource of this workspace to run on instead of a kubeconfig context: every "
        "workload then depends on it and its NodePools."))
    kaniko_image: str | None = Field(default=None, alias="kanikoImage", description=(
        "The executor image of in-cluster builds (`builder: cluster`); a pinned kaniko release "
        "when not given."), examples=["gcr.io/kaniko-project/executor:v1.23.2"])


class EnvironmentSpec(_Model):
    """Where the workspace runs and keeps its state and artifacts (all defaults: the local
    runtime, state and artifacts under `.substratus/`)."""

    runtime: Literal["local", "kubernetes"] = Field(default="local", description=(
        "`local`: workloads run as processes on this machine. `kubernetes`: as Jobs, "
        "Deployments and StatefulSets on a cluster (see `kubernetes`)."))
    kubernetes: EnvironmentKubernetes | None = Field(default=None, description=(
        "The cluster and namespace of the kubernetes runtime."))
    artifacts: ArtifactsURL | None = Field(default=None, description=(
        "The artifact store for dataset and model snapshots: `file://PATH`, "
        "`gs://BUCKET/PREFIX` or `oci://REGISTRY/REPOSITORY` (local runtime); "
        "`.substratus/artifacts` when not given."),
        examples=["gs://my-bucket/ml"])
    state: StorageURL | None = Field(default=None, description=(
        "Where the state (and its lock) is kept: `file://PATH` or `gs://BUCKET/PREFIX` to share it "
        "with a team and CI; `.substratus/state` when not given."),
        examples=["gs://my-bucket/state"])
    registry: str | None = Field(default=None, description=(
        "The container registry workload images are pulled from and `Image`s are pushed to."),
        examples=["us-docker.pkg.dev/my-project/substratus"])


# Infrastructure (GCP)


def _matching(pattern: str, what: str, example: str) -> Callable[[str], str]:
    """A validator: the value fully matches `pattern`, or it is refused with what it should be."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r}: expected {example}")
        return value

    return check


def _pattern(pattern: str) -> Any:
    return Field(json_schema_extra={"pattern": f"^{pattern}$"})


_REGION = r"[a-z]+-[a-z]+[0-9]+"
_PROJECT = r"(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]"
_LOCATION = f"{_REGION}(?:-[a-z])?"
_ZONE = f"{_REGION}-[a-z]"
_MACHINE = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+"
_BUCKET_LOCATION = r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*"
_TAINT_KEY = (r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
              r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
ProjectID = Annotated[str, AfterValidator(_matching(
    _PROJECT, "GCP project ID", "6 to 30 lowercase letters, digits and '-', starting with a "
    "letter, like my-project-123")), _pattern(_PROJECT)]
GKELocation = Annotated[str, AfterValidator(_matching(
    _LOCATION, "location", "a GCP region or zone, like us-central1 or europe-west4-a")),
    _pattern(_LOCATION)]
Zone = Annotated[str, AfterValidator(_matching(
    _ZONE, "zone", "a GCP zone, like us-central1-a")), _pattern(_ZONE)]
MachineType = Annotated[str, AfterValidator(_matching(
    _MACHINE, "machine type", "a Compute Engine machine type, like g2-standard-8")),
    _pattern(_MACHINE)]
GPUType = Annotated[str, AfterValidator(_matching(
    _MACHINE, "GPU type", "a GKE accelerator type, like nvidia-l4")), _pattern(_MACHINE)]
BucketLocation = Annotated[str, AfterValidator(_matching(
    _BUCKET_LOCATION, "bucket location", "a Cloud Storage location, like US, EU or "
    "us-central1")), _pattern(_BUCKET_LOCATION)]
# Cloud Storage's classes, in any case (the bucket is given them upper-cased).
StorageClass = Annotated[
    Literal["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL",
            "DURABLE_REDUCED_AVAILABILITY"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]
TaintKey = Annotated[str, AfterValidator(_matching(
    _TAINT_KEY, "taint key", "a Kubernetes label key, like nvidia.com/gpu")),
    _pattern(_TAINT_KEY)]


class ClusterSpec(_Model):
    """A GKE cluster. Its default node pool is removed once it is up: declare NodePools."""

    project: ProjectID = Field(description="The Google Cloud project ID (changing it replaces the "
                         "cluster).", examples=["my-project"])
    location: GKELocation = Field(description="A region or a zone (changing it replaces the cluster).",
                          examples=["us-central1"])
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = Field(
        default="REGULAR", alias="releaseChannel", description="GKE's release channel.")
    workload_identity: bool = Field(default=True, alias="workloadIdentity", description=(
        "Enable Workload Identity (pods act as Google service accounts)."))
    image_streaming: bool = Field(default=False, alias="imageStreaming", description=(
        "Enable image streaming (containers start before their image is fully pulled)."))
    gcs_fuse_csi_driver: bool = Field(default=False, alias="gcsFuseCsiDriver", description=(
        "Enable the Cloud Storage FUSE CSI driver (buckets mounted as volumes)."))


class Accelerator(_Model):
    """The GPUs attached to each node of a pool."""

    type: GPUType = Field(description="The GKE accelerator type (changing it replaces the pool).",
                      examples=["nvidia-l4", "nvidia-tesla-t4"])
    count: Int32 = Field(default=1, ge=1, description="GPUs per node.")
    # GKE's GPUDriverInstallationConfig.GPUDriverVersion.
    gpu_driver_version: Literal["LATEST", "DEFAULT", "INSTALLATION_DISABLED"] = Field(
        default="LATEST", alias="gpuDriverVersion", description=(
            "Which NVIDIA driver GKE installs on the pool's nodes: `LATEST` or `DEFAULT` (GKE "
            "installs it), or `INSTALLATION_DISABLED` (you install it, e.g. with a DaemonSet); "
            "changing it replaces the pool."))


class Autoscaling(_Model):
    """The node count range the pool scales within (from zero with `min: 0`)."""

    min: Int32 = Field(ge=0, description="The fewest nodes (per zone).")
    max: Int32 = Field(ge=1, description="The most nodes (per zone); at least `min`.")

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        low, high = data.get("min"), data.get("max")
        if type(low) is int and type(high) is int and low > high:
            return [f"min ({low}) must not be greater than max ({high})"]
        return []


class Taint(_Model):
    """A Kubernetes taint on the pool's nodes: only pods tolerating it are scheduled there."""

    key: TaintKey = Field(description="The taint's key.", examples=["nvidia.com/gpu"])
    value: str = Field(default="", description="The taint's value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        description="What happens to pods that do not tolerate it.")


class NodePoolSpec(_Model):
    """A node pool of a GKE `Cluster`: created after its cluster, destroyed before it."""

    cluster: Ref = Field(description="The `Cluster` resource the pool belongs to.")
    machine_type: MachineType = Field(alias="machineType", description="The Compute Engine machine type.",
                              examples=["n1-standard-4", "g2-standard-8"])
    accelerator: Accelerator | None = Field(default=None, description=(
        "GPUs per node (changing them replaces the pool)."))
    spot: bool = Field(default=False, description=(
        "Use Spot VMs: cheaper, can be reclaimed at any time (changing it replaces the pool)."))
    autoscaling: Autoscaling | None = Field(default=None, description=(
        "Scale the pool between `min` and `max` nodes; a fixed single node when not given."))
    zones: list[Zone] | None = Field(default=None, description=(
        "The zones of the cluster's region the nodes go in; GKE's choice when not given."),
        examples=[["us-central1-a"]])
    taints: list[Taint] | None = Field(default=None, description="Taints put on every node of the pool.")


class BucketSpec(_Model):
    """A Cloud Storage bucket (its name is `metadata.name`). A bucket that still holds objects is
    never deleted."""

    project: ProjectID | None = Field(default=None, description=(
        "The Google Cloud project ID; Application Default Credentials' project when not given."))
    location: BucketLocation = Field(default="US", description="A multi-region, dual-region or region.",
                          examples=["US", "us-central1"])
    storage_class: StorageClass = Field(default="STANDARD", alias="storageClass", description=(
        "The default storage class of its objects."), examples=["STANDARD", "NEARLINE"])


# Fields shared by the ML kinds


class GitSource(_Model):
    """A build context taken from a git repository: the plan resolves `branch`, `tag` or `ref` to a
    commit with `git ls-remote`, and that commit is the build's identity."""

    url: str = Field(description="The repository's clone URL.",
                     examples=["https://github.com/org/repo.git"])
    ref: str | None = Field(default=None, description="A commit or a ref name (at most one of ref, "
                            "branch, tag; the default branch when none is given).")
    branch: str | None = Field(default=None, description="A branch: moving it plans a rebuild.",
                               examples=["main"])
    tag: str | None = Field(default=None, description="A tag.", examples=["v1.2.0"])
    path: str | None = Field(default=None, description="The context's folder in the repository; its "
                             "root when not given.", examples=["app"])

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "ref", "branch", "tag", required=False)


class Build(_Model):
    """An image built from a context: a folder of the workspace, or a path in a git repository."""

    git: GitSource | None = Field(default=None, description=(
        "Build from a git repository (give exactly one of git, context)."))
    context: str | None = Field(default=None, description=(
        "Build from this folder of the workspace (its `.dockerignore` is honoured; give exactly "
        "one of git, context)."), examples=["trainer"])
    dockerfile: str | None = Field(default=None, description=(
        "The Dockerfile, relative to the context; `Dockerfile` when not given."))
    build_args: dict[str, str] | None = Field(default=None, alias="buildArgs", description=(
        "Build arguments (`ARG` values)."), examples=[{"PYTHON": "3.11"}])
    target: str | None = Field(default=None, description=(
        "The stage of a multi-stage Dockerfile to build; its last stage when not given."))
    builder: Literal["local", "cluster"] | None = Field(default=None, description=(
        "Where the image is built: `local` (buildah on this machine, the default) or `cluster` "
        "(a kaniko Job on the kubernetes runtime's cluster, its context uploaded to the "
        "artifact store)."))

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "git", "context")


ImageTag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]


class ImageSpec(Build):
    """An Image: a build whose result is pushed to the Environment's registry, tagged with its
    identity and with `tags` (a version a stack pins, for instance)."""

    tags: list[ImageTag] | None = Field(default=None, description=(
        "More tags to push the image under, besides the one derived from its identity."),
        examples=[["v1", "latest"]])


class GPU(_Model):
    """GPUs for the workload."""

    type: str = Field(description="The GPU type (on GKE, an accelerator type).",
                      examples=["nvidia-l4"])
    count: Int32 = Field(default=1, ge=1, description="How many GPUs.")


class Resources(_Model):
    """What the workload's container asks for (on Kubernetes: its requests and limits)."""

    cpu: Quantity | None = Field(default=None, description="CPU cores, as a number or a Kubernetes "
                                 "quantity.", examples=[2, "500m"])
    memory: str | None = Field(default=None, description="Memory, as a Kubernetes quantity.",
                               examples=["8Gi"])
    disk: str | None = Field(default=None, description="Scratch disk space, as a Kubernetes quantity.",
                             examples=["20Gi"])
    gpu: GPU | None = Field(default=None, description=(
        "GPUs; for a Model with `size`, sized from it when not given."))


class WorkloadSpec(_Model):
    """What Dataset, Model, ModelServer and Notebook share: the container and its resources."""

    image: str | None = Field(default=None, description=(
        "The container image to run instead of substratus's own workload image (at most one of "
        "image, build)."), examples=["us-docker.pkg.dev/my-project/substratus/trainer:v1"])
    build: Build | None = Field(default=None, description=(
        "Build the image to run from a folder or a git repository (kubernetes runtime; at most "
        "one of image, build)."))
    command: list[str] | None = Field(default=None, description=(
        "The program to run instead of the image's own, with its arguments."),
        examples=[["python", "train.py"]])
    env: dict[str, MaybeSecret] | None = Field(default=None, description=(
        "Environment variables; a value can be a secret reference "
        "`${{ secrets.NAME.KEY }}`, never printed or stored."),
        examples=[{"HF_TOKEN": "${{ secrets.hf.token }}"}])
    params: dict[str, Any] | None = Field(default=None, description=(
        "Parameters for the workload, given to it as `/content/params.json` and `PARAM_<KEY>` "
        "environment variables."), examples=[{"epochs": 3, "learning_rate": 0.0001}])
    resources: Resources | None = Field(default=None, description=(
        "CPU, memory, disk and GPUs for the workload."))

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "image", "build", required=False)


class HuggingFace(_Model):
    """A repository on the Hugging Face Hub."""

    name: str = Field(description="The repository's ID.", examples=["facebook/opt-125m"])
    revision: str | None = Field(default=None, description=(
        "A branch, tag or commit; the default branch when not given (pin a commit for "
        "reproducible plans)."), examples=["main"])


class DatasetSource(_Model):
    """Where a dataset's files come from (exactly one of url, path, huggingface)."""

    url: HttpURL | None = Field(default=None, description=(
        "Download one file over http(s) (a `.tar.gz` or `.zip` is unpacked). It is shown in plans: put "
        "credentials in `headers`."), examples=["https://example.com/data.jsonl"])
    sha256: Sha256 | None = Field(default=None, description=(
        "The downloaded file's expected sha256 (a url source only); a mismatch fails the apply."))
    headers: dict[HeaderName, HeaderValue] | None = Field(default=None, description=(
        "HTTP headers sent with the download (a url source only); values can be secret "
        "references."), examples=[{"Authorization": "Bearer ${{ secrets.data.token }}"}])
    path: str | None = Field(default=None, description=(
        "A file or folder of the workspace, relative to it."),
        examples=["data/favorite-colors.jsonl"])
    allow_outside: bool = Field(default=False, alias="allowOutside", description=(
        "Allow a `path` outside the workspace's folder (refused by default, as kustomize's "
        "load restrictor does)."))
    huggingface: HuggingFace | None = Field(default=None, description=(
        "A dataset repository on the Hugging Face Hub."))

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = _one_of(data, "url", "path", "huggingface")
        if not _given(data, "url") and _given(data, "sha256", "headers"):
            problems.append("sha256 and headers apply only to a url source")
        return problems + _path_only(data)


class DatasetSpec(WorkloadSpec):
    """A Dataset: a content-addressed snapshot of files, from a source or made by a workload
    (an image or build that loads the data)."""

    source: DatasetSource | None = Field(default=None, description=(
        "Where the files come from; without it, `image` or `build` loads the data."))

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = super()._problems(data)
        if not _given(data, "source", "image", "build"):
            problems.append("give a source, or an image or build that loads the data")
        return problems


def _path_only(data: dict[Any, Any]) -> list[str]:
    if data.get("allowOutside") not in (None, False) and not _given(data, "path"):
        return ["allowOutside applies only to a path source"]
    return []


class Scratch(_Model):
    """A small model built from a config, randomly initialised."""

    config: dict[str, Any] = Field(default_factory=dict, description=(
        "The architecture's settings (for the built-in workload: architecture, n_layer, n_head, "
        "n_embd, n_positions, seed)."), examples=[{"n_layer": 2, "n_embd": 64}])


class ModelSource(_Model):
    """Where a model comes from (exactly one of huggingface, url, path, scratch)."""

    huggingface: HuggingFace | None = Field(default=None, description=(
        "A model repository on the Hugging Face Hub."))
    url: HttpURL | None = Field(default=None, description=(
        "Download one file over http(s) (a `.tar.gz` or `.zip` is unpacked)."),
        examples=["https://example.com/model.tar.gz"])
    sha256: Sha256 | None = Field(default=None, description=(
        "The downloaded file's expected sha256 (a url source only)."))
    path: str | None = Field(default=None, description="A folder of the workspace, relative to it.",
                             examples=["models/base"])
    allow_outside: bool = Field(default=False, alias="allowOutside", description=(
        "Allow a `path` outside the workspace's folder (refused by default)."))
    scratch: Scratch | None = Field(default=None, description="Build a new model from a config.")

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = _one_of(data, "huggingface", "url", "path", "scratch")
        if not _given(data, "url") and _given(data, "sha256"):
            problems.append("sha256 applies only to a url source")
        return problems + _path_only(data)


class Training(_Model):
    """Fine-tune a base model on a dataset: the result is a new model artifact."""

    base_model: Ref = Field(alias="baseModel", description="The `Model` to start from.")
    dataset: Ref = Field(description="The `Dataset` to train on.")
    params: dict[str, Any] | None = Field(default=None, description=(
        "Training parameters (for the built-in trainer: epochs, max_steps, learning_rate, "
        "batch_size, seq_len, seed, log_every)."), examples=[{"epochs": 3, "learning_rate": 5e-05}])


class Size(_Model):
    """The model's size, which sizes its memory and GPUs without loading it."""

    parameter_count: int = Field(gt=0, le=INT64_MAX, alias="parameterCount", description=(
        "The number of parameters."), examples=[125000000])
    parameter_bits: Literal[4, 8, 16, 32] = Field(alias="parameterBits", description=(
        "Bits per parameter as stored."), examples=[16])


class ModelSpec(WorkloadSpec):
    """A Model: an immutable artifact, imported (`source`) or trained (`training`); any change
    replaces it."""

    source: ModelSource | None = Field(default=None, description=(
        "Import or build the model (exactly one of source, training)."))
    training: Training | None = Field(default=None, description=(
        "Fine-tune a base model on a dataset (exactly one of source, training)."))
    size: Size | None = Field(default=None, description=(
        "The model's size: plans show the memory it needs to train and serve, and GPUs are "
        "sized from it."))

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return [*super()._problems(data), *_one_of(data, "source", "training")]


class Quantization(_Model):
    """Serve the model's weights at fewer bits."""

    bits: Literal[4, 8, 16] = Field(description="Bits per parameter when serving.")


class Rollout(_Model):
    """How a new version replaces the old: started beside it, switched to once ready."""

    max_surge: Int32 = Field(default=1, ge=1, alias="maxSurge", description=(
        "Replicas of the new version started at a time."))
    readiness_timeout_seconds: Int32 = Field(default=300, gt=0, alias="readinessTimeoutSeconds", description=(
        "How long the new version may take to answer `/health`; then the apply fails and the "
        "old version keeps serving."))


class ModelServerSpec(WorkloadSpec):
    """A ModelServer: replicas serving a model over HTTP (`/v1/completions`, `/generate`) on a
    stable endpoint, rolled out without downtime."""

    model: Ref = Field(description="The `Model` to serve.")
    replicas: Int32 = Field(default=1, ge=0, description="How many server processes or pods.")
    quantization: Quantization | None = Field(default=None, description=(
        "Serve the weights quantized."))
    rollout: Rollout | None = Field(default=None, description="How a changed server is rolled out.")


class NotebookSpec(WorkloadSpec):
    """A Notebook: JupyterLab with a model and a dataset in it."""

    model: Ref | None = Field(default=None, description="A `Model` to put in the notebook "
                              "(`/content/model`).")
    dataset: Ref | None = Field(default=None, description="A `Dataset` to put in the notebook "
                                "(`/content/data`).")
    suspend: bool = Field(default=False, description="Stop the notebook, keeping its definition.")


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Environment": EnvironmentSpec,
    "Cluster": ClusterSpec,
    "NodePool": NodePoolSpec,
    "Bucket": BucketSpec,
    "Image": ImageSpec,
    "Dataset": DatasetSpec,
    "Model": ModelSpec,
    "ModelServer": ModelServerSpec,
    "Notebook": NotebookSpec,
}
assert tuple(SPEC_MODELS) == KINDS, "every kind needs a spec model"


# Documents


def _labels() -> Any:
    return Field(default=None, description=(
        "Labels (key: value) recorded with the resource and put on the objects it becomes."),
        examples=[{"team": "ml"}])


class Metadata(_Model):
    """The resource's identity: its address is Kind/namespace/name."""

    name: Name = Field(description=(
        "The resource's name, unique per kind and namespace: at most 63 lowercase letters, "
        "digits and '-'."), examples=["favorite-colors"])
    namespace: Name | None = Field(default=None, description=(
        "The namespace; the Environment's (`default` when not set) when not given."))
    labels: dict[LabelKey, str] | None = _labels()


def _empty_spec_is_default(value: Any) -> Any:
    return {} if value is None else value


def _envelope(kind: str, what: str, metadata: type[BaseModel], spec: Any) -> type[BaseModel]:
    """The document around a spec: apiVersion, kind, metadata and spec."""
    model: type[BaseModel] = create_model(
        f"{kind}Document", __base__=_Model, __doc__=what,
        api_version=(Literal[API_VERSION],  # type: ignore[arg-type]
                     Field(alias="apiVersion", description=f"Always `{API_VERSION}`.")),
        kind=(Literal[kind],  # type: ignore[arg-type]
              Field(description="The kind of resource; it decides what `spec` holds.")),
        metadata=(metadata, Field(description=_doc(metadata))),
        spec=spec)
    return model


def _document_model(kind: str, spec: type[BaseModel]) -> type[BaseModel]:
    spec_field: Any = (spec, Field(description=_doc(spec)))
    if kind == "Environment":
        # An Environment with no spec (or `spec:` left empty) means all defaults.
        spec_field = (Annotated[spec, BeforeValidator(_empty_spec_is_default)],
                      Field(default_factory=spec, description=_doc(spec)))
    return _envelope(kind, f"A substratus {kind} resource.", Metadata, spec_field)


def _doc(model: type[BaseModel]) -> str:
    """A model's docstring on one line: the description of a field holding it."""
    return " ".join((model.__doc__ or "").split())


DOCUMENT_MODELS: dict[str, type[BaseModel]] = {k: _document_model(k, m) for k, m in SPEC_MODELS.items()}


class StackSpec(_Model):
    """A stack instance: the stack's folder (./PATH) or a shipped stack's name, and its values
    (checked against the stack's stack.yaml when it is rendered)."""

    source: str = Field(description=(
        "A shipped stack's name, or `./PATH` to a folder with a `stack.yaml`."),
        examples=["finetune-and-serve", "./stacks/mine"])
    values: dict[str, Any] | None = Field(default=None, description=(
        "The stack's parameters (its `stack.yaml` declares them; `substratus init STACK` "
        "writes them all with their defaults)."), examples=[{"epochs": 50}])


class StackMetadata(_Model):
    """The instance's identity: its resources are named after it (`NAME-...`)."""

    name: Name = Field(description="The instance's name; `--target Stack/NAME` selects every "
                       "resource it renders.", examples=["colors"])
    namespace: Name | None = Field(default=None, description="The namespace of what it renders.")
    labels: dict[LabelKey, str] | None = _labels()


class VariableMetadata(_Model):
    """The variable's name."""

    name: Annotated[str, Field(pattern=f"^{IDENTIFIER.pattern}$")] = Field(description=(
        "Used as `${{ var.NAME }}`, set with `--var NAME=VALUE` or `SUBSTRATUS_VAR_NAME`."),
        examples=["epochs"])


# Documents the loader expands before validation (stacks/): in the editors' schema only.
CONFIG_DOCUMENT_MODELS: dict[str, type[BaseModel]] = {
    "Stack": _envelope("Stack", "A stack instance: the resources a stack renders with these "
                       "values.", StackMetadata, (StackSpec, Field(description=_doc(StackSpec)))),
    "Variable": _envelope("Variable", "A workspace variable, declared with its type and default.",
                          VariableMetadata, (Parameter, Field(description=_doc(Parameter)))),
}


def json_schema() -> dict[str, Any]:
    """One JSON Schema for a document of any kind, chosen by `kind` (for yaml-language-server)."""
    union = functools.reduce(operator.or_, [*DOCUMENT_MODELS.values(),
                                            *CONFIG_DOCUMENT_MODELS.values()])
    adapter: TypeAdapter[Any] = TypeAdapter(
        Annotated[union, Field(discriminator="kind")])  # type: ignore[arg-type]
    schema = adapter.json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "substratus resource",
        "description": f"A substratus resource document (apiVersion {API_VERSION}).",
        **schema,
    }
