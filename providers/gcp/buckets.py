"""The Bucket kind: Cloud Storage buckets through google-cloud-storage. A read is one GET of the
bucket and one of its ownership marker; location forces a replacement, storage class and labels
change in place; a bucket that still holds objects is never deleted.

Ownership is a marker object, `.substratus/bucket.json`, created only if absent and carrying the
ownership labels as its metadata. Bucket labels would be the natural place, but fake-gcs-server
(the GCS server the tests run against) drops bucket labels, so ownership kept there could not be
tested; the marker works on every GCS implementation. The fingerprint is the bucket's creation
time and metageneration with the marker's generation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as gexc

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diff import field_changes
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_cli.resource import Resource
from substratus_providers.gcp import ownership
from substratus_providers.gcp.gcs import gcs_errors
from substratus_providers.gcp.specs import effective

MARKER = ".substratus/bucket.json"
REPLACED = ("spec.location",)


def bucket_spec(bucket: storage.Bucket) -> dict[str, Any]:
    """The fields a Bucket resource declares that GCS reports (its project only as a number)."""
    return {"location": str(bucket.location or "").upper(),
            "storageClass": str(bucket.storage_class or "").upper()}


def live_object(address: Address, bucket: storage.Bucket, marker: storage.Blob | None
                ) -> LiveObject:
    owner = dict(marker.metadata or {}) if marker is not None else {}
    labels = {**ownership.user_labels(bucket.labels or {}), **ownership.core_labels(owner)}
    created = bucket.time_created.isoformat() if bucket.time_created else ""
    stamp = f"{created}/{bucket.metageneration}/{marker.generation if marker else '-'}"
    return LiveObject(address, bucket_spec(bucket), {"url": f"gs://{bucket.name}"}, labels,
                      f"gcs:{stamp}")


def wanted(r: Resource) -> dict[str, Any]:
    spec = effective(r)
    return {"location": str(spec["location"]).upper(),
            "storageClass": str(spec["storageClass"]).upper()}


class Buckets:
    """The Bucket kind's KindHandler."""

    def __init__(self, client: Callable[[], storage.Client], part_of: str) -> None:
        self._client = client
        self.part_of = part_of

    @property
    def client(self) -> storage.Client:
        return self._client()

    def read(self, request: ReadRequest) -> ReadResponse:
        """One GET of each bucket and one of its marker. Bucket names are global: no places,
        and no listing for buckets no one asked for (a bucket in the state is always asked for)."""
        objects: dict[Address, LiveObject] = {}
        requests = 0
        for a in request.addresses:
            bucket = self._bucket(a.name)
            requests += 1
            if bucket is None:
                continue
            objects[a] = live_object(a, bucket, self._marker(bucket))
            requests += 1
        return ReadResponse(objects, requests=requests)

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, r, live = item.address, item.desired, item.live
        assert r is not None, f"{a}: deletes are planned by plan_batch"
        status = {"url": f"gs://{a.name}"}
        if live is None:
            return PlannedChange(a, Action.CREATE, planned_status=status)
        changes = field_changes(live.spec, wanted(r), forces_replacement=lambda p: p in REPLACED)
        changes += field_changes(ownership.user_labels(live.labels), r.labels,
                                 prefix="metadata.labels")
        if not changes:
            return PlannedChange(a, Action.NOOP, planned_status=status)
        if any(c.forces_replacement for c in changes):
            return PlannedChange(a, Action.REPLACE, "a bucket cannot move to another location",
                                 changes, status)
        return PlannedChange(a, Action.UPDATE, "", changes, status)

    def _bucket(self, name: str) -> storage.Bucket | None:
        with gcs_errors(f"read bucket {name}", f"gs://{name}"):
            found: storage.Bucket | None = self.client.lookup_bucket(name)
        return found

    def _marker(self, bucket: storage.Bucket) -> storage.Blob | None:
        with gcs_errors("read the ownership marker", f"gs://{bucket.name}/{MARKER}"):
            found: storage.Blob | None = bucket.get_blob(MARKER)
        return found

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, r = request.address, request.desired
        assert r is not None, f"{request.action} of {a} without a resource"
        if request.action is Action.REPLACE:
            self.delete(request)
        if request.action is Action.UPDATE:
            return self._update(a, r)
        return self._create(a, r)

    def _create(self, a: Address, r: Resource) -> LiveObject:
        want = effective(r)
        project = want.get("project") or self.client.project
        if not project:
            raise ProviderError(f"no project to create bucket {a.name} in",
                                hint="set spec.project, or a default project in the "
                                     "credentials (GOOGLE_CLOUD_PROJECT)")
        bucket = self.client.bucket(a.name)
        bucket.storage_class = wanted(r)["storageClass"]
        bucket.labels = dict(r.labels)
        try:
            with gcs_errors(f"create bucket {a.name}", f"gs://{a.name}"):
                bucket = self.client.create_bucket(bucket, project=project,
                                                   location=want["location"])
        except gexc.Conflict:
            raise ProviderError(f"the bucket name {a.name} is taken (bucket names are global "
                                "across Google Cloud)", hint="rename the Bucket") from None
        marker = bucket.blob(MARKER)
        marker.metadata = ownership.stamped({}, self.part_of, a.namespace)
        body = json.dumps({"managedBy": "substratus", "partOf": self.part_of,
                           "address": str(a)}, indent=2)
        with gcs_errors("write the ownership marker", f"gs://{a.name}/{MARKER}"):
            marker.upload_from_string(body, content_type="application/json",
                                      if_generation_match=0)
        return self._live(a)

    def _update(self, a: Address, r: Resource) -> LiveObject:
        bucket = self._owned(a)
        if bucket is None:
            raise ProviderError(f"bucket {a.name} is gone since the plan", hint="plan again")
        bucket.storage_class = wanted(r)["storageClass"]
        keep = {k: v for k, v in (bucket.labels or {}).items() if k.startswith("goog-")}
        bucket.labels = {**keep, **r.labels}
        try:
            with gcs_errors(f"update bucket {a.name}", f"gs://{a.name}"):
                bucket.patch(if_metageneration_match=bucket.metageneration)
        except gexc.PreconditionFailed:
            raise ProviderError(f"bucket {a.name} changed while it was being updated",
                                hint="plan again") from None
        return self._live(a)

    def delete(self, request: ApplyRequest) -> None:
        a = request.address
        bucket = self._owned(a)
        if bucket is None:
            return
        with gcs_errors("list the bucket's objects", f"gs://{a.name}"):
            held = [b.name for b in self.client.list_blobs(a.name, max_results=2)
                    if b.name != MARKER]
        if held:
            raise ProviderError(f"bucket {a.name} is not empty (it holds {held[0]}"
                                f"{' and more' if len(held) > 1 else ''}); substratus does not "
                                "delete data", hint=f"empty it first: gcloud storage rm -r "
                                                    f"'gs://{a.name}/**'")
        marker = self._marker(bucket)
        try:
            with gcs_errors(f"delete bucket {a.name}", f"gs://{a.name}"):
                if marker is not None:
                    marker.delete(if_generation_match=marker.generation)
                bucket.delete()
        except gexc.NotFound:
            return
        except gexc.PreconditionFailed:
            raise ProviderError(f"bucket {a.name} changed while it was being deleted",
                                hint="plan again") from None

    def _owned(self, a: Address) -> storage.Bucket | None:
        """The bucket (None: gone), refused unless its marker names this workspace."""
        bucket = self._bucket(a.name)
        if bucket is None:
            return None
        marker = self._marker(bucket)
        if marker is None or not ownership.owned_by(marker.metadata or {}, self.part_of):
            raise ProviderError(f"bucket {a.name} is not marked as managed by this workspace "
                                f"(gs://{a.name}/{MARKER}); {a} leaves it alone")
        return bucket

    def _live(self, a: Address) -> LiveObject:
        bucket = self._bucket(a.name)
        if bucket is None:
            raise ProviderError(f"bucket {a.name} is gone right after it was changed")
        return live_object(a, bucket, self._marker(bucket))

    def ready(self, live: LiveObject) -> Readiness:
        if self._bucket(live.address.name) is None:
            return Readiness(False, failed=True, message=f"gs://{live.address.name} is gone")
        return Readiness(True)
