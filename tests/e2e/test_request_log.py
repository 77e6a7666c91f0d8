"""SUBSTRATUS_LOG=debug and -v against the real test control plane: one line per API request
(method, path, status, time) and the count at the end, so that "at most one LIST per (object
kind, namespace)" can be checked by anyone; the objects two resource kinds are made of (Jobs and
ConfigMaps for Datasets and Models, Services for ModelServers and Notebooks) are listed once."""

from __future__ import annotations

import base64
import collections
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

NAMESPACE = "request-log"
REQUEST = re.compile(r"^DEBUG substratus_providers\.kubernetes\.client: (?P<method>[A-Z]+) "
                     r"(?P<path>/\S*) (?P<status>\d{3}) (?P<ms>\d+) ms$")
RESOURCES = """\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: {namespace}}}
  artifacts: gs://{bucket}/artifacts
  state: file://.substratus/state
---
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: rows}}
spec: {{source: {{path: rows.jsonl}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: base}}
spec: {{source: {{path: weights}}}}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {{name: base}}
spec: {{model: {{name: base}}}}
---
apiVersion: substratus.ai/v1
kind: Notebook
metadata: {{name: lab}}
spec: {{}}
"""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    yield from started_cluster(request)


@pytest.fixture(scope="module")
def applied(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("request-log")
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    (root / "rows.jsonl").write_text('{"text": "a"}\n')
    with bucket_beside(cluster.kubeconfig) as bucket:
        (root / "main.yaml").write_text(RESOURCES.format(namespace=NAMESPACE, bucket=bucket))
        from substratus_cli.cli import run

        assert run(["apply", "--auto-approve", str(root)]) == 0
        yield root


def requests_in(err: str) -> list[re.Match[str]]:
    return [m for line in err.splitlines() if (m := REQUEST.match(line))]


def test_debug_logs_one_line_per_request_and_the_count(
        cli, applied: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_LOG", "debug")
    plan = cli("plan", "--detailed-exitcode", applied)
    assert plan.code == 0, plan.output
    assert "No changes." in plan.out
    sent = requests_in(plan.err)
    assert sent, plan.err
    assert f"DEBUG substratus_cli.verbosity: kubernetes: {len(sent)} API requests in all" in \
        plan.err.splitlines()
    assert all(m["status"] == "200" for m in sent), plan.err

    lists = collections.Counter(
        m["path"].split("?")[0] for m in sent
        if m["method"] == "GET" and f"/namespaces/{NAMESPACE}/" in m["path"]
        and "labelSelector" in m["path"])
    base = f"/namespaces/{NAMESPACE}"
    assert lists == {f"/apis/batch/v1{base}/jobs": 1, f"/api/v1{base}/configmaps": 1,
                     f"/apis/apps/v1{base}/deployments": 1, f"/api/v1{base}/services": 1,
                     f"/apis/apps/v1{base}/statefulsets": 1}, plan.err


def test_verbose_before_or_after_the_command_and_never_a_secret(
        cli, cluster: ControlPlane, applied: Path) -> None:
    secret = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/notebook-lab-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    before = cli("-v", "plan", applied)
    after = cli("plan", "-v", applied)
    quiet = cli("plan", applied)
    for result in (before, after, quiet):
        assert result.code == 0, result.output
        assert token not in result.output
    assert requests_in(before.err) and requests_in(after.err)
    assert [(m["method"], m["path"]) for m in requests_in(before.err)] == \
        [(m["method"], m["path"]) for m in requests_in(after.err)]
    assert quiet.err == ""


def test_an_unknown_log_level_is_a_usage_error(cli, applied: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_LOG", "loud")
    result = cli("plan", applied)
    assert result.code == 3
    assert "SUBSTRATUS_LOG='loud': expected one of debug, info, warning, error" in result.err
