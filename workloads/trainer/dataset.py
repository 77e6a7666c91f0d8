"""Reading a dataset directory into text samples: JSON Lines, JSON lists and plain text, recursively.

A record is `{"text": ...}` or `{"prompt": ..., "completion": ...}` (joined as is, so the
completion carries its own leading space); a text file gives one sample per non-empty line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".txt")


class DatasetError(ValueError):
    """A dataset the trainer cannot use; the message names the file (and line) at fault."""


def load_samples(root: Path) -> list[str]:
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root}: the data directory does not exist "
                           "(set SUBSTRATUS_DATA_DIR or mount the dataset at /content/data)")
    samples: list[str] = []
    for path in dataset_files(root):
        samples.extend(sample for sample in _read(path) if sample)
    if not samples:
        raise DatasetError(f"the dataset at {root} is empty: no samples in any "
                           f"{', '.join('*' + s for s in SUFFIXES)} file")
    return samples


def dataset_files(root: Path) -> list[Path]:
    """The files read, sorted so that samples come in the same order on every machine."""
    found = []
    for path in root.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if not hidden and path.suffix in SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def _read(path: Path) -> Iterator[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix == ".txt":
        yield from (line for line in text.splitlines() if line.strip())
    elif path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield record_text(_parse(line, f"{path}:{number}"), f"{path}:{number}")
    else:
        records = _parse(text, str(path))
        if not isinstance(records, list):
            raise DatasetError(f"{path}: expected a JSON list of records, "
                               f"got {type(records).__name__}")
        for index, record in enumerate(records):
            yield record_text(record, f"{path}: record {index}")


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{where}: not valid JSON: {e}") from None


def record_text(record: Any, where: str) -> str:
    if isinstance(record, dict):
        if isinstance(record.get("text"), str):
            return record["text"]
        prompt, completion = record.get("prompt"), record.get("completion")
        if isinstance(prompt, str) and isinstance(completion, str):
            return prompt + completion
    raise DatasetError(f"{where}: expected a record with a string 'text', or string 'prompt' "
                       f"and 'completion', got {json.dumps(record)[:80]}")
