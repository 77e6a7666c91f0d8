"""A real Kubernetes control plane for tests, without Docker, run the way controller-runtime's
envtest runs one: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local
processes on free 127.0.0.1 ports, plus kwok to play the nodes (GKE-like GPU node pools)."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.cluster.binaries import (
    HERE,
    ControlPlaneError,
    Log,
    bin_dir,
    ensure_binaries,
    excerpt,
    stderr_log,
    versions,
)
from tests.cluster.nodepools import POOL_LABEL, NodePool, is_ready

__all__ = ["ApiError", "ControlPlane", "ControlPlaneError", "FAILING_POD_LABEL", "bin_dir",
           "ensure_binaries", "versions"]

KWOK_STAGES = HERE / "kwok" / "stages.yaml"
CONTEXT = "substratus-test"
SERVICE_CIDR = "10.96.0.0/12"
POD_CIDR = "10.244.0.0/16"
DEFAULT_POOL = NodePool("default-pool", count=1)
# A running pod with this label set to "true" fails (exit code 1) 1 to 2 s later: kwok's chaos
# stage in kwok/stages.yaml, which also reads annotations for the delay, exit code and reason.
FAILING_POD_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
# The order they start in; they stop in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # A test run killed with SIGKILL cannot run its cleanup; the kernel then stops the children.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _service_account_key() -> str:
    """A fresh ECDSA P-256 private key (SEC 1 PEM) that signs service account tokens. The public
    half is left out (it is optional in SEC 1): Go derives it from the scalar."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = (secrets.randbelow(order - 1) + 1).to_bytes(32, "big")
    curve = bytes.fromhex("06082a8648ce3d030107")  # OID 1.2.840.10045.3.1.7, prime256v1
    body = bytes.fromhex("020101") + b"\x04\x20" + scalar + b"\xa0" + bytes([len(curve)]) + curve
    der = b"\x30" + bytes([len(body)]) + body
    b64 = base64.b64encode(der).decode()
    return f"-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n"


# -- the control plane -------------------------------------------------------------------------

class ControlPlane:
    """Starts on `start()` or `with`, stops every process on `stop()` or leaving the block, also
    when starting failed. After start: `server`, `token`, `ca_file`, `kubeconfig` (context
    `substratus-test`, admin in system:masters), `workdir` (logs under `logs/`).

    `apiserver_flags` go to kube-apiserver after the ones set here, so a later flag of the same
    name wins: e.g. tight `--max-requests-inflight` limits for the fault tests (system:masters,
    which the admin and the components here are in, is exempt from those limits)."""

    def __init__(self, *, workdir: Path | None = None, default_pool: bool = True,
                 log: Log = stderr_log, apiserver_flags: Sequence[str] = ()) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="substratus-controlplane-"))
        self._default_pool = default_pool
        self._apiserver_flags = tuple(apiserver_flags)
        self._log = log
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.bin_dir = bin_dir()
        self.token = secrets.token_hex(16)
        self.server = ""
        self._serving_cert = self.workdir / "pki" / "apiserver.crt"
        self.ca_file = self.workdir / "ca.crt"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.startup_seconds = 0.0
        self._nodes_created = 0

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle

    def start(self) -> ControlPlane:
        try:
            self.bin_dir = ensure_binaries(self._log)
            started = time.monotonic()
            # The apiserver waits for etcd by itself: starting both at once saves half a second.
            self._start_etcd()
            self._start_apiserver()
            self._wait_for_etcd_and_apiserver()
            self._write_kubeconfig()
            self._start_controllers_and_kwok()
            if self._default_pool:
                self.add_node_pool(DEFAULT_POOL.name, DEFAULT_POOL.count)
        except BaseException as e:
            # After a failure the logs tell what went wrong; after Ctrl-C nobody needs them.
            self.stop(keep_workdir=bool(self._procs) and isinstance(e, Exception), grace=1)
            raise
        self.startup_seconds = time.monotonic() - started
        self._log(f"control plane up in {self.startup_seconds:.1f} s at {self.server}; "
                  f"KUBECONFIG={self.kubeconfig}")
        return self

    def stop(self, keep_workdir: bool = False, grace: float = 10) -> None:
        """Stops the processes, newest first: the clients, then the apiserver (about a second),
        then etcd; all at once takes longer, as etcd and the apiserver wait for their clients.
        SIGKILL for any still there `grace` seconds after its SIGTERM. The temporary workdir
        goes too, unless asked to keep it."""
        for name in reversed(list(self._procs)):
            _stop_group(self._procs.pop(name), grace)
        if self._own_workdir and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_file(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    def _spawn(self, component: str, args: Sequence[str],
               env: Mapping[str, str] | None = None) -> None:
        self.log_file(component).parent.mkdir(parents=True, exist_ok=True)
        with self.log_file(component).open("wb") as out:
            self._procs[component] = subprocess.Popen(
                [str(self.bin_dir / component), *args], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                env={**os.environ, **(env or {})}, start_new_session=True,
                preexec_fn=_die_with_parent)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float,
              components: Sequence[str]) -> None:
        """Polls `ready` until true; fails at once, with the log's end, if a component exits."""
        deadline = time.monotonic() + timeout
        while True:
            for component in components:
                code = self._procs[component].poll()
                if code is not None:
                    raise ControlPlaneError(
                        f"{component} exited with {code} while waiting for {what}; from "
                        f"{self.log_file(component)}:\n{excerpt(self.log_file(component))}")
            with contextlib.suppress(OSError, ApiError, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                logs = ", ".join(str(self.log_file(c)) for c in components)
                raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                        f"logs: {logs}")
            time.sleep(0.1)

    # -- components

    def _start_etcd(self) -> None:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self._etcd_url = client
        self._spawn("etcd", [
            "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            # A throwaway database: no fsync makes every write several times faster.
            "--unsafe-no-fsync", "--log-level=warn",
        ])

    def _start_apiserver(self) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        sa_key = self.workdir / "service-account.key"
        sa_key.write_text(_service_account_key())
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        self._spawn("kube-apiserver", [
            f"--etcd-servers={self._etcd_url}",
            # It writes a self-signed serving certificate there, followed by the CA that signed it.
            f"--cert-dir={self._serving_cert.parent}",
            f"--secure-port={port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={tokens}",
            # As on GKE: pods requesting nvidia.com/gpu get the toleration for the GPU taint.
            "--enable-admission-plugins=ExtendedResourceToleration",
            "--allow-privileged=true",
            # No `kubernetes` Service endpoints to keep up to date: nothing runs in the cluster.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *self._apiserver_flags,
        ])

    def _wait_for_etcd_and_apiserver(self) -> None:
        def etcd_healthy() -> bool:
            with urllib.request.urlopen(f"{self._etcd_url}/health", timeout=1) as r:
                return json.load(r).get("health") == "true"

        both = ["etcd", "kube-apiserver"]
        self._wait("etcd /health", etcd_healthy, 30, both)
        self._wait("kube-apiserver /readyz", lambda: self._get_text("/readyz") == "ok", 90, both)

    def _write_kubeconfig(self) -> None:
        pem = self._serving_cert.read_text()
        self.ca_file.write_text(pem[pem.rindex("-----BEGIN CERTIFICATE-----"):])
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {CONTEXT}\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority-data: {ca}\n"
            f"users:\n- name: {CONTEXT}-admin\n  user:\n    token: {self.token}\n"
            f"contexts:\n- name: {CONTEXT}\n  context:\n    cluster: {CONTEXT}\n"
            f"    user: {CONTEXT}-admin\n    namespace: default\n"
            f"current-context: {CONTEXT}\n")
        self.kubeconfig.chmod(0o600)

    def _start_controllers_and_kwok(self) -> None:
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        # No client CA to look up: the apiserver authenticates by token only.
        delegated = [f"--authentication-kubeconfig={self.kubeconfig}",
                     f"--authorization-kubeconfig={self.kubeconfig}",
                     "--authentication-skip-lookup"]
        kcm_port, scheduler_port = free_port(), free_port()
        self._spawn("kube-controller-manager", [
            kubeconfig, *delegated, "--leader-elect=false",
            f"--secure-port={kcm_port}", "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={self.workdir / 'service-account.key'}",
            f"--root-ca-file={self.ca_file}",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ])
        self._spawn("kube-scheduler", [
            kubeconfig, *delegated, "--leader-elect=false",
            f"--secure-port={scheduler_port}", "--bind-address=127.0.0.1",
        ])
        self._spawn("kwok", [
            kubeconfig, f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40",
        ], env={"HOME": str(self.workdir)})  # or it also reads the user's ~/.kwok/kwok.yaml
        insecure = ssl.create_default_context()  # for their self-signed serving certificates
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE

        def healthy(port: int) -> Callable[[], bool]:
            def check() -> bool:
                url = f"https://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=1, context=insecure) as r:
                    return r.read() == b"ok"
            return check

        components = list(COMPONENTS)
        self._wait("kube-controller-manager /healthz", healthy(kcm_port), 60, components)
        self._wait("kube-scheduler /healthz", healthy(scheduler_port), 60, components)
        # Pods can be created in a namespace once its `default` ServiceAccount exists.
        self._wait("the default ServiceAccount", lambda: bool(
            self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")), 60,
            components)

    # -- API access

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self._serving_cert))
        return self._ssl

    def _open(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type,
            "Accept": "application/json"})
        try:
            return urllib.request.urlopen(req, timeout=30, context=self._context())
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace"), method, path) from None

    def _get_text(self, path: str) -> str:
        if not self._serving_cert.exists():
            return ""
        with self._open("GET", path, None, "application/json") as r:
            return r.read().decode()

    def request(self, method: str, path: str, body: Any = None, *,
                query: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        """One API call as the admin; the decoded JSON answer. Raises ApiError on HTTP errors."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        with self._open(method, path, data, content_type) as r:
            return json.loads(r.read() or b"{}")

    def kubectl(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """The built kubectl against this cluster; text output."""
        return subprocess.run([str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}",
                               *args], input=input, capture_output=True, text=True, check=check,
                              timeout=60)

    def env(self) -> dict[str, str]:
        """Environment variables that point a client at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    # -- nodes and namespaces

    def add_node_pool(self, name: str, count: int = 1, *, accelerator: str | None = None,
                      gpus: int = 0, cpu: str = "8", memory: str = "32Gi",
                      labels: Mapping[str, str] | None = None, taints: Sequence[str] = (),
                      wait: bool = True, timeout: float = 30) -> list[str]:
        """Creates `count` kwok nodes labelled as GKE pool `name` (GPU pools: accelerator label,
        `nvidia.com/gpu: gpus` per node, the GPU taint); waits until they take pods. The names."""
        pool = NodePool(name, count, accelerator, gpus, cpu, memory, labels=dict(labels or {}),
                        taints=tuple(taints))
        first = self._nodes_created
        ips = [f"10.128.{n // 250}.{n % 250 + 2}" for n in range(first, first + count)]
        for node in pool.nodes(versions()["kubernetes"], ips):
            self.request("POST", "/api/v1/nodes", node)
            self._nodes_created += 1
        if wait:
            self.wait_for_node_pool(name, count, timeout)
        return pool.node_names

    def wait_for_node_pool(self, name: str, count: int, timeout: float = 30) -> None:
        def ready() -> bool:
            nodes = self.request("GET", "/api/v1/nodes",
                                 query={"labelSelector": f"{POOL_LABEL}={name}"})["items"]
            return len(nodes) == count and all(is_ready(n) for n in nodes)

        self._wait(f"the {count} node(s) of pool {name} to be Ready", ready, timeout,
                   list(self._procs))

    def create_namespace(self, name: str, timeout: float = 30) -> None:
        """Creates a namespace and waits for its `default` ServiceAccount, before which the
        apiserver refuses pods there (as on any cluster)."""
        self.request("POST", "/api/v1/namespaces",
                     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self._wait(f"the default ServiceAccount of namespace {name}", lambda: bool(self.request(
            "GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")), timeout,
            list(self._procs))

