"""The command line: one thin click command per verb; exceptions become exit codes in `main`."""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
import webbrowser
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from substratus_artifacts.layout import StoreError
from substratus_cli import __version__, operations, planfile
from substratus_cli.address import Address
from substratus_cli.apply import Outcome
from substratus_cli.config import json_schema
from substratus_cli.diagnostics import DiagnosticsError
from substratus_cli.errors import EXIT_CODES_HELP, ExitCode, SubstratusError, UsageError
from substratus_cli.graph import Graph
from substratus_cli.operations import open_workspace
from substratus_cli.planner import PlanOptions
from substratus_cli.render.human import render_plan
from substratus_cli.render.json_plan import plan_to_json
from substratus_cli.render.progress import ConsoleReporter, render_outcome

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DIRECTORY = click.argument("directory", default=".",
                           type=click.Path(file_okay=False, path_type=Path))
TARGET = click.option("--target", "targets", multiple=True, metavar="ADDR",
                      help="Limit to this resource (Kind/name or Kind/namespace/name) and what it "
                           "depends on. Repeatable.")
REPLACE = click.option("--replace", "replace", multiple=True, metavar="ADDR",
                       help="Plan this resource as replaced even if unchanged. Repeatable.")
AUTO_APPROVE = click.option("--auto-approve", is_flag=True,
                            help="Skip the interactive 'yes' approval.")
PARALLELISM = click.option("--parallelism", default=10, show_default=True,
                           type=click.IntRange(min=1), help="Steps run at the same time.")
LOCK_TIMEOUT = click.option("--lock-timeout", default="0s", show_default=True, metavar="DURATION",
                            help="How long to wait for the state lock (e.g. 30s, 5m).")


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="substratus")
def cli() -> None:
    """substratus: plan and apply ML infrastructure (datasets, models, servers, notebooks, GPUs)
    from a directory of YAML resource files, the way Terraform does."""


@cli.command()
@DIRECTORY
def validate(directory: Path) -> None:
    """Check the resource files: syntax, schema, references, cycles. Reads no live state."""
    ws = open_workspace(directory)
    n = len(ws.resources) + (1 if ws.environment else 0)
    out.print(f"Success! The resource files are valid ({n} resource{'s' if n != 1 else ''}).")


@cli.command()
@DIRECTORY
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan to FILE; `substratus apply FILE` applies exactly it.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes, 0 when there are none.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--destroy", is_flag=True, help="Plan the destruction of everything managed.")
@TARGET
@REPLACE
def plan(directory: Path, out_file: Path | None, detailed_exitcode: bool, as_json: bool,
         destroy: bool, targets: tuple[str, ...], replace: tuple[str, ...]) -> None:
    """Show what apply would change: read the files and the live state, diff them."""
    options = PlanOptions(destroy, _addresses(targets), _addresses(replace))
    the_plan = operations.plan_directory(directory, options)
    if out_file is not None:
        planfile.save(the_plan, out_file)
    if as_json:
        click.echo(json.dumps(plan_to_json(the_plan), indent=2))
    else:
        render_plan(the_plan, out)
        if out_file is not None:
            out.print(f"\nSaved the plan to: {out_file}\n\nTo perform exactly these actions, run:"
                      f"\n    substratus apply {out_file}")
    if detailed_exitcode and the_plan.has_changes:
        raise click.exceptions.Exit(ExitCode.CHANGES_PRESENT)


@cli.command()
@click.argument("path", default=".", type=click.Path(path_type=Path), metavar="[DIR|PLANFILE]")
@AUTO_APPROVE
@PARALLELISM
@LOCK_TIMEOUT
@TARGET
@REPLACE
def apply(path: Path, auto_approve: bool, parallelism: int, lock_timeout: str,
          targets: tuple[str, ...], replace: tuple[str, ...]) -> None:
    """Carry out the changes: plan, ask for 'yes', apply. With a PLANFILE, apply exactly it."""
    settings = _settings(parallelism, lock_timeout, auto_approve, "apply")
    if path.is_file():
        if targets or replace:
            raise UsageError("--target and --replace cannot be used with a saved plan")
        _, outcome = operations.apply_saved(path, settings)
    else:
        options = PlanOptions(False, _addresses(targets), _addresses(replace))
        _, outcome = operations.apply_directory(path, options, settings)
    _finish(outcome, destroy=False)


@cli.command()
@DIRECTORY
@AUTO_APPROVE
@PARALLELISM
@LOCK_TIMEOUT
@TARGET
def destroy(directory: Path, auto_approve: bool, parallelism: int, lock_timeout: str,
            targets: tuple[str, ...]) -> None:
    """Destroy everything substratus manages for this directory, in reverse dependency order."""
    settings = _settings(parallelism, lock_timeout, auto_approve, "destroy")
    options = PlanOptions(True, _addresses(targets))
    _, outcome = operations.apply_directory(directory, options, settings)
    _finish(outcome, destroy=True)


@cli.command()
@click.argument("plan_path", metavar="PLANFILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def show(plan_path: Path, as_json: bool) -> None:
    """Show a saved plan."""
    the_plan = planfile.load(plan_path)
    if as_json:
        click.echo(json.dumps(plan_to_json(the_plan), indent=2))
    else:
        render_plan(the_plan, out)


@cli.command()
@DIRECTORY
def graph(directory: Path) -> None:
    """Print the dependency graph in DOT (pipe it to `dot -Tsvg`)."""
    ws = open_workspace(directory)
    g = Graph.from_resources(ws.resources)
    click.echo("digraph substratus {\n  rankdir = \"RL\";\n  node [shape = box];")
    for a in g.order():
        click.echo(f'  "{a}";')
        for d in sorted(g.deps[a]):
            click.echo(f'  "{a}" -> "{d}";')
    click.echo("}")


@cli.group()
def state() -> None:
    """Inspect the state inventory."""


@state.command("list")
@DIRECTORY
def state_list(directory: Path) -> None:
    """List the addresses substratus manages, with their digests, artifact refs, endpoints and
    pending marks."""
    ws = open_workspace(directory)
    inventory = ws.backend.read()
    for address, entry in sorted((inventory.entries if inventory else {}).items()):
        fields = [str(address)]
        fields += [f"{k}={entry.status[k]}" for k in ("digest", "artifact", "endpoint")
                   if entry.status.get(k)]
        if entry.pending:
            fields.append(f"pending={entry.pending.operation}")
        click.echo("\t".join(fields))


@cli.command()
@DIRECTORY
def verify(directory: Path) -> None:
    """Read back every dataset snapshot and model artifact the state names and check each blob
    against its manifest. Exits 1 naming what is missing or corrupt."""
    result = operations.verify(directory)
    for d in result.damage:
        err.print(Text(f"Error: {d.address}: {d.digest}: {d.problem}"))
    mib = result.bytes_read / (1 << 20)
    if result.damage:
        damaged = len({d.digest for d in result.damage})
        raise SubstratusError(f"{damaged} of {result.snapshots} snapshot(s) damaged ({mib:.1f} "
                              "MiB read)",
                              hint="nothing was changed; delete the blobs named, then `substratus "
                                   "apply --replace ADDR` for each address snapshots or builds "
                                   "it again")
    out.print(f"Verified {result.snapshots} snapshot(s), {mib:.1f} MiB read: intact.")


@cli.command()
@click.argument("address", metavar="ADDR")
@DIRECTORY
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the workload exits.")
def logs(address: str, directory: Path, follow: bool) -> None:
    """Print the logs of a resource's most recent run (training loss, server requests).

    ADDR is Kind/name, e.g. Model/colors."""
    for line in operations.logs(directory, Address.parse(address), follow):
        click.echo(line)


@cli.group()
def notebook() -> None:
    """Work with Notebooks."""


@notebook.command("open")
@click.argument("name")
@DIRECTORY
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
def notebook_open(name: str, directory: Path, no_browser: bool) -> None:
    """Print a Notebook's URL (with its access token) and open it in a browser when there is one."""
    url = operations.open_url(directory, Address.parse(name if "/" in name else f"Notebook/{name}"))
    click.echo(url)
    if not no_browser and _has_display():
        webbrowser.open(url)


def _has_display() -> bool:
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or
                                             os.environ.get("WAYLAND_DISPLAY"))


@cli.command("force-unlock")
@click.argument("lock_id", metavar="ID")
@DIRECTORY
def force_unlock(lock_id: str, directory: Path) -> None:
    """Release a state lock left behind by an operation that is gone."""
    ws = open_workspace(directory)
    out.print(ws.backend.force_unlock(lock_id))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the resource files (for editors: yaml-language-server)."""
    click.echo(json.dumps(json_schema(), indent=2))


def _addresses(texts: tuple[str, ...]) -> tuple[Address, ...]:
    return tuple(Address.parse(t) for t in texts)


def _settings(parallelism: int, lock_timeout: str, auto_approve: bool,
              verb: str) -> operations.ApplySettings:
    return operations.ApplySettings(
        lock_timeout=parse_duration(lock_timeout), parallelism=parallelism,
        reporter=ConsoleReporter(out, err),
        confirm=None if auto_approve else (lambda p: _confirm(verb)),
        show=lambda p: render_plan(p, out))


def _confirm(verb: str) -> bool:
    question = "Do you really want to destroy all resources?" if verb == "destroy" else \
        "Do you want to perform these actions?"
    out.print(f"\n{question}\n  Substratus will perform the actions described above.\n"
              "  Only 'yes' will be accepted to approve.\n")
    try:
        answer = click.prompt("  Enter a value", default="", show_default=False)
    except click.exceptions.Abort:
        raise SubstratusError(
            f"{verb.capitalize()} cancelled: no answer on standard input",
            hint="pass --auto-approve to run without asking") from None
    if answer.strip() != "yes":
        raise SubstratusError(f"{verb.capitalize()} cancelled.")
    out.print()
    return True


def _finish(outcome: Outcome | None, *, destroy: bool) -> None:
    if outcome is None:
        return
    render_outcome(outcome, out, destroy=destroy)
    code = outcome.exit_code
    if code != ExitCode.OK:
        raise click.exceptions.Exit(code)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise UsageError(f"invalid duration {text!r}: expected e.g. 0s, 30s, 5m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def main(argv: list[str] | None = None) -> None:
    """The one boundary where errors become exit codes; users never see a traceback."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode, click returns the code of a raised Exit instead of exiting.
        result = cli.main(args=argv, prog_name="substratus", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        err.print("Interrupted.")
        return ExitCode.INTERRUPTED
    except click.exceptions.ClickException as e:  # usage errors: 3, not click's 2
        e.show()
        return ExitCode.INVALID_INPUT
    except DiagnosticsError as e:
        for d in e.diagnostics.errors:
            err.print(Text("Error: ", style="bold red") + Text(str(d)))
        err.print(Text(e.message + ".", style="bold"))
        return e.exit_code
    except (SubstratusError, StoreError) as e:  # the store package's errors are the user's too
        err.print(Text("Error: ", style="bold red") + Text(e.message))
        if e.hint:
            err.print(Text(f"  {e.hint}"))
        return e.exit_code if isinstance(e, SubstratusError) else ExitCode.ERROR
    except KeyboardInterrupt:
        err.print("Interrupted.")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as e:  # a bug: say so, keep the trace for whoever reports it
        err.print(Text(f"Internal error: {type(e).__name__}: {e}", style="bold red"))
        err.print("This is a bug in substratus. Please report it with the command you ran; "
                  "set SUBSTRATUS_DEBUG=1 to see the traceback.")
        if os.environ.get("SUBSTRATUS_DEBUG"):
            traceback.print_exc()
        return ExitCode.ERROR
