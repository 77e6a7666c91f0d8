"""The two sides a gcp plan compares: a resource's spec with the schema's defaults filled in (the
files leave defaults out, GKE and GCS always answer them), and fingerprints of live resources."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from substratus_cli.config.schema import SPEC_MODELS
from substratus_cli.resource import Resource


def effective(r: Resource) -> dict[str, Any]:
    """The spec as substratus creates it: declared fields, and the schema's defaults for the rest
    (`spot: false`, `releaseChannel: REGULAR`, `accelerator.count: 1`)."""
    model = SPEC_MODELS[r.kind].model_validate(dict(r.spec))
    spec: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return spec


def fingerprint(resource: Mapping[str, Any], volatile: Collection[str]) -> str:
    """A hash of everything a write can change: the resource less its `volatile` top-level fields
    (status, node counts, versions GKE upgrades by itself), so only a change is drift."""
    kept = {k: v for k, v in resource.items() if k not in volatile}
    body = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]
