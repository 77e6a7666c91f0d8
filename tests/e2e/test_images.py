"""Image resources through the CLI: planned against a real registry (Debian's docker-registry on
127.0.0.1), built with buildah and pushed; rebuilt only when what they are built from changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.registry import OCI_MANIFEST, RegistryClient
from substratus_cli import operations
from substratus_cli.planner import PlanOptions
from substratus_providers.images.provider import ImagesProvider
from tests.conftest import EXAMPLES
from tests.registry import RegistryServer, registry_server

IMAGE = """\
apiVersion: substratus.ai/v1
kind: Image
metadata: {name: trainer}
spec:
  context: trainer
"""


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


def workspace(root: Path, registry: str | None, image: str = IMAGE,
              dockerfile: str = "FROM scratch\nCOPY train.py /train.py\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    env = f"spec: {{registry: {registry}}}\n" if registry else "spec: {}\n"
    (root / "environment.yaml").write_text(
        f"apiVersion: substratus.ai/v1\nkind: Environment\nmetadata: {{name: e}}\n{env}")
    (root / "images.yaml").write_text(image)
    context = root / "trainer"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    (context / "train.py").write_text("print('training')\n")
    (context / "notes.txt").write_text("not sent\n")
    (context / ".dockerignore").write_text("notes.txt\n")
    time.sleep(0.2)  # files written within the last instant are never trusted to the stat cache
    return root


def test_an_image_is_built_pushed_and_replanned_empty(cli, registry: RegistryServer,
                                                      tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/ml")
    planned = cli("plan", "--detailed-exitcode", root)
    assert planned.code == 2, planned.output
    assert "+ Image/default/trainer" in planned.out
    assert f"+ status.image  = \"{registry.host}/ml/trainer:" in planned.out

    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    (line,) = cli("state", "list", root).out.splitlines()
    address, *fields = line.split("\t")
    assert address == "Image/default/trainer"
    recorded = dict(f.split("=", 1) for f in fields)
    found = RegistryClient(registry.host).head_manifest("ml/trainer", _tag_of(root))
    assert found is not None and recorded["digest"] == found.digest

    # A no-change plan: one registry request for the image, and no file of the context read.
    ws = operations.open_workspace(root)
    plan = operations.plan_workspace(ws, PlanOptions())
    assert not plan.has_changes and not plan.drift
    images = ws.registry["Image"]
    assert isinstance(images, ImagesProvider)
    handler = images.images
    assert handler.client.requests == 1
    assert handler.identities_read == {plan.changes[0].address: 0}  # bytes hashed
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert "No changes." in again.out

    (root / "trainer" / "notes.txt").write_text("ignored, so nothing to build\n")
    assert cli("plan", "--detailed-exitcode", root).code == 0

    (root / "trainer" / "train.py").write_text("print('training, better')\n")
    changed = cli("plan", "--detailed-exitcode", root)
    assert changed.code == 2, changed.output
    assert ("# Image/default/trainer will be updated in-place (1 file of the context changed "
            "(train.py): rebuild)") in changed.out
    assert cli("apply", "--auto-approve", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_a_tag_pushed_over_by_someone_else_is_drift_and_pushed_again(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/drift")
    assert cli("apply", "--auto-approve", root).code == 0
    tag = _tag_of(root)
    client = RegistryClient(registry.host)
    config = client.push_blob("drift/trainer", b"{}", "application/vnd.oci.empty.v1+json")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                           "config": {"mediaType": config.media_type, "digest": config.digest,
                                      "size": config.size}}).encode()
    theirs = client.put_manifest("drift/trainer", tag, OCI_MANIFEST, manifest).digest
    planned = cli("plan", "--detailed-exitcode", root)
    assert planned.code == 2, planned.output
    assert "Objects changed outside substratus" in planned.out
    assert f"{registry.host}/drift/trainer:{tag} is not the image substratus pushed there" \
        in planned.out
    assert cli("apply", "--auto-approve", root).code == 0
    found = client.head_manifest("drift/trainer", tag)
    assert found is not None and found.digest != theirs
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_extra_tags_are_pushed_and_a_new_one_is_a_change(cli, registry: RegistryServer,
                                                          tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/tagged", image=IMAGE + "  tags: [v1]\n")
    assert cli("apply", "--auto-approve", root).code == 0
    client = RegistryClient(registry.host)
    own, v1 = client.head_manifest("tagged/trainer", _tag_of(root)), \
        client.head_manifest("tagged/trainer", "v1")
    assert own is not None and v1 is not None and own.digest == v1.digest
    (root / "images.yaml").write_text(IMAGE + "  tags: [v1, v2]\n")
    assert cli("plan", "--detailed-exitcode", root).code == 2
    assert cli("apply", "--auto-approve", root).code == 0
    assert client.head_manifest("tagged/trainer", "v2") is not None


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def test_an_image_from_a_git_branch_is_rebuilt_when_the_branch_moves(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    bare, work = tmp_path / "repo.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    first = commit(work, {"app/Dockerfile": "FROM scratch\nCOPY main.py /main.py\n",
                          "app/main.py": "print(1)\n", "README": "elsewhere\n"}, "one")
    image = IMAGE.replace("  context: trainer\n",
                          f"  git: {{url: 'file://{bare}', branch: main, path: app}}\n")
    root = workspace(tmp_path / "ws", f"{registry.host}/git", image=image)
    assert cli("apply", "--auto-approve", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0

    second = commit(work, {"app/main.py": "print(2)\n"}, "two")
    moved = cli("plan", "--detailed-exitcode", root)
    assert moved.code == 2, moved.output
    assert (f"(the branch main of file://{bare} moved ({first[:12]} -> {second[:12]}): "
            "rebuild)") in moved.out
    assert cli("apply", "--auto-approve", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0
    assert RegistryClient(registry.host).head_manifest("git/trainer", _tag_of(root)) is not None


def _tag_of(root: Path) -> str:
    inventory = json.loads((root / ".substratus" / "state" / "inventory.json").read_text())
    (entry,) = inventory["resources"]
    return str(entry["status"]["tag"])


def test_a_failing_build_fails_the_step_with_the_builders_lines_and_records_nothing(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/ml",
                     dockerfile="FROM scratch\nRUN [\"/bin/does-not-exist\"]\n")
    failed = cli("apply", "--auto-approve", root)
    assert failed.code == 6, failed.output
    assert "building localhost/ml/trainer:" in failed.output
    assert "buildah exited with" in failed.output
    assert "  | " in failed.output
    assert cli("plan", "--detailed-exitcode", root).code == 2  # still to build


@pytest.mark.parametrize(("image", "message"), [
    (IMAGE.replace("context: trainer", "context: nope"),
     "images.yaml:5: spec.context: Image 'trainer': the context 'nope' is not a folder"),
    (IMAGE.replace("context: trainer", "context: ../trainer"),
     "images.yaml:5: spec.context: Image 'trainer': the context '../trainer' must be a folder "
     "of the workspace (a relative path without '..')"),
    (IMAGE + "  dockerfile: ../Dockerfile\n",
     "images.yaml:6: spec.dockerfile: Image 'trainer': the dockerfile '../Dockerfile' must be a "
     "path inside the context (relative, without '..')"),
])
def test_a_context_or_dockerfile_that_cannot_be_built_is_refused_at_validate(
        cli, registry: RegistryServer, tmp_path: Path, image: str, message: str) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/ml", image=image)
    refused = cli("validate", root)
    assert refused.code == 3, refused.output
    assert f"Error: {message}" in refused.err


def test_an_image_needs_a_registry(cli, tmp_path: Path) -> None:
    refused = cli("plan", workspace(tmp_path / "ws", None))
    assert refused.code == 3
    assert ("Error: images.yaml:2: kind: Image 'trainer': there is no registry to push it to"
            in refused.err)


def test_an_unreachable_registry_fails_the_plan_naming_it(cli, tmp_path: Path) -> None:
    failed = cli("plan", workspace(tmp_path / "ws", "127.0.0.1:9/ml"))
    assert failed.code == 1
    assert "cannot reach registry 127.0.0.1:9" in failed.err


def test_the_custom_image_example_applies_and_replans_empty(cli, registry: RegistryServer,
                                                             tmp_path: Path) -> None:
    root = tmp_path / "custom-image"
    shutil.copytree(EXAMPLES / "custom-image", root)
    env = root / "environment.yaml"
    env.write_text(env.read_text().replace("127.0.0.1:5000", registry.host))
    time.sleep(0.2)
    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    assert RegistryClient(registry.host).head_manifest("examples/hello", _tag_of(root))
    (root / "hello" / "notes.md").write_text("ignored\n")
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_a_workload_build_whose_image_name_is_taken_is_refused(cli, registry: RegistryServer,
                                                               tmp_path: Path) -> None:
    image = IMAGE.replace("name: trainer", "name: model-tuned") + """---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec:
  source: {path: trainer}
  build: {context: trainer}
"""
    refused = cli("validate", workspace(tmp_path / "ws", f"{registry.host}/ml", image=image))
    assert refused.code == 3, refused.output
    assert ("Error: images.yaml:12: spec.build: Model 'tuned' builds Image/model-tuned, which "
            "images.yaml:1 declares too\n  rename that Image") in refused.err


def test_a_saved_plan_builds_what_it_planned_and_refuses_files_changed_since(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/saved")
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", saved, root).code == 0
    assert cli("apply", saved).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0

    (root / "trainer" / "train.py").write_text("print('v2')\n")
    assert cli("plan", "--out", saved, root).code == 0
    (root / "trainer" / "train.py").write_text("print('v3, after the plan')\n")
    stale = cli("apply", saved)
    assert stale.code == 6, stale.output
    assert "the context of Image 'trainer' changed since the plan (plan again)" in stale.output


def test_an_in_cluster_build_on_the_local_runtime_is_refused_at_its_field(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", f"{registry.host}/ml",
                     image=IMAGE + "  builder: cluster\n")
    refused = cli("validate", root)
    assert refused.code == 3, refused.output
    assert ("Error: images.yaml:6: spec.builder: Image 'trainer': `builder: cluster` builds with "
            "a kaniko Job, which needs the kubernetes runtime") in refused.err
    assert "set `runtime: kubernetes` in the Environment" in refused.err
