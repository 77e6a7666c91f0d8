"""A secret referenced by a Dataset is used at apply and never printed, saved, planned or stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.http_server import Route, serve

SECRET = "tok-9f8e7d6c5b4a-do-not-leak"


def write_dataset(workdir: Path, url: str) -> None:
    workdir.mkdir(exist_ok=True)
    (workdir / "private.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: private}}
spec:
  env:
    HF_TOKEN: "${{{{ secrets.hub.token }}}}"
  source:
    url: "{url}/private.csv"
    headers:
      Authorization: "Bearer ${{{{ secrets.hub.token }}}}"
""")


def test_secret_never_appears_in_output_plans_or_state(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBSTRATUS_SECRET_HUB_TOKEN", SECRET)
    workdir = tmp_path / "ws"
    plan_file = tmp_path / "plan.json"
    with serve({"/private.csv": Route(b"x,y\n1,2\n", authorization=f"Bearer {SECRET}")}) as srv:
        write_dataset(workdir, srv.url)
        outputs = [
            cli("plan", workdir),
            cli("plan", "--json", workdir),
            cli("plan", workdir, "--out", plan_file),
            cli("show", plan_file),
            cli("show", "--json", plan_file),
            cli("apply", workdir, "--auto-approve"),
            cli("plan", "--detailed-exitcode", workdir),
            cli("state", "list", workdir),
        ]
        # The secret was really used: the server got it (and answered 200, or apply would fail).
        assert any(r.get("Authorization") == f"Bearer {SECRET}" for r in srv.requests)

    assert outputs[5].code == 0, outputs[5].output
    assert outputs[6].code == 0, outputs[6].output
    assert "(sensitive value)" in outputs[0].out
    plan_json = json.loads(outputs[1].out)
    change = plan_json["resource_changes"][0]["change"]
    assert change["after"]["spec"]["env"]["HF_TOKEN"] == "(sensitive value)"
    assert change["after_sensitive"]["spec"]["env"] == {"HF_TOKEN": True}
    assert change["after_sensitive"]["spec"]["source"]["headers"] == {"Authorization": True}
    assert json.loads(outputs[4].out) == plan_json  # show --json of the saved plan: the same
    for result in outputs:
        assert SECRET not in result.output
    for path in [plan_file, *workdir.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_secret_is_not_leaked_when_the_request_fails(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBSTRATUS_SECRET_HUB_TOKEN", SECRET)
    workdir = tmp_path / "ws"
    with serve({"/private.csv": Route(b"x", authorization="Bearer something-else")}) as srv:
        write_dataset(workdir, srv.url)
        failed = cli("apply", workdir, "--auto-approve")
    assert failed.code == 6
    assert "403" in failed.output
    assert SECRET not in failed.output


def test_missing_secret_fails_the_plan_with_how_to_set_it(tmp_path):
    workdir = tmp_path / "ws"
    write_dataset(workdir, "http://127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRATUS_SECRET_")}
    for command in (["plan"], ["apply", "--auto-approve"]):
        result = subprocess.run([sys.executable, "-m", "substratus_cli", *command, str(workdir)],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 1, result.stderr
        assert "Error: secret hub.token is not set" in result.stderr
        assert "export SUBSTRATUS_SECRET_HUB_TOKEN=" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (workdir / ".substratus" / "runtime").exists()
