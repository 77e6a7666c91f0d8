"""A fake of the GKE v1 REST API for tests (no emulator exists): clusters, node pools and
long-running operations with GKE's concurrency rules, served on 127.0.0.1 to the real
google-cloud-container client. `python -m tests.gke` runs one by hand."""

from tests.gke.server import FakeGKE
from tests.gke.state import GKEState, Settings

__all__ = ["FakeGKE", "GKEState", "Settings"]
