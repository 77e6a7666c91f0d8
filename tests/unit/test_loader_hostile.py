"""What passed validate and plan but failed at apply is refused by the loader, with file:line and
field, every error at once: url schemes, header injection, numbers beyond int32, reserved labels,
source paths that are missing or outside the workspace."""

from __future__ import annotations

import http.client
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from substratus_cli.config import load_directory
from substratus_cli.config.schema import RESERVED_LABELS, DatasetSource, ModelServerSpec
from substratus_cli.provider import MANAGED_BY_LABEL, PART_OF_LABEL
from substratus_providers.kubernetes.manifests import KIND_LABEL, NAME_LABEL
from tests.unit.test_loader import messages, write

INT32_MAX = 2**31 - 1  # Kubernetes' replicas and counts
RESERVED = ("reserved: app.kubernetes.io/managed-by, substratus.ai/part-of, substratus.ai/kind, "
            "substratus.ai/name")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dataset(name: str, source: str, labels: str = "") -> str:
    return f"""
        apiVersion: substratus.ai/v1
        kind: Dataset
        metadata: {{name: {name}{', labels: ' + labels if labels else ''}}}
        spec:
          source: {source}
        """


def test_what_used_to_fail_at_apply_is_refused_at_validate_all_at_once(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "outside").mkdir()
    write(ws, "a.yaml", "---\n".join([
        dataset("local-file", '{url: "file:///etc/passwd"}'),
        dataset("ftp", '{url: "ftp://example.com/x.csv"}'),
        dataset("crlf-value", '{url: "https://example.com/x", headers: {X-T: "a\\r\\nInjected: 1"}}'),
        dataset("crlf-name", '{url: "https://example.com/x", headers: {"X-A\\nB": v}}'),
        dataset("managed", "{path: missing/folder}",
                labels='{app.kubernetes.io/managed-by: helm, substratus.ai/part-of: x}'),
        dataset("outside", "{path: ../outside}"),
        dataset("absolute", f"{{path: {tmp_path / 'outside'}}}"),
        """
        apiVersion: substratus.ai/v1
        kind: ModelServer
        metadata: {name: s}
        spec: {model: {name: m}, replicas: 10000000000000000000}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m}
        spec: {source: {scratch: {}}}
        """]))
    result = load_directory(ws)
    hint = ("  a snapshot holds what is inside the workspace folder; copy it in, or set "
            "`allowOutside: true` on the source to snapshot it from there on purpose")
    assert messages(result) == [
        "a.yaml:5: spec.source.url: unsupported url 'file:///etc/passwd': a url source is "
        "fetched over http:// or https:// (a file on this machine is a `path` source)",
        "a.yaml:12: spec.source.url: unsupported url 'ftp://example.com/x.csv': a url source is "
        "fetched over http:// or https:// (a file on this machine is a `path` source)",
        "a.yaml:19: spec.source.headers.X-T: a header value cannot hold '\\r': no line breaks, "
        "control characters or characters beyond latin-1",
        "a.yaml:26: spec.source.headers.X-A\nB: invalid header name 'X-A\\nB': use letters, "
        "digits and !#$%&'*+.^_`|~- only (no spaces, colons or line breaks)",
        "a.yaml:31: metadata.labels.app.kubernetes.io/managed-by: label "
        f"'app.kubernetes.io/managed-by' is reserved: substratus sets it itself ({RESERVED})",
        "a.yaml:31: metadata.labels.substratus.ai/part-of: label 'substratus.ai/part-of' is "
        f"reserved: substratus sets it itself ({RESERVED})",
        f"a.yaml:33: spec.source.path: source path 'missing/folder' does not exist "
        f"({ws / 'missing/folder'})\n  paths are relative to the workspace folder",
        f"a.yaml:40: spec.source.path: source path '../outside' is outside the workspace (it "
        f"resolves to {tmp_path / 'outside'})\n{hint}",
        f"a.yaml:47: spec.source.path: source path '{tmp_path / 'outside'}' is outside the "
        f"workspace (it resolves to {tmp_path / 'outside'})\n{hint}",
        "a.yaml:53: spec.replicas: Input should be less than or equal to 2147483647, got "
        "10000000000000000000",
    ]


def test_allow_outside_takes_a_path_from_outside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "team-data").mkdir()
    write(ws, "a.yaml", dataset("team-data", "{path: ../team-data, allowOutside: true}"))
    result = load_directory(ws)
    assert messages(result) == []
    assert result.resources[0].spec["source"] == {"path": "../team-data", "allowOutside": True}


def test_allow_outside_is_for_path_sources_only(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", dataset("x", '{url: "https://h/x", allowOutside: true}'))
    assert messages(load_directory(tmp_path)) == [
        "a.yaml:5: spec.source: allowOutside applies only to a path source"]


def test_a_symlink_out_of_the_workspace_is_outside_like_the_path_it_points_to(
        tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "elsewhere").mkdir()
    write(ws, "a.yaml", dataset("x", "{path: data}"))
    os.symlink(tmp_path / "elsewhere", ws / "data")
    assert messages(load_directory(ws)) == [
        f"a.yaml:5: spec.source.path: source path 'data' is outside the workspace (it resolves "
        f"to {tmp_path / 'elsewhere'})\n  a snapshot holds what is inside the workspace folder; "
        "copy it in, or set `allowOutside: true` on the source to snapshot it from there on "
        "purpose"]


def test_the_workspace_data_folder_is_no_source(tmp_path: Path) -> None:
    (tmp_path / ".substratus" / "artifacts").mkdir(parents=True)
    write(tmp_path, "a.yaml", dataset("x", "{path: .substratus/artifacts}"))
    assert messages(load_directory(tmp_path)) == [
        "a.yaml:5: spec.source.path: source path '.substratus/artifacts' is inside the "
        "workspace's .substratus folder (state, caches and artifacts), which no snapshot holds"]


def test_a_model_path_source_is_checked_like_a_datasets(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", """
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m}
        spec: {source: {path: weights}}
        """)
    assert messages(load_directory(tmp_path)) == [
        f"a.yaml:4: spec.source.path: source path 'weights' does not exist "
        f"({tmp_path / 'weights'})\n  paths are relative to the workspace folder"]


def test_the_labels_substratus_sets_are_the_reserved_ones() -> None:
    assert {MANAGED_BY_LABEL, PART_OF_LABEL, KIND_LABEL, NAME_LABEL} == set(RESERVED_LABELS)


def test_a_stack_may_label_with_its_own_substratus_ai_keys(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", dataset("x", "{url: https://h/x}",
                                      labels='{substratus.ai/stack: s, substratus.ai/instance: i}'))
    assert messages(load_directory(tmp_path)) == []


# Properties: what validate accepts, the HTTP client sends (the oracle is http.client itself).


def _http_client_accepts_header(name: str, value: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", 9)  # never connected
    connection.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
    try:
        connection.putheader(name, value)
    except (ValueError, UnicodeError):
        return False
    return True


@SETTINGS
@given(st.text(max_size=12), st.text(max_size=30))
def test_every_header_validate_accepts_is_one_http_sends(name: str, value: str) -> None:
    try:
        DatasetSource.model_validate({"url": "https://h/x", "headers": {name: value}})
    except ValidationError:
        return
    assert _http_client_accepts_header(name, value), (name, value)
    assert not any(c in name + value for c in "\r\n\x00")


@SETTINGS
@given(st.text(st.characters(codec="latin-1"), max_size=30).filter(lambda v: "${{" not in v))
def test_header_values_are_refused_exactly_when_they_hold_control_characters(value: str) -> None:
    controls = any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)
    try:
        DatasetSource.model_validate({"url": "https://h/x", "headers": {"X-V": value}})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is not controls, repr(value)


urls = st.builds("{}://{}{}".format, st.sampled_from(["http", "https", "HTTP", "ftp", "file", ""]),
                 st.text(max_size=15), st.text(max_size=15)) | st.text(max_size=30)


@SETTINGS
@given(urls)
def test_every_url_validate_accepts_is_one_urllib_can_request(url: str) -> None:
    try:
        DatasetSource.model_validate({"url": url})
    except ValidationError:
        return
    request = urllib.request.Request(url)  # raises for what urllib cannot fetch
    assert request.type in ("http", "https")
    parts = urlsplit(url)
    assert parts.hostname
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    connection.putrequest("GET", request.selector)  # InvalidURL for control characters


@SETTINGS
@given(st.integers())
def test_replicas_are_refused_beyond_what_kubernetes_takes(count: int) -> None:
    try:
        ModelServerSpec.model_validate({"model": {"name": "m"}, "replicas": count})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is (0 <= count <= INT32_MAX)


@pytest.mark.parametrize("field", [
    ("NodePool", "spec: {cluster: {name: c}, machineType: m, accelerator: {type: t, count: %d}}"),
    ("NodePool", "spec: {cluster: {name: c}, machineType: m, autoscaling: {min: 0, max: %d}}"),
    ("Model", "spec: {source: {scratch: {}}, resources: {gpu: {type: t, count: %d}}}"),
    ("ModelServer", "spec: {model: {name: m}, rollout: {maxSurge: %d}}"),
])
def test_every_count_kubernetes_keeps_in_an_int32_is_bounded(
        tmp_path: Path, field: tuple[str, str]) -> None:
    kind, spec = field
    write(tmp_path, "a.yaml", f"""
        apiVersion: substratus.ai/v1
        kind: {kind}
        metadata: {{name: x}}
        {spec % (INT32_MAX + 1)}
        """)
    found = [m for m in messages(load_directory(tmp_path)) if "2147483647" in m]
    assert len(found) == 1 and found[0].endswith(
        f"Input should be less than or equal to 2147483647, got {INT32_MAX + 1}"), found
