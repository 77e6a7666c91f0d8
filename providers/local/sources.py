"""Dataset sources for the local runtime: a path, a URL or a Hugging Face dataset, into a snapshot.

A `path` source has a digest at plan time (its files are hashed, with the stat cache); a URL or a
Hub dataset is known only after it is fetched, once, at apply.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from substratus_artifacts.files import hash_tree
from substratus_artifacts.manifest import normalize_sha256
from substratus_artifacts.snapshots import SnapshotResult, snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.action import UNKNOWN
from substratus_cli.exitcodes import ProviderError, UsageError

if TYPE_CHECKING:
    from substratus_cli.action import _Unknown

CHUNK_SIZE = 1 << 20
HTTP_TIMEOUT_S = 60.0
USER_AGENT = "substratus"
SENSITIVE = "(sensitive value)"
_SOURCE_KINDS = ("path", "url", "huggingface")


def source_kind(source: Mapping[str, Any], what: str = "dataset") -> str:
    """Which of path / url / huggingface the source is; exactly one must be set."""
    present = [kind for kind in _SOURCE_KINDS if source.get(kind) is not None]
    if len(present) != 1:
        raise UsageError(
            f"a {what} source needs exactly one of `path`, `url` or `huggingface`"
            + (f" (found {', '.join(present)})" if present else "")
        )
    return present[0]


def plan_digest(source: Mapping[str, Any], workdir: Path, cache: StatCache,
                what: str = "dataset") -> str | _Unknown:
    """The snapshot digest a plan shows: hashed now for `path`, UNKNOWN for fetched sources."""
    if source_kind(source, what) != "path":
        return UNKNOWN
    manifest, _ = hash_tree(_local_path(source, workdir, what), cache)
    return manifest.digest


def fetch_snapshot(
    source: Mapping[str, Any],
    workdir: Path,
    store: Store,
    cache: StatCache,
    resolve: Callable[[str], str],
    hf_token: str | None = None,
    *,
    scratch_dir: Path | None = None,
    what: str = "dataset",
) -> SnapshotResult:
    """Snapshot the source into the store. `resolve` substitutes secret references in header
    values; `scratch_dir` holds a Hub download while it is snapshotted (default: system temp)."""
    kind = source_kind(source, what)
    if kind == "path":
        return snapshot_tree(_local_path(source, workdir, what), store, cache)
    if kind == "url":
        return _fetch_url(source, store, resolve)
    return _fetch_huggingface(source["huggingface"], store, hf_token, scratch_dir, what)


def _local_path(source: Mapping[str, Any], workdir: Path, what: str = "dataset") -> Path:
    path = Path(workdir) / str(source["path"])
    if not path.exists():
        raise ProviderError(f"{what} source path {source['path']!r} does not exist ({path})")
    return path


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


def _fetch_url(
    source: Mapping[str, Any], store: Store, resolve: Callable[[str], str]
) -> SnapshotResult:
    url = str(source["url"])
    shown = safe_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"dataset source url {shown} must be http:// or https://")
    expected = _expected_sha256(source.get("sha256"))
    parts = urlsplit(url)
    url, auth = _split_userinfo(url)
    headers = {str(k): resolve(str(v)) for k, v in (source.get("headers") or {}).items()}
    if not any(name.lower() == "authorization" for name in headers):
        headers.update(auth)
    for name, value in headers.items():
        if any(char in value for char in "\r\n\x00"):
            raise ProviderError(f"header {name!r} for {shown} has a line break in its value")
    secrets = [v for v in (*headers.values(), parts.password, parts.query) if v]
    try:
        scratch = tempfile.TemporaryDirectory(prefix="url-")
        saved = _save(_download(url, headers), Path(scratch.name) / url_file_name(url), expected)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ProviderError(
            _scrub(f"GET {shown} failed: HTTP {exc.code} {exc.reason}", secrets)
        ) from None
    except urllib.error.URLError as exc:
        raise ProviderError(
            _scrub(f"cannot fetch {shown}: {_reason(exc.reason)}", secrets)
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, truncated body
        raise ProviderError(_scrub(f"cannot fetch {shown}: {_reason(exc)}", secrets)) from None
    except ProviderError as exc:  # checksum mismatch: say which URL
        raise ProviderError(_scrub(f"{shown}: {exc.message}", secrets)) from None
    with scratch:
        return snapshot_tree(saved, store, None)


def _save(chunks: Iterator[bytes], target: Path, expected: str | None) -> Path:
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as handle:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    if expected is not None and digest.hexdigest() != expected:
        raise ProviderError(f"checksum mismatch: expected sha256:{expected}, got "
                            f"sha256:{digest.hexdigest()} ({size} bytes); nothing was stored")
    return target


def _expected_sha256(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return normalize_sha256(str(value))
    except ValueError as exc:
        raise UsageError(f"dataset source sha256: {exc}") from None


def _download(url: str, headers: Mapping[str, str]) -> Iterator[bytes]:
    """The response body in 1 MiB chunks; the request is sent when iteration starts."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    opener = urllib.request.build_opener(_DropHeadersOnCrossOriginRedirect(set(headers)))
    with opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
        received = 0
        while chunk := response.read(CHUNK_SIZE):
            received += len(chunk)
            yield chunk
        missing = getattr(response, "length", None)
        if missing:  # http.client ends a short body quietly instead of raising IncompleteRead
            raise ConnectionError(
                f"the connection closed after {received} of {received + missing} bytes"
            )


def _split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """`https://user:pw@host/x` -> (`https://host/x`, Basic auth header), as curl does."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}


class _DropHeadersOnCrossOriginRedirect(urllib.request.HTTPRedirectHandler):
    """urllib forwards every header on a redirect; a token meant for one host must not reach
    another (object stores and CDNs answer downloads with redirects)."""

    def __init__(self, user_headers: set[str]) -> None:
        self._user_headers = {name.lower() for name in user_headers}

    def redirect_request(  # type: ignore[override]
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in list(new.headers):
                if name.lower() in self._user_headers:
                    del new.headers[name]
        return new


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
    """Belt and braces: no message about a request may carry a header value it was sent with."""
    for secret in secrets:
        for form in (secret, repr(secret)[1:-1]):
            message = message.replace(form, SENSITIVE)
    return message


# -- huggingface -----------------------------------------------------------------------------


def _fetch_huggingface(
    spec: Mapping[str, Any],
    store: Store,
    token: str | None,
    scratch_dir: Path | None,
    what: str = "dataset",
) -> SnapshotResult:
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
        raise ProviderError(
            f"Hugging Face {what} sources need the huggingface_hub package: "
            "pip install 'substratus[huggingface]'"
        ) from None
    name = str(spec["name"])
    revision = spec.get("revision")
    if scratch_dir is not None:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"hf-{what}-", dir=scratch_dir) as tmp:
        local_dir = Path(tmp) / "snapshot"
        try:
            huggingface_hub.snapshot_download(
                repo_id=name,
                revision=revision,
                repo_type=what,
                local_dir=local_dir,
                token=token,
                # Read now: huggingface_hub reads HF_ENDPOINT once, when it is imported.
                endpoint=os.environ.get("HF_ENDPOINT") or None,
            )
        except GatedRepoError:
            raise ProviderError(
                f"{what} {name} on the Hugging Face Hub is gated: accept its terms on the Hub "
                "and give a token (HF_TOKEN)"
            ) from None
        except RepositoryNotFoundError:
            raise ProviderError(
                f"{what} {name} was not found on the Hugging Face Hub "
                "(if it is private, give a token: HF_TOKEN)"
            ) from None
        except RevisionNotFoundError:
            raise ProviderError(
                f"revision {revision!r} of {what} {name} was not found on the Hugging Face Hub"
            ) from None
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError) as exc:
            raise _unreachable(name, exc, what) from None
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            raise ProviderError(
                f"the Hugging Face Hub refused {what} {name}"
                + (f": HTTP {status}" if status else f": {_short_cause(exc)}")
            ) from None
        except OSError as exc:  # the HTTP client's own connection and timeout errors
            raise _unreachable(name, exc, what) from None
        # Download bookkeeping, not data.
        shutil.rmtree(local_dir / ".cache" / "huggingface", ignore_errors=True)
        with contextlib.suppress(OSError):
            (local_dir / ".cache").rmdir()
        # No stat cache: these paths are temporary and would only grow it.
        return snapshot_tree(local_dir, store, None)


def _unreachable(name: str, exc: BaseException, what: str) -> ProviderError:
    return ProviderError(
        f"cannot reach the Hugging Face Hub to fetch {what} {name}: {_short_cause(exc)}; "
        "this source needs network access (set HF_ENDPOINT for a mirror)"
    )


def _short_cause(exc: BaseException) -> str:
    """The innermost cause's first line, e.g. "[Errno 111] Connection refused"."""
    seen: set[int] = set()
    inner: BaseException = exc
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return "offline mode is on (HF_HUB_OFFLINE)"
    text = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
    return text[:200]
