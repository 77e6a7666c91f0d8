"""Unpack a .tar.gz, .tgz, .tar or .zip into a folder, refusing the whole archive when any member
would land outside it: an absolute path, a `..`, a link pointing out, a device or FIFO."""

from __future__ import annotations

import posixpath
import re
import tarfile
import zipfile
from pathlib import Path, PureWindowsPath

ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


class ArchiveError(ValueError):
    """An archive that cannot be unpacked safely (or at all); the message names the member."""


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)


def unpack(archive: Path, dest: Path) -> None:
    """Every member of archive under dest, or nothing at all if one member is refused."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _unzip(archive, dest)
        else:
            _untar(archive, dest)
    except ArchiveError:
        raise
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"cannot unpack the model archive {archive.name}: {e}") from None


def _absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(PureWindowsPath(name).drive)


def _escapes(name: str) -> bool:
    return _absolute(name) or ".." in re.split(r"[/\\]", name)


def _refuse(archive: Path, name: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive.name}: member {name!r} {why}; the archive is refused")


def _untar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            if _escapes(member.name):
                raise _refuse(archive, member.name, "would be written outside the folder")
            if member.issym() or member.islnk():
                # A symlink's target is relative to its own folder, a hard link's to the top.
                base = posixpath.dirname(member.name) if member.issym() else ""
                target = posixpath.normpath(posixpath.join(base, member.linkname))
                if _absolute(member.linkname) or target == ".." or target.startswith("../"):
                    raise _refuse(archive, member.name,
                                  f"links to {member.linkname!r}, outside the folder")
            elif not (member.isfile() or member.isdir()):
                raise _refuse(archive, member.name, "is a device or FIFO")
        # The "data" filter is a second line of defence behind the checks above.
        tar.extractall(dest, members=members, filter="data")


def _unzip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if _escapes(info.filename):
                raise _refuse(archive, info.filename, "would be written outside the folder")
        z.extractall(dest)
