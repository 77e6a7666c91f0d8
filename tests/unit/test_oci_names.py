"""How the oci:// store names things a registry allows: ref names mapped to tags one to one,
repository URLs checked, and the Environment accepting oci:// artifacts but not oci:// state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus_artifacts.layout import StoreError, ref_key
from substratus_artifacts.manifest import ManifestError
from substratus_artifacts.oci import parse_root, ref_tag, snapshot_tag
from substratus_cli.config import load_directory

# The distribution spec's tag grammar.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")

part = st.text(st.characters(codec="utf-8", exclude_characters="/\\\x00\n\r"),
               min_size=1, max_size=40).filter(lambda p: p not in (".", ".."))
names = st.lists(part, min_size=1, max_size=5).map("/".join)


@given(names)
def test_every_ref_name_maps_to_a_valid_tag(name: str) -> None:
    ref_key(name)  # a name the store accepts
    tag = ref_tag(name)
    assert TAG.fullmatch(tag), tag
    assert not tag.startswith("sha256-")  # never a snapshot's tag


@given(names, names)
def test_distinct_ref_names_map_to_distinct_tags(one: str, two: str) -> None:
    if one != two:
        assert ref_tag(one) != ref_tag(two)


@pytest.mark.parametrize(("name", "tag"), [
    ("default/dataset/colors/1", "ref.default.dataset.colors.1"),
    ("ml/model/llama-3/v1.0", "ref.ml.model.llama-3.v1_2e0"),
    ("a_b/c", "ref.a__b.c"),
    ("a.b/c", "ref.a_2eb.c"),
    ("a/b.c", "ref.a.b_2ec"),
])
def test_ref_tags_are_readable_for_usual_names(name: str, tag: str) -> None:
    assert ref_tag(name) == tag


def test_a_name_too_long_for_a_tag_is_hashed() -> None:
    name = "default/model/" + "m" * 200
    assert ref_tag(name).startswith("ref._z") and len(ref_tag(name)) == 70
    assert ref_tag(name) != ref_tag(name + "x")


def test_snapshot_tags_hold_the_digest() -> None:
    assert snapshot_tag("ab" * 32) == "sha256-" + "ab" * 32


@pytest.mark.parametrize("url", ["oci://h:5000", "oci://h:5000/", "oci:///repo",
                                 "oci://h/Repo", "oci://h/a/../b", "oci://h/a:b", "oci://h/-a"])
def test_bad_repository_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError, match="oci://"):
        parse_root(url)


def test_a_repository_url_is_taken_apart() -> None:
    assert parse_root("oci://127.0.0.1:5000/ml/artifacts/") == ("127.0.0.1:5000", "ml/artifacts")
    assert parse_root("oci://us-docker.pkg.dev/p/r/ml") == ("us-docker.pkg.dev", "p/r/ml")


def test_a_bad_ref_name_is_refused_before_any_request() -> None:
    with pytest.raises(ManifestError):
        ref_key("a/../b")


def environment(tmp_path: Path, field: str, value: str) -> list[str]:
    (tmp_path / "env.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Environment\nmetadata: {name: e}\n"
        f"spec:\n  runtime: local\n  {field}: {value}\n")
    return [str(d) for d in load_directory(tmp_path).diagnostics]


def test_an_environment_keeps_artifacts_in_a_registry_but_not_its_state(tmp_path: Path) -> None:
    assert environment(tmp_path, "artifacts", "oci://127.0.0.1:5000/ml/artifacts") == []
    assert environment(tmp_path, "state", "oci://127.0.0.1:5000/ml/state") == [
        "env.yaml:6: spec.state: invalid location 'oci://127.0.0.1:5000/ml/state': expected "
        "file://PATH or gs://BUCKET/PREFIX"]
    assert environment(tmp_path, "artifacts", "s3://bucket/ml") == [
        "env.yaml:6: spec.artifacts: invalid location 's3://bucket/ml': expected file://PATH, "
        "gs://BUCKET/PREFIX or oci://HOST[:PORT]/REPOSITORY"]
