"""The quickstart's ML story on the local runtime, through the CLI: a scratch base model fine-tuned
on the dataset, served behind a stable port, rolled out without dropping a request, destroyed."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_cli.cli import run
from substratus_cli.errors import ExitCode
from substratus_providers.local import processes
from substratus_providers.local.host import scratch_size
from tests.conftest import EXAMPLES, tear_down

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The quickstart applied once for the whole story: (directory, apply output)."""
    workdir = tmp_path_factory.mktemp("ml") / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", workdir, ignore=shutil.ignore_patterns(".substratus"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = run(["apply", "--auto-approve", str(workdir)])
    assert code == 0, out.getvalue()
    yield workdir, out.getvalue()
    tear_down(workdir)


def endpoint(cli, workdir: Path) -> str:
    listed = cli("state", "list", workdir).out
    match = re.search(r"ModelServer/default/colors\tendpoint=(\S+)", listed)
    assert match, listed
    return match.group(1)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_quickstart_serves_completions_and_replans_empty(cli, applied):
    workdir, output = applied
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in output
    assert re.search(r"ModelServer/default/colors: Creation complete after [\d.]+s "
                     r"\[endpoint=http://127\.0\.0\.1:\d+\]", output)
    url = endpoint(cli, workdir)

    completion = post(f"{url}/v1/completions", {"prompt": "What is Alice's favorite color?"})
    assert completion["object"] == "text_completion"
    assert completion["model"] == "colors"
    # Fine-tuned on the dataset, the model has learnt its line (greedy decoding is repeatable).
    assert completion["choices"][0]["text"] == " Alice's favorite color is indigo."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] > 0
    assert post(f"{url}/generate", {"prompt": "What is"})["generated_text"].strip()

    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_training_loss_decreases_and_the_artifact_digest_is_in_state(cli, applied):
    workdir, _ = applied
    logs = cli("logs", "Model/colors", workdir)
    assert logs.code == 0, logs.err
    losses = [float(m) for m in re.findall(r"^step=\d+ .*loss=([\d.]+)", logs.out, re.M)]
    assert len(losses) >= 20, logs.out
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first / 2, f"loss went from {first:.3f} to {last:.3f}"

    record = json.loads((workdir / ".substratus/runtime/objects/Model/default/colors.json")
                        .read_text())
    digest = record["status"]["digest"]
    assert f"Model/default/colors\tdigest={digest}" in cli("state", "list", workdir).out
    # The plan's sizing counted the scratch model's parameters from its config; the real weights
    # agree.
    base = json.loads((workdir / ".substratus/runtime/objects/Model/default/base.json").read_text())
    config = base["spec"]["source"]["scratch"]["config"]
    assert base["status"]["parameterCount"] == scratch_size(config).parameter_count == 124_736


def test_logs_plot_draws_the_loss_curve_of_the_training_run(cli, applied, monkeypatch):
    """The loss the trainer logged during the quickstart's real training run, drawn as a text
    chart: the curve falls from the top row to the bottom one."""
    workdir, _ = applied
    logged = cli("logs", "Model/colors", workdir).out
    points = [(int(s), float(v)) for s, v in
              re.findall(r"^step=(\d+) .*loss=([\d.]+)", logged, re.M)]
    monkeypatch.setenv("COLUMNS", "72")  # a 60-column chart beside its 12 columns of labels
    plot = cli("logs", "Model/colors", workdir, "--plot")
    assert plot.code == 0, plot.err
    lines = plot.out.splitlines()
    assert lines[0] == f"loss over {len(points)} logged steps (step 1 to {points[-1][0]})"
    lowest = min(points, key=lambda p: p[1])
    assert lines[-1] == (f"last loss {points[-1][1]:.4g} at step {points[-1][0]}; lowest "
                         f"{lowest[1]:.4g} at step {lowest[0]}")
    rows = [line.split("┤", 1)[1] if "┤" in line else "" for line in lines[1:13]]
    assert lines[13].endswith("└" + "─" * 60)
    assert all(len(row) <= 60 for row in rows)
    # Cells each column fills: the first steps' loss reaches the top row, the last steps' is a
    # sliver in the bottom one, and the first half stands higher than the second.
    filled = [sum(len(r) > c and r[c] != " " for r in rows) for c in range(60)]
    assert filled[0] == 12 and filled[-1] == 1, filled
    assert sum(filled[:30]) > sum(filled[30:]), filled

    base = cli("logs", "Model/base", workdir, "--plot")  # a build: no loss logged
    assert base.code == ExitCode.ERROR
    assert base.err.startswith("Error: Model/base's most recent run logged no loss")
    assert cli("logs", "Model/colors", workdir, "--plot", "-f").code == ExitCode.INVALID_INPUT


def test_notebook_open_prints_a_url_that_answers_with_its_token(cli, applied):
    workdir, _ = applied
    opened = cli("notebook", "open", "explore", workdir, "--no-browser")
    assert opened.code == 0, opened.err
    url = opened.out.strip()
    match = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/lab\?token=(\S+)", url)
    assert match, url
    base, token = match.groups()
    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=10) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/status", timeout=10)
    assert refused.value.code == 403
    assert token not in cli("state", "list", workdir).out


def test_changed_training_param_retrains_and_rolls_out_without_a_failed_request(cli, applied):
    workdir, _ = applied
    url = endpoint(cli, workdir)
    models = workdir / "models.yaml"
    models.write_text(models.read_text().replace("epochs: 200", "epochs: 150"))

    plan = cli("plan", "--detailed-exitcode", workdir)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert ("# Model/default/colors must be replaced (spec.training.params.epochs changed: a "
            "model artifact is immutable, so it is built again)") in plan.out
    assert "~ spec.training.params.epochs: 200 -> 150 # forces replacement" in plan.out
    assert ("# ModelServer/default/colors will be updated in-place (roll out: Model/colors will "
            "be replaced)") in plan.out
    assert "# sizing: training needs" in plan.out

    calls = CallLoop(f"{url}/v1/completions")
    with calls.running():
        applied_again = cli("apply", "--auto-approve", workdir)
    assert applied_again.code == 0, applied_again.output
    assert calls.failures == [], calls.failures[:3]
    assert calls.successes > 10
    assert endpoint(cli, workdir) == url, "the endpoint's port is stable across rollouts"
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_changed_training_data_plans_a_retrain_and_a_rollout(cli, applied):
    workdir, _ = applied
    data = workdir / "data" / "favorite-colors.jsonl"
    original = data.read_text()
    data.write_text(original + '{"prompt": "What is Zed\'s favorite color?", '
                               '"completion": " Zed\'s favorite color is gold."}\n')
    try:
        plan = cli("plan", workdir)
        assert "# Dataset/default/favorite-colors must be replaced (source content changed)" \
            in plan.out
        assert ("# Model/default/colors must be replaced (Dataset/favorite-colors changed, so the "
                "model is trained again)") in plan.out
        assert "~ status.datasetDigest: " in plan.out
        assert ("# ModelServer/default/colors will be updated in-place (roll out: Model/colors "
                "will be replaced)") in plan.out
        assert "Plan: 2 to add, 2 to change, 2 to destroy." in plan.out  # the notebook restarts
    finally:
        data.write_text(original)


def test_a_server_version_that_cannot_start_leaves_the_old_one_serving(cli, applied):
    workdir, _ = applied
    url = endpoint(cli, workdir)
    server = workdir / "server.yaml"
    good = server.read_text()
    server.write_text(good.replace("max_tokens: 48", "max_tokens: -1"))
    try:
        calls = CallLoop(f"{url}/v1/completions")
        with calls.running():
            result = cli("apply", "--auto-approve", workdir)
        assert result.code == ExitCode.PARTIAL_APPLY
        assert re.search(
            r"Error: ModelServer/default/colors: new version \w+ did not become ready: exited "
            r"with code 2: error: param 'max_tokens' must be >= 1, got -1; version \w+ is still "
            rf"serving at {re.escape(url)}", result.err), result.err
        assert calls.failures == [], calls.failures[:3]
        assert post(f"{url}/v1/completions", {"prompt": "What", "max_tokens": 2})["choices"]
    finally:
        server.write_text(good)
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_destroy_stops_every_process_and_frees_every_port(cli, applied):
    workdir, _ = applied
    books = list((workdir / ".substratus/runtime/processes").glob("*/*/*.json"))
    entries = [e for b in books for e in json.loads(b.read_text())]
    assert {e["role"] for e in entries} == {"router", "server", "notebook"}

    destroyed = cli("destroy", "--auto-approve", workdir)
    assert destroyed.code == 0, destroyed.output
    assert "Destroy complete! Resources: 6 destroyed." in destroyed.out
    for e in entries:
        assert not processes.alive(processes.ProcessRef.from_dict(e["process"])), e
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", e["port"])) != 0, f"port {e['port']} still bound"
    again = cli("destroy", "--auto-approve", workdir)
    assert again.code == 0
    assert "No changes. Live state matches the resource files." in again.out


def test_a_model_too_big_for_this_machine_is_refused_at_plan_with_the_arithmetic(cli, tmp_path):
    (tmp_path / "big.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: d}
spec: {source: {path: d.txt}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec:
  source: {path: weights}
  size: {parameterCount: 70000000000, parameterBits: 16}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec:
  training: {baseModel: {name: base}, dataset: {name: d}}
  size: {parameterCount: 70000000000, parameterBits: 16}
""")
    (tmp_path / "d.txt").write_text("hello\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    plan = cli("plan", tmp_path)
    assert plan.code == ExitCode.ERROR
    assert ("Error: Model 'tuned' training does not fit: training needs 70.0B parameters x 16 "
            "bytes (weights, gradients and Adam state) = 1043.1 GiB, x 1.2 for activations = "
            "1251.7 GiB, more than ") in plan.err


class CallLoop:
    """A client calling the endpoint in a loop on a thread, counting what failed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.successes = 0
        self.failures: list[str] = []
        self._stop = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        # Calls already answered before the apply starts: "no failed request" then means the
        # endpoint was called throughout, not that the loop never got going.
        deadline = time.monotonic() + 30
        while self.successes == 0 and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.successes, f"the endpoint did not answer before the apply: {self.failures}"
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                post(self.url, {"prompt": "What is", "max_tokens": 2})
                self.successes += 1
            except (OSError, ValueError) as e:
                self.failures.append(repr(e))
