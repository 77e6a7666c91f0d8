"""Failpoints for crash tests (after etcd's gofail): SUBSTRATUS_FAILPOINTS="name=kill@2;other=sleep(1.5)".

`kill` SIGKILLs this process at the Nth time the point is reached (default the first), so tests can
stop an apply exactly at a step boundary. Unset, a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

ENV = "SUBSTRATUS_FAILPOINTS"
_RULE = re.compile(r"^(?P<name>[\w.-]+)=(?P<action>kill|sleep\((?P<secs>[\d.]+)\))(@(?P<nth>\d+))?$")
_counts: dict[str, int] = {}
_mutex = threading.Lock()


def _rules() -> dict[str, tuple[str, float, int]]:
    rules = {}
    for part in filter(None, os.environ.get(ENV, "").split(";")):
        m = _RULE.match(part.strip())
        if m is None:
            raise ValueError(f"{ENV}: cannot parse {part!r}")
        action = "kill" if m["action"] == "kill" else "sleep"
        rules[m["name"]] = (action, float(m["secs"] or 0), int(m["nth"] or 1))
    return rules


def hit(name: str) -> None:
    rules = _rules()
    if name not in rules:
        return
    action, secs, nth = rules[name]
    with _mutex:
        _counts[name] = _counts.get(name, 0) + 1
        count = _counts[name]
    if action == "sleep":
        time.sleep(secs)
    elif count == nth:
        os.kill(os.getpid(), signal.SIGKILL)
