"""Which log lines print: `-v/--verbose` or SUBSTRATUS_LOG=debug|info|warning sets the level of
substratus's own loggers (the providers' API clients log one debug line per request), written to
stderr with any secret value scrubbed. Request lines are counted, and the counts logged when the
command ends, so that "how many requests did that plan send" has an answer."""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading

from substratus_cli.errors import UsageError
from substratus_cli.secrets import scrub

ENV = "SUBSTRATUS_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
# The loggers turned on: every module's `logging.getLogger(__name__)` in these packages.
PACKAGES = ("substratus_cli", "substratus_providers", "substratus_artifacts")
# A request's log line carries extra={API: "kubernetes"} (or "gke", "gcs"): what is counted.
API = "api"

log = logging.getLogger(__name__)


class _Stderr(logging.Handler):
    """Lines to whatever sys.stderr is when they are written (a progress display redirects it,
    tests capture it), counting the request lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.requests: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        api = getattr(record, API, None)
        if api:
            with self._count_lock:
                self.requests[str(api)] += 1
        try:
            sys.stderr.write(scrub(self.format(record)) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: logging never fails the command
            pass


_handler = _Stderr()


def level_from_environ() -> int:
    """SUBSTRATUS_LOG's level; WARNING when unset. An unknown value is a usage error."""
    text = os.environ.get(ENV, "").strip().lower()
    if not text:
        return logging.WARNING
    if text not in LEVELS:
        raise UsageError(f"{ENV}={os.environ[ENV]!r}: expected one of {', '.join(LEVELS)}")
    return LEVELS[text]


def configure(*, verbose: bool = False) -> None:
    """Set the level of substratus's loggers for this command (`verbose`: debug, whatever
    SUBSTRATUS_LOG says) and send their lines to stderr. Other libraries' loggers are left
    alone: their debug lines may carry what ours leave out (headers, bodies)."""
    level = logging.DEBUG if verbose else level_from_environ()
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)


def verbose() -> bool:
    """Whether this command was asked for everything (-v, or SUBSTRATUS_LOG=debug)."""
    return logging.getLogger(PACKAGES[0]).level == logging.DEBUG


def finish() -> None:
    """Log how many requests each API was sent, then leave the loggers as they were before
    `configure` (a command run in-process, as the tests do, changes nothing for the next)."""
    with _handler._count_lock:
        counts, _handler.requests = dict(_handler.requests), collections.Counter()
    for api, n in sorted(counts.items()):
        log.debug("%s: %d API request%s in all", api, n, "" if n == 1 else "s")
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        logger.removeHandler(_handler)
