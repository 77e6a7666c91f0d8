"""Registry credentials for Google's registries (Artifact Registry `*-docker.pkg.dev`, Container
Registry `gcr.io` and `*.gcr.io`) from Application Default Credentials, when Docker's config
holds none: the user `oauth2accesstoken` and an access token as the password, as Google
documents for Basic auth. google-auth is imported only when such a host is used. The token is
never logged or written anywhere."""

from __future__ import annotations

from substratus_artifacts.registry import (
    Credentials,
    RegistryError,
    docker_credentials,
    is_google_registry,
)
from substratus_cli.extras import install_command

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_USER = "oauth2accesstoken"


def registry_credentials(host: str) -> Credentials:
    """Docker's config.json first (a `docker login`, a credential helper); for a Google
    registry without one there, an Application Default Credentials token; else None."""
    return credentials_and_source(host)[0]


def credentials_and_source(host: str) -> tuple[Credentials, bool]:
    """The credentials, and whether they are an ADC token (which buildah cannot find itself)."""
    found = docker_credentials(host)
    if found is not None or not is_google_registry(host):
        return found, False
    token = adc_credentials(host)
    return token, token is not None


def adc_credentials(host: str) -> Credentials:
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
    except ImportError as e:
        raise RegistryError(f"a token for {host} from Application Default Credentials needs "
                            f"google-auth ({e.name} is missing)",
                            hint=f"{install_command('gcp')}; or `gcloud auth "
                                 f"configure-docker {host}`") from None
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.DefaultCredentialsError:
        return None  # anonymous: the registry's 401 says what to do
    except google.auth.exceptions.GoogleAuthError as e:
        first = e.args[0] if e.args and isinstance(e.args[0], str) else ""
        raise RegistryError(f"cannot get an access token for {host} from Application Default "
                            f"Credentials: {type(e).__name__}{': ' + first[:200] if first else ''}",
                            hint="gcloud auth application-default login") from None
    return TOKEN_USER, str(credentials.token)
