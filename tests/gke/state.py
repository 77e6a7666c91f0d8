"""The GKE fake's state and rules: clusters, node pools and their long-running operations.

Every mutation answers an Operation that is RUNNING and turns DONE by itself (after some polls or
some seconds: no wait call); only then does the change show. While it runs, the cluster or node
pool is PROVISIONING / RECONCILING / STOPPING and GKE's concurrency rules apply: a second change to
the same cluster (or node pool) gets 400 "incompatible operation", more than the quota of
concurrent operations on a cluster gets 429. No HTTP here: server.py maps requests onto this.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.gke import resources
from tests.gke.resources import ApiError, Json, invalid, not_found

API = "https://container.googleapis.com/v1/"
PLACEHOLDER_CA = b"-----BEGIN CERTIFICATE-----\nZmFrZSBHS0UgY2x1c3RlciBDQQ==\n" \
                 b"-----END CERTIFICATE-----\n"


@dataclasses.dataclass
class Settings:
    """What the fake answers with and how fast operations finish; tests change it at any time."""

    endpoint: str = "127.0.0.1"  # a cluster's endpoint: a host (and port), no scheme, as GKE's
    ca_certificate: str = base64.b64encode(PLACEHOLDER_CA).decode()  # base64 of the PEM
    operation_polls: int | None = 1  # GETs of an operation that still answer RUNNING, then DONE
    operation_seconds: float | None = 1.0  # or DONE this long after it started (first wins)
    concurrent_operations: int = 5  # per cluster, as GKE's quota; more gets 429
    retry_after: float | None = None  # a Retry-After header on 429 answers (GKE sends none)
    master_version: str = "1.30.5-gke.1014001"
    # What POST /token answers: the OAuth token endpoint a service account key file can name
    # (token_uri), so google-auth's real refresh hands kubernetes clients this bearer token (the
    # test control plane's admin token). None: /token refuses.
    access_token: str | None = None
    # Called with a node pool's JSON when its creation is DONE: a test turns it into nodes of the
    # test control plane (kwok), as GKE brings a pool's VMs up.
    on_node_pool_created: Callable[[Json], None] | None = None

    @classmethod
    def pointing_at(cls, server: str, ca_file: Path, **kwargs: object) -> Settings:
        """Clusters whose endpoint and CA are those of a real API server (e.g. the test control
        plane's `server` and `ca_file`)."""
        endpoint = server.removeprefix("https://").rstrip("/")
        ca = base64.b64encode(Path(ca_file).read_bytes()).decode()
        return cls(endpoint=endpoint, ca_certificate=ca, **kwargs)  # type: ignore[arg-type]


@dataclasses.dataclass
class Failure:
    """An injected failure: the next operation (or request) that matches ends with this error."""

    code: int  # google.rpc code in an operation's error; the HTTP status for a request
    message: str
    status: str = ""  # the google.rpc status name of a request failure
    match: str = ""  # an operation type or a path fragment; empty: any
    times: int = 1


@dataclasses.dataclass
class Operation:
    json: Json
    cluster: str  # the cluster's path
    node_pool: str | None  # the node pool's name, for node pool operations
    started: float
    finish: Callable[[], None]  # carries the change out when the operation is DONE
    fail: Callable[[str], None]  # leaves the resource as a failure would
    error: Failure | None = None
    polls: int = 0

    @property
    def running(self) -> bool:
        return bool(self.json["status"] == "RUNNING")


@dataclasses.dataclass
class Cluster:
    json: Json  # as GKE answers it, less status, nodePools and currentNodeCount
    pools: dict[str, Json] = dataclasses.field(default_factory=dict)
    pool_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    node_counts: dict[str, int] = dataclasses.field(default_factory=dict)  # per zone, by pool
    error: str | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class GKEState:
    """Thread safe: the HTTP server calls it from one thread per request."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.clusters: dict[str, Cluster] = {}
        self.operations: dict[str, Operation] = {}  # by path
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._operation_failures: list[Failure] = []
        self._request_failures: list[Failure] = []
        self._lock = threading.RLock()

    # -- failure injection

    def fail_next_operation(self, message: str = "", code: int = 8, match: str = "") -> None:
        """The next operation (of type or target `match`) ends DONE with this error. The default
        is a GPU stockout, as GKE reports it."""
        message = message or ("The zone does not have enough resources available to fulfill "
                              "the request. Try a different zone, or try again later.")
        with self._lock:
            self._operation_failures.append(Failure(code, message, match=match))

    def fail_requests(self, http_status: int, status: str, message: str, *, times: int = 1,
                      match: str = "") -> None:
        """The next `times` requests whose "METHOD path" contains `match` get this error."""
        with self._lock:
            self._request_failures.append(Failure(http_status, message, status, match, times))

    def take_request_failure(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            self.requests.append((method, path))
            for failure in self._request_failures:
                if failure.match in f"{method} {path}":
                    failure.times -= 1
                    if failure.times <= 0:
                        self._request_failures.remove(failure)
                    return ApiError(failure.code, failure.status, failure.message)
        return None

    # -- clusters

    def create_cluster(self, parent: str, body: Json) -> Json:
        cluster_json = resources.decode_enums(body.get("cluster") or {})
        name = resources.check_name("cluster.name", cluster_json.get("name"))
        with self._lock:
            self._advance()
            location = self._location(parent)
            path = f"{parent}/clusters/{name}"
            if path in self.clusters:
                raise resources.already_exists(path)
            pools_json = cluster_json.pop("nodePools", None) or []
            if not pools_json and not (cluster_json.get("autopilot") or {}).get("enabled"):
                count = int(cluster_json.get("initialNodeCount") or 0)
                if count <= 0:
                    raise invalid("Cluster.initial_node_count must be greater than zero.")
                pools_json = [{"name": "default-pool", "initialNodeCount": count,
                               "config": cluster_json.get("nodeConfig") or {}}]
            version = cluster_json.get("initialClusterVersion") or self.settings.master_version
            zones = cluster_json.get("locations") or resources.default_zones(location)
            cluster = Cluster({
                **cluster_json, "location": location, "zone": location, "locations": zones,
                "selfLink": API + path, "id": uuid.uuid4().hex,
                "endpoint": self.settings.endpoint,
                "masterAuth": {**(cluster_json.get("masterAuth") or {}),
                               "clusterCaCertificate": self.settings.ca_certificate},
                "initialClusterVersion": version, "currentMasterVersion": version,
                "currentNodeVersion": version, "createTime": _now()})
            for pool_json in pools_json:
                pool_name = resources.check_name("node_pool.name", pool_json.get("name"))
                cluster.pools[pool_name] = resources.new_node_pool(
                    pool_json, f"{API}{path}/nodePools/{pool_name}", version, zones)
                cluster.node_counts[pool_name] = int(cluster.pools[pool_name]["initialNodeCount"])
            self.clusters[path] = cluster

            def fail(message: str) -> None:
                cluster.error = message
                cluster.pool_errors.update(dict.fromkeys(cluster.pools, message))

            return self._start("CREATE_CLUSTER", path, None, path, lambda: None, fail)

    def get_cluster(self, name: str) -> Json:
        with self._lock:
            self._advance()
            return self._render_cluster(name, self._cluster(name))

    def list_clusters(self, parent: str) -> Json:
        with self._lock:
            self._advance()
            self._location(parent)
            return {"clusters": [self._render_cluster(path, c) for path, c in self.clusters.items()
                                 if _under(path, parent, "clusters")]}

    def delete_cluster(self, name: str) -> Json:
        with self._lock:
            self._advance()
            self._cluster(name)

            def finish() -> None:
                self.clusters.pop(name, None)

            def fail(message: str) -> None:
                self.clusters[name].error = message

            return self._start("DELETE_CLUSTER", name, None, name, finish, fail)

    def update_cluster(self, name: str, body: Json) -> Json:
        update = resources.decode_enums(body.get("update") or {})
        resources.update_fields(update)
        with self._lock:
            self._advance()
            cluster = self._cluster(name)
            trial = copy.deepcopy(cluster)  # refuse a bad update now, not when it is DONE
            resources.update_cluster(trial.json, trial.pools, update, self.settings.master_version)

            def finish() -> None:
                resources.update_cluster(cluster.json, cluster.pools, update,
                                         self.settings.master_version)

            return self._start("UPDATE_CLUSTER", name, None, name, finish, lambda _: None)

    # -- node pools

    def create_node_pool(self, parent: str, body: Json) -> Json:
        pool_json = resources.decode_enums(body.get("nodePool") or {})
        name = resources.check_name("node_pool.name", pool_json.get("name"))
        with self._lock:
            self._advance()
            cluster = self._cluster(parent)
            path = f"{parent}/nodePools/{name}"
            if name in cluster.pools:
                raise resources.already_exists(path)
            self._admit(parent, name)
            cluster.pools[name] = resources.new_node_pool(
                pool_json, API + path, cluster.json["currentMasterVersion"],
                cluster.json["locations"])
            cluster.node_counts[name] = int(cluster.pools[name]["initialNodeCount"])

            def fail(message: str) -> None:
                cluster.pool_errors[name] = message

            def finish() -> None:
                if self.settings.on_node_pool_created is not None:
                    self.settings.on_node_pool_created(dict(cluster.pools[name]))

            return self._start("CREATE_NODE_POOL", parent, name, path, finish, fail)

    def get_node_pool(self, name: str) -> Json:
        with self._lock:
            self._advance()
            cluster_path, pool_name = self._pool(name)
            return self._render_pool(cluster_path, pool_name)

    def list_node_pools(self, parent: str) -> Json:
        with self._lock:
            self._advance()
            cluster = self._cluster(parent)
            return {"nodePools": [self._render_pool(parent, p) for p in cluster.pools]}

    def delete_node_pool(self, name: str) -> Json:
        with self._lock:
            self._advance()
            cluster_path, pool_name = self._pool(name)
            cluster = self.clusters[cluster_path]

            def finish() -> None:
                cluster.pools.pop(pool_name, None)
                cluster.pool_errors.pop(pool_name, None)
                cluster.node_counts.pop(pool_name, None)

            def fail(message: str) -> None:
                cluster.pool_errors[pool_name] = message

            return self._start("DELETE_NODE_POOL", cluster_path, pool_name, name, finish, fail)

    def change_node_pool(self, name: str, verb: str, body: Json) -> Json:
        """`update` (PUT), `setSize` or `setAutoscaling`."""
        body = resources.decode_enums(body)
        with self._lock:
            self._advance()
            cluster_path, pool_name = self._pool(name)
            cluster = self.clusters[cluster_path]
            pool = cluster.pools[pool_name]
            master = self.settings.master_version
            if verb == "setSize":
                if int(body.get("nodeCount", -1)) < 0:
                    raise invalid("Node count must be non-negative.")
                kind = "SET_NODE_POOL_SIZE"

                def finish() -> None:
                    cluster.node_counts[pool_name] = int(body["nodeCount"])
            elif verb == "setAutoscaling":
                kind = "UPDATE_CLUSTER"

                def finish() -> None:
                    pool["autoscaling"] = copy.deepcopy(body.get("autoscaling") or {})
            else:
                kind = "UPGRADE_NODES"

                def finish() -> None:
                    resources.update_node_pool(pool, body, master)

            return self._start(kind, cluster_path, pool_name, name, finish, lambda _: None)

    # -- operations

    def get_operation(self, name: str) -> Json:
        with self._lock:
            self._advance()
            operation = self.operations.get(name)
            if operation is None:
                raise not_found(name)
            operation.polls += 1
            polls = self.settings.operation_polls
            if operation.running and polls is not None and operation.polls > polls:
                self._complete(operation)
            return copy.deepcopy(operation.json)

    def list_operations(self, parent: str) -> Json:
        with self._lock:
            self._advance()
            self._location(parent)
            return {"operations": [copy.deepcopy(o.json) for path, o in self.operations.items()
                                   if _under(path, parent, "operations")]}

    # -- the rules

    def _start(self, kind: str, cluster: str, node_pool: str | None, target: str,
               finish: Callable[[], None], fail: Callable[[str], None]) -> Json:
        if kind != "CREATE_CLUSTER" and kind != "CREATE_NODE_POOL":
            self._admit(cluster, node_pool)
        location = cluster.split("/clusters/")[0]
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4()}"
        path = f"{location}/operations/{name}"
        zone = location.rsplit("/", 1)[1]
        operation = Operation(
            {"name": name, "zone": zone, "location": zone, "operationType": kind,
             "status": "RUNNING", "selfLink": API + path, "targetLink": API + target,
             "startTime": _now()},
            cluster, node_pool, time.monotonic(), finish, fail, self._take_failure(kind, target))
        self.operations[path] = operation
        return copy.deepcopy(operation.json)

    def _admit(self, cluster: str, node_pool: str | None) -> None:
        """GKE runs one operation at a time on a cluster, except operations on different node
        pools, which run side by side up to the cluster's concurrent-operation quota."""
        running = [o for o in self.operations.values() if o.running and o.cluster == cluster]
        for other in running:
            if node_pool is None or other.node_pool is None or other.node_pool == node_pool:
                raise ApiError(400, "FAILED_PRECONDITION",
                               f"Cluster is running incompatible operation {other.json['name']}.")
        quota = self.settings.concurrent_operations
        if len(running) >= quota:
            headers = {"Retry-After": f"{self.settings.retry_after:g}"} \
                if self.settings.retry_after is not None else {}
            raise ApiError(429, "RESOURCE_EXHAUSTED",
                           f'Too many operations: cluster "{cluster.rsplit("/", 1)[1]}" hits the '
                           f"concurrent operations quota {quota}, please try again later.",
                           headers)

    def _take_failure(self, kind: str, target: str) -> Failure | None:
        for failure in self._operation_failures:
            if failure.match in kind or failure.match in target:
                self._operation_failures.remove(failure)
                return failure
        return None

    def _advance(self) -> None:
        """Finish the operations whose time is up."""
        seconds = self.settings.operation_seconds
        if seconds is None:
            return
        now = time.monotonic()
        for operation in list(self.operations.values()):
            if operation.running and now - operation.started >= seconds:
                self._complete(operation)

    def _complete(self, operation: Operation) -> None:
        operation.json.update(status="DONE", endTime=_now())
        if operation.error is None:
            operation.finish()
            return
        operation.json["statusMessage"] = operation.error.message
        operation.json["error"] = {"code": operation.error.code,
                                   "message": operation.error.message}
        operation.fail(operation.error.message)

    # -- lookups and rendering

    def _location(self, parent: str) -> str:
        parts = parent.split("/")
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
            raise invalid(f"Invalid parent: {parent!r}, expected projects/*/locations/*.")
        return parts[3]

    def _cluster(self, path: str) -> Cluster:
        cluster = self.clusters.get(path)
        if cluster is None:
            raise not_found(path)
        return cluster

    def _pool(self, path: str) -> tuple[str, str]:
        cluster_path, _, pool_name = path.partition("/nodePools/")
        if pool_name not in self._cluster(cluster_path).pools:
            raise not_found(path)
        return cluster_path, pool_name

    def _running(self, cluster: str) -> list[Operation]:
        return [o for o in self.operations.values() if o.running and o.cluster == cluster]

    def _render_cluster(self, path: str, cluster: Cluster) -> Json:
        kinds = {o.json["operationType"] for o in self._running(path) if o.node_pool is None}
        status = "ERROR" if cluster.error else "PROVISIONING" if "CREATE_CLUSTER" in kinds \
            else "STOPPING" if "DELETE_CLUSTER" in kinds \
            else "RECONCILING" if self._running(path) else "RUNNING"
        pools = [self._render_pool(path, name) for name in cluster.pools]
        nodes = sum(resources.node_count(p, cluster.node_counts.get(p["name"], 0))
                    for p in pools if p["status"] in ("RUNNING", "RECONCILING"))
        out = {**copy.deepcopy(cluster.json), "status": status, "nodePools": pools,
               "currentNodeCount": nodes}
        if cluster.error:
            out["statusMessage"] = cluster.error
        return out

    def _render_pool(self, cluster_path: str, name: str) -> Json:
        cluster = self.clusters[cluster_path]
        kinds = {o.json["operationType"] for o in self._running(cluster_path)
                 if o.node_pool in (None, name)}
        error = cluster.pool_errors.get(name)
        status = "ERROR" if error else \
            "PROVISIONING" if kinds & {"CREATE_CLUSTER", "CREATE_NODE_POOL"} \
            else "STOPPING" if kinds & {"DELETE_CLUSTER", "DELETE_NODE_POOL"} \
            else "RECONCILING" if kinds else "RUNNING"
        out = {**copy.deepcopy(cluster.pools[name]), "status": status}
        if error:
            out["statusMessage"] = error
        return out


def _under(path: str, parent: str, collection: str) -> bool:
    """Is `path` in `parent`'s collection; location `-` means every location of the project."""
    head, _, _ = path.rpartition(f"/{collection}/")
    project, _, location = parent.removeprefix("projects/").partition("/locations/")
    return head == parent or (location == "-" and head.startswith(f"projects/{project}/"))
