"""The command line: one thin click command per verb; exceptions become exit codes in `main`."""

from __future__ import annotations

import atexit
import contextlib
import difflib
import functools
import gc as collector  # `gc` is a command here
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from substratus_artifacts.layout import StoreError
from substratus_cli import __version__, verbosity
from substratus_cli.address import Address
from substratus_cli.diagnostics import DiagnosticsError
from substratus_cli.errors import EXIT_CODES_HELP, ExitCode, SubstratusError, UsageError
from substratus_cli.render.dot import FORMATS

# What a command needs is imported when it runs (`substratus --help` imports click and the
# few modules above: the schema, rich, the providers and the cloud clients cost a command that
# does not use them up to a second); the types only when checking them.
if TYPE_CHECKING:
    from rich.console import Console

    from substratus_cli.apply import Outcome
    from substratus_cli.operations import Adoption, ApplySettings
    from substratus_cli.plan import Plan
    from substratus_cli.planner import PlanOptions
    from substratus_cli.workspace import LoadOptions

# Errors printed at most (the rest counted), as compilers' -fmax-errors.
MAX_SHOWN = 100
# The consoles of stdout and stderr, made on first use (rich costs `--help` more than click
# does) for each command (`run`), and again without colour once --no-color is read.
_consoles: dict[bool, Console] = {}
_plain = False


def _use_consoles(*, no_color: bool) -> None:
    global _plain
    _plain = no_color
    _consoles.clear()


def _console(stderr: bool) -> Console:
    if stderr not in _consoles:
        from substratus_cli.render import console

        _consoles[stderr] = console.make(stderr=stderr, no_color=_plain)
    return _consoles[stderr]


def _out() -> Console:
    return _console(False)


def _err() -> Console:
    return _console(True)


def _no_color(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _use_consoles(no_color=True)


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        verbosity.configure(verbose=True)


def global_options() -> list[click.Option]:
    """Options every command takes, before the command (`substratus -v plan`) or after it
    (`substratus plan --no-color`, Terraform's place for -no-color)."""
    return [
        click.Option(["--no-color"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_no_color,
                     help="No colours or styles in the output (as does a non-empty NO_COLOR)."),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_verbose,
                     help="Tell everything: log to stderr a debug line per API request "
                          "(method, path, status, time) and a count at the end (same as "
                          f"{verbosity.ENV}=debug), and print the plan's notes that say nothing "
                          "is done."),
    ]

DIRECTORY = click.argument("directory", default=".",
                           type=click.Path(file_okay=False, path_type=Path))
TARGET = click.option("--target", "targets", multiple=True, metavar="ADDR",
                      help="Limit to this resource (Kind/name or Kind/namespace/name; Stack/NAME for "
                           "all an instance renders) and what it depends on. Repeatable.")
REPLACE = click.option("--replace", "replace", multiple=True, metavar="ADDR",
                       help="Plan this resource as replaced even if unchanged. Repeatable.")
AUTO_APPROVE = click.option("--auto-approve", is_flag=True,
                            help="Skip the interactive 'yes' approval.")
PARALLELISM = click.option("--parallelism", default=10, show_default=True,
                           type=click.IntRange(min=1), help="Steps run at the same time.")
LOCK_TIMEOUT = click.option("--lock-timeout", default="0s", show_default=True, metavar="DURATION",
                            help="How long to wait for the state lock (e.g. 30s, 5m).")
LOCK = click.option("--lock", type=click.BOOL, default=True, show_default=True, metavar="BOOL",
                    help="Hold the state lock while planning, as apply does. --lock=false plans "
                         "without it (e.g. beside a running apply; the plan may then read a "
                         "state that apply is changing).")
INPUT = click.option("--input", "ask", type=click.BOOL, default=True, show_default=True,
                     metavar="BOOL",
                     help="Ask for input. --input=false never prompts (for CI): an apply or "
                          "destroy that needs approval then fails unless --auto-approve.")
REFRESH_ONLY = click.option(
    "--refresh-only", is_flag=True,
    help="Plan only bringing the state up to the live objects (record objects changed outside "
         "substratus, forget deleted ones); change nothing.")


def with_loading(command: Callable[..., Any]) -> Callable[..., Any]:
    """--var, --var-file and --recursive: how the workspace is read, given to the command as one
    `loading` argument (operations hands it to workspace.load)."""
    @click.option("--var", "var_assignments", multiple=True, metavar="NAME=VALUE",
                  help="Set a workspace variable (declared by a Variable document). Repeatable; "
                       "SUBSTRATUS_VAR_NAME sets one too.")
    @click.option("--var-file", "var_files", multiple=True, metavar="FILE",
                  type=click.Path(dir_okay=False, path_type=Path),
                  help="Read variables from a YAML file of NAME: VALUE. Repeatable.")
    @click.option("--recursive", is_flag=True,
                  help="Also read the subfolders' *.yaml/*.yml files that declare apiVersion: "
                       "substratus.ai/v1 (by default only the top of DIR is read).")
    @functools.wraps(command)
    def wrapper(*args: Any, var_assignments: tuple[str, ...], var_files: tuple[Path, ...],
                recursive: bool, **kwargs: Any) -> Any:
        from substratus_cli.stacks import VariableInput
        from substratus_cli.workspace import LoadOptions

        collector.freeze()  # the schema and the loader are imported: see _run
        kwargs["loading"] = LoadOptions(
            VariableInput.from_command_line(var_assignments, var_files), recursive)
        return command(*args, **kwargs)
    return wrapper


@click.group(epilog=EXIT_CODES_HELP, params=global_options(),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="substratus")
def cli() -> None:
    """substratus: plan and apply ML infrastructure (datasets, models, servers, notebooks, GPUs)
    from a directory of YAML resource files, the way Terraform does."""


JSON_DIAGNOSTICS = click.option(
    "--json", "as_json", is_flag=True,
    help="Print the result as JSON; invalid files give a diagnostics document in the shape of "
         "`terraform validate -json` (exit 3).")


@cli.command()
@DIRECTORY
@JSON_DIAGNOSTICS
@with_loading
def validate(directory: Path, as_json: bool, loading: LoadOptions) -> None:
    """Check the resource files: syntax, schema, references, cycles. Reads no live state."""
    from substratus_cli.operations import open_workspace
    from substratus_cli.render.diagnostics_json import diagnostics_to_json

    with _diagnostics_as_json(as_json, directory):
        ws = open_workspace(directory, loading)
    if as_json:
        click.echo(json.dumps(diagnostics_to_json([], directory), indent=2))
        return
    n = len(ws.resources) + (1 if ws.environment else 0)
    _out().print(f"Success! The resource files are valid ({n} resource{'s' if n != 1 else ''}).")


@contextlib.contextmanager
def _diagnostics_as_json(as_json: bool, directory: Path) -> Iterator[None]:
    """With --json, the errors in the resource files become a JSON document on stdout (and their
    count on stderr) instead of lines on stderr; the exit code stays 3."""
    try:
        yield
    except DiagnosticsError as e:
        if not as_json:
            raise
        from rich.text import Text

        from substratus_cli.render.diagnostics_json import diagnostics_to_json

        click.echo(json.dumps(diagnostics_to_json(e.diagnostics, directory), indent=2))
        _err().print(Text(e.message + ".", style="bold"))
        raise click.exceptions.Exit(e.exit_code) from None


@cli.command()
@DIRECTORY
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan to FILE; `substratus apply FILE` applies exactly it.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes, 0 when there are none.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan as JSON (the shape of `terraform show -json`); invalid files "
                   "give a diagnostics document (`terraform validate -json`'s shape, exit 3).")
@click.option("--destroy", is_flag=True, help="Plan the destruction of everything managed.")
@REFRESH_ONLY
@TARGET
@REPLACE
@LOCK
@LOCK_TIMEOUT
@INPUT
@with_loading
def plan(directory: Path, out_file: Path | None, detailed_exitcode: bool, as_json: bool,
         destroy: bool, refresh_only: bool, targets: tuple[str, ...],
         replace: tuple[str, ...], lock: bool, lock_timeout: str, ask: bool,
         loading: LoadOptions) -> None:
    """Show what apply would change: read the files and the live state, diff them.

    A plan never asks for input; --input is accepted for scripts written for Terraform."""
    from substratus_cli import operations, planfile
    from substratus_cli.render.human import render_plan
    from substratus_cli.render.json_plan import plan_to_json
    from substratus_cli.render.progress import PlanProgress

    options = _plan_options(destroy, refresh_only, targets, replace)
    progress = PlanProgress(_err())
    try:
        with _diagnostics_as_json(as_json, directory):
            the_plan = operations.plan_directory(directory, options, loading, progress,
                                                 lock=lock,
                                                 lock_timeout=parse_duration(lock_timeout),
                                                 warn=_warn)
    finally:
        progress.close()
    if out_file is not None:
        planfile.save(the_plan, out_file)
    if as_json:
        click.echo(json.dumps(plan_to_json(the_plan), indent=2))
    else:
        # -v also prints the notes that say nothing is done (a server sized for no GPU).
        render_plan(the_plan, _out(), verbose=verbosity.verbose())
        if out_file is not None:
            what = "update the state" if the_plan.refresh_only else "perform exactly these actions"
            _out().print(f"\nSaved the plan to: {out_file}\n\nTo {what}, run:"
                      f"\n    substratus apply {out_file}")
    _warn_targeting(targets)
    if detailed_exitcode and (the_plan.has_changes or the_plan.updates_state_only):
        raise click.exceptions.Exit(ExitCode.CHANGES_PRESENT)


@cli.command()
@click.argument("path", default=".", type=click.Path(path_type=Path), metavar="[DIR|PLANFILE]")
@AUTO_APPROVE
@PARALLELISM
@LOCK_TIMEOUT
@REFRESH_ONLY
@TARGET
@REPLACE
@INPUT
@with_loading
def apply(path: Path, auto_approve: bool, parallelism: int, lock_timeout: str,
          refresh_only: bool, targets: tuple[str, ...], replace: tuple[str, ...], ask: bool,
          loading: LoadOptions) -> None:
    """Carry out the changes: plan, ask for 'yes', apply. With a PLANFILE, apply exactly it."""
    from substratus_cli import operations

    settings = _settings(parallelism, lock_timeout, auto_approve, ask, "apply", targets)
    if path.is_file():
        if targets or replace or refresh_only:
            raise UsageError("--target, --replace and --refresh-only cannot be used with a "
                             "saved plan", hint="give them to `substratus plan --out FILE`")
        variables = loading.variables
        if variables is not None and (variables.assignments or variables.files):
            raise UsageError("--var and --var-file cannot be used with a saved plan",
                             hint="a saved plan holds the values it was made with")
        if loading.recursive:
            raise UsageError("--recursive cannot be used with a saved plan",
                             hint="a saved plan holds the documents it was made from")
        with _closing(settings):
            _, outcome = operations.apply_saved(path, settings)
    else:
        options = _plan_options(False, refresh_only, targets, replace)
        with _closing(settings):
            _, outcome = operations.apply_directory(path, options, settings, loading)
    _finish(outcome, destroy=False)


@cli.command()
@DIRECTORY
@AUTO_APPROVE
@PARALLELISM
@LOCK_TIMEOUT
@TARGET
@INPUT
@with_loading
def destroy(directory: Path, auto_approve: bool, parallelism: int, lock_timeout: str,
            targets: tuple[str, ...], ask: bool, loading: LoadOptions) -> None:
    """Destroy everything substratus manages for this directory, in reverse dependency order."""
    from substratus_cli import operations
    from substratus_cli.planner import PlanOptions

    settings = _settings(parallelism, lock_timeout, auto_approve, ask, "destroy", targets)
    options = PlanOptions(True, _addresses(targets))
    with _closing(settings):
        _, outcome = operations.apply_directory(directory, options, settings, loading)
    _finish(outcome, destroy=True)


@cli.command()
@click.argument("plan_path", metavar="PLANFILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def show(plan_path: Path, as_json: bool) -> None:
    """Show a saved plan."""
    from substratus_cli import planfile
    from substratus_cli.render.human import render_plan
    from substratus_cli.render.json_plan import plan_to_json

    the_plan = planfile.load(plan_path)
    if as_json:
        click.echo(json.dumps(plan_to_json(the_plan), indent=2))
    else:
        render_plan(the_plan, _out())


@cli.command()
@DIRECTORY
@click.option("--plan", "with_plan", is_flag=True,
              help="Plan first (reading live state, as `plan` does) and colour each resource by "
                   "its planned action: create, update, replace, delete, no-op.")
@click.option("--format", "image_format", type=click.Choice(FORMATS), default="dot",
              show_default=True, help="svg and png are drawn by Graphviz's `dot`, which must "
                                      "be installed.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the graph to FILE instead of standard output.")
@TARGET
@with_loading
def graph(directory: Path, with_plan: bool, image_format: str, out_file: Path | None,
          targets: tuple[str, ...], loading: LoadOptions) -> None:
    """Print the dependency graph in DOT: an edge from a resource to what it depends on, none
    that a longer path implies. --format svg|png draws it with Graphviz."""
    from substratus_cli import operations
    from substratus_cli.graph import Graph
    from substratus_cli.render.dot import graph_dot, plan_graph, render_image

    if targets and not with_plan:
        raise UsageError("--target needs --plan", hint="the graph of the files shows them all")
    if with_plan:
        the_plan = operations.plan_directory(
            directory, _plan_options(False, False, targets, ()), loading)
        text = graph_dot(*plan_graph(the_plan))
    else:
        text = graph_dot(Graph.from_resources(
            operations.open_workspace(directory, loading).resources))
    data = text.encode() if image_format == "dot" else render_image(text, image_format)
    if out_file is not None:
        try:
            out_file.write_bytes(data)
        except OSError as error:
            raise SubstratusError(f"cannot write the graph to {out_file}: {error.strerror}") \
                from None
        return
    if image_format == "png" and sys.stdout.isatty():
        raise UsageError("not writing a PNG image to the terminal",
                         hint="give --out FILE.png, or redirect standard output to a file")
    click.echo(text if image_format == "dot" else data, nl=False)


@cli.group()
def state() -> None:
    """Inspect the state inventory."""


@state.command("list")
@DIRECTORY
@with_loading
def state_list(directory: Path, loading: LoadOptions) -> None:
    """List the addresses substratus manages, with their digests, artifact refs, endpoints and
    pending marks."""
    from substratus_cli import operations

    _, inventory = operations.inventory_of(directory, loading)
    for address, entry in sorted((inventory.entries if inventory else {}).items()):
        fields = [str(address)]
        fields += [f"{k}={entry.status[k]}" for k in ("digest", "artifact", "endpoint")
                   if entry.status.get(k)]
        if entry.pending:
            fields.append(f"pending={entry.pending.operation}")
        click.echo("\t".join(fields))


@state.command("show")
@click.argument("address", metavar="ADDR")
@DIRECTORY
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@with_loading
def state_show(address: str, directory: Path, as_json: bool, loading: LoadOptions) -> None:
    """Show one address: what the state recorded (status, dependencies, pending marks) and the
    spec the files declare now, and whether that is what was last applied."""
    import yaml
    from rich.text import Text

    from substratus_cli import operations
    from substratus_cli.secrets import redact

    record = operations.state_record(directory, Address.parse(address), loading)
    entry, declared = record.entry, record.declared
    data: dict[str, Any] = {"address": str(record.address), "managed": entry is not None,
                            "applied_as_declared": record.applied_as_declared}
    if entry is not None:
        data.update(provider=entry.provider, status=redact(entry.status),
                    depends_on=[str(d) for d in entry.deps],
                    pending=entry.pending.operation if entry.pending else None)
    if declared is not None:
        data.update(declared_in=f"{declared.file}:{declared.line}",
                    spec=redact(dict(declared.spec)))
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    _out().print(Text(f"# {record.address.short()}", style="bold"))
    if entry is None:
        _out().print("Not in the state: declared, never applied (or destroyed).")
    else:
        _out().print(f"provider: {entry.provider}")
        if entry.pending:
            _out().print(f"pending: {entry.pending.operation} (an operation did not finish)")
        for key, value in sorted(data["status"].items()):
            _out().print(Text(f"status.{key}: {_scalar(value)}"))
        for dep in data["depends_on"]:
            _out().print(Text(f"depends on: {dep}"))
    if declared is None:
        _out().print("Not declared in the files: the next apply destroys it.")
    else:
        _out().print(Text(f"declared at: {data['declared_in']}"))
        state_note = {True: "as last applied", False: "changed since the last apply (see "
                      "`substratus plan`)", None: "not applied yet"}[record.applied_as_declared]
        _out().print(Text(f"spec ({state_note}):"))
        for line in yaml.safe_dump(data["spec"], sort_keys=False).splitlines():
            _out().print(Text(f"  {line}"))


@cli.command("import")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@click.option("--dir", "directory", default=".", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="The workspace's folder.")
@AUTO_APPROVE
@LOCK_TIMEOUT
@INPUT
@with_loading
def import_(addresses: tuple[str, ...], directory: Path, auto_approve: bool, lock_timeout: str,
            ask: bool, loading: LoadOptions) -> None:
    """Rebuild a lost state: adopt the objects at ADDR (default: every declared resource that
    exists), which substratus created for this workspace before its state was lost.

    Their ownership labels are shown first; the state then takes their part-of id as its own,
    so every object labelled with it is this workspace's again, and the next plan compares them
    with the files."""
    from rich.text import Text

    from substratus_cli import operations
    from substratus_cli.provider import MANAGED_BY_LABEL, PART_OF_LABEL

    def confirm(adoption: Adoption) -> bool:
        _out().print(Text(f"Objects to import into the state at {adoption.state}:", style="bold"))
        for obj in adoption.objects:
            labels = ", ".join(f"{k}={obj.labels[k]}" for k in (MANAGED_BY_LABEL, PART_OF_LABEL))
            _out().print(Text(f"  {obj.address.short()}  ({labels})"))
        _out().print(f"\nThe state takes the part-of id {adoption.lineage}: every object labelled "
                  "with it becomes this workspace's, and the next plan changes or deletes "
                  "those the files no longer declare as they are.")
        if auto_approve:
            return True
        return _ask("import", "Do you want to import these objects?\n  Substratus will write "
                              "them to the state without changing any object.", ask,
                    hint="pass --auto-approve to import without asking")

    adoption = operations.import_objects(directory, _addresses(addresses), confirm=confirm,
                                         lock_timeout=parse_duration(lock_timeout),
                                         loading=loading)
    if adoption is not None:
        n = len(adoption.objects)
        _out().print(Text(f"\nImport successful! {n} object{'s' if n != 1 else ''} adopted.",
                       style="bold green"))
        _out().print("Run `substratus plan` to compare them with the files.")


@cli.command("output")
@click.argument("args", nargs=-1, metavar="[NAME] [DIR]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (all: terraform output "
                                                       "-json's shape).")
@with_loading
def output(args: tuple[str, ...], as_json: bool, loading: LoadOptions) -> None:
    """Print the workspace's outputs: each stack instance's outputs (INSTANCE.NAME) and each
    managed resource's results (Kind/name.digest, .artifact, .endpoint).

    With NAME, print only its value (strings as they are, for scripts)."""
    from substratus_cli import operations
    from substratus_cli.outputs import as_json as outputs_as_json

    if len(args) > 2:
        raise UsageError("expected at most NAME and DIR")
    name, directory = (None, Path(args[0])) if len(args) == 1 and Path(args[0]).is_dir() else \
        (args[0] if args else None, Path(args[1]) if len(args) > 1 else Path("."))
    found = operations.workspace_outputs(directory, loading)
    if name is None:
        if as_json:
            click.echo(json.dumps(outputs_as_json(found), indent=2))
            return
        if not found:
            _err().print("No outputs: nothing is applied yet and no stack declares outputs.")
        for o in found:
            click.echo(f"{o.name} = {_scalar(o.value) if o.known else '(known after apply)'}")
        return
    match = next((o for o in found if o.name == name), None)
    if match is None:
        names = ", ".join(o.name for o in found[:10]) or "none"
        raise SubstratusError(f'output "{name}" not found (outputs: {names})')
    if not match.known:
        raise SubstratusError(f'output "{name}" is not known yet',
                              hint="it is recorded when its resource is applied")
    click.echo(json.dumps(match.value) if as_json else _scalar(match.value))


@cli.command()
@DIRECTORY
@with_loading
def render(directory: Path, loading: LoadOptions) -> None:
    """Print the resource files the workspace's stacks render, as plain YAML, after checking them
    like every resource file (review a stack as the files it becomes)."""
    from substratus_cli import operations

    texts = operations.rendered(directory, loading)
    if not texts:
        _err().print("No stacks in this workspace: its files are already plain YAML.")
    for text in texts:
        click.echo(f"---\n# Source: {text.file} (stack {text.instance})")
        click.echo(text.text.rstrip("\n").removeprefix("---\n"))


@cli.command()
@click.argument("stack", metavar="STACK")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "instance", metavar="NAME", help="The instance's name (default: STACK).")
def init(stack: str, directory: Path, instance: str | None) -> None:
    """Write a new workspace that uses a stack (a shipped one by name, or ./PATH), its parameters
    filled with their defaults and described in comments."""
    from substratus_cli.stacks import scaffold

    written = scaffold.write(stack, directory, instance)
    _out().print(f"Wrote {written}. Fill in the values marked REQUIRED, then run:\n"
              f"    substratus plan {directory}")


@cli.command()
@DIRECTORY
@click.option("--repair", is_flag=True,
              help="Remove the corrupt blobs found at once (a local store; no workload may "
                   "read them), then apply the damaged resources again (--replace): their "
                   "sources are snapshotted, their models built or trained again. The apply "
                   "asks first, as apply does.")
@AUTO_APPROVE
@PARALLELISM
@LOCK_TIMEOUT
@INPUT
@with_loading
def verify(directory: Path, repair: bool, auto_approve: bool, parallelism: int,
           lock_timeout: str, ask: bool, loading: LoadOptions) -> None:
    """Read back every dataset snapshot and model artifact the state names and check each blob
    against its manifest. Exits 1 naming what is missing or corrupt (with --repair: makes them
    again, then exits as apply does)."""
    from rich.text import Text

    from substratus_cli import operations
    from substratus_cli.render.progress import PlanProgress

    progress = PlanProgress(_err())
    try:
        result = operations.verify(directory, loading, progress)
    finally:
        progress.close()
    for d in result.damage:
        _err().print(Text(f"Error: {d.address}: {d.digest}: {d.problem}"))
    mib = result.bytes_read / (1 << 20)
    if result.damage and repair:
        from substratus_cli.planner import PlanOptions

        addresses = tuple(sorted({d.address for d in result.damage}))
        removed = operations.discard_damaged(directory, result, loading)
        _out().print(f"Removed {removed} corrupt blob(s); applying "
                     f"{', '.join(a.short() for a in addresses)} again.\n")
        settings = _settings(parallelism, lock_timeout, auto_approve, ask, "repair")
        _, outcome = operations.apply_directory(
            directory, PlanOptions(targets=addresses, replace=addresses), settings, loading)
        _finish(outcome, destroy=False)
        return
    if result.damage:
        damaged = len({d.digest for d in result.damage})
        raise SubstratusError(f"{damaged} of {result.snapshots} snapshot(s) damaged ({mib:.1f} "
                              "MiB read)",
                              hint="nothing was changed; `substratus verify --repair` makes "
                                   "them again (or delete the blobs named, then `substratus "
                                   "apply --replace ADDR` for each address)")
    _out().print(f"Verified {result.snapshots} snapshot(s), {mib:.1f} MiB read: intact.")


@cli.command()
@DIRECTORY
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@LOCK_TIMEOUT
@with_loading
def gc(directory: Path, dry_run: bool, lock_timeout: str, loading: LoadOptions) -> None:
    """Remove the snapshots (manifests and blobs) of the workspace's local file:// artifact store
    that no state entry references, and print what that freed. Takes the state lock."""
    from substratus_cli import operations

    swept = operations.gc(directory, dry_run, parse_duration(lock_timeout), loading)
    would = "would be " if dry_run else ""
    for digest in swept.manifests:
        _out().print(f"{'Would remove' if dry_run else 'Removed'} snapshot {digest}")
    if not swept.manifests and not swept.blobs:
        _out().print("Nothing to remove: the state references every snapshot in the artifact store.")
        return
    _out().print(f"{len(swept.manifests)} manifest(s) and {swept.blobs} blob(s) {would}removed: "
              f"{_size(swept.bytes)} ({swept.bytes} bytes) {would}freed.")
    if swept.linked_bytes:
        _out().print(f"{_size(swept.linked_bytes)} of it is still linked from elsewhere (a "
                  "workload's copy of its inputs) and is freed on disk when that copy goes.")


def _size(n: int) -> str:
    """1536 -> 1.5 KiB."""
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


@cli.command()
@click.argument("address", metavar="ADDR")
@DIRECTORY
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the workload exits.")
@click.option("--plot", is_flag=True,
              help="Draw the loss curve the run logged (step=N ... loss=X lines) as a text chart.")
@with_loading
def logs(address: str, directory: Path, follow: bool, plot: bool, loading: LoadOptions) -> None:
    """Print the logs of a resource's most recent run (training loss, server requests).

    ADDR is Kind/name, e.g. Model/colors."""
    import shutil

    from substratus_cli import operations
    from substratus_cli.render.plot import chart, metric_points

    parsed = Address.parse(address)
    if not plot:
        for line in operations.logs(directory, parsed, follow, loading):
            click.echo(line)
        return
    if follow:
        raise UsageError("--plot cannot be used with --follow",
                         hint="it draws the lines logged so far; run it again to see more")
    points = metric_points(operations.logs(directory, parsed, False, loading), "loss")
    if not points:
        raise SubstratusError(f"{address}'s most recent run logged no loss (no `step=N ... "
                              "loss=X` lines)", hint="--plot draws a training run's loss; "
                              f"`substratus logs {address}` shows what it logged")
    width = shutil.get_terminal_size((80, 24)).columns - 12
    click.echo("\n".join(chart(points, "loss", width)))


@cli.group()
def notebook() -> None:
    """Work with Notebooks."""


@notebook.command("open")
@click.argument("name")
@DIRECTORY
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
@with_loading
def notebook_open(name: str, directory: Path, no_browser: bool, loading: LoadOptions) -> None:
    """Print a Notebook's URL (with its access token) and open it in a browser when there is one."""
    import webbrowser

    from substratus_cli import operations
    address = Address.parse(name if "/" in name else f"Notebook/{name}")
    url = operations.open_url(directory, address, loading)
    click.echo(url)
    if not no_browser and _has_display():
        webbrowser.open(url)


def _has_display() -> bool:
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or
                                             os.environ.get("WAYLAND_DISPLAY"))


@cli.command("force-unlock")
@click.argument("lock_id", metavar="ID")
@DIRECTORY
@with_loading
def force_unlock(lock_id: str, directory: Path, loading: LoadOptions) -> None:
    """Release a state lock left behind by an operation that is gone."""
    from substratus_cli.operations import open_workspace

    ws = open_workspace(directory, loading)
    _out().print(ws.backend.force_unlock(lock_id))


@cli.command()
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to FILE instead of printing it.")
def schema(out_file: Path | None) -> None:
    """Print the JSON Schema of the resource files, for editors: save it with --out FILE and put
    `# yaml-language-server: $schema=FILE` at the top of a resource file for completion, hover
    and validation as you type."""
    from substratus_cli.config import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out_file is None:
        click.echo(text, nl=False)
        return
    try:
        out_file.write_text(text)
    except OSError as error:
        raise SubstratusError(f"cannot write the schema to {out_file}: {error.strerror}") from None
    _out().print(f"Wrote the JSON Schema of the resource files to {out_file}.")


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _addresses(texts: tuple[str, ...]) -> tuple[Address, ...]:
    return tuple(Address.parse(t) for t in texts)


def _plan_options(destroy: bool, refresh_only: bool, targets: tuple[str, ...],
                  replace: tuple[str, ...]) -> PlanOptions:
    from substratus_cli.planner import PlanOptions

    if refresh_only and (destroy or replace):
        raise UsageError(f"--refresh-only cannot be used with {'--destroy' if destroy else '--replace'}",
                         hint="a refresh-only plan changes no object, it only updates the state")
    return PlanOptions(destroy, _addresses(targets), _addresses(replace), refresh_only)


def _warn(message: str) -> None:
    from rich.text import Text

    _err().print(Text("Warning: ", style="bold yellow") + Text(message))


def _warn_targeting(targets: tuple[str, ...]) -> None:
    """Terraform's warning: a targeted plan may leave out changes the files ask for."""
    if targets:
        from rich.text import Text

        _err().print(Text("\nWarning: ", style="bold yellow") + Text(
            "Resource targeting is in effect\n  This plan was made with --target, so it may "
            "not hold every change the resource files ask for. --target is for exceptional "
            "situations (recovering from an error or a mistake), not for routine use."))


def _settings(parallelism: int, lock_timeout: str, auto_approve: bool, ask: bool, verb: str,
              targets: tuple[str, ...] = ()) -> ApplySettings:
    from substratus_cli import operations
    from substratus_cli.render.human import render_plan
    from substratus_cli.render.progress import ConsoleReporter

    def show(p: Plan) -> None:
        render_plan(p, _out())
        _warn_targeting(targets)

    return operations.ApplySettings(
        lock_timeout=parse_duration(lock_timeout), parallelism=parallelism,
        reporter=ConsoleReporter(_out(), _err()),
        confirm=None if auto_approve else (lambda p: _confirm(verb, p, ask)),
        show=show)


@contextlib.contextmanager
def _closing(settings: ApplySettings) -> Iterator[None]:
    """The reporter closed (its progress display stopped) however the apply ends."""
    try:
        yield
    finally:
        if settings.reporter is not None:
            settings.reporter.close()


def _confirm(verb: str, plan: Plan, ask: bool) -> bool:
    if plan.refresh_only:
        question = ("Would you like to update the state to reflect these detected changes?\n"
                    "  Substratus will write these changes to the state without changing any "
                    "object.")
    else:
        question = ("Do you really want to destroy all resources?" if verb == "destroy" else
                    "Do you want to perform these actions?") + \
            "\n  Substratus will perform the actions described above."
    return _ask(verb, question, ask)


def _ask(verb: str, question: str, ask: bool, hint: str = (
        "pass --auto-approve to run without asking (review the plan first, e.g. "
        "`substratus plan --out FILE`, then apply FILE)")) -> bool:
    """'yes' to go on; anything else cancels (an error, exit 1)."""
    if not ask:
        raise UsageError(f"{verb.capitalize()} cancelled: it needs approval and --input=false "
                         "forbids asking for it", hint=hint)
    _out().print(f"\n{question}\n  Only 'yes' will be accepted to approve.\n")
    try:
        answer = click.prompt("  Enter a value", default="", show_default=False)
    except click.exceptions.Abort:
        raise SubstratusError(
            f"{verb.capitalize()} cancelled: no answer on standard input",
            hint="pass --auto-approve to run without asking") from None
    if answer.strip() != "yes":
        raise SubstratusError(f"{verb.capitalize()} cancelled.")
    _out().print()
    return True


def _finish(outcome: Outcome | None, *, destroy: bool) -> None:
    if outcome is None:
        return
    from substratus_cli.render.progress import render_outcome

    render_outcome(outcome, _out(), destroy=destroy)
    code = outcome.exit_code
    if code != ExitCode.OK:
        raise click.exceptions.Exit(code)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise UsageError(f"invalid duration {text!r}: expected e.g. 0s, 30s, 5m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def _accept_everywhere(group: click.Group) -> None:
    """The global options on every command too, unless a command has an option of that name."""
    for command in group.commands.values():
        taken = {o for p in command.params if isinstance(p, click.Option)
                 for o in (*p.opts, *p.secondary_opts)}
        command.params += [o for o in global_options() if not set(o.opts) & taken]
        if isinstance(command, click.Group):
            _accept_everywhere(command)


_accept_everywhere(cli)


def main(argv: list[str] | None = None) -> NoReturn:
    """The one boundary where errors become exit codes; users never see a traceback."""
    _exit(run(argv))


def _exit(code: int) -> NoReturn:
    """Ends the process without the interpreter's teardown, which frees every object of every
    module one by one (a quarter to half a second after a large plan), once what teardown does
    that matters is done: the atexit handlers (the kubernetes library's temporary credential
    files, logging's flush, weakref finalizers) run and stdout and stderr are flushed. Every
    file substratus writes (state, stat cache, plan files) is closed by then. It exits the
    ordinary way while a thread that is not a daemon still runs (the ordinary exit waits for
    it) and under a profiler or a coverage tracer (they write their reports at the end)."""
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if run_exitfuncs is None or others or sys.getprofile() or sys.gettrace():
        sys.exit(code)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`| head`) or stream: nothing more can be written to it.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(int(code))


def _long_options(command: click.Command) -> set[str]:
    """Every `--name` option of a command and its subcommands."""
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _long_options(sub)
    return names


_SINGLE_DASH = re.compile(r"-(?P<name>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?P<value>=.*)?", re.DOTALL)


def terraform_flags(argv: list[str]) -> list[str]:
    """Terraform's single-dash long flags (`-auto-approve`, `-var x=1`, `-input=false`) as the
    `--` options they are. A single-dash word close to a long option becomes one too, so that
    click answers it with a did-you-mean; anything else (short flags, values after `--`) is
    left as it is."""
    known = _long_options(cli)
    out = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        match = _SINGLE_DASH.fullmatch(arg)
        if match is None or len(match["name"]) < 2:
            continue
        option = "-" + arg.split("=", 1)[0]
        if option in known or difflib.get_close_matches(option, known, n=1, cutoff=0.8):
            out[i] = "-" + arg
    return out


def run(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    finally:
        verbosity.finish()
        # What the command froze is the collector's again, for callers that go on (the tests,
        # the benchmark); `main` exits right after.
        collector.unfreeze()


def _run(argv: list[str] | None) -> int:
    _use_consoles(no_color=False)  # NO_COLOR as it is now; --no-color is read with the options
    try:
        verbosity.configure()
        args = terraform_flags(sys.argv[1:] if argv is None else argv)
        # What is imported lives until the process ends: the collector's full passes need not
        # go through it again (the commands freeze again after their own imports).
        collector.freeze()
        # Without standalone mode, click returns the code of a raised Exit instead of exiting.
        result = cli.main(args=args, prog_name="substratus", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        _err().print("Interrupted.")
        return ExitCode.INTERRUPTED
    except click.exceptions.ClickException as e:  # usage errors: 3, not click's 2
        e.show()
        return ExitCode.INVALID_INPUT
    except DiagnosticsError as e:
        from rich.text import Text

        from substratus_cli.render.terminal import safe
        from substratus_cli.secrets import scrub

        errors = e.diagnostics.errors
        for d in errors[:MAX_SHOWN]:
            _err().print(Text("Error: ", style="bold red") + Text(safe(scrub(str(d)))))
        if len(errors) > MAX_SHOWN:
            _err().print(Text(f"... and {len(errors) - MAX_SHOWN} more (the first {MAX_SHOWN} are "
                           "shown)"))
        _err().print(Text(e.message + ".", style="bold"))
        return e.exit_code
    except (SubstratusError, StoreError) as e:  # the store package's errors are the user's too
        from rich.text import Text

        from substratus_cli.render.terminal import safe
        from substratus_cli.secrets import scrub

        _err().print(Text("Error: ", style="bold red") + Text(safe(scrub(e.message))))
        if e.hint:
            _err().print(Text(f"  {safe(scrub(e.hint))}"))
        return e.exit_code if isinstance(e, SubstratusError) else ExitCode.ERROR
    except KeyboardInterrupt:
        _err().print("Interrupted.")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as e:  # a bug: say so, keep the trace for whoever reports it
        import traceback

        from rich.text import Text

        from substratus_cli.render.terminal import safe
        from substratus_cli.secrets import scrub

        _err().print(Text(safe(scrub(f"Internal error: {type(e).__name__}: {e}")), style="bold red"))
        _err().print("This is a bug in substratus. Please report it with the command you ran; "
                  "set SUBSTRATUS_DEBUG=1 to see the traceback.")
        if os.environ.get("SUBSTRATUS_DEBUG"):
            traceback.print_exc()
        return ExitCode.ERROR
