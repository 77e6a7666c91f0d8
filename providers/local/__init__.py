"""The local runtime: no cloud, no cluster, no network needed. Objects are records under `.substratus/`."""

from substratus_providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
