"""Cloud Storage for the gcp provider's own objects (the state, buckets): `gs://` URLs taken apart
and client errors turned into ProviderError, with the wording of the store package's gs:// backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from substratus_artifacts.gcs import google_errors
from substratus_artifacts.layout import StoreError
from substratus_cli.errors import ProviderError, SubstratusError


def parse_url(url: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    if not url.startswith("gs://"):
        raise SubstratusError(f"state backend {url}: expected gs://BUCKET[/PREFIX]")
    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    if not bucket:
        raise SubstratusError(f"state backend {url}: the bucket name is missing")
    return bucket, prefix.strip("/")


@contextlib.contextmanager
def gcs_errors(what: str, location: str) -> Iterator[None]:
    """Client errors as ProviderError, worded as the store package's gs:// backend words them;
    412 and 404 pass through: callers give them meaning."""
    try:
        with google_errors(f"cannot {what} at {location}"):
            yield
    except StoreError as e:
        raise ProviderError(e.message, hint=e.hint) from None
