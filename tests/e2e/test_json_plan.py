"""`plan --json` in Terraform's `show -json` shape, from real plans of the local runtime: each
scenario (create, update, replace, delete, drift, sensitive) is planned on a workspace like the
quickstart's datasets, checked here field by field and against its golden file in
tests/unit/goldens/tfjson/ (`pytest --update-goldens` rewrites them). test_tfjson.py hands the
goldens to a real consumer, hashicorp/terraform-json. `show --json` of the same plan saved with
`--out` prints the same document."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.goldens import check_golden

SECRET = "tok-golden-never-printed"
DIGEST_FAVORITE = "sha256:7c6955e149fd0d1e22fb82e200a4e116cbfcd48333cfe20b6c99a23c9a13a74a"

Cli = Callable[..., Any]


@pytest.fixture
def workspace(quickstart_datasets: Path) -> Path:
    """The quickstart's datasets (environment, two path-sourced datasets and their data)."""
    return quickstart_datasets


def planned(cli: Cli, workdir: Path, name: str, update: bool, *args: str) -> dict[str, Any]:
    """`plan --json`, checked against `show --json` of the same plan saved, and its golden."""
    result = cli("plan", "--json", workdir, *args)
    assert result.code == 0, result.output
    doc: dict[str, Any] = json.loads(result.out)
    saved = workdir.parent / f"{name}.plan"
    assert cli("plan", "--out", saved, workdir, *args).code == 0
    shown = cli("show", "--json", saved)
    assert shown.code == 0, shown.output
    assert json.loads(shown.out) == doc, "show --json of the saved plan differs from plan --json"
    assert SECRET not in result.out
    text = json.dumps(doc, indent=2) + "\n"
    # The golden outlives this folder and releases.
    text = text.replace(str(workdir), "/WORKDIR").replace(
        f'"substratus_version": "{doc["substratus_version"]}"', '"substratus_version": "VERSION"')
    check_golden(f"tfjson/{name}.json", text, update)
    return doc


def applied(cli: Cli, workdir: Path, *args: str) -> None:
    result = cli("apply", "--auto-approve", workdir, *args)
    assert result.code == 0, result.output


def by_address(doc: dict[str, Any], key: str = "resource_changes") -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in doc[key]}


def test_create(cli, workspace, update_goldens):
    doc = planned(cli, workspace, "create", update_goldens)
    assert doc["format_version"] == "1.0" and doc["resource_drift"] == []
    changes = by_address(doc)
    assert {a: c["change"]["actions"] for a, c in changes.items()} == {
        "Dataset/default/color-facts": ["create"], "Dataset/default/favorite-colors": ["create"]}
    favorite = changes["Dataset/default/favorite-colors"]
    assert (favorite["mode"], favorite["type"], favorite["name"], favorite["provider_name"]) == (
        "managed", "Dataset", "favorite-colors", "local")
    assert "action_reason" not in favorite and favorite["reason"] == "not in live state"
    change = favorite["change"]
    assert change["before"] is None and change["before_sensitive"] is False
    assert change["after"] == {"metadata": {"labels": {"example": "quickstart"}},
                               "spec": {"source": {"path": "data/favorite-colors.jsonl"}},
                               "status": {"digest": DIGEST_FAVORITE}}
    assert change["after_unknown"] == {}  # a path's digest is known when planning
    assert change["after_sensitive"] == {"metadata": {"labels": {}}, "spec": {"source": {}},
                                         "status": {}}


def test_update(cli, workspace, update_goldens):
    applied(cli, workspace)
    datasets = workspace / "datasets.yaml"
    datasets.write_text(datasets.read_text().replace("example: quickstart", "example: renamed"))
    doc = planned(cli, workspace, "update", update_goldens)
    changes = by_address(doc)
    assert {a: c["change"]["actions"] for a, c in changes.items()} == {
        "Dataset/default/color-facts": ["no-op"], "Dataset/default/favorite-colors": ["update"]}
    change = changes["Dataset/default/favorite-colors"]["change"]
    assert change["before"]["metadata"] == {"labels": {"example": "quickstart"}}  # no ownership labels
    assert change["after"]["metadata"] == {"labels": {"example": "renamed"}}
    assert change["replace_paths"] == []
    assert [f["path"] for f in change["field_changes"]] == ["metadata.labels.example"]


def test_replace(cli, workspace, update_goldens):
    applied(cli, workspace)
    datasets = workspace / "datasets.yaml"
    datasets.write_text(datasets.read_text().replace("path: data/color-facts",
                                                     "path: data/color-facts/primary.txt"))
    doc = planned(cli, workspace, "replace", update_goldens,
                  "--replace", "Dataset/favorite-colors")
    changes = by_address(doc)
    facts, favorite = changes["Dataset/default/color-facts"], changes["Dataset/default/favorite-colors"]
    assert facts["change"]["actions"] == favorite["change"]["actions"] == ["delete", "create"]
    assert facts["action_reason"] == "replace_because_cannot_update"
    assert facts["reason"] == "spec.source.path changed: a snapshot is immutable"
    assert facts["change"]["replace_paths"] == [["spec", "source", "path"], ["status", "digest"]]
    assert favorite["action_reason"] == "replace_by_request"
    assert favorite["reason"] == "replacement requested with --replace"
    assert doc["summary"] == {"add": 2, "change": 0, "destroy": 2}


def test_delete(cli, workspace, update_goldens):
    applied(cli, workspace)
    datasets = workspace / "datasets.yaml"
    datasets.write_text(datasets.read_text().split("---")[0])  # color-facts leaves the files
    doc = planned(cli, workspace, "delete", update_goldens)
    facts = by_address(doc)["Dataset/default/color-facts"]
    assert facts["change"]["actions"] == ["delete"]
    assert facts["action_reason"] == "delete_because_no_resource_config"
    assert facts["change"]["after"] is None and facts["change"]["after_sensitive"] is False
    assert facts["change"]["before"]["spec"] == {"source": {"path": "data/color-facts"}}


def test_drift(cli, workspace, update_goldens):
    applied(cli, workspace)
    objects = workspace / ".substratus" / "runtime" / "objects" / "Dataset" / "default"
    # Someone edits one record and deletes the other behind substratus's back.
    record = objects / "favorite-colors.json"
    data = json.loads(record.read_text())
    data["spec"]["source"]["path"] = "elsewhere.jsonl"
    data["version"] += 1
    record.write_text(json.dumps(data))
    (objects / "color-facts.json").unlink()
    doc = planned(cli, workspace, "drift", update_goldens)
    drift = by_address(doc, "resource_drift")
    assert set(drift) == {"Dataset/default/color-facts", "Dataset/default/favorite-colors"}
    edited = drift["Dataset/default/favorite-colors"]
    assert (edited["mode"], edited["type"], edited["provider_name"]) == ("managed", "Dataset", "local")
    assert edited["change"]["actions"] == ["update"]
    assert edited["change"]["before"]["spec"] == {"source": {"path": "data/favorite-colors.jsonl"}}
    assert edited["change"]["after"]["spec"] == {"source": {"path": "elsewhere.jsonl"}}
    assert edited["change"]["before"]["status"]["digest"] == DIGEST_FAVORITE  # as recorded
    assert [(f["path"], f["before"], f["after"]) for f in edited["field_changes"]] == [
        ("spec.source.path", "data/favorite-colors.jsonl", "elsewhere.jsonl")]
    deleted = drift["Dataset/default/color-facts"]
    assert deleted["change"]["actions"] == ["delete"] and deleted["change"]["after"] is None
    assert deleted["change"]["before"]["spec"] == {"source": {"path": "data/color-facts"}}
    assert deleted["reason"] == "deleted outside substratus since the last apply"
    changes = by_address(doc)
    assert changes["Dataset/default/color-facts"]["change"]["actions"] == ["create"]
    # The path the files name again is another snapshot: a replacement, as without drift.
    assert changes["Dataset/default/favorite-colors"]["change"]["actions"] == ["delete", "create"]


SENSITIVE_WORKSPACE = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata:
  name: table
  labels: {team: ml}
spec:
  env:
    HF_TOKEN: "${{ secrets.hub.token }}"
  source:
    path: data/table.csv
---
apiVersion: substratus.ai/v1
kind: Dataset
metadata:
  name: private
spec:
  env:
    HF_TOKEN: "${{ secrets.hub.token }}"
  source:
    url: "http://127.0.0.1:9/private.csv"
    headers:
      Authorization: "Bearer ${{ secrets.hub.token }}"
"""


def test_sensitive(cli, workspace, update_goldens, monkeypatch):
    monkeypatch.setenv("SUBSTRATUS_SECRET_HUB_TOKEN", SECRET)
    (workspace / "datasets.yaml").write_text(SENSITIVE_WORKSPACE)
    (workspace / "data" / "table.csv").write_text("x,y\n1,2\n")
    applied(cli, workspace, "--target", "Dataset/table")  # the url is never fetched
    datasets = workspace / "datasets.yaml"
    datasets.write_text(datasets.read_text().replace("team: ml", "team: research"))
    doc = planned(cli, workspace, "sensitive", update_goldens)
    assert "secrets.hub" not in json.dumps(doc) and "${{" not in json.dumps(doc)
    changes = by_address(doc)
    table = changes["Dataset/default/table"]["change"]
    assert table["actions"] == ["update"]
    assert table["before"]["spec"]["env"] == {"HF_TOKEN": "(sensitive value)"}
    assert table["before_sensitive"] == table["after_sensitive"] == {
        "metadata": {"labels": {}}, "spec": {"env": {"HF_TOKEN": True}, "source": {}},
        "status": {}}
    private = changes["Dataset/default/private"]["change"]
    assert private["actions"] == ["create"] and private["before_sensitive"] is False
    assert private["after_sensitive"]["spec"] == {
        "env": {"HF_TOKEN": True}, "source": {"headers": {"Authorization": True}}}
    assert private["after"]["spec"]["source"]["headers"] == {"Authorization": "(sensitive value)"}
    assert private["after_unknown"]["status"] == {"digest": True}
    assert "digest" not in private["after"]["status"]
