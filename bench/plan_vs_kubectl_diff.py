"""Benchmark: a no-change `substratus plan` beside `kubectl diff --server-side` on the same N
Kubernetes objects in the test control plane (tests/cluster). Prints seconds (median and best),
API requests and the ratio per N; then the CLI's own latency: `substratus --help` and a
no-change plan of the quickstart's datasets (local runtime) beside `python -c pass`. It asserts
nothing about time.

    python bench/plan_vs_kubectl_diff.py [--sizes 100,1000] [--repeat 5] [--rtt-ms 0,10]

Each N is N/2 ModelServers with `replicas: 0` (a Deployment and a Service each: no pods for kwok
to play on a small machine) serving one Model from a tiny file (one more object, a ConfigMap).
kubectl diffs exactly the manifests substratus plans, taken from an in-process plan. `--rtt-ms`
also times both sides through a relay that delays each packet, as to a remote API server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import urllib3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.*, from any directory

from substratus_cli import __version__  # noqa: E402
from substratus_cli.cli import run as run_cli  # noqa: E402
from substratus_providers.kubernetes import workloads as k8s_workloads  # noqa: E402
from substratus_providers.kubernetes.client import Client  # noqa: E402
from tests.cluster.controlplane import CONTEXT, ControlPlane, ensure_binaries, versions  # noqa: E402
from tests.support.gcs import fake_gcs_server  # noqa: E402

Manifest = dict[str, Any]
Request = tuple[str, str]  # method, path and query
# A request kubectl -v=6 logged: the structured form (1.30 and later) or the older one.
KUBECTL_REQUEST = re.compile(r'"Response" verb="(\w+)" url="([^"]+)"'
                             r'|\] (GET|POST|PUT|PATCH|DELETE) (https?://\S+) \d{3} ')


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def write_workspace(root: Path, bucket: str, namespace: str, servers: int) -> Path:
    root.mkdir(parents=True)
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: {CONTEXT}, namespace: {namespace}}}
  artifacts: gs://{bucket}/artifacts
  state: file://.substratus/state
""")
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}\n")
    (root / "model.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Model\n"
                                     "metadata: {name: tiny}\nspec: {source: {path: weights}}\n")
    (root / "servers.yaml").write_text("---\n".join(
        f"apiVersion: substratus.ai/v1\nkind: ModelServer\nmetadata: {{name: s{i:04d}}}\n"
        "spec: {model: {name: tiny}, replicas: 0}\n" for i in range(servers)))
    return root


# -- a slower network -----------------------------------------------------------------------

class DelayRelay:
    """A TCP relay on a free loopback port that holds every chunk `rtt / 2` in each direction:
    one round trip more per request, as to a remote API server. TLS passes through untouched."""

    def __init__(self, target: str, rtt_ms: float) -> None:
        split = urllib.parse.urlsplit(target)
        self._target = (split.hostname or "127.0.0.1", split.port or 443)
        self._delay = rtt_ms / 2000
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> DelayRelay:
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                await asyncio.sleep(max(0.0, item[0] - loop.time()))
                writer.write(item[1])
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(1 << 16):
                queue.put_nowait((loop.time() + self._delay, data))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(OSError):
                await sender
            writer.close()

    def kubeconfig(self, original: Path, into: Path) -> Path:
        server = re.search(r"server: (\S+)", original.read_text())
        assert server, f"no server in {original}"
        into.write_text(original.read_text().replace(server.group(1), self.url))
        into.chmod(0o600)
        return into


# -- substratus ------------------------------------------------------------------------------

def substratus_command() -> list[str]:
    script = Path(sys.executable).parent / "substratus"  # the entry point, not a pyenv shim
    return [str(script)] if script.exists() else [sys.executable, "-m", "substratus_cli"]


@contextlib.contextmanager
def recording(server: str) -> Iterator[tuple[list[Request], list[Manifest], list[int]]]:
    """While the block runs: every HTTP request sent to `server`, counted where urllib3 sends
    it (whoever sends it); the manifests the kubernetes provider plans; and, after the block,
    the sum of its Clients' own `requests` counters."""
    host = urllib.parse.urlsplit(server)
    sent: list[Request] = []
    manifests: list[Manifest] = []
    counted: list[int] = []
    clients: list[Client] = []
    urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen
    plan_desired = k8s_workloads.desired
    client_init = Client.__init__

    def counting_urlopen(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if (pool.host, pool.port) == (host.hostname, host.port):
            sent.append((method, url.removeprefix(server)))
        return urlopen(pool, method, url, *args, **kwargs)

    def capturing_desired(*args: Any, **kwargs: Any) -> Any:
        want = plan_desired(*args, **kwargs)
        manifests.extend(want.manifests)
        return want

    def remembering_init(self: Client, *args: Any, **kwargs: Any) -> None:
        client_init(self, *args, **kwargs)
        clients.append(self)

    with mock.patch.object(urllib3.connectionpool.HTTPConnectionPool, "urlopen",
                           counting_urlopen), \
            mock.patch.object(k8s_workloads, "desired", capturing_desired), \
            mock.patch.object(Client, "__init__", remembering_init):
        yield sent, manifests, counted
    counted.append(sum(c.requests for c in clients))


def plan_in_process(workspace: Path, server: str) -> tuple[list[Request], list[Manifest], int]:
    """(requests to the API server, planned manifests, the Clients' own count) of a plan that
    must find no changes."""
    with recording(server) as (sent, manifests, counted), \
            contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        code = run_cli(["plan", "--detailed-exitcode", str(workspace)])
    if code != 0:
        raise SystemExit(f"the in-process plan exited {code}, not 0:\n{out.getvalue()[-3000:]}"
                         f"\n{err.getvalue()[-3000:]}")
    return sent, manifests, counted[0]


def lists_per_pair(sent: Sequence[Request]) -> collections.Counter[tuple[str, str]]:
    """LIST requests per (object kind, namespace), from the request paths."""
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    for method, url in sent:
        path = urllib.parse.urlsplit(url).path.strip("/").split("/")
        if method == "GET" and "namespaces" in path and len(path) == path.index("namespaces") + 3:
            i = path.index("namespaces")
            pairs[(path[i + 2], path[i + 1])] += 1
    return pairs


# -- kubectl ---------------------------------------------------------------------------------

def kubectl_requests(stderr: str) -> tuple[list[Request], int]:
    """(method, path) of each request kubectl -v=6 logged; and how often it said it waited on
    its own client-side rate limit."""
    sent = []
    for m in KUBECTL_REQUEST.finditer(stderr):
        method, url = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        sent.append((method, urllib.parse.urlsplit(url).path))
    return sent, stderr.count("client-side throttling")


def is_discovery(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (parts[0] in ("api", "apis") and "namespaces" not in parts and len(parts) <= 3
            or parts[0] == "openapi")


# -- one size --------------------------------------------------------------------------------

def timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:  # 1 from kubectl diff, 2 from the plan: differences
        raise SystemExit(f"{' '.join(command[:3])} … exited {done.returncode}:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def prepare(cluster: ControlPlane, bucket: str, work: Path, n: int,
            parallelism: int) -> dict[str, Any]:
    """Applies the workspace of size `n`, counts the requests of each side once and checks
    that neither sees a difference. What the timed runs need, and the counts."""
    root = write_workspace(work / f"n{n}", bucket, f"bench-{n}", n // 2)
    log(f"N={n}: applying {n // 2} ModelServers and 1 Model (parallelism {parallelism})")
    applied = timed([*substratus_command(), "apply", "--auto-approve",
                     f"--parallelism={parallelism}", str(root)])
    log(f"N={n}: applied in {applied:.1f} s")
    sent, manifests, client_count = plan_in_process(root, cluster.server)
    objects = work / f"n{n}-manifests.yaml"
    objects.write_text(yaml.safe_dump_all(manifests, sort_keys=False))

    diff = ["diff", "--server-side", "--field-manager=substratus", "--force-conflicts",
            "-f", str(objects)]
    cache = work / f"kubectl-cache-{n}"  # its own, so the first run shows cold discovery
    cold = kubectl(cluster, cluster.kubeconfig, cache, *diff, "-v=6")
    if cold.returncode != 0:  # 1: differences, and an unfair comparison; more: an error
        raise SystemExit(f"kubectl diff exited {cold.returncode} on the applied objects; it must "
                         f"find no differences:\n{cold.stdout[-4000:]}\n{cold.stderr[-4000:]}")
    warm = kubectl(cluster, cluster.kubeconfig, cache, *diff, "-v=6")
    kube_sent, throttled = kubectl_requests(warm.stderr)
    verbs = collections.Counter(m for m, p in kube_sent if not is_discovery(p))
    if verbs != {"GET": len(manifests), "PATCH": len(manifests)}:
        log(f"N={n}: kubectl did not GET and dry-run PATCH each of the {len(manifests)} objects "
            f"once: {dict(verbs)}")
    return {
        "n": n, "root": root, "diff": diff, "cache": cache, "objects": len(manifests),
        "sub_sent": sent, "client_count": client_count, "pairs": lists_per_pair(sent),
        "occupied": {(m["kind"], m["metadata"]["namespace"]) for m in manifests},
        "kube_requests": len(kube_sent), "kube_verbs": verbs, "throttled": throttled,
        "kube_discovery": sum(is_discovery(p) for _, p in kube_sent),
        "kube_cold_discovery": sum(is_discovery(p) for _, p in kubectl_requests(cold.stderr)[0]),
    }


def kubectl(cluster: ControlPlane, kubeconfig: Path, cache: Path,
            *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}",
                           f"--cache-dir={cache}", *args],
                          capture_output=True, text=True, timeout=1800)


def time_both(cluster: ControlPlane, size: dict[str, Any], kubeconfig: Path,
              repeat: int) -> tuple[list[float], list[float]]:
    """Wall seconds of each side as a subprocess, alternating, so both see the same machine."""
    # --detailed-exitcode: a plan that finds changes (exit 2) stops the benchmark.
    plan = [*substratus_command(), "plan", "--detailed-exitcode", str(size["root"])]
    diff = [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}",
            f"--cache-dir={size['cache']}", *size["diff"]]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(timed(plan, env))
        theirs.append(timed(diff))
    return ours, theirs


# -- output ----------------------------------------------------------------------------------

def report_requests(size: dict[str, Any]) -> None:
    sent = size["sub_sent"]
    print(f"\nN={size['n']}: {size['objects']} objects ({size['objects'] - 1} of "
          f"{size['n'] // 2} ModelServers, the Model's ConfigMap)")
    print(f"  substratus plan: {len(sent)} requests (its Client counted "
          f"{size['client_count']}):")
    for (method, url), count in collections.Counter(sent).items():
        print(f"    {count} x {method} {urllib.parse.unquote(url)}")
    per_pair = len(sent) / len(size["occupied"])
    print(f"  LISTs per (object kind, namespace): at most {max(size['pairs'].values())}, over "
          f"{len(size['pairs'])} pairs read")
    print(f"  requests per (object kind, namespace) of the objects: {len(sent)} / "
          f"{len(size['occupied'])} = {per_pair:.2f} ({'<=' if per_pair <= 2 else 'MORE THAN'} 2)")
    verbs = ", ".join(f"{c} {v}" for v, c in sorted(size["kube_verbs"].items()))
    print(f"  kubectl diff: {size['kube_requests']} requests ({verbs}, discovery "
          f"{size['kube_discovery']} with its cache warm, {size['kube_cold_discovery']} cold); "
          f"client-side throttling reported {size['throttled']} time(s)")


def commit() -> str:
    """The checkout's commit, `+changes` when its tracked files differ from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", "HEAD"]).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def report(rows: list[dict[str, Any]], latency: dict[str, list[float]], repeat: int,
           kubectl_version: str) -> None:
    v = versions()
    print(f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
          f"{platform.release()}; python {platform.python_version()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print(f"versions: substratus {__version__} at commit {commit()}, kubectl {kubectl_version}, "
          f"kube-apiserver {v['kubernetes']}, etcd {v['etcd']}, kwok {v['kwok']}")
    print(f"{repeat} runs of each, alternating, as subprocesses: `substratus plan "
          "--detailed-exitcode DIR` and `kubectl diff --server-side --field-manager=substratus "
          "--force-conflicts -f FILE` (client defaults, discovery cache warm); median and best")
    print(f"\n{'N':>6} {'RTT ms':>7} {'substratus med/best s':>22} {'kubectl med/best s':>19} "
          f"{'ratio med/best':>15} {'substratus req':>15} {'kubectl req':>12}")
    for r in rows:
        ours, theirs = statistics.median(r["ours"]), statistics.median(r["theirs"])
        ratios = f"{theirs / ours:.1f}x / {min(r['theirs']) / min(r['ours']):.1f}x"
        print(f"{r['n']:>6} {r['rtt']:>7g} {ours:>13.2f} / {min(r['ours']):<6.2f} "
              f"{theirs:>10.2f} / {min(r['theirs']):<6.2f} {ratios:>15} "
              f"{r['sub_requests']:>15} {r['kube_requests']:>12}")
    print()
    for r in rows:
        rtt = f" at {r['rtt']:g} ms RTT" if r["rtt"] else ""
        ours, theirs = statistics.median(r["ours"]), statistics.median(r["theirs"])
        goal = {100: 2, 1000: 20}.get(r["n"]) if not r["rtt"] else None
        met = f" (goal >= {goal}x: {'met' if theirs / ours >= goal else 'NOT met'})" \
            if goal else ""
        print(f"N={r['n']}{rtt}: substratus plan {ours:.2f} s median ({r['sub_requests']} "
              f"requests), kubectl diff {theirs:.2f} s median ({r['kube_requests']} requests): "
              f"{theirs / ours:.1f}x median, {min(r['theirs']) / min(r['ours']):.1f}x best{met}")
    if latency:
        report_latency(latency)


# -- the CLI's own latency -------------------------------------------------------------------

LATENCY_GOALS = {"substratus --help": 3, "substratus plan (quickstart, no change)": 6}


def cli_latency(work: Path, repeat: int) -> dict[str, list[float]]:
    """Wall seconds of `python -c pass`, `substratus --help` and a no-change plan of the
    quickstart's datasets on the local runtime, alternating."""
    root = work / "quickstart"
    root.mkdir()
    examples = Path(__file__).resolve().parent.parent / "examples" / "quickstart"
    for name in ("environment.yaml", "datasets.yaml"):
        shutil.copy(examples / name, root / name)
    shutil.copytree(examples / "data", root / "data")
    timed([*substratus_command(), "apply", "--auto-approve", str(root)])
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "substratus --help": [*substratus_command(), "--help"],
        "substratus plan (quickstart, no change)": [*substratus_command(), "plan",
                                                    "--detailed-exitcode", str(root)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            seconds[name].append(timed(command))
    return seconds


def report_latency(latency: dict[str, list[float]]) -> None:
    base = statistics.median(latency["python -c pass"])
    base_best = min(latency["python -c pass"])
    print(f"\nCLI latency, {len(latency['python -c pass'])} runs of each, alternating "
          f"(`python` is {sys.executable}: the same interpreter and site-packages):")
    print(f"{'command':<42} {'median s':>9} {'best s':>8} {'x python -c pass (med/best)':>28}")
    for name, runs in latency.items():
        med = statistics.median(runs)
        goal = LATENCY_GOALS.get(name)
        met = f"  goal <= {goal}x: {'met' if med / base <= goal else 'NOT met'}" if goal else ""
        ratios = f"{med / base:.1f}x / {min(runs) / base_best:.1f}x"
        print(f"{name:<42} {med:>9.3f} {min(runs):>8.3f} {ratios:>28}{met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="object counts (default 100,1000)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs a side (default 5); the median and the best are shown")
    parser.add_argument("--rtt-ms", default="0",
                        help="added round trip times to time at, e.g. 0,10 (default 0)")
    parser.add_argument("--parallelism", type=int, default=32, help="of the apply that sets up")
    parser.add_argument("--latency-repeat", type=int, default=10,
                        help="runs of each command of the CLI latency table (0: skip it)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rtts = [float(s) for s in args.rtt_ms.split(",") if s.strip()]

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    ensure_binaries(log)
    rows = []
    with tempfile.TemporaryDirectory(prefix="substratus-bench-") as tmp, \
            ControlPlane(log=log) as cluster, fake_gcs_server() as gcs:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        os.environ["STORAGE_EMULATOR_HOST"] = gcs
        bucket = storage.Client(project="bench", credentials=AnonymousCredentials()
                                ).create_bucket("bench-artifacts").name
        client_version = yaml.safe_load(cluster.kubectl("version", "--client", "-o", "yaml").stdout)
        for n in sizes:
            size = prepare(cluster, bucket, Path(tmp), n, args.parallelism)
            report_requests(size)
            for rtt in rtts:
                with contextlib.ExitStack() as stack:
                    kubeconfig = cluster.kubeconfig
                    if rtt:
                        relay = stack.enter_context(DelayRelay(cluster.server, rtt))
                        kubeconfig = relay.kubeconfig(cluster.kubeconfig,
                                                      Path(tmp) / f"kubeconfig-{rtt:g}ms")
                    ours, theirs = time_both(cluster, size, kubeconfig, args.repeat)
                rows.append({"n": n, "rtt": rtt, "ours": ours, "theirs": theirs,
                             "sub_requests": len(size["sub_sent"]),
                             "kube_requests": size["kube_requests"]})
                print(f"  timed at {rtt:g} ms RTT: substratus plan "
                      f"{' '.join(f'{s:.2f}' for s in ours)} s; kubectl diff "
                      f"{' '.join(f'{s:.2f}' for s in theirs)} s", flush=True)
        latency = cli_latency(Path(tmp), args.latency_repeat) if args.latency_repeat else {}
    report(rows, latency, args.repeat, client_version["clientVersion"]["gitVersion"])


if __name__ == "__main__":
    main()
