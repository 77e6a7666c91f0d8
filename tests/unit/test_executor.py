"""The Executor over the simple provider and a real local state backend: order, parallelism,
partial failure, write-ahead marks, readiness gates and SIGINT."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_cli.action import Action
from substratus_cli.apply import Executor, Outcome, Reporter, StepState
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ExitCode
from substratus_cli.plan import Plan
from substratus_cli.planner import PlanOptions, build_plan
from substratus_cli.provider import ApplyRequest, Readiness, Registry
from substratus_cli.resource import Resource
from substratus_cli.state import InventoryEntry, LocalStateBackend, StateSession
from tests.support.builders import LINEAGE, addr, context, entry, inventory, res, target
from tests.support.simple_provider import SimpleProvider


@pytest.fixture
def provider() -> SimpleProvider:
    return SimpleProvider(context(LINEAGE))


@pytest.fixture
def backend(tmp_path: Path) -> LocalStateBackend:
    b = LocalStateBackend(tmp_path / "state")
    b.write(inventory(serial=1), None)
    return b


def make_plan(provider: SimpleProvider, backend: LocalStateBackend, resources: list[Resource],
              **options: Any) -> Plan:
    return build_plan(resources=resources, registry=Registry([provider]), inventory=backend.read(),
                      target=target(), options=PlanOptions(**options))


def apply(provider: SimpleProvider, backend: LocalStateBackend, resources: list[Resource], *,
          parallelism: int = 10, reporter: Reporter | None = None, **options: Any) -> Outcome:
    plan = make_plan(provider, backend, resources, **options)
    session = StateSession(backend, backend.read())
    return Executor(plan, Registry([provider]), session, parallelism=parallelism,
                    reporter=reporter, ready_timeout=5).run()


def states(outcome: Outcome) -> dict[str, tuple[StepState, str]]:
    return {str(r.address): (r.state, r.message) for r in outcome.results}


def entries(backend: LocalStateBackend) -> dict[str, InventoryEntry]:
    inv = backend.read()
    assert inv is not None
    return {str(a): e for a, e in inv.entries.items()}


def position(provider: SimpleProvider, call: str, address: str) -> int:
    return provider.calls.index((call, str(addr(address))))


# -- order and parallelism --------------------------------------------------------------------

def diamond() -> list[Resource]:
    return [res("Model/top", {}, refs=["Model/left", "Model/right"]),
            res("Model/left", {}, refs=["Dataset/base"]), res("Model/right", {}, refs=["Dataset/base"]),
            res("Dataset/base")]


def test_diamond_runs_each_step_after_its_dependencies_are_ready(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    outcome = apply(provider, backend, diamond())
    assert outcome.exit_code == ExitCode.OK and not outcome.interrupted
    assert {s for s, _ in states(outcome).values()} == {StepState.DONE}
    for side in ("Model/left", "Model/right"):
        assert position(provider, "ready", "Dataset/base") < position(provider, "apply", side)
        assert position(provider, "ready", side) < position(provider, "apply", "Model/top")
    assert len(provider.applied) == 4


def test_a_step_waits_until_its_dependency_reports_ready(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    answers = iter([Readiness(False, message="starting"), Readiness(False, message="starting")])
    provider.readiness[addr("Dataset/base")] = lambda live: next(answers, Readiness(True))
    outcome = apply(provider, backend, [res("Dataset/base"), res("Model/m", {}, refs=["Dataset/base"])])
    assert outcome.exit_code == ExitCode.OK
    assert provider.calls[:4] == [("apply", "Dataset/default/base"), ("ready", "Dataset/default/base"),
                                  ("ready", "Dataset/default/base"), ("ready", "Dataset/default/base")]
    assert provider.calls[4] == ("apply", "Model/default/m")


@pytest.mark.parametrize(("parallelism", "expected"), [(1, 1), (2, 2), (10, 4)])
def test_parallelism_caps_the_steps_running_at_once(
        provider: SimpleProvider, backend: LocalStateBackend, parallelism: int, expected: int) -> None:
    provider.delay = 0.3
    outcome = apply(provider, backend, [res(f"Dataset/d{i}") for i in range(4)],
                    parallelism=parallelism)
    assert outcome.exit_code == ExitCode.OK
    assert provider.max_concurrency == expected


# -- partial failure --------------------------------------------------------------------------

def test_failed_step_skips_its_dependents_and_independent_branches_go_on(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    provider.fail[addr("Model/a")] = "quota exceeded"
    outcome = apply(provider, backend, [
        res("Model/a", {}), res("Model/b", {}, refs=["Model/a"]), res("Model/c", {}, refs=["Model/b"]),
        res("Model/other", {})])
    assert states(outcome) == {
        "Model/default/a": (StepState.FAILED, "quota exceeded"),
        "Model/default/b": (StepState.SKIPPED, "Model/default/a did not complete"),
        "Model/default/c": (StepState.SKIPPED, "Model/default/b did not complete"),
        "Model/default/other": (StepState.DONE, ""),
    }
    assert outcome.exit_code == ExitCode.PARTIAL_APPLY == 6
    assert [a for a, _ in provider.applied] == [addr("Model/a"), addr("Model/other")]


def test_provider_exception_fails_only_its_step(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    def hook(request: ApplyRequest) -> None:
        if request.address.name == "bad":
            raise RuntimeError("provider bug")

    provider.hook = hook
    outcome = apply(provider, backend, [res("Dataset/bad"), res("Dataset/good")])
    assert states(outcome) == {"Dataset/default/bad": (StepState.FAILED, "RuntimeError: provider bug"),
                               "Dataset/default/good": (StepState.DONE, "")}
    assert outcome.exit_code == ExitCode.PARTIAL_APPLY


def test_failed_readiness_fails_the_step_with_the_message(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    provider.readiness[addr("Dataset/d")] = Readiness(False, failed=True,
                                                      message="job failed: OOMKilled")
    outcome = apply(provider, backend, [res("Dataset/d"), res("Model/m", {}, refs=["Dataset/d"])])
    assert states(outcome) == {
        "Dataset/default/d": (StepState.FAILED, "not ready: job failed: OOMKilled"),
        "Model/default/m": (StepState.SKIPPED, "Dataset/default/d did not complete")}
    assert outcome.exit_code == ExitCode.PARTIAL_APPLY
    # The object exists: it is recorded (not pending) so the next plan sees it.
    e = entries(backend)["Dataset/default/d"]
    assert e.pending is None and e.fingerprint == provider.objects[addr("Dataset/d")].fingerprint


def test_readiness_that_never_comes_fails_after_the_timeout(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    provider.readiness[addr("Dataset/d")] = Readiness(False, message="still pulling")
    plan = make_plan(provider, backend, [res("Dataset/d")])
    outcome = Executor(plan, Registry([provider]), StateSession(backend, backend.read()),
                       ready_timeout=1).run()
    assert states(outcome) == {"Dataset/default/d": (StepState.FAILED,
                                                     "not ready after 1s: still pulling")}
    assert 3 <= provider.calls.count(("ready", "Dataset/default/d")) <= 5


# -- the inventory ----------------------------------------------------------------------------

def test_inventory_after_success_holds_fingerprints_hashes_and_deps(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    resources = [res("Dataset/d", labels={"team": "ml"}), res("Model/m", {"x": 1}, refs=["Dataset/d"])]
    before = backend.read()
    apply(provider, backend, resources)
    after = backend.read()
    assert before is not None and after is not None
    assert after.lineage == LINEAGE and after.serial > before.serial
    for r in resources:
        e = after.entries[r.address]
        assert e == InventoryEntry(r.address, "simple", spec_hash(r.spec, r.labels),
                                   provider.objects[r.address].fingerprint, {"applied": "create"},
                                   None, r.refs)
    assert make_plan(provider, backend, resources).has_changes is False
    assert make_plan(provider, backend, resources).refresh == ()


def test_failed_step_keeps_its_pending_mark(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    provider.fail[addr("Dataset/a")] = "boom"
    apply(provider, backend, [res("Dataset/a"), res("Dataset/b")])
    found = entries(backend)
    assert found["Dataset/default/a"].pending is not None
    assert found["Dataset/default/a"].pending.operation == "create"
    assert found["Dataset/default/a"].pending.pid == os.getpid()
    assert found["Dataset/default/a"].fingerprint is None
    assert found["Dataset/default/b"].pending is None


def test_failed_update_keeps_the_recorded_fingerprint_and_adds_a_mark(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    apply(provider, backend, [res("Model/m", {"x": 1})])
    recorded = entries(backend)["Model/default/m"]
    provider.fail[addr("Model/m")] = "boom"
    apply(provider, backend, [res("Model/m", {"x": 2})])
    e = entries(backend)["Model/default/m"]
    assert e.pending is not None and e.pending.operation == "update"
    assert (e.fingerprint, e.spec_hash) == (recorded.fingerprint, recorded.spec_hash)


def test_deleted_objects_leave_the_inventory(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    apply(provider, backend, [res("Dataset/a"), res("Dataset/b")])
    outcome = apply(provider, backend, [res("Dataset/a")])
    assert states(outcome) == {"Dataset/default/b": (StepState.DONE, "")}
    assert set(entries(backend)) == {"Dataset/default/a"}
    assert addr("Dataset/b") not in provider.objects


def test_refresh_rewrites_entries_without_calling_apply(
        provider: SimpleProvider, backend: LocalStateBackend) -> None:
    r = res("Dataset/a")
    live = provider.put(r.address, r.spec)
    gone = res("Dataset/gone")
    backend.write(inventory(entry(r, None, pending="create"), entry(gone, "x/1"), serial=2), 1)
    plan = make_plan(provider, backend, [r])
    assert plan.refresh == (r.address, gone.address) and not plan.has_changes
    outcome = Executor(plan, Registry([provider]), StateSession(backend, backend.read())).run()
    assert outcome.results == () and provider.applied == []
    assert entries(backend) == {"Dataset/default/a": InventoryEntry(
        r.address, "simple", spec_hash(r.spec), live.fingerprint, {}, None, ())}


# -- SIGINT -----------------------------------------------------------------------------------

class Recorder(Reporter):
    def __init__(self) -> None:
        self.noticed = threading.Event()

    def interrupted(self, running: int) -> None:
        self.noticed.set()


def ignore(signum: int, frame: Any) -> None:
    pass


@pytest.fixture
def sigint_guard() -> Iterator[None]:
    """A harmless SIGINT handler around the test, so a stray signal cannot stop pytest."""
    previous = signal.signal(signal.SIGINT, ignore)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_in(provider: SimpleProvider, name: str, reporter: Recorder) -> None:
    def hook(request: ApplyRequest) -> None:
        if request.address.name == name:
            os.kill(os.getpid(), signal.SIGINT)
            assert reporter.noticed.wait(5), "the executor did not notice SIGINT"
            time.sleep(0.3)  # give the executor time to act on it while this step still runs

    provider.hook = hook


def test_sigint_lets_the_running_step_finish_and_starts_nothing_more(
        provider: SimpleProvider, backend: LocalStateBackend, sigint_guard: None) -> None:
    reporter = Recorder()
    interrupt_in(provider, "a", reporter)
    outcome = apply(provider, backend, [res("Model/a", {}), res("Model/b", {}, refs=["Model/a"]),
                                        res("Model/c", {}, refs=["Model/b"])],
                    parallelism=1, reporter=reporter)
    assert outcome.interrupted and outcome.exit_code == ExitCode.INTERRUPTED == 130
    assert states(outcome) == {"Model/default/a": (StepState.DONE, ""),
                               "Model/default/b": (StepState.NOT_STARTED, ""),
                               "Model/default/c": (StepState.NOT_STARTED, "")}
    assert provider.applied == [(addr("Model/a"), Action.CREATE)]
    assert {k: e.pending for k, e in entries(backend).items()} == {"Model/default/a": None}
    assert signal.getsignal(signal.SIGINT) is ignore  # the previous handler is back


def test_sigint_does_not_start_steps_queued_behind_parallelism(
        provider: SimpleProvider, backend: LocalStateBackend, sigint_guard: None) -> None:
    reporter = Recorder()
    interrupt_in(provider, "a", reporter)
    outcome = apply(provider, backend, [res("Dataset/a"), res("Dataset/b"), res("Dataset/c")],
                    parallelism=1, reporter=reporter)
    assert outcome.interrupted and outcome.exit_code == ExitCode.INTERRUPTED
    assert states(outcome) == {"Dataset/default/a": (StepState.DONE, ""),
                               "Dataset/default/b": (StepState.NOT_STARTED, ""),
                               "Dataset/default/c": (StepState.NOT_STARTED, "")}
    assert provider.applied == [(addr("Dataset/a"), Action.CREATE)]
    assert {k: e.pending for k, e in entries(backend).items()} == {"Dataset/default/a": None}


def test_sigint_starts_no_step_that_becomes_ready_while_others_finish(
        provider: SimpleProvider, backend: LocalStateBackend, sigint_guard: None) -> None:
    reporter = Recorder()

    def hook(request: ApplyRequest) -> None:
        if request.address.name == "a":
            os.kill(os.getpid(), signal.SIGINT)
            assert reporter.noticed.wait(5)
        elif request.address.name == "long":  # still running well after `a` is done
            assert reporter.noticed.wait(5)
            time.sleep(0.6)

    provider.hook = hook
    outcome = apply(provider, backend, [res("Dataset/a"), res("Dataset/long"),
                                        res("Model/b", {}, refs=["Dataset/a"])],
                    parallelism=2, reporter=reporter)
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert states(outcome) == {"Dataset/default/a": (StepState.DONE, ""),
                               "Dataset/default/long": (StepState.DONE, ""),
                               "Model/default/b": (StepState.NOT_STARTED, "")}
    assert sorted(entries(backend)) == ["Dataset/default/a", "Dataset/default/long"]
