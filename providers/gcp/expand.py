"""What a workspace's files imply on GCP: ML resources depend on the Cluster the Environment names,
its NodePools and the artifacts Bucket; sized workloads get the GPU NodePools they need."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from substratus_cli.address import ML_KINDS
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.resource import Resource
from substratus_providers.gcp.gpu_pools import with_gpu_pools


def expand(resources: Sequence[Resource], environment: EnvironmentSpec) -> list[Resource]:
    cluster = environment.kubernetes.cluster.name if (
        environment.kubernetes and environment.kubernetes.cluster) else None
    out = with_infrastructure_edges(resources, cluster, bucket_of(environment.artifacts))
    return with_gpu_pools(out, cluster) if cluster else out


def bucket_of(url: str | None) -> str | None:
    if not url or not url.startswith("gs://"):
        return None
    return url.removeprefix("gs://").partition("/")[0]


def with_infrastructure_edges(resources: Sequence[Resource], cluster: str | None,
                              bucket: str | None) -> list[Resource]:
    """ML resources depend on what they run on, though they do not name it: the Cluster the
    Environment names and its NodePools, and the Bucket its `artifacts` URL is in. So one plan
    creates the cluster, its pools and the bucket first, and destroy removes them last. So do
    Images built in the cluster (`builder: cluster`): a kaniko Job runs there."""
    under = []
    for r in resources:
        if ((r.kind == "Cluster" and r.name == cluster)
                or (r.kind == "NodePool" and cluster
                    and (r.spec.get("cluster") or {}).get("name") == cluster)
                or (r.kind == "Bucket" and r.name == bucket)):
            under.append(r.address)
    if not under:
        return list(resources)
    return [dataclasses.replace(r, refs=tuple(dict.fromkeys([*r.refs, *under])))
            if r.kind in ML_KINDS or in_cluster(r) else r for r in resources]


def in_cluster(r: Resource) -> bool:
    return r.kind == "Image" and r.spec.get("builder") == "cluster"
