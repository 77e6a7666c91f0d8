"""The Cluster kind: GKE clusters through gke.py. A read is one LIST per (project, location); a
change of project or location is a replacement, every other field is changed in place, one
ClusterUpdate per field. GKE's default node pool is removed once a cluster is up: node pools are
NodePool resources (Terraform's `remove_default_node_pool`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from google.cloud import container_v1

from substratus_cli.action import UNKNOWN, Action
from substratus_cli.address import Address
from substratus_cli.diff import field_changes
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_providers.gcp import ownership
from substratus_providers.gcp.gke import GKE, ClusterRef, NodePoolRef
from substratus_providers.gcp.places import ClusterPlace, Places, declared_place, recorded_place
from substratus_providers.gcp.specs import effective, fingerprint

DEFAULT_POOL = "default-pool"
# Fields GKE cannot change on a cluster: another project or location is another cluster.
REPLACED = ("spec.project", "spec.location")
# Fields that move without anyone writing the cluster: its status, its nodes, the node pools
# (NodePool resources of their own) and the versions GKE upgrades to by itself.
VOLATILE = frozenset({"status", "status_message", "conditions", "current_node_count", "node_pools",
                      "current_master_version", "current_node_version", "instance_group_urls",
                      "etag"})
_Cluster = container_v1.Cluster


def ref(place: ClusterPlace) -> ClusterRef:
    return ClusterRef(place.project, place.location, place.name)


# -- GKE answers as values --------------------------------------------------------------------


def cluster_spec(cluster: _Cluster, place: ClusterPlace) -> dict[str, Any]:
    """The fields a Cluster resource declares, read from GKE's answer."""
    return {
        "project": place.project,
        "location": cluster.location or place.location,
        "releaseChannel": cluster.release_channel.channel.name,
        "workloadIdentity": bool(cluster.workload_identity_config.workload_pool),
        "imageStreaming": bool(cluster.node_pool_defaults.node_config_defaults.gcfs_config.enabled),
        "gcsFuseCsiDriver": bool(cluster.addons_config.gcs_fuse_csi_driver_config.enabled),
    }


def outputs(cluster: _Cluster, place: ClusterPlace) -> dict[str, Any]:
    """What a Cluster hands on (the kubernetes runtime's endpoint and CA), never a secret."""
    out: dict[str, Any] = {"project": place.project, "location": place.location,
                           "state": cluster.status.name}
    if cluster.endpoint:
        out["endpoint"] = f"https://{cluster.endpoint}"
    if cluster.master_auth.cluster_ca_certificate:
        out["caFingerprint"] = ca_fingerprint(cluster.master_auth.cluster_ca_certificate)
    if cluster.status_message:
        out["message"] = cluster.status_message
    return out


def ca_fingerprint(certificate: str) -> str:
    """sha256 of the CA certificate (base64 PEM, as GKE answers it), as `openssl x509
    -fingerprint -sha256` computes it."""
    try:
        pem = base64.b64decode(certificate).decode()
        der = ssl.PEM_cert_to_DER_cert(pem)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        der = certificate.encode()
    return "sha256:" + hashlib.sha256(der).hexdigest()


def live_object(address: Address, cluster: _Cluster, place: ClusterPlace) -> LiveObject:
    return LiveObject(address, cluster_spec(cluster, place), outputs(cluster, place),
                      ownership.core_labels(cluster.resource_labels),
                      fingerprint(_Cluster.to_dict(cluster), VOLATILE))


def cluster_message(want: Mapping[str, Any], labels: Mapping[str, str]) -> _Cluster:
    """The cluster to create, with a one-node default pool GKE insists on (removed after)."""
    workload_pool = f"{want['project']}.svc.id.goog" if want["workloadIdentity"] else ""
    return _Cluster(
        initial_node_count=1,
        resource_labels=dict(labels),
        release_channel=container_v1.ReleaseChannel(channel=want["releaseChannel"]),
        workload_identity_config=container_v1.WorkloadIdentityConfig(
            workload_pool=workload_pool) if workload_pool else None,
        node_pool_defaults=container_v1.NodePoolDefaults(
            node_config_defaults=container_v1.NodeConfigDefaults(
                gcfs_config=container_v1.GcfsConfig(enabled=want["imageStreaming"]))),
        addons_config=container_v1.AddonsConfig(
            gcs_fuse_csi_driver_config=container_v1.GcsFuseCsiDriverConfig(
                enabled=want["gcsFuseCsiDriver"])))


def updates(live: Mapping[str, Any], want: Mapping[str, Any]
            ) -> list[tuple[str, container_v1.ClusterUpdate]]:
    """The ClusterUpdates that turn `live` into `want`: GKE takes one desired field per call."""
    out = []
    if live["releaseChannel"] != want["releaseChannel"]:
        out.append(("releaseChannel", container_v1.ClusterUpdate(
            desired_release_channel=container_v1.ReleaseChannel(channel=want["releaseChannel"]))))
    if live["workloadIdentity"] != want["workloadIdentity"]:
        pool = f"{want['project']}.svc.id.goog" if want["workloadIdentity"] else ""
        out.append(("workloadIdentity", container_v1.ClusterUpdate(
            desired_workload_identity_config=container_v1.WorkloadIdentityConfig(
                workload_pool=pool))))
    if live["imageStreaming"] != want["imageStreaming"]:
        out.append(("imageStreaming", container_v1.ClusterUpdate(
            desired_gcfs_config=container_v1.GcfsConfig(enabled=want["imageStreaming"]))))
    if live["gcsFuseCsiDriver"] != want["gcsFuseCsiDriver"]:
        out.append(("gcsFuseCsiDriver", container_v1.ClusterUpdate(
            desired_addons_config=container_v1.AddonsConfig(
                gcs_fuse_csi_driver_config=container_v1.GcsFuseCsiDriverConfig(
                    enabled=want["gcsFuseCsiDriver"])))))
    return out


# -- the kind ---------------------------------------------------------------------------------


class Clusters:
    """The Cluster kind's KindHandler."""

    def __init__(self, gke: Callable[[], GKE], part_of: str) -> None:
        self._gke = gke
        self.part_of = part_of

    @property
    def gke(self) -> GKE:
        return self._gke()

    def read(self, request: ReadRequest) -> ReadResponse:
        # GKE names a cluster by project and location: the files say where each one should be,
        # the state where it was last applied (also once it has left the files).
        places = Places(request.resources.values(), request.recorded)
        candidates = {a: places.clusters_of(a) for a in request.addresses}
        locations = sorted({(p.project, p.location) for ps in candidates.values() for p in ps})
        listed = {where: {c.name: c for c in self.gke.list_clusters(*where)} for where in locations}
        objects: dict[Address, LiveObject] = {}
        for a, ps in candidates.items():
            for p in ps:
                found = listed[(p.project, p.location)].get(p.name)
                if found is not None:
                    objects[a] = live_object(a, found, p)
                    break
        for (project, location), clusters in listed.items():
            for c in clusters.values():  # also what this workspace made that no one asked for
                if ownership.owned_by(c.resource_labels, request.part_of):
                    a = Address("Cluster", ownership.namespace_of(c.resource_labels), c.name)
                    objects.setdefault(a, live_object(a, c, ClusterPlace(project, location,
                                                                         c.name)))
        return ReadResponse(objects, requests=len(locations))

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, r, live = item.address, item.desired, item.live
        assert r is not None, f"{a}: deletes are planned by plan_batch"
        if live is None:
            return PlannedChange(a, Action.CREATE, planned_status={"endpoint": UNKNOWN,
                                                                   "caFingerprint": UNKNOWN})
        if live.status.get("state") == "ERROR":
            return PlannedChange(a, Action.REPLACE, f"GKE reports it failed: "
                                 f"{live.status.get('message') or 'status ERROR'}")
        changes = field_changes(live.spec, effective(r),
                                forces_replacement=lambda p: p in REPLACED)
        if not changes:
            return PlannedChange(a, Action.NOOP)
        if any(c.forces_replacement for c in changes):
            return PlannedChange(a, Action.REPLACE, "GKE cannot move a cluster to another "
                                 "project or location", changes)
        return PlannedChange(a, Action.UPDATE, "", changes)

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, r = request.address, request.desired
        assert r is not None, f"{request.action} of {a} without a resource"
        if request.action is Action.REPLACE:
            self.delete(request)
        place, want = declared_place(r), effective(r)
        if request.action is Action.UPDATE:
            return self._update(a, place, want)
        return self._create(a, place, want)

    def delete(self, request: ApplyRequest) -> None:
        place = self._live_place(request)
        if self._owned(request.address, place) is not None:
            self.gke.delete_cluster(ref(place))

    def _create(self, a: Address, place: ClusterPlace, want: Mapping[str, Any]) -> LiveObject:
        labels = ownership.stamped({}, self.part_of, a.namespace)
        done = self.gke.create_cluster(ref(place), cluster_message(want, labels))
        cluster = done.resource
        if isinstance(cluster, _Cluster) and any(p.name == DEFAULT_POOL and not
                                                 ownership.owned_by(p.config.labels, self.part_of)
                                                 for p in cluster.node_pools):
            self.gke.delete_node_pool(NodePoolRef(ref(place), DEFAULT_POOL))
        return self._live(a, place)

    def _update(self, a: Address, place: ClusterPlace, want: Mapping[str, Any]) -> LiveObject:
        cluster = self._owned(a, place)
        if cluster is None:
            raise ProviderError(f"{ref(place)} is gone since the plan", hint="plan again")
        for _, update in updates(cluster_spec(cluster, place), want):
            self.gke.update_cluster(ref(place), update)
        return self._live(a, place)

    def _owned(self, a: Address, place: ClusterPlace) -> _Cluster | None:
        """The cluster at `place` (None: gone), refused unless this workspace manages it."""
        cluster = self.gke.get_cluster(ref(place))
        if cluster is not None and not ownership.owned_by(cluster.resource_labels, self.part_of):
            raise ProviderError(f"{ref(place)} is not labelled as managed by this workspace "
                                f"({ownership.PART_OF}={self.part_of}); {a} leaves it alone")
        return cluster

    def _live(self, a: Address, place: ClusterPlace) -> LiveObject:
        cluster = self.gke.get_cluster(ref(place))
        if cluster is None:
            raise ProviderError(f"{ref(place)} is gone right after it was changed")
        return live_object(a, cluster, place)

    def _live_place(self, request: ApplyRequest) -> ClusterPlace:
        status = request.live.status if request.live is not None else {}
        found = recorded_place("Cluster", request.address, status)
        if found is None and request.desired is not None:
            found = declared_place(request.desired)
        if found is None:
            raise ProviderError(f"cannot tell where {request.address} lives", hint="plan again")
        return found

    def ready(self, live: LiveObject) -> Readiness:
        place = recorded_place("Cluster", live.address, live.status)
        assert place is not None, f"{live.address} without its place in status"
        cluster = self.gke.get_cluster(ref(place))
        if cluster is None:
            return Readiness(False, failed=True, message=f"{ref(place)} is gone")
        status = _Cluster.Status
        if cluster.status == status.RUNNING:
            return Readiness(True, message=f"endpoint https://{cluster.endpoint}")
        message = f"{ref(place)} is {cluster.status.name}"
        if cluster.status_message:
            message += f": {cluster.status_message}"
        failed = cluster.status in (status.ERROR, status.DEGRADED, status.STOPPING)
        return Readiness(False, failed=failed, message=message)
