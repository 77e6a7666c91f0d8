"""The parts of the kubernetes library the provider uses (its Configuration, REST layer,
ApiClient and kubeconfig loader, exec and auth plugins included), imported without the generated
API and model modules that its package `__init__` files import: those are about 600 modules,
0.5 s of every plan, and the provider sends plain dicts.

`kubernetes`, `kubernetes.client` and `kubernetes.client.models` are put in `sys.modules` as
their packages before their `__init__` runs, so that their submodules import alone. The first
time anything asks one of them for a name it lacks (`kubernetes.client.CoreV1Api`, `from
kubernetes import watch`), its `__init__` runs then, once: code elsewhere in the process that
uses the whole library gets the whole library. When the library was imported whole before this
module, it is used as it is."""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.RLock()


def _package_shell(name: str) -> types.ModuleType:
    """The package `name` in sys.modules, its `__init__` not run yet (or the module already
    there); the first missing attribute runs it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"no package {name}", name=name)
    module = importlib.util.module_from_spec(spec)
    state = {"initialized": False}

    def __getattr__(attribute: str) -> Any:
        with _lock:
            if not state["initialized"]:
                # While it runs, a miss is an ordinary one (`from . import x` imports x).
                state["initialized"] = True
                spec.loader.exec_module(module)  # type: ignore[union-attr]
        if attribute in module.__dict__:
            return module.__dict__[attribute]
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _load() -> dict[str, Any]:
    with _lock:
        _package_shell("kubernetes")
        client = _package_shell("kubernetes.client")
        _package_shell("kubernetes.client.models")
        # Submodules by their full names, each before those that take it from the package
        # (`from kubernetes.client import rest` in api_client): a name the package lacks would
        # run its __init__. Then the names `kubernetes.config` takes from `kubernetes.client`.
        modules = {name: importlib.import_module(f"kubernetes.client.{name}")
                   for name in ("exceptions", "rest", "configuration", "api_client")}
        for name, module in (("ApiClient", modules["api_client"]),
                             ("Configuration", modules["configuration"])):
            if name not in client.__dict__:
                setattr(client, name, getattr(module, name))
        modules["kube_config"] = importlib.import_module("kubernetes.config.kube_config")
        modules["config_exception"] = importlib.import_module(
            "kubernetes.config.config_exception")
        return modules


_modules = _load()
ApiClient = _modules["api_client"].ApiClient
ApiException = _modules["exceptions"].ApiException
ConfigException = _modules["config_exception"].ConfigException
Configuration = _modules["configuration"].Configuration
RESTClientObject = _modules["rest"].RESTClientObject
kube_config = _modules["kube_config"]

__all__ = ["ApiClient", "ApiException", "ConfigException", "Configuration", "RESTClientObject",
           "kube_config"]
