"""Clusters and node pools as the GKE v1 REST API spells them (camelCase JSON): the defaults the
server fills in, how an update request changes them, and the enum spellings on the wire."""

from __future__ import annotations

import copy
import re
from typing import Any

Json = dict[str, Any]

# What real GKE accepts as a cluster or node pool name (RFC 1035, at most 40 characters).
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?")
_ZONE = re.compile(r".+-[a-z]$")

DEFAULT_NODE_CONFIG: Json = {"machineType": "e2-medium", "diskSizeGb": 100,
                             "diskType": "pd-balanced", "imageType": "COS_CONTAINERD"}

# The python client asks for enums as integers (`$alt=json;enum-encoding=int`) and sends them so;
# other callers send and read names. The fake keeps names and answers in the encoding asked for.
# Enums not listed here are kept and echoed as they were sent.
ENUMS: dict[str, tuple[str, ...]] = {
    "operationType": ("TYPE_UNSPECIFIED", "CREATE_CLUSTER", "DELETE_CLUSTER", "UPGRADE_MASTER",
                      "UPGRADE_NODES", "REPAIR_CLUSTER", "UPDATE_CLUSTER", "CREATE_NODE_POOL",
                      "DELETE_NODE_POOL", "SET_NODE_POOL_MANAGEMENT", "AUTO_REPAIR_NODES",
                      "AUTO_UPGRADE_NODES", "SET_LABELS", "SET_MASTER_AUTH", "SET_NODE_POOL_SIZE",
                      "SET_NETWORK_POLICY", "SET_MAINTENANCE_POLICY"),
    "effect": ("EFFECT_UNSPECIFIED", "NO_SCHEDULE", "PREFER_NO_SCHEDULE", "NO_EXECUTE"),
    "channel": ("UNSPECIFIED", "RAPID", "REGULAR", "STABLE", "EXTENDED"),
    "locationPolicy": ("LOCATION_POLICY_UNSPECIFIED", "BALANCED", "ANY"),
    # NodeConfig.accelerators[].gpuDriverInstallationConfig: kept, and answered as sent.
    "gpuDriverVersion": ("GPU_DRIVER_VERSION_UNSPECIFIED", "INSTALLATION_DISABLED", "DEFAULT",
                         "LATEST"),
}
# `status` means a different enum in each message.
STATUS_ENUMS: dict[str, tuple[str, ...]] = {
    "operation": ("STATUS_UNSPECIFIED", "PENDING", "RUNNING", "DONE", "ABORTING"),
    "cluster": ("STATUS_UNSPECIFIED", "PROVISIONING", "RUNNING", "RECONCILING", "STOPPING",
                "ERROR", "DEGRADED"),
    "nodePool": ("STATUS_UNSPECIFIED", "PROVISIONING", "RUNNING", "RUNNING_WITH_ERROR",
                 "RECONCILING", "STOPPING", "ERROR"),
}
_CHILD_KINDS = {"nodePools": "nodePool", "operations": "operation", "clusters": "cluster"}


class ApiError(Exception):
    """An error answer: HTTP status, google.rpc status name and message, as GKE words them."""

    def __init__(self, http_status: int, status: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status, self.status, self.message = http_status, status, message
        self.headers = headers or {}


def not_found(path: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Not found: {path}.")


def already_exists(path: str) -> ApiError:
    return ApiError(409, "ALREADY_EXISTS", f"Already exists: {path}.")


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def check_name(field: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise invalid(f"{field} must be specified.")
    if not _NAME.fullmatch(name):
        raise invalid(f'Invalid value for field "{field}": "{name}". Must be a match of regex '
                      f"'{_NAME.pattern}' (only alphanumerics and '-' allowed, must start with a "
                      "letter and end with an alphanumeric, and must be no longer than 40 "
                      "characters).")
    return name


def default_zones(location: str) -> list[str]:
    """A zonal cluster's nodes live in its zone; a regional one's in three of the region's."""
    return [location] if _ZONE.fullmatch(location) else [f"{location}-{z}" for z in "abc"]


def decode_enums(value: Any) -> Any:
    """Integers of the known enums to their names, anywhere in a request body; int64 fields the
    way proto3 JSON spells them (strings)."""
    if isinstance(value, list):
        return [decode_enums(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if key in ENUMS and isinstance(v, int) and 0 <= v < len(ENUMS[key]):
            v = ENUMS[key][v]
        elif key == "acceleratorCount" and isinstance(v, int):
            v = str(v)
        out[key] = decode_enums(v)
    return out


def encode_enums(value: Any, as_int: bool, kind: str = "") -> Any:
    """The answer in the encoding the caller asked for; `kind` says which `status` enum applies."""
    if isinstance(value, list):
        return [encode_enums(v, as_int, kind) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        names = STATUS_ENUMS.get(kind) if key == "status" else ENUMS.get(key)
        if names and as_int and isinstance(v, str) and v in names:
            v = names.index(v)
        out[key] = encode_enums(v, as_int, _CHILD_KINDS.get(key, kind if key != "error" else ""))
    return out


def new_node_pool(body: Json, self_link: str, version: str, zones: list[str]) -> Json:
    pool = copy.deepcopy(body)
    pool["config"] = {**DEFAULT_NODE_CONFIG, **(pool.get("config") or {})}
    pool.setdefault("initialNodeCount", 0)
    pool.setdefault("locations", list(zones))
    pool.setdefault("management", {"autoUpgrade": True, "autoRepair": True})
    pool.update(selfLink=self_link, version=version)
    return pool


def node_count(pool: Json, per_zone: int) -> int:
    """Nodes in the pool: per zone, within the autoscaler's bounds when it is on."""
    scaling = pool.get("autoscaling") or {}
    if scaling.get("enabled"):
        per_zone = max(int(scaling.get("minNodeCount", 0)),
                       min(per_zone, int(scaling.get("maxNodeCount", per_zone))))
    return per_zone * len(pool.get("locations") or [])


# UpdateNodePoolRequest fields and where they land in the node pool.
_POOL_UPDATES: dict[str, tuple[str, ...]] = {
    "machineType": ("config", "machineType"), "diskType": ("config", "diskType"),
    "diskSizeGb": ("config", "diskSizeGb"), "imageType": ("config", "imageType"),
    "accelerators": ("config", "accelerators"), "taints": ("config", "taints"),
    "labels": ("config", "labels"), "tags": ("config", "tags"),
    "resourceLabels": ("config", "resourceLabels"), "locations": ("locations",),
    "upgradeSettings": ("upgradeSettings",), "nodeVersion": ("version",),
}
# Wrappers in the request around the list or map the node pool holds.
_UNWRAP = {"taints": "taints", "labels": "labels", "tags": "tags", "resourceLabels": "labels"}


def update_node_pool(pool: Json, body: Json, master_version: str) -> None:
    for key, value in body.items():
        where = _POOL_UPDATES.get(key)
        if where is None:
            continue
        if key in _UNWRAP and isinstance(value, dict):
            value = value.get(_UNWRAP[key], [] if key in ("taints", "tags") else {})
        if key == "nodeVersion" and value in ("-", "latest"):
            value = master_version
        target = pool
        for part in where[:-1]:
            target = target.setdefault(part, {})
        target[where[-1]] = copy.deepcopy(value)


def update_fields(update: Json) -> list[str]:
    """The desired* fields a ClusterUpdate sets; GKE refuses an update that sets none. A message
    sent empty is set: proto3 JSON leaves out default values, so `GcfsConfig(enabled=False)`
    arrives as `{}`."""
    fields = [k for k, v in update.items() if k.startswith("desired") and v is not None]
    if not fields:
        raise invalid("Must specify a field to update.")
    return fields


def update_cluster(cluster: Json, pools: dict[str, Json], update: Json,
                   master_version: str) -> None:
    """Apply a ClusterUpdate. desiredX sets the cluster's x, except the fields below that land
    elsewhere (in a node pool, or under another name)."""
    pool_id = update.get("desiredNodePoolId")
    for key in update_fields(update):
        value = copy.deepcopy(update[key])
        if key == "desiredNodePoolId":
            continue
        if key in ("desiredNodePoolAutoscaling", "desiredNodeVersion", "desiredImageType"):
            pool = _pool_for_update(pools, pool_id, key)
            if key == "desiredNodePoolAutoscaling":
                pool["autoscaling"] = value
            elif key == "desiredImageType":
                pool.setdefault("config", {})["imageType"] = value
            else:
                pool["version"] = master_version if value in ("-", "latest") else value
        elif key == "desiredMasterVersion":
            cluster["currentMasterVersion"] = \
                master_version if value in ("-", "latest") else value
        elif key == "desiredAddonsConfig":
            cluster["addonsConfig"] = {**(cluster.get("addonsConfig") or {}), **value}
        elif key == "desiredGcfsConfig":
            defaults = cluster.setdefault("nodePoolDefaults", {})
            defaults.setdefault("nodeConfigDefaults", {})["gcfsConfig"] = value
        else:
            field = key.removeprefix("desired")
            cluster[field[0].lower() + field[1:]] = value


def _pool_for_update(pools: dict[str, Json], pool_id: str | None, key: str) -> Json:
    if pool_id is None and len(pools) == 1:
        return next(iter(pools.values()))
    if pool_id is None:
        raise invalid(f"{key} requires desiredNodePoolId when the cluster has several node pools.")
    if pool_id not in pools:
        raise invalid(f'Node pool "{pool_id}" not found.')
    return pools[pool_id]
