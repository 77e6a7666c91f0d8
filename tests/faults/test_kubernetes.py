"""Faults between substratus and a real Kubernetes API server: the test control plane limits
requests in flight (tight --max-requests-inflight / --max-mutating-requests-inflight, so it
answers real 429s to a parallel apply), and substratus reaches it through the fault proxy, which
resets a fifth of the connections and delays another fifth. 100 Datasets applied with
--parallelism 10 converge, with no duplicate or orphaned object and a bounded request count."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from substratus_cli.errors import ExitCode
from substratus_providers.kubernetes.client import DEFAULT_RETRY
from tests.cluster.controlplane import ControlPlane
from tests.faults.workspace import Run, apply_until_converged, datasets, substratus
from tests.support.cluster import started_cluster
from tests.support.faultproxy import FaultProxy, Faults, fault_proxy
from tests.support.gcs import bucket_beside

# The first test may build the control plane.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

COUNT = 100
NAMESPACE = "faults"
ACCOUNT = "substratus"  # not in system:masters, which the in-flight limits exempt
USER = f"system:serviceaccount:default:{ACCOUNT}"
FAULTS = Faults(reset=0.2, reset_per_chunk=0.02, delay=0.2, delay_seconds=0.05,
                reset_after_bytes=8192, seed=13)
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["{USER}"]
- level: None
"""


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit") / "log"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, audit_log: Path) -> Iterator[ControlPlane]:
    policy = audit_log.with_name("policy.yaml")
    policy.write_text(AUDIT_POLICY)
    yield from started_cluster(request, default_pool=False, apiserver_flags=[
        # The plain in-flight limits: priority and fairness would queue requests before refusing.
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=2", "--max-mutating-requests-inflight=1",
        f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}",
    ])


def audited_requests(audit_log: Path) -> list[dict[str, Any]]:
    """The ServiceAccount's requests the API server answered (429s included: the in-flight
    filter runs inside the audit one)."""
    events = map(json.loads, audit_log.read_text().splitlines())
    return [e for e in events if e.get("stage") == "ResponseComplete"]


def service_account_token(cluster: ControlPlane) -> str:
    """A token of a ServiceAccount bound to cluster-admin."""
    cluster.request("POST", "/api/v1/namespaces/default/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}})
    cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{ACCOUNT}-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": "default"}]})
    answer = cluster.request(
        "POST", f"/api/v1/namespaces/default/serviceaccounts/{ACCOUNT}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}})
    return str(answer["status"]["token"])


def kubeconfig_through(cluster: ControlPlane, proxy: FaultProxy, token: str, path: Path) -> Path:
    """The cluster's kubeconfig with the proxy as its server and the ServiceAccount's token. The
    serving certificate names 127.0.0.1, the proxy's address too: TLS is verified end to end."""
    text = cluster.kubeconfig.read_text()
    path.write_text(text.replace(cluster.server, f"https://{proxy.address}")
                    .replace(cluster.token, token))
    path.chmod(0o600)
    return path


def environment(bucket: str) -> str:
    return f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: {NAMESPACE}}}
  artifacts: gs://{bucket}/artifacts
  state: file://.substratus/state
"""


def live_objects(cluster: ControlPlane) -> list[tuple[str, str, str]]:
    """(Kind, name, uid) of every object substratus labelled in the namespace, listed with the
    kubernetes client as the admin, straight to the API server."""
    api = k8s_config.new_client_from_config(str(cluster.kubeconfig))
    selector = "app.kubernetes.io/managed-by=substratus"
    core, batch, apps = k8s.CoreV1Api(api), k8s.BatchV1Api(api), k8s.AppsV1Api(api)
    found = []
    for kind, lister in (("ConfigMap", core.list_namespaced_config_map),
                         ("Secret", core.list_namespaced_secret),
                         ("Service", core.list_namespaced_service),
                         ("Job", batch.list_namespaced_job),
                         ("Deployment", apps.list_namespaced_deployment),
                         ("StatefulSet", apps.list_namespaced_stateful_set)):
        for item in lister(NAMESPACE, label_selector=selector).items:
            found.append((kind, item.metadata.name, item.metadata.uid))
    api.close()
    return sorted(found)


def recorded_objects(workdir: Path) -> list[tuple[str, str, str]]:
    """(Kind, name, uid) of each object the state records (its fingerprint holds the uid)."""
    inventory = json.loads((workdir / ".substratus" / "state" / "inventory.json").read_text())
    out = []
    for entry in inventory["resources"]:
        assert "pending" not in entry, entry
        names = entry["status"]["objects"].split(", ")
        uids = [part.split(":")[1] for part in entry["fingerprint"].split(";")]
        for name, uid in zip(names, uids, strict=True):
            kind, _, object_name = name.partition("/")
            out.append((kind, object_name, uid))
    return sorted(out)


def failed_only_when_retries_ran_out(run: Run) -> None:
    """Each step a partial apply names as failed gave up on a temporary failure after all its
    tries or its whole deadline: a fault taken for a permanent error fails sooner."""
    policy = DEFAULT_RETRY
    assert policy.tries is not None
    for line in run.out.splitlines():
        if line.lstrip().startswith("failed:"):
            spent = re.search(r"gave up after (\d+) tries in ([\d.]+) s", line)
            assert spent is not None, line
            tries, seconds = int(spent[1]), float(spent[2])
            assert tries == policy.tries or seconds + policy.max_delay >= policy.deadline, line


def test_100_datasets_converge_through_resets_and_429s(cluster: ControlPlane, audit_log: Path,
                                                       tmp_path: Path) -> None:
    token = service_account_token(cluster)
    with bucket_beside(cluster.kubeconfig) as bucket, \
            fault_proxy(cluster.server, FAULTS) as proxy:
        env = {"KUBECONFIG": str(kubeconfig_through(cluster, proxy, token,
                                                    tmp_path / "kubeconfig"))}
        workdir = datasets(tmp_path / "ws", COUNT, environment(bucket))

        runs = apply_until_converged(env, workdir, 6, "--parallelism", "10")
        for run in runs:
            failed_only_when_retries_ran_out(run)
        plan = substratus(env, "plan", "--detailed-exitcode", workdir)
        assert plan.code == ExitCode.OK, plan
        assert "No changes." in plan.out
        counts = proxy.snapshot()

    codes = collections.Counter(e["responseStatus"]["code"] for e in audited_requests(audit_log))
    print(f"applies exited {[r.code for r in runs]}; proxy: {counts}; the API server answered "
          f"{dict(codes)}")
    # The faults were real: the proxy cut connections and the server refused requests.
    assert counts.resets > 0
    assert codes[429] > 0

    live = live_objects(cluster)
    assert len(live) == COUNT  # a ConfigMap per Dataset: nothing doubled, nothing missing
    assert live == recorded_objects(workdir)  # and each the very object the state records

    # Bounded: a request is sent at most `tries` times, so the server sees at most that many
    # times what the same runs send without faults. Without faults a run sends per Dataset to
    # create: two GETs at plan (is the name free: Job, ConfigMap), two at apply (what is ours
    # there), the apply and a readiness GET; per run: the kube-system GET (identity), a LIST of
    # nodes (GPU sizing), the namespace create and a LIST per object kind (Job, ConfigMap). A
    # partial apply's re-run sends at most as much; the final plan sends the per-run ones.
    per_run = 6 * COUNT + 5
    assert DEFAULT_RETRY.tries is not None
    bound = DEFAULT_RETRY.tries * (len(runs) * per_run + 5)
    assert sum(codes.values()) <= bound, (dict(codes), bound)
