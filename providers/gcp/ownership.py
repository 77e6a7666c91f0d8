"""Ownership labels on Google Cloud resources. GCP label keys allow neither `/` nor `.`, so the
core's `app.kubernetes.io/managed-by` and `substratus.ai/part-of` are written as `managed-by` and
`substratus-part-of` (plus the resource's namespace), and read back under the core's names."""

from __future__ import annotations

import re
from collections.abc import Mapping

from substratus_cli.provider import MANAGED_BY_LABEL, MANAGED_BY_VALUE, PART_OF_LABEL

MANAGED_BY = "managed-by"
PART_OF = "substratus-part-of"
NAMESPACE = "substratus-namespace"
KEYS = (MANAGED_BY, PART_OF, NAMESPACE)
# Labels Google adds itself (billing, GKE); never ours to diff or remove.
GOOGLE_PREFIX = "goog-"

_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def stamped(user: Mapping[str, str], part_of: str, namespace: str) -> dict[str, str]:
    """The labels a resource is created with: the user's, and who manages it."""
    return {**user, MANAGED_BY: MANAGED_BY_VALUE, PART_OF: part_of, NAMESPACE: namespace}


def core_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A GCP resource's labels as LiveObject.labels: the user's, and ownership under the core's
    keys (LiveObject.owner reads them)."""
    out = user_labels(labels)
    if MANAGED_BY in labels:
        out[MANAGED_BY_LABEL] = labels[MANAGED_BY]
    if PART_OF in labels:
        out[PART_OF_LABEL] = labels[PART_OF]
    return out


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels a resource file declares: not ownership, not Google's own."""
    return {k: v for k, v in labels.items()
            if k not in KEYS and k not in (MANAGED_BY_LABEL, PART_OF_LABEL)
            and not k.startswith(GOOGLE_PREFIX)}


def owned_by(labels: Mapping[str, str], part_of: str) -> bool:
    """Whether GCP `labels` say this workspace manages the resource."""
    return labels.get(MANAGED_BY) == MANAGED_BY_VALUE and bool(part_of) \
        and labels.get(PART_OF) == part_of


def namespace_of(labels: Mapping[str, str]) -> str:
    return labels.get(NAMESPACE) or "default"


def label_problems(labels: Mapping[str, str]) -> list[str]:
    """What Google Cloud would refuse in these labels, or claims a key substratus writes."""
    out = []
    for key, value in labels.items():
        if key in KEYS or key.startswith(GOOGLE_PREFIX):
            out.append(f"label {key!r} is reserved (substratus and Google write it)")
        elif not _KEY.fullmatch(key):
            out.append(f"label key {key!r} is not a Google Cloud label key: use at most 63 "
                       "lowercase letters, digits, '_' and '-', starting with a letter")
        elif not _VALUE.fullmatch(str(value)):
            out.append(f"label {key}={value!r}: Google Cloud label values are at most 63 "
                       "lowercase letters, digits, '_' and '-'")
    if len(labels) + len(KEYS) > 64:
        out.append(f"{len(labels)} labels: Google Cloud allows 64 on a resource, and substratus "
                   f"adds {len(KEYS)}")
    return out
