"""What substratus manages in an object (providers/kubernetes/managed.py): the values of the
fields its server-side applies own, as the API server records them in managedFields."""

from __future__ import annotations

import copy
from typing import Any

from substratus_providers.kubernetes.managed import content_digest, owned_fields, project

# A Service as the API server answers it after `substratus` applied it and `kubectl label`
# added a label (fieldsV1 as the server writes it).
SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {
        "name": "server-tiny", "namespace": "ml", "uid": "u-1", "resourceVersion": "7",
        "labels": {"substratus.ai/name": "tiny", "example.com/team": "ml"},
        "managedFields": [
            {"manager": "substratus", "operation": "Apply", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:substratus.ai/name": {}}},
                "f:spec": {"f:ports": {'k:{"port":8080,"protocol":"TCP"}': {
                    ".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {}, "f:type": {}}}},
            {"manager": "kubectl-label", "operation": "Update", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:example.com/team": {}}}}},
        ]},
    "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.9", "selector": {"app": "tiny"},
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}]},
    "status": {"loadBalancer": {}},
}


def test_only_the_fields_substratus_applied_are_projected() -> None:
    assert project(SERVICE, owned_fields(SERVICE)) == {
        "metadata": {"labels": {"substratus.ai/name": "tiny"}},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
                 "selector": {"app": "tiny"}, "type": "ClusterIP"}}


def test_another_managers_label_and_the_servers_fields_leave_the_digest_alone() -> None:
    other = copy.deepcopy(SERVICE)
    other["metadata"]["labels"]["example.com/owner"] = "team-ml"
    other["metadata"]["resourceVersion"] = "8"
    other["spec"]["clusterIP"] = "10.0.0.10"
    other["status"] = {"loadBalancer": {"ingress": []}}
    assert content_digest([other]) == content_digest([SERVICE])


def test_a_changed_port_changes_the_digest_even_when_the_field_passed_to_another_manager(
        ) -> None:
    edited = copy.deepcopy(SERVICE)
    edited["spec"]["ports"][0]["port"] = 9090
    assert content_digest([edited]) != content_digest([SERVICE])
    # As the server records it: the item substratus owned is gone from its set.
    del edited["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert content_digest([edited]) != content_digest([SERVICE])


def test_an_object_made_anew_changes_the_digest() -> None:
    again = copy.deepcopy(SERVICE)
    again["metadata"]["uid"] = "u-2"
    assert content_digest([again]) != content_digest([SERVICE])


def test_set_and_positional_items() -> None:
    value = {"finalizers": ["a", "b"], "args": ["x", "y"]}
    fields: dict[str, Any] = {"f:finalizers": {'v:"b"': {}}, "f:args": {"i:1": {}}}
    assert project(value, fields) == {"finalizers": ["b"], "args": ["y"]}
