"""The commands' pipelines: load -> read live -> plan -> (lock) -> apply. No printing here.

The one module that composes providers (through `wiring`): a workspace's providers are built
once per run, checked, and asked for what the files imply before anything is planned."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from collections.abc import Callable, Iterator
from pathlib import Path

from substratus_artifacts.gc import Swept, check_keepable, sweep
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli import dispatch, outputs, verification, wiring
from substratus_cli.address import DEFAULT_NAMESPACE, GROUP_KINDS, Address
from substratus_cli.apply import Executor, Outcome, Reporter
from substratus_cli.diagnostics import Diagnostics, DiagnosticsError
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ProviderError, SubstratusError, UsageError
from substratus_cli.graph import find_cycles
from substratus_cli.plan import Plan, Target
from substratus_cli.planfile import check_fresh
from substratus_cli.planfile import load as load_planfile
from substratus_cli.planner import PlanOptions, build_plan, recorded_statuses
from substratus_cli.provider import (
    LiveObject,
    LogSource,
    Opener,
    Provider,
    Registry,
    StepProgress,
    Targeted,
    unwatched,
)
from substratus_cli.resource import Resource
from substratus_cli.stacks import RenderedText
from substratus_cli.state import Inventory, InventoryEntry, StateSession, UnwritableStateError
from substratus_cli.verification import Verification
from substratus_cli.workspace import Loaded, LoadOptions, Workspace, load


@dataclasses.dataclass(frozen=True)
class ApplySettings:
    lock_timeout: float = 0.0
    parallelism: int = 10
    reporter: Reporter | None = None
    # Shown the plan; returns False to cancel. None: approved (--auto-approve, saved plans).
    confirm: Callable[[Plan], bool] | None = None
    show: Callable[[Plan], None] | None = None


def open_workspace(directory: Path, loading: LoadOptions | None = None) -> Workspace:
    """Load, validate and wire a directory; every error of the run is raised together (exit 3).
    Without `loading`, the top of the directory is read, and the workspace's variables come from
    SUBSTRATUS_VAR_* alone."""
    return _wire(load(directory, loading), expand=True)


def _wire(loaded: Loaded, *, expand: bool) -> Workspace:
    backend = wiring.open_state_backend(loaded.state_url, loaded.workdir)
    inventory = backend.read()
    lineage = inventory.lineage if inventory else Inventory.new().lineage

    def registry_for(part_of: str) -> Registry:
        return wiring.build_registry(loaded, part_of)

    registry = registry_for(lineage)
    resources = loaded.resources
    if expand:  # a saved plan holds its documents already expanded
        resources = wiring.expand(registry, resources, loaded.settings)
        diagnostics = Diagnostics(find_cycles(resources))
        diagnostics.raise_if_errors()
    problems = wiring.unsupported(resources, registry, loaded.environment)
    problems += dispatch.check(registry, resources)
    if problems:
        raise DiagnosticsError(Diagnostics(problems))
    return Workspace(loaded.workdir, resources, loaded.environment, loaded.settings, backend,
                     lineage, registry, registry_for, loaded.expansion)


def target_of(ws: Workspace, inventory: Inventory | None) -> Target:
    endpoint = "; ".join(p.endpoint() for p in ws.registry.providers if isinstance(p, Targeted))
    return Target(runtime=ws.runtime, workdir=str(ws.workdir), state=ws.backend.location,
                  artifacts=ws.artifacts_url, lineage=inventory.lineage if inventory else None,
                  serial=inventory.serial if inventory else None, endpoint=endpoint)


def plan_workspace(ws: Workspace, options: PlanOptions,
                   progress: Callable[[Address], StepProgress] = unwatched) -> Plan:
    """The plan of a wired workspace; `progress` is told what planning each address does (the
    files of a path source hashed)."""
    inventory = ws.backend.read()
    options = _addresses_resolved(ws, inventory, options)
    if inventory is not None:
        ws.registry_for(inventory.lineage)
    try:
        return build_plan(resources=ws.resources, registry=ws.registry, inventory=inventory,
                          target=target_of(ws, inventory), options=options,
                          environment=ws.environment, progress=progress)
    finally:  # a plan may write caches (file hashes) under .substratus/
        ws.ignore_data_dir()


def _addresses_resolved(ws: Workspace, inventory: Inventory | None,
                        options: PlanOptions) -> PlanOptions:
    """--target and --replace as the plan takes them: `Stack/NAME` is every resource the instance
    renders, `Kind/name` is in the workspace's namespace, and an address neither the files
    declare nor the state holds is a usage error with the closest known one."""
    instances = {i.name for i in ws.expansion.instances} if ws.expansion else set()
    known = {r.address for r in ws.resources} | set(inventory.entries if inventory else ())

    def members(flag: str, addresses: tuple[Address, ...]) -> tuple[Address, ...]:
        found: list[Address] = []
        for address in addresses:
            if address.kind not in GROUP_KINDS:
                found.append(_known_address(ws, address, known, instances, flag))
                continue
            if address.name not in instances:
                listed = ", ".join(sorted(instances)) or "none"
                raise UsageError(f"{flag} {address.kind}/{address.name}: no Stack named "
                                 f"{address.name!r} (stacks: {listed})",
                                 hint=_did_you_mean(f"Stack/{address.name}",
                                                    [f"Stack/{i}" for i in instances]))
            found += [r.address for r in ws.resources if r.stack == address.name]
        return tuple(dict.fromkeys(found))

    return dataclasses.replace(options, targets=members("--target", options.targets),
                               replace=members("--replace", options.replace))


def _namespace(ws: Workspace) -> str:
    """Where the files' documents that name no namespace are (the Environment's)."""
    kubernetes = ws.settings.kubernetes
    return kubernetes.namespace if kubernetes is not None else DEFAULT_NAMESPACE


def _known_address(ws: Workspace, address: Address, known: set[Address],
                   instances: set[str], flag: str) -> Address:
    """The address as declared or recorded; `Kind/name` means the workspace's namespace."""
    if address in known:
        return address
    in_workspace = Address(address.kind, _namespace(ws), address.name)
    if address.namespace == DEFAULT_NAMESPACE and in_workspace in known:
        return in_workspace
    candidates = [a.short() for a in known] + [f"Stack/{i}" for i in instances]
    raise UsageError(f"{flag} {address.short()}: no such resource (neither declared in the "
                     "files nor in the state)",
                     hint=_did_you_mean(address.short(), candidates) or
                     "`substratus state list` shows the managed addresses")


def _did_you_mean(text: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(text, sorted(set(candidates)), n=1, cutoff=0.6)
    if not close:  # the same name under another kind, or a name typed with another case
        lowered = {c.lower(): c for c in candidates}
        name = text.rsplit("/", 1)[-1].lower()
        close = [lowered[c] for c in sorted(lowered) if c.rsplit("/", 1)[-1] == name][:1]
    return f"did you mean {close[0]}?" if close else None


def plan_directory(directory: Path, options: PlanOptions, loading: LoadOptions | None = None,
                   progress: Callable[[Address], StepProgress] = unwatched, *,
                   lock: bool = True, lock_timeout: float = 0.0,
                   warn: Callable[[str], None] | None = None) -> Plan:
    """A plan made under the state lock (unless `lock` is False), as Terraform's: it does not
    read a state an apply is halfway through writing. Where the state's folder cannot be
    written (a read-only or full disk), nothing can apply either: the plan goes on without the
    lock and says so through `warn`. A workspace never applied has no state to guard: its
    plan takes no lock, and so writes nothing (no `.substratus/` appears)."""
    ws = open_workspace(directory, loading)
    held = None
    if lock and ws.backend.read() is not None:
        try:
            held = ws.backend.lock("plan", lock_timeout)
        except UnwritableStateError as e:
            if warn is not None:
                warn(f"{e.message}; planning without the lock")
    try:
        return plan_workspace(ws, options, progress)
    finally:
        if held is not None:
            ws.backend.unlock(held)


@contextlib.contextmanager
def _locked(ws: Workspace, operation: str, timeout: float) -> Iterator[None]:
    lock = ws.backend.lock(operation, timeout)
    ws.ignore_data_dir()  # the lock of a file:// state made .substratus/ if it was not there
    try:
        yield
    finally:
        ws.backend.unlock(lock)
        ws.ignore_data_dir()


def apply_directory(directory: Path, options: PlanOptions,
                    settings: ApplySettings,
                    loading: LoadOptions | None = None) -> tuple[Plan, Outcome | None]:
    """Plan under the lock, show it, ask, apply. Outcome None: nothing to do or cancelled."""
    ws = open_workspace(directory, loading)
    operation = "destroy" if options.destroy else "apply"
    with _locked(ws, operation, settings.lock_timeout):
        plan = plan_workspace(ws, options,
                              settings.reporter.progress if settings.reporter else unwatched)
        if settings.show:
            settings.show(plan)
        if not plan.has_changes and not plan.refresh:
            return plan, None
        # A plain refresh (after a crash) is bookkeeping; a refresh-only plan is what was asked.
        approve = plan.has_changes or plan.updates_state_only
        if approve and settings.confirm is not None and not settings.confirm(plan):
            return plan, None
        return plan, _execute(ws, plan, settings)


def apply_saved(path: Path, settings: ApplySettings) -> tuple[Plan, Outcome | None]:
    """Apply exactly a saved plan, refusing it (exit 5) if anything moved since it was made."""
    plan = load_planfile(path)
    ws = _wire(Loaded(Path(plan.target.workdir), list(plan.documents), plan.environment),
               expand=False)
    with _locked(ws, "apply", settings.lock_timeout):
        inventory = ws.backend.read()
        if inventory is not None:
            ws.registry_for(inventory.lineage)
        live = dispatch.read_live(ws.registry, [c.address for c in plan.changes],
                                  inventory.lineage if inventory else "", resources=plan.documents,
                                  recorded=recorded_statuses(inventory.entries if inventory else {}))
        check_fresh(plan, target_of(ws, inventory), inventory, live)
        # The same objects (their fingerprints matched), with what the provider reads now.
        fresh = tuple(dataclasses.replace(c, live=live.get(c.address)) for c in plan.changes)
        plan = dataclasses.replace(plan, changes=fresh)
        if settings.show:
            settings.show(plan)
        if not plan.has_changes and not plan.refresh:
            return plan, None
        return plan, _execute(ws, plan, settings)


def _execute(ws: Workspace, plan: Plan, settings: ApplySettings) -> Outcome:
    session = StateSession(ws.backend, ws.backend.read(), lineage=ws.lineage)
    session.ensure_stored()
    executor = Executor(plan, ws.registry_for(session.inventory.lineage), session,
                        parallelism=settings.parallelism, reporter=settings.reporter)
    return executor.run()


def _provider_of(ws: Workspace, address: Address) -> Provider:
    provider = ws.registry.for_kind(address.kind)
    if provider is None:
        raise UsageError(f"no provider runs {address.kind} objects on the {ws.runtime} runtime")
    return provider


def logs(directory: Path, address: Address, follow: bool,
         loading: LoadOptions | None = None) -> Iterator[str]:
    """The output of an object's most recent workload run."""
    provider = _provider_of(open_workspace(directory, loading), address)
    if not isinstance(provider, LogSource):
        raise ProviderError(f"the {provider.name} provider cannot show logs")
    return provider.logs(address, follow=follow)


def open_url(directory: Path, address: Address,
             loading: LoadOptions | None = None) -> str:
    """A URL to open an object (a notebook) in a browser, access token included."""
    provider = _provider_of(open_workspace(directory, loading), address)
    if not isinstance(provider, Opener):
        raise ProviderError(f"the {provider.name} provider cannot open {address.kind} objects")
    return provider.open_url(address)


def verify(directory: Path, loading: LoadOptions | None = None,
           progress: Callable[[Address], StepProgress] = unwatched) -> Verification:
    """Every snapshot the state reaches, read back from the artifact store and checked."""
    ws = open_workspace(directory, loading)
    return verification.verify(ws.backend.read(),
                               wiring.open_artifact_store(ws.artifacts_url, ws.workdir), progress)


def _local_store(ws: Workspace, command: str, hint: str) -> Store:
    """The workspace's artifact store, for a command built for a local file:// store only."""
    url = ws.artifacts_url
    if not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise SubstratusError(f"{command} is not built yet for {scheme}:// artifact stores "
                              f"(this workspace's: {url})", hint=hint)
    return wiring.open_artifact_store(url, ws.workdir)


def discard_damaged(directory: Path, damage: Verification,
                    loading: LoadOptions | None = None) -> int:
    """`verify --repair`'s first half: remove the corrupt blobs `damage` names from a local
    store (a blob present is never rewritten, so the next snapshot of that content could not
    replace it); the count removed. The apply that follows snapshots or builds them again."""
    ws = open_workspace(directory, loading)
    store = _local_store(ws, "verify --repair", "delete the blobs named, then `substratus apply "
                                                "--replace ADDR` for each address")
    removed = 0
    for digest in sorted({d.digest for d in damage.damage}):
        if digest.startswith("sha256:"):
            corrupt = store.damaged(digest, StatCache(ws.data_dir / "cache" / "stat.json"),
                                    thorough=True)
            store.discard(corrupt)
            removed += len(corrupt)
    return removed


def gc(directory: Path, dry_run: bool, lock_timeout: float,
       loading: LoadOptions | None = None) -> Swept:
    """Remove (dry_run: only count) the manifests and blobs of the workspace's file:// artifact
    store that no state entry references, under the state lock."""
    ws = open_workspace(directory, loading)
    url = ws.artifacts_url
    store = _local_store(ws, "substratus gc", "it removes what no state entry references from a "
                                              "local file:// store; a bucket's lifecycle rules "
                                              "can expire old objects meanwhile")
    root = Path(url[len("file://"):])
    root = (ws.workdir / root).resolve() if not root.is_absolute() else root.resolve()
    if not root.is_relative_to(ws.workdir):
        raise SubstratusError(f"the artifact store {url} is outside this workspace ({root}), and "
                              "other workspaces may keep snapshots in it",
                              hint="gc cleans only a store inside the workspace's folder, where "
                                   "this workspace's state is the only one to reference it")
    with _locked(ws, "gc", lock_timeout):
        references = verification.referenced(ws.backend.read(), store)
        check_keepable(store, references.required)
        return sweep(store, references.named, dry_run=dry_run)


def inventory_of(directory: Path,
                 loading: LoadOptions | None = None) -> tuple[Workspace, Inventory | None]:
    """A workspace and what its state holds (`state list`)."""
    ws = open_workspace(directory, loading)
    return ws, ws.backend.read()




def workspace_outputs(directory: Path,
                      loading: LoadOptions | None = None) -> list[outputs.Output]:
    """The stack instances' outputs and every managed resource's results (`substratus output`)."""
    ws, inventory = inventory_of(directory, loading)
    namespace = DEFAULT_NAMESPACE
    if ws.settings.kubernetes is not None:
        namespace = ws.settings.kubernetes.namespace
    stack_outputs = ws.expansion.outputs if ws.expansion else []
    return outputs.collect(stack_outputs, inventory, namespace)


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """One address as `state show` prints it: what the state holds, and the declaration now."""

    address: Address
    entry: InventoryEntry | None
    declared: Resource | None

    @property
    def applied_as_declared(self) -> bool | None:
        """Whether the files still declare what was last applied (None: nothing to compare)."""
        if self.entry is None or self.entry.spec_hash is None or self.declared is None:
            return None
        return spec_hash(self.declared.spec, self.declared.labels) == self.entry.spec_hash


def state_record(directory: Path, address: Address,
                 loading: LoadOptions | None = None) -> StateRecord:
    ws, inventory = inventory_of(directory, loading)
    known = {r.address for r in ws.resources} | set(inventory.entries if inventory else ())
    in_workspace = Address(address.kind, _namespace(ws), address.name)
    if address not in known and address.namespace == DEFAULT_NAMESPACE and in_workspace in known:
        address = in_workspace
    entry = inventory.entries.get(address) if inventory else None
    declared = next((r for r in ws.resources if r.address == address), None)
    if entry is None and declared is None:
        raise UsageError(f"{address.short()} is neither in the state nor declared",
                         hint=_did_you_mean(address.short(), [a.short() for a in known]) or
                         "`substratus state list` shows the managed addresses")
    return StateRecord(address, entry, declared)


def rendered(directory: Path, loading: LoadOptions | None = None) -> list[RenderedText]:
    """The files the workspace's stacks render, validated like every resource file."""
    loaded = load(directory, loading)
    return loaded.expansion.texts if loaded.expansion else []


@dataclasses.dataclass(frozen=True)
class Adoption:
    """What `substratus import` adopts: objects a lost state's workspace created, and its id."""

    lineage: str  # the part-of id on the objects, which the state takes as its own
    objects: tuple[LiveObject, ...]
    state: str  # where the state is written


def import_objects(directory: Path, addresses: tuple[Address, ...], *,
                   confirm: Callable[[Adoption], bool] | None, lock_timeout: float = 0.0,
                   loading: LoadOptions | None = None) -> Adoption | None:
    """Adopt the live objects at `addresses` (none: every declared one that exists) into a state
    that holds nothing: the state takes the part-of id they carry, so they, and every object of
    the workspace that made them, are this workspace's again (Terraform's import, for a lost
    state). Returns None when `confirm` declines."""
    ws = open_workspace(directory, loading)
    declared = {r.address: r for r in ws.resources}
    with _locked(ws, "import", lock_timeout):
        inventory = ws.backend.read()
        if inventory is not None and inventory.entries:
            raise SubstratusError(
                f"the state at {ws.backend.location} already holds {len(inventory.entries)} "
                "resources; importing into a state in use is not built yet (it would relabel "
                "objects with this workspace's part-of id)",
                hint="substratus import rebuilds a lost or emptied state; `substratus plan` "
                     "shows which objects this workspace owns")
        wanted = [_known_address(ws, a, set(declared), set(), "import") for a in addresses] \
            or sorted(declared)
        live = dispatch.read_live(ws.registry, wanted, "", resources=ws.resources)
        _check_importable(wanted, live, explicit=bool(addresses))
        owner = next(iter({obj.owner for obj in live.values()}))
        assert owner is not None
        adoption = Adoption(owner, tuple(live[a] for a in sorted(live)), ws.backend.location)
        if confirm is not None and not confirm(adoption):
            return None
        registry = ws.registry_for(owner)
        base = dataclasses.replace(inventory, lineage=owner) if inventory is not None else None
        session = StateSession(ws.backend, base, lineage=owner)
        for obj in adoption.objects:
            r = declared[obj.address]
            # No spec hash: the next plan compares the object with the files and shows the diff.
            session.record(obj.address, registry[obj.address.kind].name, spec_hash=None,
                           fingerprint=obj.fingerprint, status=dict(obj.status),
                           deps=tuple(sorted(r.refs)), content=obj.content or None)
        return adoption


def _check_importable(wanted: list[Address], live: dict[Address, LiveObject], *,
                      explicit: bool) -> None:
    missing = [a.short() for a in wanted if a not in live]
    if explicit and missing:
        verb = "does" if len(missing) == 1 else "do"
        what = f"{', '.join(missing)} {verb} not exist"
    elif not live:
        what = "no declared resource exists"
    else:
        what = ""
    if what:
        raise SubstratusError(f"nothing to import: {what}",
                              hint="import adopts objects that exist; `substratus apply` "
                                   "creates the rest")
    unmanaged = sorted(a.short() for a, obj in live.items() if obj.owner is None)
    if unmanaged:
        raise SubstratusError(
            f"{', '.join(unmanaged)}: not created by substratus (no ownership labels); adopting "
            "such objects is not built yet",
            hint="import adopts objects substratus created for a workspace whose state was "
                 "lost; rename the resource, or delete the object yourself")
    owners = sorted({str(obj.owner) for obj in live.values()})
    if len(owners) > 1:
        listed = "; ".join(f"part-of {o}: " + ", ".join(
            a.short() for a, obj in sorted(live.items()) if obj.owner == o) for o in owners)
        raise SubstratusError(f"the objects belong to {len(owners)} workspaces ({listed}); one "
                              "state adopts one workspace's objects",
                              hint="name the addresses of one of them: substratus import ADDR...")
