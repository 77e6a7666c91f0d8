"""Image builds for real: buildah (daemonless, vfs, chroot) builds from a context, pushes to a real
registry (Debian's docker-registry on 127.0.0.1), and the registry serves the digest buildah
reported. No base image can be pulled here: the bases are `FROM scratch` or made of Debian's
busybox-static and pushed to the test registry first."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.registry import RegistryClient
from substratus_artifacts.statcache import StatCache
from substratus_cli.errors import ProviderError
from substratus_providers.images.buildah import Buildah, BuildError
from substratus_providers.images.context import (
    BuildInputs,
    ContextError,
    changed_paths,
    identity,
)
from tests.registry import RegistryServer, registry_server

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


@pytest.fixture(scope="module")
def builder(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Buildah:
    return Buildah.find(tmp_path_factory.mktemp("buildah"), insecure=[registry.host])


@pytest.fixture(scope="module")
def base(builder: Buildah, registry: RegistryServer,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    """A shell base image (busybox-static) in the test registry."""
    assert os.path.exists(BUSYBOX), "busybox is missing: apt-get install busybox-static"
    context = tmp_path_factory.mktemp("base")
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    image = f"{registry.host}/substratus/base:1"
    builder.build(BuildInputs(context), "localhost/base:1", context / "build.log")
    builder.push("localhost/base:1", image, context / "push.log")
    return image


def context_of(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        path = context / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


def test_an_image_from_scratch_is_pushed_and_the_registry_serves_its_digest(
        builder: Buildah, registry: RegistryServer, tmp_path: Path) -> None:
    context = context_of(tmp_path, "FROM scratch\nCOPY hello.txt /hello.txt\n", hello_txt="hi\n")
    (context / "hello_txt").rename(context / "hello.txt")
    built = identity(BuildInputs(context), None)
    destination = f"{registry.host}/team/hello:{built.tag}"
    builder.build(BuildInputs(context), "localhost/hello", tmp_path / "build.log")
    pushed = builder.push("localhost/hello", destination, tmp_path / "push.log")
    found = RegistryClient(registry.host).head_manifest("team/hello", built.tag)
    assert found is not None and found.digest == pushed and pushed.startswith("sha256:")


def test_run_steps_build_on_a_base_from_the_registry(
        builder: Buildah, registry: RegistryServer, base: str, tmp_path: Path) -> None:
    context = context_of(tmp_path, f"FROM {base}\nARG GREETING\n"
                                   "RUN echo \"$GREETING\" > /greeting && test -s /greeting\n")
    inputs = BuildInputs(context, build_args={"GREETING": "hello"})
    builder.build(inputs, "localhost/app", tmp_path / "build.log")
    pushed = builder.push("localhost/app", f"{registry.host}/team/app:1", tmp_path / "push.log")
    found = RegistryClient(registry.host).head_manifest("team/app", "1")
    assert found is not None and found.digest == pushed


def test_a_failing_run_step_fails_with_the_builders_last_lines(
        builder: Buildah, base: str, tmp_path: Path) -> None:
    context = context_of(tmp_path, f"FROM {base}\nRUN echo the-step-broke && exit 3\n")
    with pytest.raises(BuildError) as failed:
        builder.build(BuildInputs(context), "localhost/broken", tmp_path / "build.log")
    message = failed.value.message
    assert message.startswith("building localhost/broken failed (buildah exited with ")
    assert "  | the-step-broke" in message
    assert len(message.splitlines()) <= 21
    assert failed.value.hint == f"the whole log is {tmp_path / 'build.log'}"


def test_no_builder_on_path_names_what_to_install(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProviderError, match="no image builder on PATH") as missing:
        Buildah.find(tmp_path / "buildah")
    assert "apt-get install buildah" in (missing.value.hint or "")


# -- the build's identity ----------------------------------------------------------------------

def test_an_unchanged_context_is_not_read_again_and_keeps_its_digest(tmp_path: Path) -> None:
    context = context_of(tmp_path, "FROM scratch\nCOPY . /app\n", a="1", pkg__b="2",
                         dockerignore="notes.txt\n")
    (context / "dockerignore").rename(context / ".dockerignore")
    time.sleep(0.2)  # a file written within the last instant is never trusted to the stat cache
    cache = StatCache(tmp_path / "stat.json")
    first = identity(BuildInputs(context), cache)
    assert first.bytes_hashed == sum(p.stat().st_size for p in context.rglob("*") if p.is_file())
    again = identity(BuildInputs(context), StatCache(tmp_path / "stat.json"))
    assert again == dataclasses.replace(first, bytes_hashed=0)
    assert [path for path, _, _ in first.files] == [".dockerignore", "Dockerfile", "a", "pkg/b"]
    (context / "notes.txt").write_text("ignored\n")  # a .dockerignored file changes nothing
    assert identity(BuildInputs(context), cache).digest == first.digest
    (context / "pkg" / "b").write_text("3")
    changed = identity(BuildInputs(context), cache)
    assert changed.digest != first.digest and changed_paths(first, changed) == ["pkg/b"]
    (context / "a").chmod(0o755)  # the mode is part of what is built
    assert changed_paths(changed, identity(BuildInputs(context), cache)) == ["a"]


def test_build_args_target_and_dockerfile_are_part_of_the_identity(tmp_path: Path) -> None:
    context = context_of(tmp_path, "FROM scratch AS one\nFROM scratch AS two\n")
    plain = identity(BuildInputs(context), None).digest
    assert identity(BuildInputs(context, build_args={"X": "1"}), None).digest != plain
    assert identity(BuildInputs(context, target="one"), None).digest != plain
    (context / "Dockerfile").write_text("FROM scratch\n")
    assert identity(BuildInputs(context), None).digest != plain


@pytest.mark.parametrize(("dockerfile", "message"), [
    ("../Dockerfile", "must be a path inside the context (relative, without '..')"),
    ("/etc/Dockerfile", "must be a path inside the context (relative, without '..')"),
    ("missing/Dockerfile", "there is no dockerfile 'missing/Dockerfile' in "),
])
def test_a_dockerfile_outside_the_context_is_refused(tmp_path: Path, dockerfile: str,
                                                     message: str) -> None:
    context = context_of(tmp_path, "FROM scratch\n")
    with pytest.raises(ContextError, match=message.replace("(", r"\(").replace(")", r"\)")):
        identity(BuildInputs(context, dockerfile=dockerfile), None)


def test_a_symlink_out_of_the_context_is_refused(tmp_path: Path) -> None:
    context = context_of(tmp_path, "FROM scratch\n")
    (tmp_path / "outside").write_text("secret")
    (context / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(ContextError, match="is a symlink to .*outside .*: a snapshot holds only"):
        identity(BuildInputs(context), None)
    (context / "link").unlink()
    (context / "Dockerfile.real").symlink_to(tmp_path / "outside")
    with pytest.raises(ContextError, match="leaves the context"):
        identity(BuildInputs(context, dockerfile="Dockerfile.real"), None)
    with pytest.raises(ContextError, match="is not a folder"):
        identity(BuildInputs(tmp_path / "nope"), None)
