"""Cloud Storage for the gcp provider's own objects (the state, buckets): `gs://` URLs taken apart
and client errors turned into ProviderError, with the wording of the store package's gs:// backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from substratus_artifacts.gcs import CREDENTIALS_HINT
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
    """Turn client errors into ProviderError; 412 and 404 pass through: callers give them meaning."""
    try:
        yield
    except (gexc.PreconditionFailed, gexc.NotFound):
        raise
    except (auth_exc.DefaultCredentialsError, auth_exc.RefreshError) as e:
        raise ProviderError(f"cannot {what} at {location}: no usable Google credentials: {e}",
                            hint=CREDENTIALS_HINT) from None
    except (gexc.Unauthorized, gexc.Forbidden) as e:
        raise ProviderError(f"cannot {what} at {location}: access denied: {e.message}",
                            hint="the account needs roles/storage.objectAdmin on the bucket; "
                                 + CREDENTIALS_HINT) from None
    except gexc.GoogleAPICallError as e:
        raise ProviderError(f"cannot {what} at {location}: {e.message}") from None
    except (gexc.RetryError, auth_exc.TransportError, OSError) as e:
        raise ProviderError(f"cannot {what} at {location}: Cloud Storage is unreachable: {e}") from None
