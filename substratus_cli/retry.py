"""RetryPolicy: when a provider's client sends a refused request again and when it gives up. The
retry loops stay in each provider's client module, the one place that talks to its API."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """A temporary failure is tried again after `first_delay` doubling up to `max_delay`, at most
    `tries` tries in all (None: no count) and never past `deadline` seconds (`read_deadline` for a
    read, where someone is waiting for a plan; None: `deadline`).

    Retry-After is a floor, not the delay: the wait is the longer of it and the backoff. Never
    sooner than the server asks; and a server under load that keeps answering a short Retry-After
    (the Kubernetes API server's 1 s) is still backed off from, rather than hit at a fixed rate
    for the whole deadline (GKE's is half an hour, with no count of tries)."""

    first_delay: float = 0.5
    max_delay: float = 8.0
    tries: int | None = None
    deadline: float = 20.0
    read_deadline: float | None = None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait after try number `attempt` (from 1) failed."""
        backoff = min(self.first_delay * 2.0 ** (attempt - 1), self.max_delay)
        return max(backoff, retry_after) if retry_after is not None else backoff

    def allows(self, attempt: int, waited: float, delay: float, *, read: bool = False) -> bool:
        """Whether another try may follow try number `attempt`, `waited` seconds after the first
        was sent and `delay` seconds from now."""
        if self.tries is not None and attempt >= self.tries:
            return False
        deadline = self.read_deadline if read and self.read_deadline is not None \
            else self.deadline
        return waited + delay <= deadline


def retry_after_seconds(value: object) -> float | None:
    """A Retry-After value in seconds; None when absent or in the HTTP-date form (servers that
    send it are rare: the backoff stands)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
