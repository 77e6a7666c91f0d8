"""An OCI distribution API client (the registry side of image builds and of oci:// stores):
manifests and blobs by HEAD, GET and PUT, with basic or bearer-token auth from a Docker config.

Standard library only. A registry on a loopback address is spoken to over plain HTTP (a test or
a local registry); any other over HTTPS. Every request is counted (`requests`), so a plan can
say what it cost. Credentials are never logged or put in an error message.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import itertools
import json
import logging
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from substratus_artifacts.layout import StoreError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_REFERENCE = re.compile(
    r"(?P<repo>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')

# (user, password), or None for anonymous
Credentials = tuple[str, str] | None
# A request body: bytes, or what makes its chunks anew for each try (a file streamed, not loaded)
Body = bytes | Callable[[], Iterable[bytes]]
_CHUNK = 1 << 20


class Sink(Protocol):
    """Where a streamed response goes; a retried download seeks it back to 0 first."""

    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


TEMPORARY_STATUS = frozenset({429, 500, 502, 503, 504})
log = logging.getLogger(__name__)


class Retrying(Protocol):
    """A retry policy (the core's RetryPolicy is one): this package imports nothing of the CLI."""

    def delay(self, attempt: int, retry_after: float | None) -> float: ...

    def allows(self, attempt: int, waited: float, delay: float, *, read: bool = False) -> bool: ...


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form: the backoff stands


class RegistryError(StoreError):
    """A registry that cannot be reached, refuses us, or answers what the API does not allow."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """`host[:port]/repository[:tag][@sha256:...]`, as image references are written."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        host, slash, rest = text.partition("/")
        match = _REFERENCE.fullmatch(rest) if slash else None
        if match is None or not ("." in host or ":" in host or host == "localhost"):
            raise RegistryError(f"not an image reference with a registry host: {text!r}",
                                hint="write it as HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]")
        return cls(host, match["repo"], match["tag"], match["digest"])

    @property
    def reference(self) -> str:
        """What the API's /manifests/<reference> takes: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.host}/{self.repository}{tag}{digest}"


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # sha256:<hex>
    size: int


def is_google_registry(host: str) -> bool:
    """Artifact Registry (`*-docker.pkg.dev`) or Container Registry (`gcr.io`, `*.gcr.io`)."""
    name = host.rsplit(":", 1)[0].lower()
    return name.endswith("-docker.pkg.dev") or name == "gcr.io" or name.endswith(".gcr.io")


def docker_credentials(host: str, config: Path | None = None) -> Credentials:
    """The user and password a Docker config.json holds for `host`: from its credential helper
    (`credHelpers`, else `credsStore`; `gcloud auth configure-docker` sets one for Artifact
    Registry), else `auths` (base64 `auth`, or `username`/`password`). None when it holds none.
    $DOCKER_CONFIG names its folder."""
    if config is None:
        folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
        config = Path(folder) / "config.json"
    try:
        doc = json.loads(config.read_text())
        auths = doc.get("auths") or {}
        helper = (doc.get("credHelpers") or {}).get(host) or doc.get("credsStore")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as e:
        raise RegistryError(f"cannot read registry credentials from {config}: {e}") from None
    if helper:
        return _from_helper(str(helper), host)
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if not isinstance(entry, Mapping):
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            return user, password
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password", ""))
    return None


def _from_helper(helper: str, host: str) -> Credentials:
    """Docker's credential helper protocol: `docker-credential-HELPER get`, the host on stdin,
    {"Username", "Secret"} on stdout."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=host, capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"{program} is not on PATH: Docker's config names it for {host}",
                            hint="install it (gcloud's comes with the gcloud CLI), or log in "
                                 f"with `docker login {host}`") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{program} did not answer within 60 s for {host}") from None
    if done.returncode != 0:
        if "not found" in (done.stdout + done.stderr).lower():
            return None
        raise RegistryError(f"{program} failed for {host}: {done.stderr.strip()[:300]}")
    try:
        answer = json.loads(done.stdout)
        return str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{program} answered something other than credentials for "
                            f"{host}") from None


class RegistryClient:
    """One registry host. Thread-safe: tokens are shared, requests counted under a lock."""

    def __init__(self, host: str, *, credentials: Credentials = None,
                 token_source: Callable[[], str] | None = None, timeout: float = 30.0,
                 retry: Retrying | None = None, endpoint: str | None = None) -> None:
        """`token_source`: a bearer token for registries that take one directly (Artifact
        Registry with an OAuth token), used instead of `credentials`. `retry`: when to send a
        temporary failure again (None: never). `endpoint`: the URL `host` is reached at, when
        not its own (tests stand a loopback server in for a remote host)."""
        self.host = host
        scheme = "http" if host.rsplit(":", 1)[0] in LOOPBACK or host in LOOPBACK else "https"
        self.base = (endpoint or f"{scheme}://{host}").rstrip("/")
        self._netloc = urllib.parse.urlsplit(self.base).netloc
        self.credentials = credentials
        self.token_source = token_source
        self.timeout = timeout
        self.retry = retry
        self.requests = 0
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic_asked = False  # the registry asked for Basic auth once
        self._lock = threading.Lock()

    def ping(self, repository: str) -> None:
        """GET /v2/: RegistryError unless the host answers the distribution API and lets us in
        (credentials asked for `repository`'s pull scope)."""
        self._request("GET", "/v2/", repository)

    # -- manifests ----------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor, or None when the registry has no such tag or digest."""
        answer = self._request("HEAD", f"/v2/{repository}/manifests/{reference}", repository,
                               headers={"Accept": ", ".join(MANIFEST_TYPES)}, absent_ok=True)
        if answer is None:
            return None
        status, headers, _ = answer
        digest = headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry {self.host} answered HEAD of {repository}:{reference} "
                                "without a Docker-Content-Digest header")
        return Descriptor(headers.get("Content-Type", ""), digest,
                          int(headers.get("Content-Length") or 0))

    def get_manifest(self, repository: str, reference: str) -> tuple[Descriptor, bytes] | None:
        answer = self._request("GET", f"/v2/{repository}/manifests/{reference}", repository,
                               headers={"Accept": ", ".join(MANIFEST_TYPES)}, absent_ok=True)
        if answer is None:
            return None
        _, headers, body = answer
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"registry {self.host} answered {repository}@{reference} with "
                                f"a manifest whose digest is {digest}; refused")
        return Descriptor(headers.get("Content-Type", ""), digest, len(body)), body

    def put_manifest(self, repository: str, reference: str, media_type: str,
                     body: bytes) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self._request("PUT", f"/v2/{repository}/manifests/{reference}", repository, push=True,
                      headers={"Content-Type": media_type}, body=body)
        return Descriptor(media_type, digest, len(body))

    # -- blobs --------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository,
                             absent_ok=True) is not None

    def push_blob(self, repository: str, data: bytes,
                  media_type: str = "application/octet-stream") -> Descriptor:
        """A blob, uploaded in one PUT unless the registry has it already."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(repository, digest):
            self.upload_blob(repository, digest, len(data), data)
        return Descriptor(media_type, digest, len(data))

    def upload_blob(self, repository: str, digest: str, size: int, body: Body) -> None:
        """A monolithic upload (POST a session, PUT the bytes with their digest), whether or not
        the registry has the blob: callers HEAD first. The registry checks the bytes against
        `digest` and refuses others (HTTP 400, DIGEST_INVALID)."""
        answer = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository, push=True)
        assert answer is not None
        location = answer[1].get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload to {repository} "
                                "without a Location")
        self._request("PUT", _with_digest(location, digest), repository, push=True,
                      headers={"Content-Type": "application/octet-stream",
                               "Content-Length": str(size)}, body=body)

    def get_blob(self, repository: str, digest: str) -> bytes | None:
        """The blob's bytes (not checked: callers hash them), None when the registry lacks it."""
        answer = self._request("GET", f"/v2/{repository}/blobs/{digest}", repository,
                               absent_ok=True, storage_redirect=True)
        return None if answer is None else answer[2]

    def download_blob(self, repository: str, digest: str, sink: Sink) -> bool:
        """The blob streamed into sink in 1 MiB chunks (not checked: callers hash what arrives);
        False when the registry lacks it."""
        return self._request("GET", f"/v2/{repository}/blobs/{digest}", repository,
                             absent_ok=True, sink=sink, storage_redirect=True) is not None

    # -- the one place that talks HTTP --------------------------------------------------------

    def _request(self, method: str, path: str, repository: str, *, push: bool = False,
                 headers: Mapping[str, str] | None = None, body: Body | None = None,
                 absent_ok: bool = False, sink: Sink | None = None,
                 storage_redirect: bool = False) -> tuple[int, Mapping[str, str], bytes] | None:
        """Sends, once more with credentials if the registry asks for them, and again under the
        retry policy when the answer is temporary (5xx, 429, a reset or timed-out connection).
        A callable body is called for each try; with a sink, a 2xx answer's body is streamed
        into it (and the bytes returned are empty). `storage_redirect`: a blob GET may be sent
        to the registry's storage (a signed URL: Docker Hub, and registries whose storage is S3
        or Cloud Storage, do so), which is followed without our credentials; any other
        redirect is refused."""
        url = path if path.startswith(("http://", "https://")) else self.base + path
        if urllib.parse.urlsplit(url).netloc != self._netloc:
            # An upload Location elsewhere would carry our credentials to another host.
            raise RegistryError(f"registry {self.host} sent us to {url}; refused (another host)")
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        auth = self._authorization(scope, None)
        challenged = False
        started = time.monotonic()
        for attempt in itertools.count(1):
            data = body() if callable(body) else body
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={**(headers or {}), **auth})
            with self._lock:
                self.requests += 1
            try:
                with _OPENER.open(request, timeout=self.timeout) as answer:
                    if sink is None:
                        return answer.status, dict(answer.headers.items()), answer.read()
                    if attempt > 1:
                        _into(sink, None, path)  # a download that failed half way starts over
                    while chunk := answer.read(_CHUNK):
                        _into(sink, chunk, path)
                    return answer.status, dict(answer.headers.items()), b""
            except _Redirect as r:
                if not storage_redirect:
                    raise RegistryError(f"registry {self.host} answered {method} {path} with a "
                                        f"redirect to {r.url}; refused") from None
                return self._from_storage(r.url, path, sink)
            except urllib.error.HTTPError as e:
                if e.code == 401 and not challenged:
                    challenged = True
                    auth = self._authorization(scope, e.headers.get("WWW-Authenticate", ""))
                    continue
                if e.code == 404 and absent_ok:
                    return None
                failure: Exception = self._refused(method, path, e)
                temporary = e.code in TEMPORARY_STATUS
                retry_after = _seconds(e.headers.get("Retry-After"))
            except (OSError, http.client.HTTPException) as e:
                failure = RegistryError(f"cannot reach registry {self.host}: {e!r}"
                                        if isinstance(e, http.client.HTTPException) else
                                        f"cannot reach registry {self.host}: {e}",
                                        hint="check the Environment's registry and that it is up")
                # Refused: nothing listens there, and trying again will not change that.
                temporary = not isinstance(e, ConnectionRefusedError) and not isinstance(
                    getattr(e, "reason", None), ConnectionRefusedError)
                retry_after = None
            delay = self.retry.delay(attempt, retry_after) if self.retry else 0.0
            waited = time.monotonic() - started
            if not (temporary and self.retry and self.retry.allows(
                    attempt, waited, delay, read=method in ("GET", "HEAD"))):
                raise failure from None
            log.warning("%s %s on registry %s: %s; retrying in %.1f s (try %d)", method, path,
                        self.host, failure, delay, attempt + 1)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _from_storage(self, url: str, what: str,
                      sink: Sink | None) -> tuple[int, Mapping[str, str], bytes]:
        """GET a blob where the registry redirected us: no Authorization header (it is for the
        registry alone), and HTTPS unless the registry itself is spoken to over HTTP."""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme != "https" and not (scheme == "http" and self.base.startswith("http://")):
            raise RegistryError(f"registry {self.host} sent {what} to {url}; refused (not HTTPS)")
        with self._lock:
            self.requests += 1
        where = urllib.parse.urlsplit(url).netloc
        try:
            with _PLAIN_OPENER.open(urllib.request.Request(url), timeout=self.timeout) as answer:
                if sink is None:
                    return answer.status, dict(answer.headers.items()), answer.read()
                _into(sink, None, what)
                while chunk := answer.read(_CHUNK):
                    _into(sink, chunk, what)
                return answer.status, dict(answer.headers.items()), b""
        except urllib.error.HTTPError as e:
            raise RegistryError(f"{where}, where registry {self.host} sent GET {what}, answered "
                                f"HTTP {e.code}") from None
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"cannot reach {where}, where registry {self.host} sent GET "
                                f"{what}: {e}") from None

    def _authorization(self, scope: str, challenge: str | None) -> dict[str, str]:
        """The Authorization header: none until the registry asks (challenge None), then what
        its WWW-Authenticate challenge asks for, a bearer token fetched once per scope."""
        if self.token_source is not None:
            return {"Authorization": f"Bearer {self.token_source()}"}
        if self._basic_asked:  # sent up front once asked for: an upload is not sent twice
            return self._basic()
        with self._lock:
            token = self._tokens.get(scope)
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if challenge is None:
            return {}
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            self._basic_asked = True
            return self._basic()
        if kind.lower() != "bearer":
            raise RegistryError(f"registry {self.host} asks for {kind} auth, which substratus "
                                "does not speak (it speaks Basic and Bearer)")
        fields = dict(_CHALLENGE.findall(params))
        token = self._fetch_token(fields.get("realm", ""), fields.get("service"),
                                  fields.get("scope") or scope)
        with self._lock:
            self._tokens[scope] = token
        return {"Authorization": f"Bearer {token}"}

    def _basic(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        user, password = self.credentials
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def _fetch_token(self, realm: str, service: str | None, scope: str) -> str:
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {self.host} sent a bearer challenge without a realm")
        query = urllib.parse.urlencode({k: v for k, v in (("service", service), ("scope", scope))
                                        if v})
        request = urllib.request.Request(f"{realm}?{query}", headers=self._basic())
        with self._lock:
            self.requests += 1
        try:
            with _OPENER.open(request, timeout=self.timeout) as answer:
                doc: Any = json.loads(answer.read())
        except urllib.error.HTTPError as e:
            raise self._refused("GET", "a token", e) from None
        except (OSError, ValueError) as e:
            raise RegistryError(f"cannot get a token for registry {self.host} from {realm}: "
                                f"{e}") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not token:
            raise RegistryError(f"the token service of registry {self.host} answered no token")
        return str(token)

    def _refused(self, method: str, what: str, e: urllib.error.HTTPError) -> RegistryError:
        if e.code in (401, 403):
            anonymous = self.credentials is None and self.token_source is None
            why = "no credentials were given" if anonymous else "the credentials were refused"
            login = (f"`gcloud auth application-default login` (substratus sends its token to "
                     f"{self.host}) or `gcloud auth configure-docker {self.host}`"
                     if is_google_registry(self.host) else
                     f"`docker login {self.host}` (it writes ~/.docker/config.json)")
            return RegistryError(
                f"registry {self.host} refused {method} {what}: HTTP {e.code} ({why})",
                hint=f"log in with {login}, or give the account access to the repository")
        detail = e.read()[:300].decode(errors="replace").strip()
        return RegistryError(f"registry {self.host} answered {method} {what} with HTTP "
                             f"{e.code}{': ' + detail if detail else ''}")


def _into(sink: Sink, chunk: bytes | None, what: str) -> None:
    """A chunk written into sink (None: back to its start). The sink's own failure (a full
    disk) is a StoreError, not taken for the registry's and retried."""
    try:
        if chunk is None:
            sink.seek(0)
        else:
            sink.write(chunk)
    except OSError as e:
        raise StoreError(f"cannot write what GET {what} answered: {e.strerror or e}") from None


def _with_digest(location: str, digest: str) -> str:
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}digest={urllib.parse.quote(digest)}"


class _Redirect(Exception):  # noqa: N818 - a signal, not an error
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the Authorization header to wherever it points: it is not
    followed, but handed to _request, which decides (see storage_redirect)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        fp.close()
        raise _Redirect(newurl)


_OPENER = urllib.request.build_opener(_NoRedirects)
# For what a registry sends us to: no credentials go there, so its redirects may be followed.
_PLAIN_OPENER = urllib.request.build_opener()
