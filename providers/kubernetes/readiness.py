"""Readiness gates of the objects the provider writes, and why a pod is not ready, in the words
`kubectl describe` would use (FailedScheduling's message, a container's exit reason)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus_cli.provider import Readiness

Obj = Mapping[str, Any]


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _observed(obj: Obj) -> bool:
    generation = (obj.get("metadata") or {}).get("generation", 0)
    return int((obj.get("status") or {}).get("observedGeneration", 0)) >= int(generation)


def job(obj: Obj, pods: Sequence[Obj]) -> Readiness:
    """Complete: ready. Failed: failed, with the pod's reason. Otherwise still running."""
    conditions = _conditions(obj)
    if (conditions.get("Complete") or {}).get("status") == "True":
        return Readiness(True, message="Job complete")
    failed = conditions.get("Failed") or {}
    if failed.get("status") == "True":
        why = pod_reasons(pods) or failed.get("message") or failed.get("reason") or "Job failed"
        return Readiness(False, failed=True, message=f"Job failed: {why}")
    return Readiness(False, message=f"Job running{_because(pods)}")


def deployment(obj: Obj, pods: Sequence[Obj]) -> Readiness:
    """Every replica updated and available, and no old replica left. A rollout past its
    progress deadline failed; maxUnavailable 0 kept the previous version's pods serving."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if not _observed(obj):
        return Readiness(False, message="waiting for the Deployment controller")
    progressing = _conditions(obj).get("Progressing") or {}
    if progressing.get("status") == "False" and progressing.get("reason") == \
            "ProgressDeadlineExceeded":
        old = int(status.get("availableReplicas", 0))
        return Readiness(False, failed=True, message=(
            f"the new version did not become ready within "
            f"{spec.get('progressDeadlineSeconds', 600)} s{_because(pods)}; {old} replica(s) of "
            "the previous version keep serving (rollout.readinessTimeoutSeconds sets the wait)"))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated >= want and total == updated and available >= want:
        return Readiness(True, message=f"{available} of {want} replicas available")
    return Readiness(False, message=f"{min(updated, available)} of {want} new replicas "
                                    f"available{_because(pods)}")


def statefulset(obj: Obj, pods: Sequence[Obj]) -> Readiness:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if not _observed(obj):
        return Readiness(False, message="waiting for the StatefulSet controller")
    ready = int(status.get("readyReplicas", 0))
    current = status.get("currentRevision") == status.get("updateRevision")
    if ready >= want and (current or want == 0) and int(status.get("replicas", 0)) == want:
        return Readiness(True, message=f"{ready} of {want} replicas ready")
    return Readiness(False, message=f"{ready} of {want} replicas ready{_because(pods)}")


def _because(pods: Sequence[Obj]) -> str:
    reasons = pod_reasons(pods)
    return f" ({reasons})" if reasons else ""


def pod_reasons(pods: Sequence[Obj]) -> str:
    """Why the pods that are not ready are not, one clause per distinct reason."""
    seen: dict[str, list[str]] = {}
    for pod in pods:
        reason = pod_reason(pod)
        if reason:
            seen.setdefault(reason, []).append((pod.get("metadata") or {}).get("name", "?"))
    return "; ".join(f"pod {names[0]}{f' (+{len(names) - 1} more)' if len(names) > 1 else ''}: "
                     f"{reason}" for reason, names in seen.items())


def pod_reason(pod: Obj) -> str:
    """'' for a ready or succeeded pod."""
    status = pod.get("status") or {}
    phase = status.get("phase", "")
    if phase == "Succeeded":
        return ""
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        if "terminated" in state and phase == "Failed":
            t = state["terminated"]
            text = (t.get("message") or "").strip() or t.get("reason") or "terminated"
            return f"{text} (exit code {t.get('exitCode', '?')})"
        if "waiting" in state and state["waiting"].get("reason") not in (None, "ContainerCreating"):
            w = state["waiting"]
            return f"{w['reason']}: {w.get('message', '')}".rstrip(": ")
    if phase == "Failed":
        return status.get("message") or status.get("reason") or "failed"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        return f"{scheduled.get('reason', 'Unschedulable')}: {scheduled.get('message', '')}"
    if phase == "Pending":
        return "Pending"
    if (conditions.get("Ready") or {}).get("status") != "True":
        return "running, not ready (its readiness probe has not passed)"
    return ""
