"""`.dockerignore` patterns read the way Docker reads them."""

from __future__ import annotations

import pytest

from substratus_providers.images.dockerignore import ignored, parse, prunable

PATTERNS = parse("""
# build outputs
*.pyc
/data
**/secret.txt
logs/*
!logs/keep.log
docs/**/draft-?.md
""")


@pytest.mark.parametrize(("path", "left_out"), [
    ("a.pyc", True),
    ("pkg/a.pyc", False),  # `*` stays within one folder, at the top
    ("data", True),
    ("data/big/shard-0", True),  # everything under an ignored folder
    ("data.csv", False),
    ("secret.txt", True),
    ("deep/down/secret.txt", True),
    ("logs/a.log", True),
    ("logs/keep.log", False),  # the later `!` line wins
    ("docs/draft-1.md", True),
    ("docs/x/y/draft-2.md", True),
    ("docs/draft-10.md", False),
    ("Dockerfile", False),
])
def test_paths_are_left_out_as_docker_leaves_them_out(path: str, left_out: bool) -> None:
    assert ignored(path, PATTERNS) is left_out


def test_comments_blank_lines_and_leading_slashes_are_not_patterns() -> None:
    assert [p.text for p in parse("\n# c\n /x/ \n!y\n")] == ["/x/", "y"]
    assert ignored("x/z", parse("/x/"))


def test_an_ignored_folder_is_walked_only_when_a_later_pattern_could_bring_files_back() -> None:
    patterns = parse("*\n!workloads\n**/__pycache__\n")
    assert prunable(".venv", patterns)
    assert not prunable("workloads", patterns)
    assert prunable("workloads/__pycache__", patterns)
    assert not prunable("logs", PATTERNS)  # `logs/*` ignores what is in it, not the folder
    assert not prunable("pkg", PATTERNS)  # not ignored at all
