"""Where things live in an artifact store, whatever its backend, and the URLs that name them.

A store root is `file:///absolute/path`, `gs://bucket[/prefix]` or `oci://host[:port]/repository`;
under it, objects are named (oci.py maps these names onto a registry's blobs and tags)

    blobs/sha256/AB/ABCDEF…         a file's bytes, named by their sha256 (lower-case hex; AB = its
                                    first two digits)
    manifests/sha256/ABCDEF….json   a Manifest's canonical JSON, named by its own sha256: the
                                    snapshot id `sha256:ABCDEF…`
    refs/NAME                       exactly the ascii text `sha256:<64 hex>`, no newline: the
                                    snapshot a name points at now

Blobs and manifests are written once and never change (a reader checks what it reads against its
name); a ref is overwritten. NAME is a relative POSIX path (`default/model/colors/3f2a…`): no
empty, `.` or `..` parts. A workload is handed `<root>/refs/<name>` or
`<root>/manifests/sha256/<hex>.json` as the URL of a snapshot.
"""

from __future__ import annotations

import dataclasses
import re

from substratus_artifacts.manifest import DIGEST_PREFIX, ManifestError, normalize_sha256

_REF_CONTENT = re.compile(rb"sha256:[0-9a-f]{64}")
_MANIFEST_URL = re.compile(r"(?P<root>.+)/manifests/sha256/(?P<hex>[0-9a-f]{64})\.json")


class StoreError(Exception):
    """A store that cannot be read or written, or that lacks or refuses what was asked for; the
    message says what and where, the hint (if any) what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def blob_key(sha256_hex: str) -> str:
    """`blobs/sha256/AB/ABCD…`: where a blob lives under a store's root."""
    hex_ = normalize_sha256(sha256_hex)
    return f"blobs/sha256/{hex_[:2]}/{hex_}"


def manifest_key(digest: str) -> str:
    """`manifests/sha256/ABCD….json`: where a snapshot's manifest lives under a store's root."""
    return f"manifests/sha256/{normalize_sha256(digest)}.json"


def ref_key(name: str) -> str:
    """`refs/NAME`, after checking NAME is a relative, normalized POSIX path."""
    if (
        not name
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in name.split("/"))
        or any(ch in name for ch in "\\\x00\n\r")
    ):
        raise ManifestError(
            f"ref name must be a relative POSIX path with no empty, '.' or '..' parts: {name!r}"
        )
    return f"refs/{name}"


def ref_content(digest: str) -> bytes:
    """The bytes a ref holds: `sha256:<64 hex>`, ascii, no newline."""
    return (DIGEST_PREFIX + normalize_sha256(digest)).encode("ascii")


def parse_ref(data: bytes, where: str) -> str:
    """The digest a ref's bytes hold; StoreError naming `where` when they are anything else."""
    if not _REF_CONTENT.fullmatch(data):
        shown = data[:80].decode("ascii", "replace")
        raise StoreError(
            f"ref {where} does not hold a snapshot digest: expected exactly "
            f"'sha256:<64 hex digits>', found {shown!r}"
        )
    return data.decode("ascii")


@dataclasses.dataclass(frozen=True)
class Location:
    """A snapshot URL taken apart: the store root and a ref name or a manifest digest."""

    url: str
    root: str
    ref: str | None = None
    digest: str | None = None


def parse_url(url: str) -> Location:
    """`<root>/refs/<name>` or `<root>/manifests/sha256/<hex>.json`; the root is all before."""
    if not url.startswith(("gs://", "file:///", "oci://")):
        raise StoreError(f"{url!r}: an artifact store URL is gs://bucket[/prefix]/…, "
                         "oci://host[:port]/repository/… or file:///absolute/path/…")
    match = _MANIFEST_URL.fullmatch(url)
    if match:
        return Location(url, _root(match["root"], url), digest=DIGEST_PREFIX + match["hex"])
    # The first /refs/ after the bucket or host (or the file:// scheme) ends the root.
    head = len("file://") if url.startswith("file://") else url.find("://") + len("://")
    at = url.find("/refs/", head)
    if at < 0:
        raise StoreError(f"{url!r} names neither a ref (<root>/refs/<name>) nor a manifest "
                         "(<root>/manifests/sha256/<hex>.json)")
    name = url[at + len("/refs/"):]
    try:
        ref_key(name)
    except ManifestError:
        raise StoreError(f"{url!r}: bad ref name {name!r}") from None
    return Location(url, _root(url[:at], url), ref=name)


def _root(root: str, url: str) -> str:
    if root.startswith("gs://") and not root[len("gs://"):].split("/")[0]:
        raise StoreError(f"{url!r} names no bucket")
    if root.startswith("oci://") and "/" not in root[len("oci://"):].strip("/"):
        raise StoreError(f"{url!r} names no repository (oci://host[:port]/repository/…)")
    return root
