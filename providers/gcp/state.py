"""The GCS state backend: `gs://bucket/prefix` holds inventory.json and lock.json.

The lock is a create-only object (ifGenerationMatch=0) whose generation is the lock id; it is
released only while that generation is still the live one. Inventory writes are compare-and-swap.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from substratus_cli.errors import LockError, ProviderError, SubstratusError
from substratus_cli.state.backend import ConflictError, LockHeldError, LockInfo, restore_hint
from substratus_cli.state.inventory import Inventory
from substratus_providers.gcp.gcs import gcs_errors, parse_url

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 10.0
class _Heartbeat:
    """Stamps the lock object's metadata so others can tell a live holder from a dead one."""

    def __init__(self, blob: storage.Blob, generation: int, interval: float) -> None:
        self._blob, self._generation, self._interval = blob, generation, interval
        self._stop = threading.Event()
        self.lost = False  # the lock object was replaced or removed under us
        self._thread = threading.Thread(target=self._run, name=f"gcs-lock-heartbeat-{generation}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._blob.metadata = {"heartbeat": f"{time.time():.3f}"}
            try:
                # Bound to our generation: never stamp a lock someone else now holds.
                self._blob.patch(if_generation_match=self._generation)
            except (gexc.PreconditionFailed, gexc.NotFound):
                self.lost = True
                return
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


class GCSStateBackend:
    def __init__(self, url: str, client: storage.Client | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.bucket_name, self.prefix = parse_url(url)
        self.location = f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")
        self._client_arg = client
        self._heartbeat_seconds = heartbeat_seconds
        self._seen: tuple[int, int] | None = None  # (serial, generation) last read or written
        self._read: tuple[int, bytes] | None = None  # (serial, bytes) of the last read
        self._backed_up = False  # this run kept the state it started from
        self._heartbeats: dict[str, _Heartbeat] = {}

    # -- plumbing --------------------------------------------------------------------------

    def _object_name(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _bucket(self) -> storage.Bucket:
        if self._client_arg is None:  # created on first use: constructing needs no credentials
            with gcs_errors("connect to Cloud Storage", self.location):
                self._client_arg = storage.Client()
        return self._client_arg.bucket(self.bucket_name)

    def _blob(self, name: str) -> storage.Blob:
        return self._bucket().blob(self._object_name(name))

    def _download(self, name: str, what: str) -> tuple[bytes, storage.Blob] | None:
        """The object's bytes and its blob (generation, metadata), or None when absent."""
        blob = self._blob(name)
        try:
            with gcs_errors(what, self.location):
                data = blob.download_as_bytes()  # one request: content and generation agree
        except gexc.NotFound:
            return None
        return data, blob

    def _check_bucket(self) -> None:
        with gcs_errors("read the state bucket", self.location):
            exists = self._bucket().exists()
        if not exists:
            raise ProviderError(f"the state bucket gs://{self.bucket_name} does not exist",
                                hint=f"create it: gcloud storage buckets create gs://{self.bucket_name}")

    def _not_found(self, what: str) -> ProviderError:
        self._check_bucket()  # raises the clearer error when the bucket is the missing part
        return ProviderError(f"cannot {what} at {self.location}: Cloud Storage answered 404")

    # -- inventory -------------------------------------------------------------------------

    def read(self) -> Inventory | None:
        found = self._download("inventory.json", "read the state")
        if found is None:
            self._check_bucket()  # a missing bucket must not read as "nothing applied yet"
            self._seen = None
            return None
        data, blob = found
        try:
            inventory = Inventory.from_dict(json.loads(data))
        except (ValueError, KeyError, TypeError) as e:
            raise SubstratusError(f"the state object {self.location}/inventory.json is damaged: {e}",
                                  hint=self._restore_hint()) from None
        self._seen = (inventory.serial, int(blob.generation))
        self._read = (inventory.serial, data)
        return inventory

    def read_backup(self) -> Inventory | None:
        found = self._download("inventory.json.backup", "read the state backup")
        if found is None:
            return None
        try:
            return Inventory.from_dict(json.loads(found[0]))
        except (ValueError, KeyError, TypeError) as e:
            raise SubstratusError(f"the state backup {self.location}/inventory.json.backup is "
                                  f"damaged too: {e}") from None

    def _restore_hint(self) -> str:
        return restore_hint(
            self, f"gcloud storage cp {self.location}/inventory.json.backup "
                  f"{self.location}/inventory.json",
            "no backup of it is kept yet; restore an earlier generation of the object if the "
            "bucket keeps versions (it is small JSON)")

    def _keep_backup(self, expected_serial: int | None) -> None:
        """The state this run started from, once per run (terraform.tfstate.backup)."""
        if self._backed_up or expected_serial is None:
            self._backed_up = True
            return
        if self._read is None or self._read[0] != expected_serial:
            self.read()
        if self._read is not None and self._read[0] == expected_serial:
            # Retried although unconditional (the client retries only conditional writes by
            # default): writing the same bytes twice changes nothing.
            with gcs_errors("keep the state backup", self.location):
                self._blob("inventory.json.backup").upload_from_string(
                    self._read[1], content_type="application/json", retry=DEFAULT_RETRY)
        self._backed_up = True

    def _generation_for(self, expected_serial: int | None) -> int:
        """The generation the write must replace: 0 for "nothing stored", else that serial's."""
        if expected_serial is None:
            return 0
        if self._seen is not None and self._seen[0] == expected_serial:
            return self._seen[1]
        current = self.read()
        if current is None or current.serial != expected_serial:
            raise self._conflict(current.serial if current else None, expected_serial)
        assert self._seen is not None
        return self._seen[1]

    def _conflict(self, found: int | None, expected: int | None) -> ConflictError:
        return ConflictError(f"the state at {self.location} changed while this run held it "
                             f"(serial {found}, expected {expected})")

    def write(self, inventory: Inventory, expected_serial: int | None) -> None:
        generation = self._generation_for(expected_serial)
        self._keep_backup(expected_serial)
        blob = self._blob("inventory.json")
        body = json.dumps(inventory.to_dict(), indent=2)
        # Names this write: the client sends a conditional write again when its answer was lost,
        # and if the first try landed the retry is refused; the stored object then carries it.
        blob.metadata = {"write": uuid.uuid4().hex}
        try:
            with gcs_errors("write the state", self.location):
                blob.upload_from_string(body, content_type="application/json",
                                        if_generation_match=generation)
        except gexc.PreconditionFailed:
            if self._landed(blob.metadata["write"], inventory.serial):
                return
            self._seen = None
            current = self.read()
            raise self._conflict(current.serial if current else None, expected_serial) from None
        except gexc.NotFound:
            raise self._not_found("write the state") from None
        self._seen = (inventory.serial, int(blob.generation))

    def _landed(self, write: str, serial: int) -> bool:
        """Whether the stored inventory is the one the write named `write` stored."""
        with gcs_errors("read the state", self.location):
            stored = self._bucket().get_blob(self._object_name("inventory.json"))
        if stored is None or (stored.metadata or {}).get("write") != write:
            return False
        self._seen = (serial, int(stored.generation))
        return True

    # -- lock ------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float) -> LockInfo:
        info = LockInfo.new(operation)
        body = json.dumps({**dataclasses.asdict(info), "id": ""})  # the id is the generation
        deadline = time.monotonic() + timeout
        while True:
            generation = self._try_create_lock(body, info)
            if generation is not None:
                break
            if time.monotonic() >= deadline:
                raise LockHeldError(self.current_lock(), self.location)
            time.sleep(min(POLL_SECONDS, max(0.05, deadline - time.monotonic())))
        held = dataclasses.replace(info, id=str(generation))
        self._heartbeats[held.id] = _Heartbeat(self._blob("lock.json"), generation,
                                               self._heartbeat_seconds)
        return held

    def _try_create_lock(self, body: str, info: LockInfo) -> int | None:
        """The new lock's generation, or None when someone else holds it."""
        blob = self._blob("lock.json")
        try:
            with gcs_errors("take the state lock", self.location):
                blob.upload_from_string(body, content_type="application/json",
                                        if_generation_match=0)
        except gexc.PreconditionFailed:
            return self._ours_after_retry(info)
        except gexc.NotFound:
            raise self._not_found("take the state lock") from None
        return int(blob.generation)

    def _ours_after_retry(self, info: LockInfo) -> int | None:
        """A retried create whose first attempt landed sees its own lock as "held": claim it."""
        found = self._lock_object()
        if found is None:
            return None
        holder, generation, _ = found
        # The stored record has no id (the generation is the id): compare without it.
        ours = dataclasses.replace(holder, id="") == dataclasses.replace(info, id="")
        return generation if ours else None

    def _lock_object(self) -> tuple[LockInfo, int, dict[str, str]] | None:
        """The lock holder, its generation and its metadata, or None when unlocked."""
        found = self._download("lock.json", "read the state lock")
        if found is None:
            return None
        data, blob = found
        generation = int(blob.generation)
        try:
            fields: dict[str, Any] = json.loads(data)
            holder = LockInfo(**{**fields, "id": str(generation)})
        except (ValueError, TypeError):
            # Unreadable details still name the lock by its id, so force-unlock can clear it.
            holder = LockInfo(id=str(generation), operation="unknown", who="unknown",
                              host="unknown", pid=0, created=0.0)
        return holder, generation, dict(blob.metadata or {})

    def current_lock(self) -> LockInfo | None:
        found = self._lock_object()
        return found[0] if found else None

    def _delete_lock(self, generation: int) -> bool:
        """Delete lock.json if `generation` is still the live one; False if another one is.
        Callers have just read that generation there, so a 404 is this delete's own retry (the
        client sends a conditional delete again when its answer was lost): it is gone."""
        try:
            with gcs_errors("release the state lock", self.location):
                self._blob("lock.json").delete(if_generation_match=generation)
        except gexc.PreconditionFailed:
            return False
        except gexc.NotFound:
            return True
        return True

    def unlock(self, lock: LockInfo) -> None:
        beat = self._heartbeats.pop(lock.id, None)
        if beat is not None:
            beat.stop()
        found = self._lock_object()
        # Checked before the conditional delete too, so the refusal can name who holds it now.
        if found is None or str(found[1]) != lock.id or not self._delete_lock(int(lock.id)):
            now = self._lock_object()
            current = f"it is now held: {now[0].describe()}" if now else "no lock is held now"
            raise LockError(f"the state lock {lock.id} at {self.location} is not ours any more: "
                            f"{current}",
                            hint="someone ran force-unlock on it; check the state before going on")

    def force_unlock(self, lock_id: str) -> str:
        found = self._lock_object()
        if found is None or str(found[1]) != lock_id or not self._delete_lock(int(lock_id)):
            now = self._lock_object()
            current = f"the current lock is {now[0].describe()}" if now else "no lock is recorded"
            raise SubstratusError(f"no lock with ID {lock_id} at {self.location}: {current}")
        holder, _, metadata = found
        return f"Lock {lock_id} ({holder.describe()}) was released{_heartbeat_note(metadata)}."


def _heartbeat_note(metadata: dict[str, str]) -> str:
    try:
        age = time.time() - float(metadata["heartbeat"])
    except (KeyError, ValueError):
        return "; it never sent a heartbeat"
    return f"; its last heartbeat was {age:.0f}s ago"
