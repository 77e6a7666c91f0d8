"""The loader workload: a Dataset's or Model's `source` (a URL or a Hugging Face repo) fetched into
the artifacts folder, on every runtime (the local runtime snapshots the folder afterwards, on
Kubernetes the pod entrypoint pushes it). It needs no torch: the core install runs it.

Environment: SUBSTRATUS_SOURCE (the resource's `source` as JSON), SUBSTRATUS_KIND (`Dataset` or
`Model`: a Model's archive is unpacked, and it is the Hub repo type), SUBSTRATUS_SECRET_<NAME>_<KEY>
for each secret the source references, HF_TOKEN and HF_ENDPOINT for the Hub,
SUBSTRATUS_DOWNLOAD_TIMEOUT (seconds a url download may take in all; 12 hours by default).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from substratus_artifacts.manifest import ManifestError, normalize_sha256
from substratus_workloads import archives, contract, http_guard, logfmt
from substratus_workloads.secret_refs import MissingSecret, Resolver

FETCH_EXIT = 1  # the source could not be fetched; a bad source is contract.USAGE_EXIT (2)
CHUNK_SIZE = 1 << 20
HTTP_TIMEOUT_S = 60.0  # per connect and read: a server that stops answering
# The whole download, however slowly the bytes come (a server dripping a byte a second would
# pass a per-read timeout forever); generous, since one file may be a large model.
DEADLINE_VAR = "SUBSTRATUS_DOWNLOAD_TIMEOUT"
DEFAULT_DEADLINE_S = 12 * 3600.0
USER_AGENT = "substratus"
SENSITIVE = "(sensitive value)"
KINDS = ("Dataset", "Model")


class FetchError(Exception):
    """The source is well formed but could not be fetched (network, HTTP status, checksum)."""


def main() -> None:
    started = time.monotonic()
    kind = os.environ.get("SUBSTRATUS_KIND", "")
    if kind not in KINDS:
        contract.fail(f"SUBSTRATUS_KIND must be Dataset or Model (the kind whose source this "
                      f"is), got {kind!r}")
    resolver = Resolver()
    source = _read_source(resolver)
    out = contract.artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if source.get("url") is not None:
            fetch_url(source, kind, out, resolver.values)
        else:
            fetch_huggingface(source["huggingface"], kind, out)
    except FetchError as e:
        _exit(FETCH_EXIT, str(e))
    except archives.ArchiveError as e:
        contract.fail(str(e))
    files = [p for p in out.rglob("*") if p.is_file()]
    logfmt.log("loaded", kind=kind, files=len(files), bytes=sum(p.stat().st_size for p in files),
               seconds=round(time.monotonic() - started, 2))


def _exit(code: int, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _read_source(resolver: Resolver) -> dict[str, Any]:
    """SUBSTRATUS_SOURCE, checked and with its secret references substituted; exit 2 if bad."""
    raw = os.environ.get("SUBSTRATUS_SOURCE")
    if not raw:
        contract.fail("SUBSTRATUS_SOURCE is not set (the resource's source, as JSON)")
    try:
        source = json.loads(raw)
    except ValueError as e:
        contract.fail(f"SUBSTRATUS_SOURCE is not JSON: {e}")
    if not isinstance(source, dict):
        contract.fail("SUBSTRATUS_SOURCE must be a JSON object (the resource's source)")
    given = [k for k in ("url", "huggingface", "path", "scratch") if source.get(k) is not None]
    if "path" in given:
        contract.fail("a `path` source is a folder on the machine that runs substratus, which "
                      "the loader cannot read: the CLI snapshots it itself")
    if "scratch" in given:
        contract.fail("a `scratch` source is built by the scratch workload, not the loader")
    if len(given) != 1:
        contract.fail("the source needs exactly one of `url` or `huggingface`"
                      + (f" (found {', '.join(given)})" if given else ""))
    try:
        source = resolver.deep(source)
    except MissingSecret as e:
        contract.fail(str(e))
    _check_shape(source)
    return source


def _check_shape(source: Mapping[str, Any]) -> None:
    if source.get("url") is not None:
        if not isinstance(source["url"], str):
            contract.fail("source.url must be a string")
        headers = source.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            contract.fail("source.headers must map header names to strings")
        if urlsplit(source["url"]).scheme not in ("http", "https"):
            contract.fail(f"source url {safe_url(source['url'])} must be http:// or https://")
        return
    spec = source["huggingface"]
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        contract.fail("source.huggingface needs a `name` (the repo id, e.g. gpt2)")
    if spec.get("revision") is not None and not isinstance(spec["revision"], str):
        contract.fail("source.huggingface.revision must be a string")


# -- url -------------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """The URL without userinfo, query string or fragment: fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    with contextlib.suppress(ValueError):
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def url_file_name(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return "data" if name in ("", ".", "..") else name


def fetch_url(source: Mapping[str, Any], kind: str, out: Path, secrets: list[str]) -> None:
    """Save the URL's body under its file name in out; a Model's archive is unpacked into out
    instead (the contents of its single top folder, when it has one)."""
    url = str(source["url"])
    shown = safe_url(url)
    expected = _expected_sha256(source.get("sha256"))
    parts = urlsplit(url)
    url, auth = _split_userinfo(url)
    headers = {str(k): str(v) for k, v in (source.get("headers") or {}).items()}
    if not any(name.lower() == "authorization" for name in headers):
        headers.update(auth)
    for name, value in headers.items():
        if any(char in value for char in "\r\n\x00"):
            contract.fail(f"header {name!r} for {shown} has a line break in its value")
    hidden = [v for v in (*headers.values(), parts.password, parts.query, *secrets) if v]
    name = url_file_name(url)
    deadline = _deadline()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".loader-") as tmp, \
            http_guard.Download(deadline) as download:
        downloaded = Path(tmp) / name
        try:
            _download(url, headers, downloaded, expected, download)
        except Exception as e:
            explained = _explain(e, shown, download)
            if explained is None:
                raise
            raise FetchError(_scrub(explained, hidden)) from None
        if kind == "Model" and archives.is_archive(name):
            _unpack_model(downloaded, Path(tmp) / "unpacked", out)
        else:
            os.replace(downloaded, out / name)


def _explain(e: Exception, shown: str, download: http_guard.Download) -> str | None:
    """One line about why the URL could not be fetched; None for a bug."""
    if isinstance(e, http_guard.Refused):
        return f"cannot fetch {shown}: {e}"
    if download.expired.is_set():  # whatever the cut sockets raised
        return (f"cannot fetch {shown}: the download did not finish within "
                f"{download.deadline_s:g} s ({DEADLINE_VAR} sets the limit)")
    if isinstance(e, urllib.error.HTTPError):
        e.close()
        return f"GET {shown} failed: HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot fetch {shown}: {_reason(e.reason)}"
    if isinstance(e, OSError | ValueError | http.client.HTTPException):  # reset, truncated body
        return f"cannot fetch {shown}: {_reason(e)}"
    if isinstance(e, FetchError):  # checksum mismatch: say which URL
        return f"{shown}: {e}"
    return None


def _deadline() -> float:
    raw = os.environ.get(DEADLINE_VAR, "")
    if not raw:
        return DEFAULT_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        contract.fail(f"{DEADLINE_VAR} must be a number of seconds above 0, got {raw!r}")
    return value


def _expected_sha256(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return normalize_sha256(str(value))
    except ManifestError as e:
        contract.fail(f"source sha256: {e}")


def _download(url: str, headers: Mapping[str, str], target: Path, expected: str | None,
              download: http_guard.Download) -> None:
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as handle:
        for chunk in _chunks(url, headers, download):
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        raise FetchError(f"checksum mismatch: expected sha256:{expected}, got sha256:{actual} "
                         f"({size} bytes); nothing was stored")


def _chunks(url: str, headers: Mapping[str, str],
            download: http_guard.Download) -> Iterator[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    opener = urllib.request.build_opener(
        _Redirects(set(headers), download), _GuardedHTTP(download), _GuardedHTTPS(download))
    with opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
        received = 0
        while chunk := response.read(CHUNK_SIZE):
            if download.expired.is_set():  # what a cut socket returned is not the body
                raise TimeoutError("the download deadline passed")
            received += len(chunk)
            yield chunk
        if download.expired.is_set():
            raise TimeoutError("the download deadline passed")
        missing = getattr(response, "length", None)
        if missing:  # http.client ends a short body quietly instead of raising IncompleteRead
            raise ConnectionError(
                f"the connection closed after {received} of {received + missing} bytes")


def _split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """`https://user:pw@host/x` -> (`https://host/x`, Basic auth header), as curl does."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    netloc = parts.netloc.rsplit("@", 1)[1]
    token = base64.b64encode(
        f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()).decode()
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Where a redirect may lead (http_guard's rules, checked before anything connects there);
    and urllib forwards every header on a redirect, but a token meant for one host must not
    reach another (object stores and CDNs answer downloads with redirects)."""

    def __init__(self, user_headers: set[str], download: http_guard.Download) -> None:
        self._user_headers = {name.lower() for name in user_headers}
        self._download = download

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        try:
            self._download.check_redirect(req.full_url, newurl)
        except http_guard.Refused as e:
            fp.close()
            raise http_guard.Refused(f"{e}; Location: {safe_url(newurl)}") from None
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in list(new.headers):
                if name.lower() in self._user_headers:
                    del new.headers[name]
        return new


class _GuardedHTTP(urllib.request.HTTPHandler):
    """Connections through the download's rules and deadline (http_guard.Download)."""

    def __init__(self, download: http_guard.Download) -> None:
        super().__init__()
        self._download = download

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(http.client.HTTPConnection, self._download), req)


class _GuardedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, download: http_guard.Download) -> None:
        super().__init__()
        self._download = download

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(http.client.HTTPSConnection, self._download), req)


def _connection(cls: type[http.client.HTTPConnection], download: http_guard.Download) -> Any:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection = cls(host, **kwargs)
        # http.client opens its socket through this attribute (HTTPS wraps what it returns).
        connection._create_connection = download.create_connection  # type: ignore[attr-defined]
        return connection
    return make


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {HTTP_TIMEOUT_S:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _scrub(message: str, secrets: list[str]) -> str:
    """Belt and braces: no message about a request may carry a value it was sent with."""
    for secret in secrets:
        for form in (secret, repr(secret)[1:-1]):
            message = message.replace(form, SENSITIVE)
    return message


def _unpack_model(archive: Path, scratch: Path, out: Path) -> None:
    archives.unpack(archive, scratch)
    inside = list(scratch.iterdir())
    if not inside:
        raise archives.ArchiveError(f"the model archive {archive.name} is empty")
    root = inside[0] if len(inside) == 1 and inside[0].is_dir() else scratch
    for item in root.iterdir():
        os.replace(item, out / item.name)


# -- huggingface -----------------------------------------------------------------------------


def fetch_huggingface(spec: Mapping[str, Any], kind: str, out: Path) -> None:
    what = kind.lower()
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise FetchError(f"Hugging Face {what} sources need the huggingface_hub package, which "
                         "this image lacks (pip install huggingface_hub)") from None
    name, revision = str(spec["name"]), spec.get("revision")
    try:
        huggingface_hub.snapshot_download(
            repo_id=name, revision=revision, repo_type=what, local_dir=out,
            token=os.environ.get("HF_TOKEN") or None,
            # Read now: huggingface_hub reads HF_ENDPOINT once, when it is imported.
            endpoint=os.environ.get("HF_ENDPOINT") or None)
    except GatedRepoError:
        raise FetchError(f"{what} {name} on the Hugging Face Hub is gated: accept its terms on "
                         "the Hub and give a token (HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise FetchError(f"{what} {name} was not found on the Hugging Face Hub (if it is "
                         "private, give a token: HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise FetchError(f"revision {revision!r} of {what} {name} was not found on the Hugging "
                         "Face Hub") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError) as e:
        raise _unreachable(name, e, what) from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise FetchError(f"the Hugging Face Hub refused {what} {name}"
                         + (f": HTTP {status}" if status else f": {_short_cause(e)}")) from None
    except Exception as e:  # noqa: BLE001 - the HTTP client's own errors: one line, no traceback
        raise _unreachable(name, e, what) from None
    # Download bookkeeping, not data.
    shutil.rmtree(out / ".cache" / "huggingface", ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / ".cache").rmdir()


def _unreachable(name: str, exc: BaseException, what: str) -> FetchError:
    return FetchError(f"cannot reach the Hugging Face Hub to fetch {what} {name}: "
                      f"{_short_cause(exc)}; this source needs network access (set HF_ENDPOINT "
                      "for a mirror)")


def _short_cause(exc: BaseException) -> str:
    """The innermost cause's first line, e.g. "[Errno 111] Connection refused"."""
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return "offline mode is on (HF_HUB_OFFLINE)"
    seen: set[int] = set()
    inner: BaseException = exc
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    return ((str(inner).strip().splitlines() or [type(inner).__name__])[0])[:200]


if __name__ == "__main__":
    main()
