"""The oci:// artifact store against a real registry (Debian's docker-registry on 127.0.0.1):
what it stores is a standard OCI artifact skopeo reads, blobs are shared with image layers and
never sent twice, refs are tags, and refusals, outages and damage are clear errors. The
backend-independent guarantees are in test_store_conformance.py."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts import snapshots
from substratus_artifacts.layout import StoreError, parse_url
from substratus_artifacts.oci import (
    FILEPATH_ANNOTATION,
    LAYER_TYPE,
    REF_ANNOTATION,
    SNAPSHOT_TYPE,
    OCIBackend,
    ref_tag,
)
from substratus_artifacts.registry import OCI_MANIFEST, RegistryClient
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store, open_store
from substratus_cli.wiring import open_artifact_store
from tests.registry import RegistryServer, registry_server
from tests.registry.proxy import fault_proxy, once
from tests.support.store_conformance import files_under, make_tree, sha

USER, PASSWORD = "ml", "oci-store-password"


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


@pytest.fixture
def repository() -> str:
    return f"ml/artifacts-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "data")


@pytest.fixture(autouse=True)
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the machine's ~/.docker holds stays out of these tests.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_snapshot_is_an_oci_artifact_skopeo_reads(registry: RegistryServer, repository: str,
                                                    tree: Path, tmp_path: Path) -> None:
    store = open_store(f"oci://{registry.host}/{repository}")
    result = snapshot_tree(tree, store, None)
    store.put_ref("default/dataset/colors/1", result.digest)
    hex_ = result.digest.removeprefix("sha256:")
    image = f"docker://{registry.host}/{repository}"

    tags = json.loads(skopeo("list-tags", "--tls-verify=false", image))["Tags"]
    assert sorted(tags) == sorted([f"sha256-{hex_}", "ref.default.dataset.colors.1"])
    manifest = json.loads(skopeo("inspect", "--tls-verify=false", "--raw",
                                 f"{image}:sha256-{hex_}"))
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == manifest["config"]["mediaType"] == SNAPSHOT_TYPE
    assert manifest["config"]["digest"] == result.digest  # the config is our manifest
    # A layer per distinct file content, ModelPack's raw type, named by the first path.
    assert {(layer["digest"], layer["size"], layer["annotations"][FILEPATH_ANNOTATION])
            for layer in manifest["layers"]} == {
        ("sha256:" + sha(b"alpha\n"), 6, "a.txt"),
        ("sha256:" + sha(b""), 0, "sub/deeper/c.txt"),
        ("sha256:" + sha(bytes(range(256)) * 40), 10240, "sub/b.bin"),
        ("sha256:" + sha(b"hidden files are data too"), 25, ".hidden")}
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_TYPE}
    config = skopeo("inspect", "--tls-verify=false", "--config", "--raw", f"{image}:sha256-{hex_}")
    assert config.encode() == result.manifest.canonical_json()
    ref = json.loads(skopeo("inspect", "--tls-verify=false", "--raw",
                            f"{image}:ref.default.dataset.colors.1"))
    assert ref["annotations"] == {REF_ANNOTATION: "default/dataset/colors/1"}
    assert {k: v for k, v in ref.items() if k != "annotations"} == manifest

    # Copied out by skopeo to an OCI image layout: every blob is the file it names.
    skopeo("copy", "--src-tls-verify=false", f"{image}:ref.default.dataset.colors.1",
           f"oci:{tmp_path / 'layout'}:colors")
    for layer in manifest["layers"]:
        blob = tmp_path / "layout" / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
        assert blob.read_bytes() == (tree / layer["annotations"][FILEPATH_ANNOTATION]).read_bytes()


def test_a_repush_sends_nothing_but_heads(registry: RegistryServer, repository: str,
                                         tree: Path) -> None:
    with fault_proxy(registry, lambda method, path: None) as proxy:
        store = open_store(f"oci://{proxy.host}/{repository}")
        first = snapshot_tree(tree, store, None)
        uploads = [r for r in proxy.requests if r[0] == "PUT" and "/blobs/uploads/" in r[1]]
        assert len(uploads) == 5  # four distinct files and the snapshot manifest
        proxy.requests.clear()
        again = snapshot_tree(tree, open_store(f"oci://{proxy.host}/{repository}"), None)
        assert (again.digest, again.bytes_copied) == (first.digest, 0)
        # A HEAD per distinct blob and one for the snapshot's tag; nothing written.
        assert sorted(method for method, _, _ in proxy.requests) == ["HEAD"] * 5


def test_a_file_that_is_already_an_image_layer_is_not_uploaded(
        registry: RegistryServer, repository: str, tree: Path) -> None:
    weights = (tree / "sub" / "b.bin").read_bytes()
    RegistryClient(registry.host).push_blob(repository, weights,
                                            "application/vnd.oci.image.layer.v1.tar")
    with fault_proxy(registry, lambda method, path: None) as proxy:
        result = snapshot_tree(tree, open_store(f"oci://{proxy.host}/{repository}"), None)
    assert result.bytes_copied == result.manifest.total_size - 6 - len(weights)
    put = [path for method, path, _ in proxy.requests if method == "PUT"]
    assert not [path for path in put if sha(weights) in path]


def test_refs_are_tags_with_mapped_names(registry: RegistryServer, repository: str,
                                         tree: Path) -> None:
    store = open_store(f"oci://{registry.host}/{repository}")
    digest = snapshot_tree(tree, store, None).digest
    client = RegistryClient(registry.host)
    long_name = "default/model/" + "x" * 70 + "/" + "3f" * 32
    odd = "team_a/model/v1.2/ü"
    for name in (long_name, odd, "default/dataset/colors/1"):
        store.put_ref(name, digest)
        assert store.get_ref(name) == digest
        assert client.head_manifest(repository, ref_tag(name)) is not None
    assert ref_tag(odd) == "ref.team__a.model.v1_2e2._c3_bc"
    assert ref_tag(long_name).startswith("ref._z") and len(ref_tag(long_name)) <= 128
    # A ref is kept with the name it is: another name hashed or mapped to that tag is refused.
    _, body = client.get_manifest(repository, ref_tag(odd)) or (None, b"")
    document = json.loads(body)
    document["annotations"][REF_ANNOTATION] = "someone/else"
    client.put_manifest(repository, ref_tag(odd), OCI_MANIFEST, json.dumps(document).encode())
    with pytest.raises(StoreError, match=f"is not the ref '{odd}'"):
        store.get_ref(odd)
    with pytest.raises(StoreError, match="the snapshot is not in"):
        store.put_ref("default/dataset/colors/2", "sha256:" + "4" * 64)
    assert store.get_ref("default/dataset/colors/2") is None


def test_a_tag_that_holds_something_else_is_refused(registry: RegistryServer,
                                                    repository: str) -> None:
    client = RegistryClient(registry.host)
    config = client.push_blob(repository, b"{}", "application/vnd.oci.image.config.v1+json")
    image = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                        "config": {"mediaType": config.media_type, "digest": config.digest,
                                   "size": config.size}}).encode()
    client.put_manifest(repository, ref_tag("default/model/m/1"), OCI_MANIFEST, image)
    store = open_store(f"oci://{registry.host}/{repository}")
    with pytest.raises(StoreError, match="is not a substratus snapshot artifact .*"
                                         "application/vnd.oci.image.config.v1\\+json"):
        store.get_ref("default/model/m/1")


def test_credentials_come_from_the_docker_config(tmp_path: Path, tree: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with registry_server((USER, PASSWORD)) as guarded:
        url = f"oci://{guarded.host}/team/data"
        with pytest.raises(StoreError, match=r"HTTP 401 \(no credentials were given\)") as err:
            snapshot_tree(tree, open_store(url), None)
        assert err.value.hint and f"docker login {guarded.host}" in err.value.hint
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker" / "config.json").write_text(
            json.dumps({"auths": {guarded.host: {"auth": auth}}}))
        store = open_store(url)
        result = snapshot_tree(tree, store, None)
        store.materialize(result.digest, tmp_path / "out", verify=True)
        assert files_under(tmp_path / "out") == files_under(tree)
        assert skopeo("inspect", "--tls-verify=false", "--raw", f"--creds={USER}:{PASSWORD}",
                      f"docker://{guarded.host}/team/data:sha256-{result.digest[7:]}")
        (tmp_path / "docker" / "config.json").write_text(json.dumps(
            {"auths": {guarded.host: {"auth": base64.b64encode(b"ml:wrong").decode()}}}))
        with pytest.raises(StoreError, match="the credentials were refused") as err:
            open_store(url).get_manifest(result.digest)
        assert PASSWORD not in str(err.value) and "wrong" not in str(err.value)


@contextlib.contextmanager
def blob_storage(registry: RegistryServer) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Where a registry on cloud storage sends blob downloads: an HTTP server on 127.0.0.1 that
    serves /sha256/HEX from the registry's own blob files, recording each request's headers."""
    seen: list[dict[str, str]] = []
    blobs = registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256"

    class Storage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            seen.append(dict(self.headers.items()))
            hex_ = self.path.rsplit("/", 1)[1]
            data = (blobs / hex_[:2] / hex_ / "data").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_blob_downloads_follow_the_registry_to_its_storage_without_credentials(
        tmp_path: Path, tree: Path) -> None:
    with registry_server((USER, PASSWORD)) as guarded, blob_storage(guarded) as (storage, seen):
        def to_storage(method: str, path: str) -> str | None:
            if method == "GET" and "/blobs/sha256:" in path:
                return f"{storage}/sha256/{path.rsplit(':', 1)[1]}"
            return None

        (tmp_path / "docker").mkdir()
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        with fault_proxy(guarded, lambda method, path: None, redirect=to_storage) as proxy:
            (tmp_path / "docker" / "config.json").write_text(
                json.dumps({"auths": {proxy.host: {"auth": auth}}}))
            store = open_store(f"oci://{proxy.host}/team/data")
            result = snapshot_tree(tree, store, None)
            store.materialize(result.digest, tmp_path / "out", verify=True)
            assert store.get_manifest(result.digest) == result.manifest  # the config, by GET
        assert files_under(tmp_path / "out") == files_under(tree)
        # Four distinct files, and the snapshot manifest read twice (materialize, get_manifest).
        assert len(seen) == 6
        assert not [h for h in seen if "authorization" in {k.lower() for k in h}]
        assert len([r for r in proxy.requests if r[2] == 307]) == 6


class FullDisk:
    """A download sink on a disk that is full."""

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


def test_a_download_that_cannot_be_written_is_not_retried_as_a_registry_failure(
        registry: RegistryServer, repository: str) -> None:
    digest = RegistryClient(registry.host).push_blob(repository, b"weights" * 1000).digest
    with fault_proxy(registry, lambda method, path: None) as proxy:
        backend = open_store(f"oci://{proxy.host}/{repository}").backend
        assert isinstance(backend, OCIBackend)
        client = backend.client
        with pytest.raises(StoreError, match="cannot write what GET .* answered: No space left"):
            client.download_blob(repository, digest, FullDisk())
    assert [m for m, _, _ in proxy.requests] == ["GET"]


def test_a_redirect_anywhere_but_a_blob_download_is_refused(registry: RegistryServer,
                                                           repository: str, tree: Path) -> None:
    def elsewhere(method: str, path: str) -> str | None:
        return "http://127.0.0.1:9/x" if method == "HEAD" and "/blobs/" in path else None

    with fault_proxy(registry, lambda method, path: None, redirect=elsewhere) as proxy, \
            pytest.raises(StoreError, match=r"answered HEAD .* with a redirect to "
                                            r"http://127.0.0.1:9/x; refused"):
        snapshot_tree(tree, open_store(f"oci://{proxy.host}/{repository}"), None)


def test_a_refused_push_records_nothing_and_a_rerun_converges(
        registry: RegistryServer, repository: str, tree: Path) -> None:
    refusing = [True]

    def fault(method: str, path: str) -> int | None:
        return 403 if refusing[0] and method == "PUT" and "/manifests/" in path else None

    with fault_proxy(registry, fault) as proxy:
        store = open_store(f"oci://{proxy.host}/{repository}")
        with pytest.raises(StoreError, match=f"registry {proxy.host} refused PUT "
                                             r".*/manifests/sha256-[0-9a-f]{64}: HTTP 403"):
            snapshot_tree(tree, store, None)
        digest = make_tree_digest(tree)
        assert not store.has_snapshot(digest)  # blobs went up; the snapshot is not recorded
        refusing[0] = False
        proxy.requests.clear()
        result = snapshot_tree(tree, store, None)
        assert (result.digest, result.bytes_copied) == (digest, 0)
        # Only the artifact's manifest was left to send: every blob went up the first time.
        assert [(m, p.rsplit("/", 1)[1]) for m, p, _ in proxy.requests if m != "HEAD"] == [
            ("PUT", f"sha256-{digest[7:]}")]
        assert store.has_snapshot(digest)


def make_tree_digest(tree: Path) -> str:
    from substratus_artifacts.files import hash_tree

    return hash_tree(tree)[0].digest


def test_a_temporary_failure_is_sent_again(registry: RegistryServer, repository: str,
                                           tree: Path, tmp_path: Path) -> None:
    with fault_proxy(registry, once(503, "PUT", "/blobs/uploads/")) as proxy:
        store = open_store(f"oci://{proxy.host}/{repository}")
        result = snapshot_tree(tree, store, None)
    assert [r for r in proxy.requests if r[2] == 503]
    store = open_store(f"oci://{registry.host}/{repository}")
    store.materialize(result.digest, tmp_path / "out", verify=True)
    assert files_under(tmp_path / "out") == files_under(tree)


def test_a_registry_that_is_down_is_named(tree: Path) -> None:
    with registry_server() as gone:
        host = gone.host
    store = open_store(f"oci://{host}/ml/artifacts")
    with pytest.raises(StoreError, match=f"cannot reach registry {host}"):
        snapshot_tree(tree, store, None)
    with pytest.raises(StoreError, match=f"cannot reach registry {host}"):
        store.backend.check_root()


@pytest.mark.parametrize(("url", "message"), [
    ("oci://127.0.0.1:5000", "expected oci://HOST\\[:PORT\\]/REPOSITORY"),
    ("oci://127.0.0.1:5000/", "expected oci://HOST\\[:PORT\\]/REPOSITORY"),
    ("oci://127.0.0.1:5000/ML/Models", "'ML/Models' is not a registry repository name"),
    ("oci://127.0.0.1:5000/ml//models", "is not a registry repository name"),
    ("oci://127.0.0.1:5000/ml/models:v1", "is not a registry repository name"),
])
def test_bad_oci_urls_are_refused(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_wiring_opens_an_oci_store(registry: RegistryServer, repository: str,
                                   tmp_path: Path) -> None:
    store = open_artifact_store(f"oci://{registry.host}/{repository}/", tmp_path)
    assert isinstance(store.backend, OCIBackend)
    assert store.url == f"oci://{registry.host}/{repository}"
    assert store.ref_url("default/model/m/1") == \
        f"oci://{registry.host}/{repository}/refs/default/model/m/1"


def test_workloads_push_and_fetch_through_an_oci_ref_url(
        registry: RegistryServer, repository: str, tree: Path, tmp_path: Path) -> None:
    url = f"oci://{registry.host}/{repository}/refs/default/model/trained/1"
    location = parse_url(url)
    assert (location.root, location.ref) == (f"oci://{registry.host}/{repository}",
                                             "default/model/trained/1")
    pushed = snapshots.push(tree, url)
    fetched = snapshots.fetch(url, tmp_path / "out")
    assert fetched.digest == pushed.digest
    assert files_under(tmp_path / "out") == files_under(tree)
    by_manifest = (f"oci://{registry.host}/{repository}/manifests/sha256/"
                   f"{pushed.digest[7:]}.json")
    assert snapshots.fetch(by_manifest, tmp_path / "again").digest == pushed.digest
    with pytest.raises(StoreError, match="names no repository"):
        parse_url(f"oci://{registry.host}/refs/default/model/trained/1")


def test_the_cli_applies_datasets_into_a_registry(cli, quickstart_datasets: Path,
                                                  registry: RegistryServer,
                                                  repository: str) -> None:
    url = f"oci://{registry.host}/{repository}"
    environment = quickstart_datasets / "environment.yaml"
    environment.write_text(environment.read_text().replace(
        "artifacts: file://.substratus/artifacts", f"artifacts: {url}"))
    applied = cli("apply", "--auto-approve", quickstart_datasets)
    assert applied.code == 0, applied.output
    listed = cli("state", "list", quickstart_datasets).out
    digests = [line.split("digest=")[1].split()[0] for line in listed.splitlines()
               if line.startswith("Dataset/")]
    assert len(digests) == 2, listed
    store: Store = open_store(url)
    assert all(store.has_snapshot(digest) for digest in digests)
    assert not (quickstart_datasets / ".substratus" / "artifacts").exists()
    plan = cli("plan", "--detailed-exitcode", quickstart_datasets)
    assert plan.code == 0, plan.output
    assert "No changes" in plan.out
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{registry.host}/{repository}"))["Tags"]
    for digest in digests:
        assert f"sha256-{digest[7:]}" in tags
        raw = skopeo("inspect", "--tls-verify=false", "--raw",
                     f"docker://{registry.host}/{repository}:sha256-{digest[7:]}")
        assert json.loads(raw)["config"]["digest"] == digest
        config = skopeo("inspect", "--tls-verify=false", "--config", "--raw",
                        f"docker://{registry.host}/{repository}:sha256-{digest[7:]}")
        assert hashlib.sha256(config.encode()).hexdigest() == digest[7:]
    assert os.path.exists(quickstart_datasets / ".substratus" / "state")

    intact = cli("verify", quickstart_datasets)
    assert intact.code == 0, intact.output
    assert intact.out.startswith("Verified 2 snapshot(s)")
    # A blob damaged in the registry's own storage: verify reads it back and names it.
    facts = store.get_manifest(digests[0]) or store.get_manifest(digests[1])
    assert facts is not None
    entry = facts.entries[0]
    (registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / entry.sha256[:2]
     / entry.sha256 / "data").write_bytes(b"flipped")
    damaged = cli("verify", quickstart_datasets)
    assert damaged.code == 1, damaged.output
    assert f"blob sha256:{entry.sha256} ({entry.path}) is corrupt" in damaged.err
