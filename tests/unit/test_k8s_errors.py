"""Which Kubernetes API answers the client retries, and for how long the server asked it to wait.

The retry loop itself runs against the real API server in tests/integration/test_k8s_client.py
(a namespace kept terminating); a real apiserver answers 429 only under load that cannot be made
on demand, so the 429 rules are checked here on the answers themselves."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from substratus_providers.kubernetes import errors


class _Answer:
    def __init__(self, status: int, body: dict, headers: dict[str, str]) -> None:
        self.status, self.reason = status, body.get("reason", "")
        self.data = json.dumps(body).encode()
        self._headers = headers

    def getheaders(self) -> dict[str, str]:
        return self._headers


def answer(status: int, message: str = "", headers: dict[str, str] | None = None,
           details: dict | None = None) -> ApiException:
    body = {"kind": "Status", "code": status, "message": message, "details": details or {}}
    return ApiException(http_resp=_Answer(status, body, headers or {}))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_overload_and_server_errors_are_temporary(status: int):
    assert errors.is_temporary(answer(status))


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_permanent(status: int):
    assert not errors.is_temporary(answer(status))


def test_only_the_403s_that_pass_by_themselves_are_temporary():
    assert errors.is_temporary(answer(403, 'namespace "x" is being terminated'))
    assert not errors.is_temporary(answer(403, 'User "u" cannot patch resource "configmaps"'))


def tls_failure(reason: str) -> ApiException:
    """What the kubernetes client raises for a urllib3 SSLError: status 0, the error as reason."""
    return ApiException(status=0, reason=f"SSLError\n{reason}")


@pytest.mark.parametrize("reason", [
    "EOF occurred in violation of protocol (_ssl.c:2427)",
    "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol (_ssl.c:1006)",
    "[Errno 104] Connection reset by peer",
])
def test_a_tls_connection_cut_short_is_temporary(reason: str):
    assert errors.is_temporary(tls_failure(reason))


@pytest.mark.parametrize("reason", [
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
    "(_ssl.c:1006)",
    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
    "hostname '10.0.0.1' doesn't match 'kubernetes'",
])
def test_a_tls_mismatch_is_permanent(reason: str):
    assert not errors.is_temporary(tls_failure(reason))


def test_retry_after_comes_from_the_header_or_the_status_details():
    assert errors.retry_after(answer(429, headers={"Retry-After": "3"})) == 3.0
    assert errors.retry_after(answer(429, details={"retryAfterSeconds": 2})) == 2.0
    assert errors.retry_after(answer(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) is None
    assert errors.retry_after(answer(503)) is None
