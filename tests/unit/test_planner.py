"""build_plan over the simple in-memory provider: actions, batched reads, --target, --replace,
ownership, drift, refresh and apply order."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from substratus_cli.action import Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.plan import Drift, Plan
from substratus_cli.planner import PlanOptions, UnmanagedObjectError, build_plan
from substratus_cli.provider import Registry
from substratus_cli.resource import Resource
from substratus_cli.state import Inventory
from tests.support.builders import LINEAGE, addr, applied, context, entry, inventory, res, target
from tests.support.simple_provider import SimpleProvider


@pytest.fixture
def provider() -> SimpleProvider:
    return SimpleProvider(context(LINEAGE))


def plan(provider: SimpleProvider, resources: list[Resource], inv: Inventory | None, *,
         destroy: bool = False, targets: Sequence[str] = (),
         replace: Sequence[str] = (), refresh_only: bool = False) -> Plan:
    opts = PlanOptions(destroy=destroy, targets=tuple(map(addr, targets)),
                       replace=tuple(map(addr, replace)), refresh_only=refresh_only)
    return build_plan(resources=resources, registry=Registry([provider]), inventory=inv,
                      target=target(), options=opts)


def actions(p: Plan) -> dict[str, Action]:
    return {str(c.address): c.action for c in p.changes}


# -- actions ----------------------------------------------------------------------------------

def test_declared_resource_that_does_not_exist_is_created(provider: SimpleProvider) -> None:
    p = plan(provider, [res("Dataset/a")], None)
    (c,) = p.changes
    assert (c.address, c.action, c.reason, c.provider) == (
        addr("Dataset/a"), Action.CREATE, "not in live state", "simple")
    assert c.before is None and c.before_fingerprint is None
    assert c.desired == res("Dataset/a")
    assert (p.summary.add, p.summary.change, p.summary.destroy) == (1, 0, 0)
    assert p.drift == () and p.refresh == ()


def test_applied_resource_with_unchanged_files_is_a_noop(provider: SimpleProvider) -> None:
    r = res("Dataset/a")
    inv = applied(provider, r)
    p = plan(provider, [r], inv)
    assert actions(p) == {"Dataset/default/a": Action.NOOP}
    assert not p.has_changes and p.actionable == []
    assert p.drift == () and p.refresh == ()
    assert p.changes[0].before_fingerprint == inv.entries[addr("Dataset/a")].fingerprint


def test_changed_field_is_an_update_with_old_and_new_values(provider: SimpleProvider) -> None:
    inv = applied(provider, res("Model/m", {"replicas": 1, "image": "x"}))
    p = plan(provider, [res("Model/m", {"replicas": 2, "image": "x"})], inv)
    (c,) = p.changes
    assert c.action is Action.UPDATE and c.reason == "spec changed"
    assert c.field_changes == (FieldChange("spec.replicas", 1, 2),)
    assert c.replace_paths == []
    assert c.before == {"metadata": {"labels": {}}, "spec": {"replicas": 1, "image": "x"},
                        "status": {}}
    assert (p.summary.add, p.summary.change, p.summary.destroy) == (0, 1, 0)


def test_change_under_a_forcing_prefix_is_a_replace_with_its_paths(provider: SimpleProvider) -> None:
    inv = applied(provider, res("Dataset/a", {"source": {"path": "./old"}, "params": {"k": 1}}))
    p = plan(provider, [res("Dataset/a", {"source": {"path": "./new"}, "params": {"k": 2}})], inv)
    (c,) = p.changes
    assert c.action is Action.REPLACE
    assert c.replace_paths == ["spec.source.path"]
    assert c.field_changes == (FieldChange("spec.params.k", 1, 2),
                               FieldChange("spec.source.path", "./old", "./new", True))
    assert c.reason == "spec.source.path changed"
    assert (p.summary.add, p.summary.change, p.summary.destroy) == (1, 0, 1)


def test_applied_object_no_longer_declared_is_deleted(provider: SimpleProvider) -> None:
    kept, gone = res("Dataset/kept"), res("Dataset/gone")
    inv = applied(provider, kept, gone)
    p = plan(provider, [kept], inv)
    assert actions(p) == {"Dataset/default/gone": Action.DELETE, "Dataset/default/kept": Action.NOOP}
    c = p.change_for(addr("Dataset/gone"))
    assert c is not None and c.desired is None and c.reason == "not in the resource files"
    assert c.before_fingerprint == provider.objects[addr("Dataset/gone")].fingerprint


def test_owned_object_found_by_part_of_label_alone_is_deleted(provider: SimpleProvider) -> None:
    # Labelled part-of this workspace, but with no inventory entry (the state was edited by hand).
    kept = res("Dataset/kept")
    inv = applied(provider, kept)
    provider.put(addr("Dataset/orphan"), {"source": {"path": "./o"}})
    p = plan(provider, [kept], inv)
    assert actions(p) == {"Dataset/default/kept": Action.NOOP,
                          "Dataset/default/orphan": Action.DELETE}
    assert provider.read_requests[0].addresses == (kept.address,)


def test_destroy_deletes_every_live_object_and_nothing_else(provider: SimpleProvider) -> None:
    a, b = res("Dataset/a"), res("Dataset/b")
    inv = applied(provider, a)
    p = plan(provider, [a, b], inv, destroy=True)
    assert actions(p) == {"Dataset/default/a": Action.DELETE}
    assert p.destroy and p.changes[0].desired is None


# -- reads ------------------------------------------------------------------------------------

def test_reads_are_one_per_kind_whatever_the_number_of_addresses(provider: SimpleProvider) -> None:
    declared = [res(f"Dataset/d{i}") for i in range(5)] + [res(f"Model/m{i}", {}) for i in range(3)]
    inv = applied(provider, res("Dataset/old"), res("Model/old", {}))
    plan(provider, declared, inv)
    assert provider.reads == {"Dataset": 1, "Model": 1}
    by_kind = {r.kind: r for r in provider.read_requests}
    assert by_kind["Dataset"].addresses == tuple(
        sorted([addr(f"Dataset/d{i}") for i in range(5)] + [addr("Dataset/old")]))
    assert len(by_kind["Model"].addresses) == 4
    assert {r.part_of for r in provider.read_requests} == {LINEAGE}


# -- --target and --replace -------------------------------------------------------------------

# c -> b -> a (c depends on b, b on a); d is independent.
def chain() -> list[Resource]:
    return [res("Model/a", {}), res("Model/b", {}, refs=["Model/a"]),
            res("Model/c", {}, refs=["Model/b"]), res("Model/d", {})]


def test_target_keeps_the_target_and_its_dependencies_only(provider: SimpleProvider) -> None:
    p = plan(provider, chain(), None, targets=["Model/b"])
    assert [str(c.address) for c in p.changes] == ["Model/default/a", "Model/default/b"]
    assert p.change_for(addr("Model/b")).depends_on == (addr("Model/a"),)  # type: ignore[union-attr]


def test_destroy_target_keeps_the_target_and_its_dependents(provider: SimpleProvider) -> None:
    resources = chain()
    inv = applied(provider, *resources)
    p = plan(provider, resources, inv, destroy=True, targets=["Model/b"])
    assert [str(c.address) for c in p.changes] == ["Model/default/c", "Model/default/b"]
    assert {c.action for c in p.changes} == {Action.DELETE}
    assert p.change_for(addr("Model/b")).depends_on == (addr("Model/c"),)  # type: ignore[union-attr]


def test_replace_option_forces_replacement_of_a_noop_and_an_update(provider: SimpleProvider) -> None:
    inv = applied(provider, res("Model/same", {"x": 1}), res("Model/upd", {"x": 1}))
    p = plan(provider, [res("Model/same", {"x": 1}), res("Model/upd", {"x": 2}), res("Model/new", {})],
             inv, replace=["Model/same", "Model/upd", "Model/new"])
    assert actions(p) == {"Model/default/new": Action.CREATE, "Model/default/same": Action.REPLACE,
                          "Model/default/upd": Action.REPLACE}
    for name in ("same", "upd"):
        c = p.change_for(addr(f"Model/{name}"))
        assert c is not None and c.reason == "replacement requested with --replace"
    assert p.change_for(addr("Model/upd")).field_changes == (  # type: ignore[union-attr]
        FieldChange("spec.x", 1, 2),)


# -- ownership --------------------------------------------------------------------------------

def test_unlabelled_object_at_a_declared_address_is_refused(provider: SimpleProvider) -> None:
    provider.put(addr("Dataset/taken"), {"source": {"path": "./x"}}, owned=False)
    with pytest.raises(UnmanagedObjectError) as err:
        plan(provider, [res("Dataset/taken", line=7), res("Dataset/free")], inventory())
    assert err.value.message == (
        "refusing to change objects substratus does not own:\n"
        "  Dataset/default/taken (datasets.yaml:7): exists and is not managed by substratus")
    assert "never adopts or deletes" in (err.value.hint or "")
    assert provider.applied == []


def test_object_of_another_workspace_is_refused_naming_its_part_of(provider: SimpleProvider) -> None:
    other = SimpleProvider(context("ws-other"))
    provider.objects[addr("Dataset/theirs")] = other.put(addr("Dataset/theirs"), {})
    with pytest.raises(UnmanagedObjectError) as err:
        plan(provider, [res("Dataset/theirs", line=3)], inventory())
    assert err.value.message.endswith(
        "  Dataset/default/theirs (datasets.yaml:3): exists and is managed by another substratus "
        "workspace (part-of ws-other)")


def test_without_any_inventory_an_existing_object_is_refused(provider: SimpleProvider) -> None:
    provider.put(addr("Dataset/a"), {})
    with pytest.raises(UnmanagedObjectError, match="Dataset/default/a"):
        plan(provider, [res("Dataset/a")], None)


# -- drift ------------------------------------------------------------------------------------

def test_object_changed_outside_is_drift_with_its_field_changes(provider: SimpleProvider) -> None:
    r = res("Model/m", {"replicas": 1})
    inv = applied(provider, r)
    provider.put(r.address, {"replicas": 5})  # someone else's write: new fingerprint
    p = plan(provider, [r], inv)
    (c,) = p.changes
    assert c.action is Action.UPDATE
    assert p.drift == (Drift(r.address, "changed outside substratus since the last apply",
                             (FieldChange("spec.replicas", 5, 1),)),)
    # What the last apply left: the files' spec (unchanged since) and the status it recorded.
    assert p.drift[0].applied == {"metadata": {"labels": {}}, "spec": {"replicas": 1},
                                  "status": dict(inv.entries[r.address].status)}


def test_drift_when_the_files_changed_too_lists_no_field_changes(provider: SimpleProvider) -> None:
    inv = applied(provider, res("Model/m", {"replicas": 1}))
    provider.put(addr("Model/m"), {"replicas": 5})
    p = plan(provider, [res("Model/m", {"replicas": 2})], inv)
    assert p.drift == (Drift(addr("Model/m"), "changed outside substratus since the last apply"),)
    # The state keeps only the applied spec's hash: unknown, not the files' new one.
    assert p.drift[0].applied == {"metadata": None, "spec": None,
                                  "status": dict(inv.entries[addr("Model/m")].status)}


def with_content(provider: SimpleProvider, address: Address, content: str) -> None:
    """The object as a provider that tells what it manages (LiveObject.content) reads it."""
    provider.objects[address] = dataclasses.replace(provider.objects[address], content=content)


def test_a_write_that_leaves_what_substratus_manages_alone_is_not_drift(
        provider: SimpleProvider) -> None:
    r = res("Model/m", {"replicas": 1})
    inv = applied(provider, r)
    recorded = inv.entries[r.address]
    inv = inventory(dataclasses.replace(recorded, content="c1"))
    provider.put(r.address, r.spec, labels={"example.com/team": "ml"})  # another tool's label
    with_content(provider, r.address, "c1")
    # The files changed: the plan has a change, and still no drift to show above it.
    p = plan(provider, [res("Model/m", {"replicas": 2})], inv)
    assert actions(p) == {"Model/default/m": Action.UPDATE}
    assert p.drift == ()
    # The fingerprint still tells a saved plan's staleness.
    assert p.changes[0].before_fingerprint != recorded.fingerprint


def test_a_changed_content_is_drift_where_the_plan_changes_the_object(
        provider: SimpleProvider) -> None:
    r = res("Model/m", {"replicas": 1})
    inv = inventory(dataclasses.replace(applied(provider, r).entries[r.address], content="c1"))
    provider.put(r.address, {"replicas": 5})
    with_content(provider, r.address, "c2")
    p = plan(provider, [r], inv)
    assert p.drift == (Drift(r.address, "changed outside substratus since the last apply",
                             (FieldChange("spec.replicas", 5, 1),)),)
    # Put back by hand: the content differs from the recorded one, but nothing is to be done,
    # so there is nothing to report (and the state is refreshed).
    provider.put(r.address, {"replicas": 1})
    with_content(provider, r.address, "c3")
    p = plan(provider, [r], inv)
    assert actions(p) == {"Model/default/m": Action.NOOP}
    assert p.drift == () and p.refresh == (r.address,)


def test_object_deleted_outside_is_drift_and_is_created_again(provider: SimpleProvider) -> None:
    r = res("Dataset/a")
    inv = applied(provider, r)
    del provider.objects[r.address]
    p = plan(provider, [r], inv)
    assert actions(p) == {"Dataset/default/a": Action.CREATE}
    assert p.drift == (Drift(r.address, "deleted outside substratus since the last apply"),)
    assert p.refresh == ()


def test_pending_entry_is_not_reported_as_drift(provider: SimpleProvider) -> None:
    r = res("Model/m", {"replicas": 1})
    live = provider.put(r.address, {"replicas": 3})
    p = plan(provider, [r], inventory(entry(r, "stale/1", pending="update")))
    assert live.fingerprint != "stale/1"
    assert p.drift == () and actions(p) == {"Model/default/m": Action.UPDATE}


# -- refresh ----------------------------------------------------------------------------------

def test_noop_with_a_pending_entry_is_refreshed(provider: SimpleProvider) -> None:
    r = res("Dataset/a")
    live = provider.put(r.address, r.spec)
    p = plan(provider, [r], inventory(entry(r, live.fingerprint, pending="create")))
    assert actions(p) == {"Dataset/default/a": Action.NOOP}
    assert p.refresh == (r.address,) and not p.has_changes


def test_noop_without_an_entry_is_refreshed(provider: SimpleProvider) -> None:
    r, other = res("Dataset/a"), res("Dataset/b")
    inv = applied(provider, other)
    provider.put(r.address, r.spec)
    p = plan(provider, [r, other], inv)
    assert actions(p) == {"Dataset/default/a": Action.NOOP, "Dataset/default/b": Action.NOOP}
    assert p.refresh == (r.address,)


def test_entry_of_a_vanished_undeclared_object_is_refreshed(provider: SimpleProvider) -> None:
    gone, kept = res("Dataset/gone"), res("Dataset/kept")
    inv = applied(provider, gone, kept)
    del provider.objects[gone.address]
    p = plan(provider, [kept], inv)
    assert actions(p) == {"Dataset/default/kept": Action.NOOP}
    assert p.refresh == (gone.address,)
    assert p.drift == ()


# -- refresh-only (Terraform's plan -refresh-only) -------------------------------------------

def test_refresh_only_plans_no_change_and_refreshes_what_changed_or_vanished_outside(
        provider: SimpleProvider) -> None:
    changed, gone, same = res("Model/m", {"replicas": 1}), res("Dataset/gone"), res("Dataset/same")
    inv = applied(provider, changed, gone, same)
    provider.put(changed.address, {"replicas": 5})
    del provider.objects[gone.address]
    p = plan(provider, [changed, gone, same, res("Dataset/new")], inv, refresh_only=True)
    assert p.refresh_only and p.changes == () and not p.has_changes
    assert p.refresh == (gone.address, changed.address) and p.updates_state_only
    assert p.drift == (
        Drift(gone.address, "deleted outside substratus since the last apply: the state forgets "
                            "it"),
        Drift(changed.address, "changed outside substratus since the last apply: the state "
                               "records it as it is now", (FieldChange("spec.replicas", 5, 1),)))


def test_refresh_only_with_nothing_changed_outside_is_empty(provider: SimpleProvider) -> None:
    r = res("Dataset/a")
    p = plan(provider, [r, res("Model/changed-in-files", {"replicas": 1})], applied(provider, r),
             refresh_only=True)
    assert (p.changes, p.drift, p.refresh, p.updates_state_only) == ((), (), (), False)


def test_refresh_only_leaves_a_pending_entry_with_a_live_object_to_the_next_apply(
        provider: SimpleProvider) -> None:
    r, vanished = res("Model/m", {"replicas": 1}), res("Dataset/v")
    provider.put(r.address, {"replicas": 3})
    inv = inventory(entry(r, "stale/1", pending="update"), entry(vanished, "x/1", pending="create"))
    p = plan(provider, [r, vanished], inv, refresh_only=True)
    assert p.refresh == (vanished.address,)
    assert p.drift == (Drift(vanished.address, "not found (its create did not finish): the state "
                                               "forgets it"),)


def test_refresh_only_with_target_refreshes_only_what_the_target_reaches(
        provider: SimpleProvider) -> None:
    d, m, other = res("Dataset/d"), res("Model/m", {"d": 1}, refs=["Dataset/d"]), res("Dataset/o")
    inv = applied(provider, d, m, other)
    for r in (d, m, other):
        del provider.objects[r.address]
    p = plan(provider, [d, m, other], inv, refresh_only=True, targets=["Model/m"])
    assert p.refresh == (d.address, m.address)


# -- order ------------------------------------------------------------------------------------

def test_apply_order_puts_dependencies_first(provider: SimpleProvider) -> None:
    resources = [res("Model/server", {}, refs=["Model/base", "Dataset/data"]),
                 res("Model/base", {}, refs=["Dataset/data"]), res("Dataset/data")]
    p = plan(provider, resources, None)
    assert [str(c.address) for c in p.changes] == [
        "Dataset/default/data", "Model/default/base", "Model/default/server"]
    assert p.change_for(addr("Model/server")).depends_on == (  # type: ignore[union-attr]
        addr("Dataset/data"), addr("Model/base"))


def test_deletes_run_after_their_dependents(provider: SimpleProvider) -> None:
    resources = [res("Dataset/data"), res("Model/base", {}, refs=["Dataset/data"]),
                 res("Model/tuned", {}, refs=["Model/base", "Dataset/data"])]
    inv = applied(provider, *resources)
    p = plan(provider, [], inv)
    assert [str(c.address) for c in p.changes] == [
        "Model/default/tuned", "Model/default/base", "Dataset/default/data"]
    assert p.change_for(addr("Dataset/data")).depends_on == (  # type: ignore[union-attr]
        addr("Model/base"), addr("Model/tuned"))
    assert p.change_for(addr("Model/tuned")).depends_on == ()  # type: ignore[union-attr]


def test_destroy_order_is_the_reverse_of_the_recorded_dependencies(provider: SimpleProvider) -> None:
    resources = [res("Dataset/data"), res("Model/m", {}, refs=["Dataset/data"])]
    inv = applied(provider, *resources)
    p = plan(provider, resources, inv, destroy=True)
    assert [str(c.address) for c in p.changes] == ["Model/default/m", "Dataset/default/data"]


def test_delete_waits_for_the_update_of_a_dependent_that_stops_using_it(
        provider: SimpleProvider) -> None:
    old_model, new_model = res("Model/old", {}), res("Model/new", {})
    server_v1 = res("Model/server", {"uses": "old"}, refs=["Model/old"])
    inv = applied(provider, old_model, server_v1)
    server_v2 = res("Model/server", {"uses": "new"}, refs=["Model/new"])
    p = plan(provider, [new_model, server_v2], inv)
    assert actions(p) == {"Model/default/new": Action.CREATE, "Model/default/old": Action.DELETE,
                          "Model/default/server": Action.UPDATE}
    # The server still uses the old model until its update is done (Terraform orders it so).
    assert p.change_for(addr("Model/old")).depends_on == (  # type: ignore[union-attr]
        addr("Model/server"),)
    assert [str(c.address) for c in p.changes] == [
        "Model/default/new", "Model/default/server", "Model/default/old"]


def test_plan_changes_are_frozen_values(provider: SimpleProvider) -> None:
    p = plan(provider, [res("Dataset/a")], None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.changes[0].action = Action.DELETE  # type: ignore[misc]


def test_target_does_not_delete_what_the_target_used_to_depend_on(
        provider: SimpleProvider) -> None:
    inv = applied(provider, res("Model/old", {}),
                  res("Model/server", {"uses": "old"}, refs=["Model/old"]))
    p = plan(provider, [res("Model/new", {}),
                        res("Model/server", {"uses": "new"}, refs=["Model/new"])],
             inv, targets=["Model/server"])
    assert actions(p) == {"Model/default/new": Action.CREATE,
                          "Model/default/server": Action.UPDATE}


def test_reversing_a_reference_between_applied_resources_plans_in_the_new_order(
        provider: SimpleProvider) -> None:
    inv = applied(provider, res("Model/a", {"base": "b"}, refs=["Model/b"]), res("Model/b", {}))
    p = plan(provider, [res("Model/a", {}), res("Model/b", {"base": "a"}, refs=["Model/a"])], inv)
    assert actions(p) == {"Model/default/a": Action.UPDATE, "Model/default/b": Action.UPDATE}
    assert [str(c.address) for c in p.changes] == ["Model/default/a", "Model/default/b"]
    assert p.change_for(addr("Model/b")).depends_on == (addr("Model/a"),)  # type: ignore[union-attr]
