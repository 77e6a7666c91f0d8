"""The kubernetes provider's API client against the real test control plane: identity, server-side
apply, one-request lists, deletes, retries, and the exact errors users read."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_cli.errors import ProviderError
from substratus_cli.retry import RetryPolicy
from substratus_providers.kubernetes.client import Client, ResourceType
from substratus_providers.kubernetes.errors import KubernetesError
from tests.cluster.controlplane import ControlPlane, free_port
from tests.support.cluster import started_cluster
from tests.support.faultproxy import Faults, fault_proxy

TRIES = 3
FAST = RetryPolicy(tries=TRIES, first_delay=0.05)
LABEL = "app.kubernetes.io/managed-by"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    # No nodes: nothing here runs a pod, and kwok's node would only cost start-up time.
    yield from started_cluster(request, default_pool=False)


@pytest.fixture
def client(cluster: ControlPlane) -> Iterator[Client]:
    with Client.from_kubeconfig(str(cluster.kubeconfig), None, retry=FAST) as c:
        yield c


@pytest.fixture
def ns(client: Client) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    assert client.create_namespace_if_missing(name)
    return name


def config_map(name: str, ns: str, data: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": ns, **({"labels": labels} if labels
                                                                 else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data or {}}


def kubeconfig_for(cluster: ControlPlane, tmp_path: Path, *, server: str | None = None,
                   token: str | None = None) -> str:
    text = cluster.kubeconfig.read_text()
    text = text.replace(cluster.server, server or cluster.server)
    text = text.replace(cluster.token, token or cluster.token)
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return str(path)


def test_identity_is_the_server_url_and_the_kube_system_uid(cluster: ControlPlane,
                                                            client: Client) -> None:
    uid = cluster.kubectl("get", "ns", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
    assert client.identity() == (cluster.server, uid)
    assert client.requests == 1
    assert (client.context, client.namespace) == ("substratus-test", "default")


def test_apply_creates_and_an_identical_apply_writes_nothing(client: Client, ns: str) -> None:
    before = client.requests
    created = client.apply(config_map("cm", ns, {"a": "1"}))
    assert client.requests == before + 1
    assert created["data"] == {"a": "1"}
    assert [m["manager"] for m in created["metadata"]["managedFields"]] == ["substratus"]
    again = client.apply(config_map("cm", ns, {"a": "1"}))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_dry_run_apply_changes_nothing_live(client: Client, ns: str) -> None:
    live = client.apply(config_map("cm", ns, {"a": "1"}))
    would_be = client.apply(config_map("cm", ns, {"a": "2"}), dry_run=True)
    assert would_be["data"] == {"a": "2"}
    after = client.get("v1", "ConfigMap", ns, "cm")
    assert after is not None and after["data"] == {"a": "1"}
    assert after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert client.apply(config_map("new", ns), dry_run=True)["metadata"]["name"] == "new"
    assert client.get("v1", "ConfigMap", ns, "new") is None


def test_list_by_label_is_one_request_with_exactly_the_labelled_objects(client: Client,
                                                                        ns: str) -> None:
    for name in ("a", "b", "c"):
        client.apply(config_map(name, ns, labels={LABEL: "substratus"}))
    client.apply(config_map("other", ns, labels={LABEL: "helm"}))
    client.apply(config_map("plain", ns))
    before = client.requests
    items, version = client.list("v1", "ConfigMap", ns, f"{LABEL}=substratus")
    assert client.requests == before + 1
    assert sorted(i["metadata"]["name"] for i in items) == ["a", "b", "c"]
    assert {(i["apiVersion"], i["kind"]) for i in items} == {("v1", "ConfigMap")}
    assert int(version) > 0


def test_get_of_a_missing_object_is_none(client: Client, ns: str) -> None:
    before = client.requests
    assert client.get("apps/v1", "Deployment", ns, "missing") is None
    assert client.get("v1", "Service", "no-such-namespace", "missing") is None
    assert client.requests == before + 2


def test_delete_then_get_is_none_and_a_second_delete_is_false(client: Client, ns: str) -> None:
    client.apply(config_map("cm", ns))
    assert client.delete("v1", "ConfigMap", ns, "cm") is True
    assert client.get("v1", "ConfigMap", ns, "cm") is None
    assert client.delete("v1", "ConfigMap", ns, "cm") is False


def test_create_namespace_if_missing_is_false_when_it_exists(client: Client, ns: str) -> None:
    before = client.requests
    assert client.create_namespace_if_missing(ns) is False
    assert client.requests == before + 1


def test_apply_conflict_names_the_other_manager_and_force_takes_the_field(
        cluster: ControlPlane, client: Client, ns: str) -> None:
    cluster.kubectl("apply", "--server-side", "--field-manager=other-tool", "-f", "-",
                    input=json.dumps(config_map("cm", ns, {"a": "1"})))
    with pytest.raises(KubernetesError) as e:
        client.apply(config_map("cm", ns, {"a": "2"}))
    assert e.value.status == 409 and e.value.managers == ("other-tool",)
    assert e.value.message == (
        f"cannot apply ConfigMap {ns}/cm: it sets fields another field manager owns: .data.a "
        "(other-tool)")
    assert "force" in (e.value.hint or "")
    taken = client.apply(config_map("cm", ns, {"a": "2"}), force=True)
    assert taken["data"] == {"a": "2"}
    owners = {m["manager"] for m in taken["metadata"]["managedFields"] if "f:data" in
              json.dumps(m.get("fieldsV1", {}))}
    assert owners == {"substratus"}


def test_invalid_objects_are_errors_naming_the_fields(client: Client, ns: str) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": ns},
                  "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                      "containers": [{"name": "main", "image": "registry.invalid/x:1"}]}}}}
    with pytest.raises(KubernetesError) as e:
        client.apply(deployment, dry_run=True)
    assert e.value.status == 422
    assert e.value.message.startswith(f"cannot apply Deployment {ns}/web: the server finds it "
                                      "invalid:\n  spec.selector: Required value\n")
    with pytest.raises(KubernetesError, match=r"metadata\.name: Invalid value: \"Bad_Name\""):
        client.apply(config_map("Bad_Name", ns))


def test_an_unknown_resource_type_is_an_error_never_absent(client: Client, ns: str) -> None:
    client.kinds[("example.com/v1", "Widget")] = ResourceType("example.com/v1", "Widget", "widgets")
    client.kinds[("apps/v1", "Widget")] = ResourceType("apps/v1", "Widget", "widgets")
    for api_version in ("example.com/v1", "apps/v1"):
        with pytest.raises(KubernetesError, match="does not serve widgets") as e:
            client.list(api_version, "Widget", ns, f"{LABEL}=substratus")
        assert e.value.status == 404
        with pytest.raises(KubernetesError, match="does not serve widgets"):
            client.get(api_version, "Widget", ns, "w")
    with pytest.raises(ProviderError, match="no REST path for CronJob"):
        client.list("batch/v1", "CronJob", ns)


def test_forbidden_names_the_verb_and_resource_and_hides_the_token(
        cluster: ControlPlane, client: Client, ns: str, tmp_path: Path) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                    {"metadata": {"name": "nobody"}})
    token = cluster.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/nobody/token",
                            {"spec": {}})["status"]["token"]
    weak = Client.from_kubeconfig(kubeconfig_for(cluster, tmp_path, token=token), retry=FAST)
    with pytest.raises(KubernetesError) as e:
        weak.apply(config_map("cm", ns))
    assert e.value.status == 403 and weak.requests == 1  # a plain 403 is not retried
    assert e.value.message.startswith(f"not allowed to apply ConfigMap {ns}/cm: configmaps \"cm\" "
                                      f"is forbidden: User \"system:serviceaccount:{ns}:nobody\" "
                                      "cannot patch resource \"configmaps\"")
    assert e.value.hint == f"the context's user needs RBAC permission to patch configmaps " \
                           f"(kubectl auth can-i patch configmaps -n {ns})"
    assert token not in str(e.value) + str(e.value.hint)


def test_a_terminating_namespace_is_retried_then_given_up(cluster: ControlPlane, client: Client,
                                                          ns: str) -> None:
    held = config_map("held", ns)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    client.apply(held)
    client.delete("v1", "Namespace", None, ns)
    before = client.requests
    with pytest.raises(KubernetesError) as e:
        client.apply(config_map("late", ns))
    assert client.requests == before + TRIES
    assert "is being terminated" in e.value.message
    assert re.search(rf"; gave up after {TRIES} tries in \d+\.\d s$", e.value.message)
    # Let the namespace go.
    cluster.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/held",
                    {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")


def test_an_unreachable_server_fails_fast_with_a_clear_message(cluster: ControlPlane,
                                                               tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    client = Client.from_kubeconfig(kubeconfig_for(cluster, tmp_path, server=server), retry=FAST)
    started = time.monotonic()
    with pytest.raises(KubernetesError) as e:
        client.list("apps/v1", "Deployment", "default", f"{LABEL}=substratus")
    assert time.monotonic() - started < 2
    assert client.requests == TRIES
    assert e.value.message.startswith(f"cannot reach the Kubernetes API server at {server}: "
                                      f"connection refused (gave up after {TRIES} tries in ")
    assert e.value.hint == ("check that kubeconfig context 'substratus-test' points at a running "
                            "cluster: kubectl --context substratus-test cluster-info")
    assert cluster.token not in str(e.value)


@pytest.mark.parametrize(("server", "cause"), [
    (None, "TLS: certificate verify failed: self-signed certificate"),
    ("https://no-such-host.invalid:6443", "cannot resolve its host name"),
])
def test_tls_and_name_resolution_failures_are_not_retried(cluster: ControlPlane, tmp_path: Path,
                                                          server: str | None, cause: str) -> None:
    path = kubeconfig_for(cluster, tmp_path, server=server)
    if server is None:  # no CA of its own: the default bundle does not know the test CA
        text = Path(path).read_text()
        Path(path).write_text(re.sub(r"\n +certificate-authority-data: \S+", "", text))
    client = Client.from_kubeconfig(path, retry=FAST)
    with pytest.raises(KubernetesError) as e:
        client.get("v1", "Namespace", None, "kube-system")
    assert client.requests == 1
    assert e.value.message.startswith(
        f"cannot reach the Kubernetes API server at {server or cluster.server}: {cause}")


def test_a_missing_context_or_kubeconfig_is_named(cluster: ControlPlane, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderError) as e:
        Client.from_kubeconfig(str(cluster.kubeconfig), "prod")
    assert e.value.message == (f"kubeconfig context 'prod' not found in {cluster.kubeconfig} "
                               "(it has: substratus-test)")
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(ProviderError) as e:
        Client.from_kubeconfig(None, None)
    assert e.value.message == f"no kubeconfig file at {missing} (from KUBECONFIG)"
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    assert Client.from_kubeconfig(None, None).server == cluster.server


@pytest.mark.parametrize("faults", [
    Faults(reset=1.0, reset_at_accept=1.0),
    # The ClientHello reaches the server, then the connection is cut mid-handshake.
    Faults(reset=1.0, reset_at_accept=0.0, reset_after_bytes=0),
], ids=["at-accept", "mid-handshake"])
def test_a_connection_cut_before_or_during_the_tls_handshake_is_retried(
        cluster: ControlPlane, tmp_path: Path, faults: Faults) -> None:
    with fault_proxy(cluster.server, faults) as proxy:
        path = kubeconfig_for(cluster, tmp_path, server=f"https://{proxy.address}")
        client = Client.from_kubeconfig(path, retry=FAST)
        with pytest.raises(KubernetesError) as e:
            client.get("v1", "Namespace", None, "kube-system")
        assert proxy.snapshot().resets == TRIES
    assert client.requests == TRIES
    assert e.value.message.startswith(
        f"cannot reach the Kubernetes API server at https://{proxy.address}: ")
    assert re.search(rf"\(gave up after {TRIES} tries in \d+\.\d s\)$", e.value.message)


def test_a_tls_connection_cut_after_the_handshake_is_retried(cluster: ControlPlane,
                                                             tmp_path: Path) -> None:
    # An RST once TLS is up surfaces as a reset, as "remote end closed connection" or as
    # "TLS: EOF occurred in violation of protocol", depending on where the read was.
    patient = RetryPolicy(tries=10, first_delay=0.01, max_delay=0.05)
    with fault_proxy(cluster.server, Faults(reset_per_chunk=0.1, seed=5)) as proxy:
        path = kubeconfig_for(cluster, tmp_path, server=f"https://{proxy.address}")
        with Client.from_kubeconfig(path, retry=patient) as client:
            names = [client.get("v1", "Namespace", None, "kube-system") for _ in range(100)]
        assert proxy.snapshot().resets > 10
    assert all(n is not None and n["metadata"]["name"] == "kube-system" for n in names)
    assert client.requests > 100
