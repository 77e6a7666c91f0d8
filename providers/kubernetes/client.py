"""The one module of the kubernetes provider that talks to the API server: plain-dict requests through
the kubernetes library's ApiClient, a fixed table of kinds (no discovery) and the only retries."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml

from substratus_cli.errors import ProviderError
from substratus_cli.retry import RetryPolicy
from substratus_providers.kubernetes import errors
from substratus_providers.kubernetes.errors import Call, Failure, KubernetesError
from substratus_providers.kubernetes.library import (
    ApiClient,
    ApiException,
    ConfigException,
    Configuration,
    RESTClientObject,
    kube_config,
)

log = logging.getLogger(__name__)

FIELD_MANAGER = "substratus"
Manifest = dict[str, Any]
Manifests = list[Manifest]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def resource(self) -> str:
        """The RBAC name, e.g. `deployments.apps`."""
        group = self.api_version.rpartition("/")[0]
        return f"{self.plural}.{group}" if group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        root = "/apis/" if "/" in self.api_version else "/api/"
        scope = f"/namespaces/{quote(namespace, safe='')}" if self.namespaced and namespace else ""
        path = f"{root}{self.api_version}{scope}/{self.plural}"
        return f"{path}/{quote(name, safe='')}" if name else path


# The kinds the provider writes. Known in advance, so no discovery requests (which the benchmark
# would count) are needed; `Client.kinds` may be extended per client.
KINDS: Mapping[tuple[str, str], ResourceType] = {(t.api_version, t.kind): t for t in (
    ResourceType("batch/v1", "Job", "jobs"),
    ResourceType("apps/v1", "Deployment", "deployments"),
    ResourceType("apps/v1", "StatefulSet", "statefulsets"),
    ResourceType("v1", "Service", "services"),
    ResourceType("v1", "Secret", "secrets"),
    ResourceType("v1", "ConfigMap", "configmaps"),
    ResourceType("v1", "Pod", "pods"),
    ResourceType("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ResourceType("v1", "Namespace", "namespaces", namespaced=False),
    ResourceType("v1", "Node", "nodes", namespaced=False),
)}


# A few tries within seconds: a plan or an apply step is waiting, and an API server's temporary
# answers (a 429 under load, a terminating namespace) pass quickly or not at all.
DEFAULT_RETRY = RetryPolicy(first_delay=0.5, max_delay=8.0, tries=5, deadline=20.0)


class Client:
    """Plain-dict access to one cluster. Thread safe; `requests` counts every HTTP request sent."""

    def __init__(self, api: ApiClient, *, context: str, namespace: str = "default",
                 retry: RetryPolicy | None = None, timeout: tuple[float, float] = (5.0, 60.0),
                 ) -> None:
        if api.configuration.retries is not False:
            # Retries live here, where they are counted and logged: urllib3's are turned off.
            api.configuration.retries = False
            api.rest_client = RESTClientObject(api.configuration)
        self._api = api
        self.server: str = api.configuration.host
        self.context = context
        self.namespace = namespace  # the context's default, as kubectl uses it
        self.retry = retry or DEFAULT_RETRY
        self.timeout = timeout  # (connect, read) seconds per request
        self.kinds: dict[tuple[str, str], ResourceType] = dict(KINDS)
        self.requests = 0
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, *,
                        retry: RetryPolicy | None = None) -> Client:
        """`path` None: $KUBECONFIG (a list, as kubectl reads it) or ~/.kube/config; `context`
        None: its current-context."""
        source = "" if path else " (from KUBECONFIG)" if os.environ.get("KUBECONFIG") else \
            " (the default location)"
        files = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        name, entry = _pick_context(files, source, context)
        configuration = type.__call__(Configuration)  # not a copy of the global default
        configuration.retries = False
        try:
            kube_config.load_kube_config(config_file=files, context=name, persist_config=False,
                                        client_configuration=configuration)
        except (ConfigException, OSError, ValueError) as e:
            raise ProviderError(f"cannot use kubeconfig context {name!r} of {files}: {e}",
                                hint="check it with: kubectl --context "
                                     f"{name} cluster-info") from e
        namespace = (entry.get("context") or {}).get("namespace") or "default"
        return cls(ApiClient(configuration), context=name, namespace=namespace, retry=retry)

    @classmethod
    def from_access(cls, name: str, server: str, ca_pem: str, token: Callable[[], str], *,
                    namespace: str = "default", retry: RetryPolicy | None = None) -> Client:
        """A cluster known by its endpoint, CA and a bearer token source (a GKE Cluster resource
        applied by this workspace): no kubeconfig. The token is asked for before each request,
        so the source refreshes it when it expires."""
        configuration = type.__call__(Configuration)
        configuration.host = server
        configuration.ssl_ca_cert = _ca_file(ca_pem)
        # As the library's kubeconfig loader does: the header's whole value, prefix included.
        configuration.api_key = {"authorization": ""}
        configuration.refresh_api_key_hook = (
            lambda c: c.api_key.update(authorization=f"Bearer {token()}"))
        configuration.retries = False
        return cls(ApiClient(configuration), context=name, namespace=namespace, retry=retry)

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the verbs

    def identity(self) -> tuple[str, str]:
        """(API server URL, uid of the kube-system namespace): what tells one cluster from another
        behind the same URL."""
        namespace = self.get("v1", "Namespace", None, "kube-system")
        if namespace is None:
            raise ProviderError(f"the Kubernetes API server at {self.server} has no kube-system "
                                "namespace; is it a Kubernetes cluster?")
        return self.server, str(namespace["metadata"]["uid"])

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> tuple[Manifests, str]:
        """One LIST request: the objects (with apiVersion and kind, which list items lack) and the
        list's resourceVersion. Namespace None: every namespace."""
        rt = self._type(api_version, kind)
        where = f" in namespace {namespace}" if namespace and rt.namespaced else ""
        selected = f" labelled {label_selector}" if label_selector else ""
        call = Call("list", "GET", rt.path(namespace), f"{rt.plural}{where}{selected}",
                    rt.resource, namespace)
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self._request(call, query) or {}
        items = [{"apiVersion": api_version, "kind": kind, **item}
                 for item in answer.get("items") or []]
        return items, str((answer.get("metadata") or {}).get("resourceVersion", ""))

    def get(self, api_version: str, kind: str, namespace: str | None,
            name: str) -> Manifest | None:
        """The object, or None when the server says it does not exist."""
        call = self._call("get", "GET", api_version, kind, namespace, name)
        return self._request(call, absent_ok=True)

    def apply(self, obj: Manifest, *, dry_run: bool = False, force: bool = False) -> Manifest:
        """Server-side apply as field manager `substratus`; the object the server answers
        (what it would be, with dry_run). `force` takes fields other managers own."""
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise ProviderError(f"cannot apply a {obj.get('kind')} without metadata.name")
        namespace = meta.get("namespace") or self.namespace
        call = self._call("apply", "PATCH", obj.get("apiVersion", ""), obj.get("kind", ""),
                          namespace, meta["name"])
        query = [("fieldManager", FIELD_MANAGER)]
        query += [("force", "true")] if force else []
        query += [("dryRun", "All")] if dry_run else []
        answer = self._request(call, query, body=obj, content_type="application/apply-patch+yaml")
        return answer or {}

    def merge_patch(self, obj: Manifest, patch: Manifest | None = None, *,
                    dry_run: bool = False) -> Manifest:
        """A JSON merge patch (RFC 7386) of the object `obj` names: `patch`, else `obj` itself,
        which replaces each list it holds whole (server-side apply merges lists item by item).
        The object the server answers (what it would be, with dry_run)."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or self.namespace
        call = self._call("patch", "PATCH", obj.get("apiVersion", ""), obj.get("kind", ""),
                          namespace, meta["name"])
        query = [("fieldManager", FIELD_MANAGER)] + ([("dryRun", "All")] if dry_run else [])
        answer = self._request(call, query, body=obj if patch is None else patch,
                               content_type="application/merge-patch+json")
        return answer or {}

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *,
               propagation: str = "Background") -> bool:
        """True when deleted (or being deleted), False when it was already gone."""
        call = self._call("delete", "DELETE", api_version, kind, namespace, name)
        query = [("propagationPolicy", propagation)]
        return self._request(call, query, absent_ok=True) is not None

    def create_namespace_if_missing(self, name: str,
                                    labels: Mapping[str, str] | None = None) -> bool:
        """True when it created the namespace. One request when allowed to create namespaces."""
        metadata: dict[str, Any] = {"name": name, **({"labels": dict(labels)} if labels else {})}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        rt = self.kinds[("v1", "Namespace")]
        try:
            self._request(Call("create", "POST", rt.path(None), f"Namespace {name}", rt.resource),
                          body=body)
        except KubernetesError as e:
            if e.status == 409 and e.reason == "AlreadyExists":
                return False
            # A user who may not create namespaces may still use one that exists.
            if e.status == 403 and self.get("v1", "Namespace", None, name) is not None:
                return False
            raise
        return True

    # -- requests

    def _type(self, api_version: str, kind: str) -> ResourceType:
        try:
            return self.kinds[(api_version, kind)]
        except KeyError:
            raise ProviderError(f"the kubernetes provider has no REST path for {kind} "
                                f"({api_version}); add it to Client.kinds") from None

    def _call(self, verb: str, method: str, api_version: str, kind: str,
              namespace: str | None, name: str) -> Call:
        rt = self._type(api_version, kind)
        scoped = namespace if rt.namespaced else None
        what = f"{kind} {scoped}/{name}" if scoped else f"{kind} {name}"
        return Call(verb, method, rt.path(scoped, name), what, rt.resource, scoped)

    def _request(self, call: Call, query: Sequence[tuple[str, str]] = (), *, body: Any = None,
                 content_type: str = "application/json",
                 absent_ok: bool = False) -> Manifest | None:
        """Sends `call`, retrying temporary failures under the RetryPolicy. None for a 404 about
        the named object when `absent_ok`; a KubernetesError for anything else that fails."""
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                return self._send(call, query, body, content_type)
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                failure: Failure = exc
            if absent_ok and isinstance(failure, ApiException) and errors.is_object_missing(failure):
                return None
            elapsed = time.monotonic() - started
            delay = self.retry.delay(attempt, errors.retry_after(failure))
            if not errors.is_temporary(failure) or not self.retry.allows(attempt, elapsed, delay):
                raise self._error(failure, call, attempt, elapsed) from failure
            of = f" of {self.retry.tries}" if self.retry.tries is not None else ""
            log.warning("%s %s: %s; retrying in %.1f s (try %d%s)", call.verb, call.what,
                        _summary(failure), delay, attempt + 1, of)
            time.sleep(delay)
        raise AssertionError("unreachable")  # itertools.count never ends

    def _send(self, call: Call, query: Sequence[tuple[str, str]], body: Any,
              content_type: str) -> Manifest:
        with self._lock:
            self.requests += 1
        headers = {**self._api.default_headers, "Accept": "application/json",
                   "Content-Type": content_type}
        started, status = time.monotonic(), "no answer"
        try:
            # Straight to the REST layer: ApiClient.call_api turns a TLS failure into an
            # AttributeError (it decodes the body such an error does not have).
            self._api.update_params_for_auth(headers, [], ["BearerToken"])
            answer = self._api.rest_client.request(
                call.method, self.server + call.path, query_params=list(query), headers=headers,
                body=body, _request_timeout=self.timeout)
            status = str(answer.status)
        except ApiException as e:
            status = str(e.status)
            raise
        except ConfigException as e:  # an exec plugin or token refresh failed
            status = "no credentials"
            raise ProviderError(f"cannot get credentials for kubeconfig context "
                                f"{self.context!r}: {e}") from e
        finally:
            # The path and query only: never a header (the bearer token) or a body (a Secret).
            log.debug("%s %s%s %s %.0f ms", call.method, call.path,
                      f"?{urlencode(query)}" if query else "", status,
                      (time.monotonic() - started) * 1000, extra={"api": "kubernetes"})
        try:
            decoded = json.loads(answer.data) if answer.data else {}
        except ValueError:  # e.g. a proxy's HTML page in front of the API server
            raise ProviderError(f"cannot {call.verb} {call.what}: {self.server} answered "
                                "something other than JSON; is it a Kubernetes API server?"
                                ) from None
        return decoded if isinstance(decoded, dict) else {}

    def _error(self, failure: Failure, call: Call, tries: int, seconds: float) -> KubernetesError:
        if errors.is_connection_failure(failure):
            return errors.unreachable(failure, self.server, self.context, tries, seconds)
        assert isinstance(failure, ApiException)
        if errors.is_temporary(failure):
            return errors.gave_up(failure, call, tries, seconds)
        return errors.from_answer(failure, call, self.server, self.context)


def _summary(failure: Failure) -> str:
    if errors.is_connection_failure(failure):
        return errors.connection_cause(failure)
    assert isinstance(failure, ApiException), failure  # urllib3's errors are connection failures
    return f"HTTP {failure.status} {errors.status_of(failure)['reason']}"


def _pick_context(files: str, source: str, context: str | None) -> tuple[str, dict[str, Any]]:
    """The context's name and entry; a ProviderError naming what is missing and how to fix it."""
    paths = [os.path.expanduser(p) for p in files.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in paths):
        raise ProviderError(f"no kubeconfig file at {files}{source}",
                            hint="point KUBECONFIG at one, or create it (on GKE: gcloud container "
                                 "clusters get-credentials CLUSTER)")
    try:
        contexts, current = kube_config.list_kube_config_contexts(files)
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as e:
        raise ProviderError(f"cannot read the kubeconfig {files}: {e}") from e
    names = [c.get("name") for c in contexts or []]
    if context is None:
        if not current:
            raise ProviderError(f"the kubeconfig {files} has no current-context",
                                hint="set the Environment's kubernetes.context, or run: kubectl "
                                     "config use-context NAME")
        return str(current["name"]), dict(current)
    for entry in contexts or []:
        if entry.get("name") == context:
            return context, dict(entry)
    raise ProviderError(f"kubeconfig context {context!r} not found in {files} (it has: "
                        f"{', '.join(map(str, names)) or 'none'})",
                        hint="set the Environment's kubernetes.context to one of them "
                             "(kubectl config get-contexts)")


def _ca_file(ca_pem: str) -> str:
    """A file holding the CA (the client library reads a CA from a path only), named by its
    content so each CA is written once. A CA is public: the system temp folder does."""
    digest = hashlib.sha256(ca_pem.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"substratus-ca-{digest}.pem")
    if not os.path.exists(path):
        fd, staging = tempfile.mkstemp(dir=tempfile.gettempdir(), prefix="substratus-ca-")
        with os.fdopen(fd, "w") as handle:
            handle.write(ca_pem)
        os.replace(staging, path)
    return path
