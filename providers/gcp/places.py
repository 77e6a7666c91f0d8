"""Where a Cluster or NodePool lives. GKE names a cluster by project, location and name, which an
address does not hold: the resource files say where it should be, the state where it was last
applied (so a resource removed from the files, or moved, is still found and planned)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.resource import Resource


@dataclasses.dataclass(frozen=True, order=True)
class ClusterPlace:
    project: str
    location: str
    name: str

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.name}"

    @classmethod
    def parse(cls, path: str) -> ClusterPlace | None:
        parts = path.split("/")
        if len(parts) != 6 or parts[0::2] != ["projects", "locations", "clusters"]:
            return None
        return cls(parts[1], parts[3], parts[5])

    def __str__(self) -> str:
        return f"{self.project}/{self.location}/{self.name}"


def declared_place(cluster: Resource) -> ClusterPlace:
    """Where a Cluster resource says it lives."""
    return ClusterPlace(str(cluster.spec["project"]), str(cluster.spec["location"]), cluster.name)


def recorded_place(kind: str, address: Address, status: Mapping[str, Any]) -> ClusterPlace | None:
    """Where the state says a Cluster (or a NodePool's cluster) was last applied."""
    if kind == "NodePool":
        return ClusterPlace.parse(str(status.get("cluster") or ""))
    project, location = status.get("project"), status.get("location")
    if not project or not location:
        return None
    return ClusterPlace(str(project), str(location), address.name)


def pool_cluster(pool: Resource) -> Address:
    return Address("Cluster", pool.address.namespace, str(pool.spec["cluster"]["name"]))


class Places:
    """Candidate places per address: where the files put it first, then where it was applied."""

    def __init__(self, declared: Iterable[Resource],
                 recorded: Mapping[Address, Mapping[str, Any]]) -> None:
        self._declared = {r.address: r for r in declared}
        self._recorded = recorded

    def clusters_of(self, address: Address) -> list[ClusterPlace]:
        """The places of a Cluster, or of the cluster a NodePool belongs to."""
        out: list[ClusterPlace] = []
        r = self._declared.get(address)
        if r is not None and address.kind == "Cluster":
            out.append(declared_place(r))
        elif r is not None:
            cluster = self._declared.get(pool_cluster(r))
            if cluster is not None:
                out.append(declared_place(cluster))
        status = self._recorded.get(address)
        found = recorded_place(address.kind, address, status) if status else None
        if found is not None and found not in out:
            out.append(found)
        if not out:
            raise ProviderError(
                f"cannot tell where {address} lives: it is not in the resource files, and the "
                "state records no GKE location for it",
                hint="put its resource file back (with the project and location it was applied "
                     "with) to plan it")
        return out
