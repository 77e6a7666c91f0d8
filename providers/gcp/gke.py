"""GKE clusters and node pools through google-cloud-container's REST transport: the one module of
the gcp provider that talks to the GKE API. Every change is polled to DONE; GKE's "incompatible
operation" and concurrent-operation quota answers are retried here with capped backoff."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exc
from google.cloud import container_v1

from substratus_artifacts.gcs import CREDENTIALS_HINT, logged
from substratus_cli.errors import ProviderError
from substratus_cli.retry import RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

T = TypeVar("T")
ENDPOINT_ENV = "SUBSTRATUS_GKE_ENDPOINT"
_DONE = container_v1.Operation.Status.DONE
# GKE answers 400 FAILED_PRECONDITION while another operation runs on the cluster; older clusters
# word it the second way. Both go away when that operation is DONE.
_BUSY = re.compile(r"incompatible operation|is currently \w+ing cluster|"
                   r"try again once it is done", re.IGNORECASE)
_URL_PREFIX = re.compile(r"^[A-Z]+ https?://\S+: ")  # what google-api-core puts before the message


@dataclasses.dataclass(frozen=True)
class ClusterRef:
    project: str
    location: str
    name: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def path(self) -> str:
        return f"{self.parent}/clusters/{self.name}"

    def __str__(self) -> str:
        return f"GKE cluster {self.name} ({self.project}/{self.location})"


@dataclasses.dataclass(frozen=True)
class NodePoolRef:
    cluster: ClusterRef
    name: str

    @property
    def path(self) -> str:
        return f"{self.cluster.path}/nodePools/{self.name}"

    def __str__(self) -> str:
        c = self.cluster
        return f"GKE node pool {self.name} of cluster {c.name} ({c.project}/{c.location})"


# A refused change is sent again for up to half an hour: GKE operations take minutes, so a
# cluster can stay busy for a long while. A read that keeps failing (GKE unreachable, 5xx) fails
# the plan within a minute: someone is waiting for it, and a busy cluster never refuses a read.
DEFAULT_RETRY = RetryPolicy(first_delay=2.0, max_delay=30.0, deadline=1800.0, read_deadline=60.0)


@dataclasses.dataclass(frozen=True)
class Completed:
    """A change GKE carried out: its DONE operation (None: a delete of something already gone),
    how many times it was refused as temporary and sent again, and the resource as it now is
    (None after a delete)."""

    operation: container_v1.Operation | None
    retries: int
    resource: container_v1.Cluster | container_v1.NodePool | None = None


class GKE:
    """Clusters and node pools of any project. `retries` counts every retry this object made."""

    def __init__(self, client: container_v1.ClusterManagerClient, *, poll_interval: float = 5.0,
                 operation_timeout: float = 3600.0, retry: RetryPolicy | None = None,
                 request_timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 ) -> None:
        self.client = client
        session = getattr(getattr(client, "_transport", None), "_session", None)
        if session is not None:  # the REST transport's requests session: log each request
            session.hooks["response"].append(logged(log, "gke"))
        self.poll_interval = poll_interval
        self.operation_timeout = operation_timeout
        self.retry = retry or DEFAULT_RETRY
        self.request_timeout = request_timeout
        self.retries = 0
        self._sleep = sleep
        self._lock = threading.Lock()  # apply steps share one GKE across threads

    @classmethod
    def connect(cls, endpoint: str | None = None,
                credentials: auth_credentials.Credentials | None = None, **kwargs: Any) -> GKE:
        """The real GKE with Application Default Credentials, or the API at `endpoint` (else
        $SUBSTRATUS_GKE_ENDPOINT), e.g. a fake, with anonymous credentials."""
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
        options = {"api_endpoint": endpoint} if endpoint else None
        if endpoint and credentials is None:
            credentials = auth_credentials.AnonymousCredentials()
        try:
            client = container_v1.ClusterManagerClient(transport="rest", credentials=credentials,
                                                       client_options=options)
        except auth_exc.DefaultCredentialsError as e:
            raise ProviderError(f"cannot reach GKE: no Google credentials found ({e})",
                                hint=CREDENTIALS_HINT) from None
        return cls(client, **kwargs)

    # -- clusters

    def get_cluster(self, ref: ClusterRef) -> container_v1.Cluster | None:
        return self._get(f"reading {ref}", lambda: self.client.get_cluster(
            request={"name": ref.path}, **self._options()))

    def list_clusters(self, project: str, location: str = "-") -> list[container_v1.Cluster]:
        """One request for every cluster of the project in `location` (`-`: all locations)."""
        parent = f"projects/{project}/locations/{location}"
        answer = self._read(f"listing GKE clusters in {project}/{location}",
                            lambda: self.client.list_clusters(request={"parent": parent},
                                                              **self._options()))
        return list(answer.clusters)

    def create_cluster(self, ref: ClusterRef, cluster: container_v1.Cluster) -> Completed:
        request = container_v1.CreateClusterRequest(parent=ref.parent, cluster=cluster)
        request.cluster.name = ref.name
        done = self._change(f"creating {ref}", ref,
                            lambda: self.client.create_cluster(request=request, **self._options()))
        return dataclasses.replace(done, resource=self.get_cluster(ref))

    def update_cluster(self, ref: ClusterRef, update: container_v1.ClusterUpdate) -> Completed:
        """One ClusterUpdate (GKE changes one desired* field per call)."""
        done = self._change(f"updating {ref}", ref, lambda: self.client.update_cluster(
            request={"name": ref.path, "update": update}, **self._options()))
        return dataclasses.replace(done, resource=self.get_cluster(ref))

    def delete_cluster(self, ref: ClusterRef) -> Completed:
        """Deletes the cluster with its node pools; one already gone is no error."""
        return self._change(f"deleting {ref}", ref, lambda: self.client.delete_cluster(
            request={"name": ref.path}, **self._options()), absent_ok=True)

    # -- node pools

    def get_node_pool(self, ref: NodePoolRef) -> container_v1.NodePool | None:
        return self._get(f"reading {ref}", lambda: self.client.get_node_pool(
            request={"name": ref.path}, **self._options()))

    def list_node_pools(self, cluster: ClusterRef) -> list[container_v1.NodePool]:
        answer = self._read(f"listing the node pools of {cluster}", lambda: (
            self.client.list_node_pools(request={"parent": cluster.path}, **self._options())))
        return list(answer.node_pools)

    def create_node_pool(self, ref: NodePoolRef, node_pool: container_v1.NodePool) -> Completed:
        request = container_v1.CreateNodePoolRequest(parent=ref.cluster.path, node_pool=node_pool)
        request.node_pool.name = ref.name
        done = self._change(f"creating {ref}", ref.cluster, lambda: self.client.create_node_pool(
            request=request, **self._options()))
        return dataclasses.replace(done, resource=self.get_node_pool(ref))

    def update_node_pool(self, ref: NodePoolRef, **fields: Any) -> Completed:
        """UpdateNodePoolRequest fields (machine_type, locations, taints, ...): see
        nodepools.IN_PLACE."""
        request = container_v1.UpdateNodePoolRequest(name=ref.path, **fields)
        return self._change_pool(f"updating {ref}", ref, lambda: self.client.update_node_pool(
            request=request, **self._options()))

    def set_node_pool_size(self, ref: NodePoolRef, node_count: int) -> Completed:
        request = container_v1.SetNodePoolSizeRequest(name=ref.path, node_count=node_count)
        return self._change_pool(f"resizing {ref} to {node_count}", ref, lambda: (
            self.client.set_node_pool_size(request=request, **self._options())))

    def set_node_pool_autoscaling(self, ref: NodePoolRef,
                                  autoscaling: container_v1.NodePoolAutoscaling) -> Completed:
        request = container_v1.SetNodePoolAutoscalingRequest(name=ref.path,
                                                              autoscaling=autoscaling)
        return self._change_pool(f"setting the autoscaling of {ref}", ref, lambda: (
            self.client.set_node_pool_autoscaling(request=request, **self._options())))

    def delete_node_pool(self, ref: NodePoolRef) -> Completed:
        return self._change(f"deleting {ref}", ref.cluster, lambda: self.client.delete_node_pool(
            request={"name": ref.path}, **self._options()), absent_ok=True)

    # -- operations and retries

    def _options(self) -> dict[str, Any]:
        # Retries are this module's (counted and logged), not the library's defaults.
        return {"retry": None, "timeout": self.request_timeout}

    def _change_pool(self, what: str, ref: NodePoolRef,
                     send: Callable[[], container_v1.Operation]) -> Completed:
        done = self._change(what, ref.cluster, send)
        return dataclasses.replace(done, resource=self.get_node_pool(ref))

    def _change(self, what: str, cluster: ClusterRef, send: Callable[[], container_v1.Operation],
                *, absent_ok: bool = False) -> Completed:
        """Send a change, retrying while GKE refuses it as temporary, and wait for it."""
        try:
            operation, retries = self._retrying(what, send, change=True)
        except gexc.NotFound as e:
            if absent_ok:
                return Completed(None, 0)
            raise ProviderError(f"{what}: {_message(e)}") from None
        return Completed(self._wait(what, cluster, operation), retries)

    def _wait(self, what: str, cluster: ClusterRef,
              operation: container_v1.Operation) -> container_v1.Operation:
        name = f"{cluster.parent}/operations/{operation.name}"
        give_up = time.monotonic() + self.operation_timeout
        while operation.status != _DONE:
            if time.monotonic() > give_up:
                raise ProviderError(
                    f"{what}: operation {operation.name} is still {operation.status.name} after "
                    f"{self.operation_timeout:g} s",
                    hint="GKE goes on with it; the next plan reads where it got to")
            self._sleep(self.poll_interval)
            try:
                operation, _ = self._retrying(f"{what}: polling {operation.name}", lambda: (
                    self.client.get_operation(request={"name": name}, **self._options())),
                    change=False)
            except gexc.NotFound as e:
                raise ProviderError(f"{what}: its operation is gone: {_message(e)}") from None
        message = operation.error.message or operation.status_message
        if operation.error.code or message:
            message = message or f"error code {operation.error.code}"
            raise ProviderError(f"{what} failed: {message} (operation {operation.name})")
        return operation

    def _get(self, what: str, send: Callable[[], T]) -> T | None:
        try:
            return self._read(what, send)
        except gexc.NotFound:
            return None

    def _read(self, what: str, send: Callable[[], T]) -> T:
        return self._retrying(what, send, change=False)[0]

    def _retrying(self, what: str, send: Callable[[], T], *, change: bool) -> tuple[T, int]:
        """(answer, retries). NotFound passes through: callers give it meaning."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return send(), attempt
            except gexc.NotFound:
                raise
            except Exception as e:  # noqa: BLE001 - sorted into temporary and permanent below
                reason = _temporary(e, change)
                if reason is None:
                    error = _permanent(what, e)
                    if error is None:
                        raise
                    raise error from None
                attempt += 1
                delay = self.retry.delay(attempt, _retry_after(e))
                waited = time.monotonic() - started
                if not self.retry.allows(attempt, waited, delay, read=not change):
                    raise ProviderError(
                        f"{what}: GKE still refuses after {attempt - 1} retries over "
                        f"{_seconds(waited)}: {reason}",
                        hint="try again later; `gcloud container operations list` shows what "
                             "runs on the cluster") from None
                with self._lock:
                    self.retries += 1
                log.warning("%s: %s; retrying in %s (retry %d)", what, reason.rstrip("."),
                            _seconds(delay), attempt)
                self._sleep(delay)


def _message(e: gexc.GoogleAPICallError) -> str:
    return _URL_PREFIX.sub("", e.message or "")


def _temporary(e: Exception, change: bool) -> str | None:
    """Why `e` will go away by itself, or None when it will not. A change is sent again only
    when GKE said it did not take it (busy, quota, 503): after a lost connection or a 500 it may
    have gone through, and a second create would answer 409."""
    if isinstance(e, gexc.BadRequest) and _BUSY.search(_message(e)):
        return _message(e)
    if isinstance(e, gexc.TooManyRequests | gexc.ServiceUnavailable):
        return _message(e)
    if change:
        return None
    if isinstance(e, gexc.InternalServerError | gexc.BadGateway | gexc.GatewayTimeout):
        return _message(e)
    if isinstance(e, requests.ConnectionError | requests.Timeout):
        return f"GKE is unreachable: {e}"
    return None


def _permanent(what: str, e: Exception) -> ProviderError | None:
    """The error a user reads for `e`; None for what is not an API failure (a bug)."""
    if isinstance(e, auth_exc.DefaultCredentialsError | auth_exc.RefreshError):
        return ProviderError(f"{what}: no usable Google credentials: {e}", hint=CREDENTIALS_HINT)
    if isinstance(e, gexc.Unauthorized | gexc.Forbidden):
        return ProviderError(f"{what}: access denied: {_message(e)}",
                             hint="the account needs roles/container.admin on the project; "
                                  + CREDENTIALS_HINT)
    if isinstance(e, gexc.GoogleAPICallError):
        return ProviderError(f"{what}: {_message(e)}")
    if isinstance(e, requests.RequestException | auth_exc.TransportError):
        return ProviderError(f"{what}: GKE is unreachable: {e}",
                             hint="if it was a change that went through, the next plan shows it")
    return None


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    return retry_after_seconds(response.headers.get("Retry-After") if response is not None
                               else None)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 1 else f"{value:.2f} s"
