"""State written by a newer substratus is refused, not half-read and overwritten; the stat cache
on a disk it cannot write is skipped, not fatal (issue 13, item 13)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from substratus_artifacts.statcache import StatCache
from substratus_cli.state.inventory import FORMAT_VERSION
from tests.conftest import EXAMPLES


def test_state_of_a_newer_format_is_refused_and_left_alone(cli, tmp_path: Path) -> None:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "quickstart" / "datasets.yaml", workdir)
    shutil.copytree(EXAMPLES / "quickstart" / "data", workdir / "data")
    state = workdir / ".substratus" / "state" / "inventory.json"
    state.parent.mkdir(parents=True)
    text = json.dumps({"format_version": FORMAT_VERSION + 1, "lineage": "l", "serial": 3,
                       "resources": [], "something_new": {"kept": True}})
    state.write_text(text)
    for command in (["plan"], ["apply", "--auto-approve"], ["state", "list"]):
        refused = cli(*command, workdir)
        assert refused.code == 1, refused.output
        assert (f"the state was written by a newer substratus (state format "
                f"{FORMAT_VERSION + 1}; this one reads format {FORMAT_VERSION} and older)"
                in refused.err)
        assert "upgrade substratus" in refused.err
    assert state.read_text() == text


def test_a_stat_cache_that_cannot_be_written_is_kept_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's folder would be")
    data = tmp_path / "data.txt"
    data.write_text("hello\n")
    stat = data.stat()
    cache = StatCache(blocker / "cache" / "stat.json")
    assert cache.record(data, stat, "ab" * 32, read_started_ns=stat.st_mtime_ns + 10**10)
    assert cache.save() is False  # the disk refused: skipped, not raised
    assert cache.lookup(data, stat) == "ab" * 32  # still answered, from memory
    writable = StatCache(tmp_path / "cache" / "stat.json")
    writable.record(data, stat, "ab" * 32, read_started_ns=stat.st_mtime_ns + 10**10)
    assert writable.save() is True
    assert StatCache(tmp_path / "cache" / "stat.json").lookup(data, stat) == "ab" * 32


@pytest.mark.parametrize("text", ["[]", "null", '"x"', '{"lineage": "l", "serial": 1, '
                                  '"resources": "x"}', '{"lineage": "l", "serial": 1, '
                                  '"resources": [1]}', '{"serial": 1}', "{"])
def test_a_damaged_state_file_is_a_clear_error(cli, tmp_path: Path, text: str) -> None:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "quickstart" / "datasets.yaml", workdir)
    shutil.copytree(EXAMPLES / "quickstart" / "data", workdir / "data")
    state = workdir / ".substratus" / "state" / "inventory.json"
    state.parent.mkdir(parents=True)
    state.write_text(text)
    refused = cli("plan", workdir)
    assert refused.code == 1, refused.output
    assert f"the state file {state} is damaged" in refused.err, refused.err
    assert "Internal error" not in refused.output
    assert state.read_text() == text
