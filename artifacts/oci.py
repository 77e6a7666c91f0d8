"""The oci:// backend: a store in one repository of an OCI registry, `oci://HOST[:PORT]/REPO`,
spoken to with the registry client image builds use (registry.py: Docker config credentials,
Basic or Bearer auth, retries; plain HTTP on a loopback host).

The store layout's objects map onto the registry's:

    blobs/sha256/AB/HEX            the OCI blob sha256:HEX, so a file that is also an image layer
                                   in the repository is stored once
    manifests/sha256/HEX.json      an OCI image manifest tagged `sha256-HEX` whose config is the
                                   snapshot manifest (the blob sha256:HEX, media type
                                   SNAPSHOT_TYPE) and whose layers are the snapshot's file blobs,
                                   each with its path (ModelPack's `org.cncf.model.filepath`)
    refs/NAME                      the same manifest under the tag ref_tag(NAME), annotated with
                                   NAME (a tag cannot hold '/': see ref_tag)

Blobs are created only when a HEAD says they are absent, and the registry checks each upload
against its digest; every read is checked by the Store against its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from substratus_artifacts.backend import DigestMismatch, Sink
from substratus_artifacts.files import CHUNK_SIZE
from substratus_artifacts.layout import StoreError, parse_ref, ref_content, ref_key
from substratus_artifacts.manifest import DIGEST_PREFIX, Manifest, ManifestError
from substratus_artifacts.progress import Meter
from substratus_artifacts.registry import (
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    docker_credentials,
)

OCI_PARALLELISM = 8
# The snapshot manifest (our JSON) as the artifact's config, and the artifact's type.
SNAPSHOT_TYPE = "application/vnd.substratus.snapshot.manifest.v1+json"
# ModelPack's type for a file stored as it is (not tarred, not compressed), and its annotation
# naming the file's path.
LAYER_TYPE = "application/vnd.cncf.model.weight.v1.raw"
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
TITLE_ANNOTATION = "org.opencontainers.image.title"  # what `oras pull` names the file by
REF_ANNOTATION = "ai.substratus.ref"
TAG_LIMIT = 128

# distribution's grammar of repository names (lower case components, separators between).
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)"
                         r"[a-z0-9]+)*)*")
_BLOB_KEY = re.compile(r"blobs/sha256/[0-9a-f]{2}/(?P<hex>[0-9a-f]{64})")
_MANIFEST_KEY = re.compile(r"manifests/sha256/(?P<hex>[0-9a-f]{64})\.json")
_TAG_KEPT = re.compile(r"[A-Za-z0-9-]")


class _Backoff:
    """Temporary registry failures (5xx, 429, a reset) are sent again: 0.5 s doubling to 8 s, up
    to 6 tries within 2 minutes, Retry-After honoured."""

    def delay(self, attempt: int, retry_after: float | None) -> float:
        return retry_after if retry_after is not None else min(8.0, 0.5 * 2 ** (attempt - 1))

    def allows(self, attempt: int, waited: float, delay: float, *, read: bool = False) -> bool:
        return attempt < 6 and waited + delay < 120.0


def snapshot_tag(hex_: str) -> str:
    """The tag of a snapshot's artifact: `sha256-HEX` (a tag cannot hold ':')."""
    return f"sha256-{hex_}"


def ref_tag(name: str) -> str:
    """The tag a ref is kept under. Tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, so the name is
    mapped, one to one: `ref.` then each '/' as '.', letters, digits and '-' as they are, '_' as
    '__', any other character as '_' and the hex of its UTF-8 bytes ('.' is `_2e`). A name
    longer than a tag can be is `ref._z` and the sha256 of the name (no mapped name holds `_z`);
    the name itself is in the manifest's annotation, checked on every read."""
    out = []
    for ch in name:
        if ch == "/":
            out.append(".")
        elif ch == "_":
            out.append("__")
        elif _TAG_KEPT.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode())
    tag = "ref." + "".join(out)
    if len(tag) > TAG_LIMIT:
        tag = "ref._z" + hashlib.sha256(name.encode()).hexdigest()
    return tag


def parse_root(url: str) -> tuple[str, str]:
    """`oci://HOST[:PORT]/REPO` -> (host, repository); StoreError saying what is wrong."""
    rest = url.removeprefix("oci://").rstrip("/")
    host, _, repository = rest.partition("/")
    if not host or not repository:
        raise StoreError(f"artifact store {url}: expected oci://HOST[:PORT]/REPOSITORY "
                         "(e.g. oci://127.0.0.1:5000/ml/artifacts)")
    if not _REPOSITORY.fullmatch(repository) or len(repository) > 255:
        raise StoreError(f"artifact store {url}: {repository!r} is not a registry repository "
                         "name (lower-case letters and digits, parts joined by '.', '_', '__' "
                         "or '-', folders by '/')")
    return host, repository


class OCIBackend:
    """One repository of a registry. The client is made on first use: opening the store reads
    no credentials."""

    parallelism = OCI_PARALLELISM

    def __init__(self, host: str, repository: str, client: RegistryClient | None = None) -> None:
        self.host = host
        self.repository = repository
        self.url = f"oci://{host}/{repository}"
        self._client = client
        self._checked = False

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            self._client = RegistryClient(self.host, credentials=docker_credentials(self.host),
                                          retry=_Backoff())
        return self._client

    def local_path(self, key: str) -> None:
        return None

    def check_root(self) -> None:
        """The registry answers the API and lets us in (a repository needs no creating)."""
        if not self._checked:
            self.client.ping(self.repository)
            self._checked = True

    # -- reads ------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        kind, name = self._route(key)
        if kind == "blob":
            return self.client.has_blob(self.repository, DIGEST_PREFIX + name)
        tag = snapshot_tag(name) if kind == "manifest" else ref_tag(name)
        return self.client.head_manifest(self.repository, tag) is not None

    def read(self, key: str) -> bytes | None:
        kind, name = self._route(key)
        if kind == "blob":
            return self.client.get_blob(self.repository, DIGEST_PREFIX + name)
        tag = snapshot_tag(name) if kind == "manifest" else ref_tag(name)
        document = self._artifact(tag)
        if document is None:
            return None
        config = document["config"]["digest"]
        if kind == "ref":
            if (document.get("annotations") or {}).get(REF_ANNOTATION) != name:
                raise StoreError(f"{self.url}:{tag} is not the ref {name!r} (its annotation "
                                 f"{REF_ANNOTATION} names another)")
            return ref_content(config)
        if config != DIGEST_PREFIX + name:
            raise StoreError(f"{self.url}:{tag} holds the snapshot {config}, not "
                             f"{DIGEST_PREFIX}{name}")
        raw = self.client.get_blob(self.repository, config)
        if raw is None:
            raise StoreError(f"{self.url}:{tag} names the snapshot manifest {config}, which the "
                             "registry does not have")
        return raw  # the Store checks it hashes to its digest

    def download(self, key: str, sink: Sink) -> bool:
        kind, name = self._route(key)
        if kind != "blob":
            data = self.read(key)
            if data is None:
                return False
            sink.write(data)
            return True
        return self.client.download_blob(self.repository, DIGEST_PREFIX + name,
                                         sink)  # type: ignore[arg-type]

    # -- writes -----------------------------------------------------------------------------

    def create(self, key: str, source: Path | bytes, sha256: str, *,
               meter: Meter | None = None) -> int:
        kind, name = self._route(key)
        if kind == "ref":
            raise StoreError(f"{key}: a ref is replaced, not created")
        if kind == "manifest":
            if not isinstance(source, bytes):
                source = _read(source)
            return self._create_snapshot(key, source, sha256)
        digest = DIGEST_PREFIX + sha256
        if self.client.has_blob(self.repository, digest):
            return 0
        if isinstance(source, bytes):
            actual = hashlib.sha256(source).hexdigest()
            if actual != sha256:
                raise DigestMismatch(key, actual)
            self.client.upload_blob(self.repository, digest, len(source), source)
            if meter is not None:
                meter.advance(len(source))
            return len(source)
        return self._upload_file(key, source, sha256, meter)

    def _upload_file(self, key: str, path: Path, sha256: str, meter: Meter | None) -> int:
        """The file streamed to the registry, hashed on the way: read once. The registry refuses
        bytes other than the digest's; the hash taken says which bytes those were."""
        size = os.stat(path).st_size
        hashed: list[str] = []

        def chunks() -> Iterator[bytes]:
            digest, sent = hashlib.sha256(), 0
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:  # not the registry's failure: never retried as one
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
            with handle:
                while sent < size:
                    try:
                        chunk = handle.read(min(CHUNK_SIZE, size - sent))
                    except OSError as exc:
                        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    sent += len(chunk)
                    if meter is not None:  # counted as the registry client takes it to send
                        meter.advance(len(chunk))
                    yield chunk
            if sent < size:  # shorter than its size: the request must not be completed
                raise StoreError(f"{path} changed while it was being uploaded (it shrank); "
                                 "nothing was kept; run again")
            hashed.append(digest.hexdigest())

        try:
            self.client.upload_blob(self.repository, DIGEST_PREFIX + sha256, size, chunks)
        except RegistryError:
            if hashed and hashed[-1] != sha256:
                raise DigestMismatch(key, hashed[-1]) from None
            raise
        return size

    def _create_snapshot(self, key: str, data: bytes, sha256: str) -> int:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DigestMismatch(key, actual)
        tag = snapshot_tag(sha256)
        if self.client.head_manifest(self.repository, tag) is not None:
            return 0
        try:
            manifest = Manifest.parse(data, DIGEST_PREFIX + sha256)
        except ManifestError as exc:
            raise StoreError(f"{key}: not a snapshot manifest: {exc}") from None
        written = self.create(f"blobs/sha256/{sha256[:2]}/{sha256}", data, sha256)
        self.client.put_manifest(self.repository, tag, OCI_MANIFEST,
                                 artifact_manifest(manifest, data))
        return written

    def replace(self, key: str, data: bytes) -> None:
        kind, name = self._route(key)
        if kind != "ref":
            raise StoreError(f"{key}: only a ref is replaced")
        digest = parse_ref(data, f"{self.url}/{key}")
        tag = snapshot_tag(digest.removeprefix(DIGEST_PREFIX))
        document = self._artifact(tag)
        if document is None:
            raise StoreError(f"cannot point ref {name!r} at {digest}: the snapshot is not in "
                             f"{self.url} (no tag {tag})")
        document["annotations"] = {**(document.get("annotations") or {}), REF_ANNOTATION: name}
        self.client.put_manifest(self.repository, ref_tag(name), OCI_MANIFEST, _canonical(document))

    # -- plumbing ---------------------------------------------------------------------------

    def _route(self, key: str) -> tuple[str, str]:
        """("blob", hex), ("manifest", hex) or ("ref", name) for a key of the store layout."""
        if match := _BLOB_KEY.fullmatch(key):
            return "blob", match["hex"]
        if match := _MANIFEST_KEY.fullmatch(key):
            return "manifest", match["hex"]
        if key.startswith("refs/"):
            name = key.removeprefix("refs/")
            try:
                ref_key(name)
            except ManifestError as exc:
                raise StoreError(str(exc)) from None
            return "ref", name
        raise StoreError(f"{key!r} is not an object of the artifact store layout")

    def _artifact(self, tag: str) -> dict[str, Any] | None:
        """The substratus snapshot artifact under a tag, None when the tag does not exist;
        StoreError when it holds something else (an image, say)."""
        answer = self.client.get_manifest(self.repository, tag)
        if answer is None:
            return None
        _, body = answer
        try:
            document = json.loads(body)
            config = document["config"]
            if config["mediaType"] != SNAPSHOT_TYPE or not isinstance(document["layers"], list):
                raise ValueError(f"its config is {config['mediaType']!r}")
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(config["digest"])):
                raise ValueError(f"its config digest is {config['digest']!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.url}:{tag} is not a substratus snapshot artifact ({exc})") \
                from None
        return dict(document)


def artifact_manifest(manifest: Manifest, config: bytes) -> bytes:
    """The OCI image manifest of a snapshot: config = the snapshot manifest's bytes, a layer per
    distinct blob (in path order, named by the first path holding it). The same snapshot gives
    the same bytes, so the same digest, wherever it is pushed from."""
    layers: dict[str, dict[str, Any]] = {}
    for entry in sorted(manifest.entries, key=lambda e: e.path):
        layers.setdefault(entry.sha256, {
            "mediaType": LAYER_TYPE, "digest": DIGEST_PREFIX + entry.sha256, "size": entry.size,
            "annotations": {FILEPATH_ANNOTATION: entry.path, TITLE_ANNOTATION: entry.path}})
    return _canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SNAPSHOT_TYPE,
        "config": {"mediaType": SNAPSHOT_TYPE, "size": len(config),
                   "digest": DIGEST_PREFIX + hashlib.sha256(config).hexdigest()},
        "layers": list(layers.values()),
    })


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
