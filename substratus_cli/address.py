"""Address: the identity of a resource, `Kind/namespace/name`, as users type it and state stores it."""

from __future__ import annotations

import dataclasses
import difflib
import re

from substratus_cli.errors import UsageError

# The infrastructure kinds (gcp provider) and the ML kinds (the runtime's provider), the latter in
# the order a provider plans them in: what a kind reads (a dataset's digest) is planned first.
INFRA_KINDS = ("Cluster", "NodePool", "Bucket")
ML_KINDS = ("Dataset", "Model", "ModelServer", "Notebook")
# Container images built from a context (images provider, every runtime).
IMAGE_KINDS = ("Image",)
KINDS = ("Environment", *INFRA_KINDS, *IMAGE_KINDS, *ML_KINDS)
# Not resources but groups of them: `--target Stack/NAME` means every resource the instance renders.
GROUP_KINDS = ("Stack",)
DEFAULT_NAMESPACE = "default"
# A resource's (and a stack instance's) name: a Kubernetes DNS label.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_KIND_BY_LOWER = {k.lower(): k for k in (*KINDS, *GROUP_KINDS)}


@dataclasses.dataclass(frozen=True, order=True)
class Address:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    def short(self) -> str:
        """As users type it: `Kind/name` in the default namespace."""
        if self.namespace == DEFAULT_NAMESPACE:
            return f"{self.kind}/{self.name}"
        return str(self)

    @classmethod
    def parse(cls, text: str, default_namespace: str = DEFAULT_NAMESPACE) -> Address:
        """Parse `Kind/name` or `Kind/namespace/name` (kind case-insensitive)."""
        parts = text.strip().split("/")
        if len(parts) == 2:
            kind, namespace, name = parts[0], default_namespace, parts[1]
        elif len(parts) == 3:
            kind, namespace, name = parts
        else:
            raise UsageError(
                f"invalid address {text!r}: expected Kind/name or Kind/namespace/name, "
                "for example Dataset/colors"
            )
        canonical = _KIND_BY_LOWER.get(kind.lower())
        if canonical is None:
            close = closest_kind(kind)
            known = f"did you mean {close!r}?" if close else f"kinds: {', '.join(KINDS)}"
            raise UsageError(f"invalid address {text!r}: unknown kind {kind!r} ({known})")
        if not namespace or not name:
            raise UsageError(f"invalid address {text!r}: empty namespace or name")
        return cls(canonical, namespace, name)


def closest_kind(kind: str, kinds: tuple[str, ...] = (*KINDS, *GROUP_KINDS)) -> str | None:
    """The kind a typo was meant to be (`Datset`, `dataset`, `ModelSever`), if one is close."""
    by_lower = {k.lower(): k for k in kinds}
    close = difflib.get_close_matches(kind.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None
