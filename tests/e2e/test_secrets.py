"""A secret referenced by a Dataset is used at apply and never printed, saved, planned or stored."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from substratus_cli.secrets import SENSITIVE, reveal, scrub
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


def test_a_server_that_echoes_the_token_does_not_get_it_printed(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBSTRATUS_SECRET_HUB_TOKEN", SECRET)
    workdir = tmp_path / "ws"
    with serve({"/private.csv": Route(b"x", authorization="Bearer something-else",
                                      echo=True)}) as srv:
        write_dataset(workdir, srv.url)
        failed = cli("apply", workdir, "--auto-approve")
    assert failed.code == 6, failed.output
    # The server answered with the token base64-encoded: the message says so, without it.
    assert "HTTP 401 invalid token (sensitive value)" in failed.err, failed.output
    encoded = base64.b64encode(SECRET.encode())
    assert SECRET not in failed.output and encoded.decode() not in failed.output
    for path in workdir.rglob("*"):
        if path.is_file() and path.suffix != ".log":  # logs: the workload's own, 0600
            assert SECRET.encode() not in path.read_bytes(), path
            assert encoded not in path.read_bytes(), path


def test_scrub_covers_the_encodings_of_a_revealed_value():
    value = "s3cr3t/+value=="

    reveal(value)
    for form in (value, urllib.parse.quote(value, safe=""), base64.b64encode(value.encode())
                 .decode(), base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")):
        assert scrub(f"got {form} back") == f"got {SENSITIVE} back", form
    assert scrub("nothing here") == "nothing here"


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


def test_a_workload_gets_only_the_secrets_it_references_and_its_log_is_private(
        cli, tmp_path, monkeypatch):
    # Two secrets in the CLI's environment; the training references one of them.
    monkeypatch.setenv("SUBSTRATUS_SECRET_HUB_TOKEN", SECRET)
    monkeypatch.setenv("SUBSTRATUS_SECRET_OTHER_TOKEN", "other-7a6b5c-do-not-leak")
    workdir = tmp_path / "ws"
    (workdir / "weights").mkdir(parents=True)
    (workdir / "weights" / "config.json").write_text("{}")
    (workdir / "rows.jsonl").write_text('{"a": 1}\n')
    (workdir / "models.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: rows}
spec: {source: {path: rows.jsonl}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec: {source: {path: weights}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec:
  training: {baseModel: {name: base}, dataset: {name: rows}}
  env: {HUB: "${{ secrets.hub.token }}"}
  command: ["sh", "-c", "env | sort; echo w > $SUBSTRATUS_CONTENT/artifacts/w.bin"]
""")
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    logs = [p for p in (workdir / ".substratus").rglob("*.log") if "Model" in str(p) or
            "tuned" in str(p)]
    printed = "".join(p.read_text() for p in logs)
    assert f"HUB={SECRET}" in printed  # what it references, resolved
    assert "other-7a6b5c-do-not-leak" not in printed
    assert "SUBSTRATUS_SECRET_" not in printed
    for log in logs:
        assert log.stat().st_mode & 0o777 == 0o600, log
