"""Progress of the store's long byte operations (hashing, copying, uploading, downloading), told
to whoever watches through a small callback protocol: the CLI draws bars from it, a workload may
print lines, and by default nobody listens (SILENT)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

# The operations a Meter measures, as the CLI names them to the user.
HASHING = "hashing"
COPYING = "copying"  # into a store on this machine, or out of one (a workload's inputs)
UPLOADING = "uploading"
DOWNLOADING = "downloading"


class Meter(Protocol):
    """One operation over many files, counted in bytes. `advance` is called from the store's
    transfer threads, per chunk (1 MiB), so it must be thread safe and cheap."""

    def advance(self, nbytes: int, /) -> None: ...

    def close(self) -> None:
        """The operation ended (done or failed): nothing more will be counted."""
        ...


class Progress(Protocol):
    def meter(self, operation: str, total: int) -> Meter:
        """A Meter for `total` bytes of `operation` (HASHING, COPYING, UPLOADING, DOWNLOADING)."""
        ...


class _Silent:
    def meter(self, operation: str, total: int) -> _Silent:
        return self

    def advance(self, nbytes: int, /) -> None:
        pass

    def close(self) -> None:
        pass


SILENT: Progress = _Silent()


@contextlib.contextmanager
def metering(progress: Progress, operation: str, total: int) -> Iterator[Meter]:
    """A meter closed however the operation ends; nothing is shown for zero bytes."""
    meter = progress.meter(operation, total) if total > 0 else _Silent()
    try:
        yield meter
    finally:
        meter.close()
