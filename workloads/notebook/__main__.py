"""Replace this process with JupyterLab on host():port(), rooted at the content directory.

Offline and quiet: no news feed, no update check, no PyPI extension manager. Params are not
validated here: they are for the user's notebooks, which read content/params.json themselves.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from substratus_workloads import contract


def command() -> list[str]:
    if not os.environ.get("JUPYTER_TOKEN"):
        # An empty token turns Jupyter's authentication off; never serve code execution open.
        contract.fail("JUPYTER_TOKEN must be set to the token clients will present")
    root = contract.content_dir()
    if not root.is_dir():
        contract.fail(f"the content directory {root} does not exist (set SUBSTRATUS_CONTENT)")
    host, port = contract.host(), contract.port()
    # The token is not on the command line, where `ps` would show it: jupyter_server's
    # IdentityProvider.token reads JUPYTER_TOKEN itself.
    return [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        # The runtime chose this port and probes it: another one would look like a hang.
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        # Containers often run as root; that is the container's isolation, not the host's.
        "--ServerApp.allow_root=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]


def main() -> None:
    argv = command()
    if importlib.util.find_spec("jupyterlab") is None:
        contract.fail("jupyterlab is not installed (pip install jupyterlab)")
    print(f"starting JupyterLab on http://{contract.host()}:{contract.port()} "
          f"root_dir={contract.content_dir()}", flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
