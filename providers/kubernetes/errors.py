"""What a failed Kubernetes API request means: temporary (the client retries it) or permanent, and
the ProviderError a user reads for it, built from the server's Status answer."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, TypeAlias

import urllib3

from substratus_cli.errors import ProviderError
from substratus_cli.retry import retry_after_seconds
from substratus_providers.kubernetes.library import ApiException

# What one request failed with: an HTTP answer, or no answer at all (urllib3's errors).
Failure: TypeAlias = ApiException | urllib3.exceptions.HTTPError

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# 403s that go away by themselves: a namespace still being deleted, or one so new that its
# `default` ServiceAccount does not exist yet (pods are refused until it does). Every other 403 is
# permanent (unlike kopf): an RBAC denial is far more common than the 403 some API servers answer
# during an upgrade, and a user should read about a missing permission at once, not 20 s later.
_TEMPORARY_403 = ("is being terminated", "error looking up service account")
# The kubernetes client reports every TLS failure as an ApiException with status 0: a certificate
# or protocol mismatch, which the next try meets again, but also a connection cut mid-stream (a
# proxy or load balancer dropping it, a server restarting), which OpenSSL may report as an EOF
# rather than as the reset it was. Those are temporary, as a reset outside TLS is.
_TLS_CUT = ("EOF occurred in violation of protocol", "UNEXPECTED_EOF_WHILE_READING",
            "Connection reset by peer", "Broken pipe")
_SSL_NOISE = re.compile(r"\[SSL: \w+\] | \(_ssl\.c:\d+\)")
_MANAGER = re.compile(r'conflicts? with "([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as the user thinks of it: verb ("list", "get", "apply", "delete", "create"),
    what it is about ("Deployment ns/x") and the RBAC words for a hint."""

    verb: str
    method: str
    path: str
    what: str
    resource: str  # e.g. "deployments.apps"
    namespace: str | None = None


class KubernetesError(ProviderError):
    """A ProviderError with the server's answer kept apart: the HTTP status (None when the server
    was not reached), its reason, its message (`detail`), the (field, message) causes and
    conflicting field managers."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 reason: str = "", causes: tuple[tuple[str, str], ...] = (),
                 managers: tuple[str, ...] = (), detail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.causes = causes
        self.managers = managers
        self.detail = detail or message


def status_of(exc: ApiException) -> dict[str, Any]:
    """The server's Status object; a plain-text body (e.g. "404 page not found") as its message."""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body or ""
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        status = {"message": body.strip() or str(exc.reason or "")}
    status.setdefault("reason", exc.reason or "")
    return status


def causes_of(status: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    causes = (status.get("details") or {}).get("causes") or []
    return tuple((c.get("field", ""), c.get("message", "")) for c in causes)


def is_object_missing(exc: ApiException) -> bool:
    """A 404 about a named object. A 404 without a name means the server does not serve the
    resource type at all, which says nothing about whether the object exists."""
    return exc.status == 404 and bool((status_of(exc).get("details") or {}).get("name"))


def is_temporary(exc: Failure) -> bool:
    if isinstance(exc, urllib3.exceptions.HTTPError):
        # A name that does not resolve will not resolve on the next try either.
        return not isinstance(exc, urllib3.exceptions.NameResolutionError)
    if not exc.status:
        return any(cut in str(exc.reason) for cut in _TLS_CUT)
    if exc.status in _RETRIED_STATUSES:
        return True
    message = str(status_of(exc).get("message", ""))
    if exc.status == 403:
        return any(text in message for text in _TEMPORARY_403)
    # An optimistic-concurrency clash (not a field manager conflict): the next try reads anew.
    return exc.status == 409 and "the object has been modified" in message


def retry_after(exc: Failure) -> float | None:
    """Seconds the server asked us to wait (Retry-After header or Status retryAfterSeconds)."""
    if not isinstance(exc, ApiException) or not exc.status:
        return None
    value = (exc.headers or {}).get("Retry-After")
    if value is None:
        value = (status_of(exc).get("details") or {}).get("retryAfterSeconds")
    return retry_after_seconds(value)


def connection_cause(exc: Failure) -> str:
    """Why no HTTP answer came, in a few words (never headers: they hold the token)."""
    if isinstance(exc, ApiException):  # status 0: the kubernetes client wraps TLS errors so
        return "TLS: " + _SSL_NOISE.sub("", str(exc.reason).removeprefix("SSLError\n"))
    cause = exc.__cause__
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve its host name ({getattr(cause, 'strerror', None) or exc})"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return (cause.strerror or str(cause)).lower() if isinstance(cause, OSError) else str(exc)
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError) and exc.args[1:]:
        return f"connection lost: {exc.args[1]}"
    return str(exc)


def is_connection_failure(exc: Failure) -> bool:
    return isinstance(exc, urllib3.exceptions.HTTPError) or not exc.status


def unreachable(exc: Failure, server: str, context: str, tries: int,
                seconds: float) -> KubernetesError:
    message = f"cannot reach the Kubernetes API server at {server}: {connection_cause(exc)}"
    if tries > 1:
        message += f" (gave up after {_tries(tries)} in {seconds:.1f} s)"
    return KubernetesError(message, hint=f"check that kubeconfig context {context!r} points at a "
                           f"running cluster: kubectl --context {context} cluster-info")


def from_answer(exc: ApiException, call: Call, server: str, context: str) -> KubernetesError:
    """The error for a permanent HTTP answer, by status."""
    status = status_of(exc)
    message = str(status.get("message", ""))
    fields = {"status": exc.status, "reason": str(status["reason"]), "causes": causes_of(status),
              "detail": message}
    if exc.status == 401:
        return KubernetesError(
            f"the Kubernetes API server at {server} did not accept the credentials of context "
            f"{context!r} ({call.verb} {call.what}): {message}", **fields,
            hint="refresh the credentials (on GKE: gcloud container clusters get-credentials "
                 "CLUSTER) or pick another context")
    if exc.status == 403:
        return _forbidden(call, message, fields)
    if exc.status == 409 and call.verb == "apply" and _conflicting_fields(status):
        return _conflict(call, status, fields)
    if exc.status == 422:
        lines = "".join(f"\n  {field}: {text}" for field, text in fields["causes"]) or message
        return KubernetesError(f"cannot {call.verb} {call.what}: the server finds it invalid:"
                               f"{lines}", **fields)
    if exc.status == 404 and not is_object_missing(exc):
        return KubernetesError(
            f"the Kubernetes API server at {server} does not serve {call.resource} "
            f"({call.verb} {call.what}): {message}", **fields,
            hint="is the API group enabled, or its CustomResourceDefinition installed?")
    return KubernetesError(f"cannot {call.verb} {call.what}: {message} (HTTP {exc.status} "
                           f"{status['reason']})", **fields)


def gave_up(exc: ApiException, call: Call, tries: int, seconds: float) -> KubernetesError:
    status = status_of(exc)
    return KubernetesError(
        f"cannot {call.verb} {call.what}: the server answered HTTP {exc.status} "
        f"{status['reason']}: {status.get('message', '')}; gave up after {_tries(tries)} in "
        f"{seconds:.1f} s", status=exc.status, reason=str(status["reason"]),
        causes=causes_of(status), hint="this is usually temporary: try again in a minute")


def _forbidden(call: Call, message: str, fields: dict[str, Any]) -> KubernetesError:
    rbac_verb = "patch" if call.verb == "apply" else call.verb
    where = f" -n {call.namespace}" if call.namespace else ""
    return KubernetesError(
        f"not allowed to {call.verb} {call.what}: {message}", **fields,
        hint=f"the context's user needs RBAC permission to {rbac_verb} {call.resource} "
             f"(kubectl auth can-i {rbac_verb} {call.resource}{where})")


def _conflicting_fields(status: dict[str, Any]) -> list[tuple[str, str]]:
    causes = (status.get("details") or {}).get("causes") or []
    return [(c.get("field", ""), c.get("message", "")) for c in causes
            if c.get("reason") == "FieldManagerConflict"]


def _conflict(call: Call, status: dict[str, Any], fields: dict[str, Any]) -> KubernetesError:
    conflicts = _conflicting_fields(status)
    found = _MANAGER.findall(" ".join(text for _, text in conflicts)) or \
        _MANAGER.findall(str(status.get("message", "")))
    managers = tuple(dict.fromkeys(found))
    owned = ", ".join(f"{field} ({_manager_in(text)})" for field, text in conflicts)
    return KubernetesError(
        f"cannot apply {call.what}: it sets fields another field manager owns: {owned}",
        **fields, managers=managers,
        hint="stop managing these fields with that tool, or apply with force to take them over")


def _manager_in(text: str) -> str:
    match = _MANAGER.search(text)
    return match.group(1) if match else "another manager"


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"
