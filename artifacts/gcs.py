"""The gs:// backend: objects under `gs://bucket/prefix`. google-cloud-storage is imported here
only, when a gs:// store is opened; it honours STORAGE_EMULATOR_HOST. Content-addressed objects
are created only if absent (ifGenerationMatch=0) and sent with the md5 of the bytes hashed."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from substratus_artifacts.backend import DigestMismatch, Sink
from substratus_artifacts.files import CHUNK_SIZE
from substratus_artifacts.layout import StoreError
from substratus_artifacts.progress import Meter

GCS_PARALLELISM = 16
CREDENTIALS_HINT = "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"
_T = TypeVar("_T")
log = logging.getLogger(__name__)


class GCSBackend:
    """A bucket and prefix. The client is made on first use (opening the store needs no
    credentials), with a connection pool as large as the transfers run in parallel."""

    parallelism = GCS_PARALLELISM

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        # Whether it is installed, without importing it: a plan that stores nothing never
        # pays for google-cloud-storage's imports.
        missing = _missing("google.api_core", "google.cloud.storage")
        if missing:
            raise StoreError(f"gs://{bucket}: gs:// artifact stores need google-cloud-storage "
                             f"({missing} is missing)",
                             hint="pip install google-cloud-storage")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")
        self._client = client
        self._client_lock = threading.Lock()
        self._bucket_seen = False

    @property
    def _api(self) -> Any:
        """google.api_core.exceptions, imported when an answer is looked at."""
        from google.api_core import exceptions

        return exceptions

    def local_path(self, key: str) -> None:
        return None

    def read(self, key: str) -> bytes | None:
        try:
            with self._errors(f"read {key} from"):
                return bytes(self._blob(key).download_as_bytes())
        except self._api.NotFound:
            self.check_root()
            return None

    def exists(self, key: str) -> bool:
        from google.cloud.storage.retry import DEFAULT_RETRY

        with self._errors(f"look up {key} in"):
            there = bool(self._blob(key).exists(retry=DEFAULT_RETRY))
        if not there:
            self.check_root()  # a missing bucket must not read as "nothing stored yet"
        return there

    def download(self, key: str, sink: Sink) -> bool:
        try:
            with self._errors(f"read {key} from"):
                # The caller checks the sha256 of what arrives, so no second checksum here.
                self._blob(key).download_to_file(sink, raw_download=True, checksum=None)
        except self._api.NotFound:
            self.check_root()
            return False
        return True

    def create(self, key: str, source: Path | bytes, sha256: str, *,
               meter: Meter | None = None) -> int:
        """Hash the bytes, then upload those bytes from the same open file; the md5 sent along
        makes Cloud Storage refuse bytes other than those hashed (a file changed meanwhile)."""
        handle: IO[bytes]
        if isinstance(source, bytes):
            import io

            handle, what = io.BytesIO(source), key
        else:
            try:
                handle, what = open(source, "rb"), str(source)  # noqa: SIM115 - closed below
            except OSError as exc:
                raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from None
        with handle:
            sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
            try:
                while chunk := handle.read(CHUNK_SIZE):
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                handle.seek(0)
            except OSError as exc:
                raise StoreError(f"cannot read {what}: {exc.strerror or exc}") from None
            if sha.hexdigest() != sha256:
                raise DigestMismatch(key, sha.hexdigest())
            return self.upload(handle, what, key, size, base64.b64encode(md5.digest()).decode(),
                               meter)

    def upload(self, handle: IO[bytes], what: str, key: str, size: int, md5: str,
               meter: Meter | None = None) -> int:
        """Create the object from handle unless it exists; bytes written (0 if it existed), each
        counted on `meter` as the client reads it to send. A server that does not check the md5
        (an emulator) is caught by comparing the md5 it answers, and its object removed."""
        if meter is not None:
            handle = _Counted(handle, meter)  # type: ignore[assignment]
        blob = self._blob(key)
        blob.md5_hash = md5
        try:
            with self._errors(f"write {key} to"):
                blob.upload_from_file(handle, size=size, content_type="application/octet-stream",
                                      if_generation_match=0)
        except self._api.PreconditionFailed:
            return 0  # another writer stored the same content first
        except self._api.NotFound:
            self.check_root()
            raise StoreError(f"cannot write {key} to {self.url}: Cloud Storage answered 404") \
                from None
        if blob.md5_hash is not None and blob.md5_hash != md5:
            with contextlib.suppress(self._api.NotFound, self._api.PreconditionFailed), \
                    self._errors(f"remove the bad object {key} from"):
                blob.delete(if_generation_match=blob.generation)
            raise StoreError(f"{what} changed while it was being uploaded (Cloud Storage stored "
                             f"md5 {blob.md5_hash}, hashed {md5}); nothing was kept; run again")
        return size

    def replace(self, key: str, data: bytes) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        try:
            # Retried although unconditional: writing the same digest twice changes nothing,
            # and a ref is last-writer-wins by contract.
            with self._errors(f"write {key} to"):
                self._blob(key).upload_from_string(data, content_type="text/plain",
                                                   retry=DEFAULT_RETRY)
        except self._api.NotFound:
            self.check_root()
            raise StoreError(f"cannot write {key} to {self.url}: Cloud Storage answered 404") \
                from None

    def check_root(self) -> None:
        if self._bucket_seen:
            return
        # Listing needs only object permissions (roles/storage.objectAdmin has them), unlike
        # a bucket GET.
        try:
            with self._errors("read the artifact bucket of"):
                list(self._bucket().client.list_blobs(self.bucket_name, max_results=1))
        except self._api.NotFound:
            raise StoreError(
                f"the artifact bucket gs://{self.bucket_name} does not exist (artifact store "
                f"{self.url})",
                hint=f"create it: gcloud storage buckets create gs://{self.bucket_name}") from None
        self._bucket_seen = True

    # -- plumbing --------------------------------------------------------------------------

    def _bucket(self) -> Any:
        with self._client_lock:  # transfers on the thread pool may be the first to ask
            if self._client is None:
                with self._errors("connect to Cloud Storage for"):
                    self._client = _pooled(self.parallelism)
            return self._client.bucket(self.bucket_name)

    def _blob(self, key: str) -> Any:
        return self._bucket().blob(f"{self.prefix}/{key}" if self.prefix else key)

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return google_errors(f"cannot {what} {self.url}")


class _Counted:
    """A file being uploaded, each read counted on a meter (the client reads it in chunks)."""

    def __init__(self, handle: IO[bytes], meter: Meter) -> None:
        self._handle = handle
        self._meter = meter

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._meter.advance(len(data))
        return data

    def __getattr__(self, name: str) -> Any:  # tell, seek, name, closed: the file's own
        return getattr(self._handle, name)


def _missing(*modules: str) -> str | None:
    """The first of `modules` that cannot be imported, found without importing it."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ImportError:  # a parent package is missing
            return name
    return None


def _pooled(size: int) -> Any:
    """A client whose session has as many connections as transfers run at once (requests keeps
    10 a host and logs a warning for each one it has to drop)."""
    import requests
    from google.cloud import storage

    # project=None: objects need no project, so none is looked up (or required).
    client = storage.Client(project=None)
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    client._http.hooks["response"].append(logged(log, "gcs"))
    return client


def logged(logger: logging.Logger, api: str) -> Any:
    """A requests response hook logging one debug line per request: method, path (no query: a
    signed URL's carries credentials), status and time; extra={"api": api} is what the CLI
    counts (substratus_cli/verbosity.py)."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        logger.debug("%s %s %s %.0f ms", response.request.method,
                     urllib.parse.urlsplit(response.request.url).path, response.status_code,
                     response.elapsed.total_seconds() * 1000, extra={"api": api})

    return hook


@contextlib.contextmanager
def google_errors(where: str) -> Iterator[None]:
    """Cloud Storage client errors as one StoreError line beginning with `where`; 404 and 412 pass
    through: callers give them meaning (absent, or written by someone else first)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage.exceptions import DataCorruption

    try:
        yield
    except (api.NotFound, api.PreconditionFailed):
        raise
    except (auth.DefaultCredentialsError, auth.RefreshError) as exc:
        raise StoreError(f"{where}: no usable Google credentials: {exc}",
                         hint=CREDENTIALS_HINT) from None
    except (api.Unauthorized, api.Forbidden) as exc:
        raise StoreError(f"{where}: access denied: {exc.message}",
                         hint="the account needs roles/storage.objectAdmin on the bucket; "
                              + CREDENTIALS_HINT) from None
    except api.GoogleAPICallError as exc:
        raise StoreError(f"{where}: {_line(exc.message)}") from None
    except DataCorruption as exc:
        raise StoreError(f"{where}: the data was corrupted in transit ({exc}); run again") \
            from None
    except (api.RetryError, auth.TransportError, OSError) as exc:
        raise StoreError(f"{where}: Cloud Storage is unreachable: {_line(str(exc))}") from None


def _line(text: str) -> str:
    """The first line of a client error, which is its gist (the rest repeats the response)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]
