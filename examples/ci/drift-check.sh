#!/bin/sh
# drift-check.sh: a CI drift check of one substratus workspace, with a short Markdown summary.
#
# Usage: drift-check.sh [--summary FILE] [--json FILE] [DIR] [-- PLAN_ARGS...]
#
#   DIR             the workspace (default: the current directory)
#   --summary FILE  write the Markdown summary to FILE instead of standard output (for
#                   $GITHUB_STEP_SUMMARY or a pull request comment)
#   --json FILE     also keep the plan's JSON document in FILE
#   PLAN_ARGS       passed on to `substratus plan` (--var, --var-file, --target, ...)
#
# It runs `substratus plan --detailed-exitcode --json DIR` (with `--input=false` when this
# substratus has that option, so CI never waits for an answer) and exits like `terraform plan
# -detailed-exitcode` does:
#
#   0  no changes: the live state matches the files, and nothing drifted
#   2  drift or pending changes: something changed outside substratus since the last apply, or
#      the files differ from what is applied (the summary says which, resource by resource)
#   1  error: anything else substratus reported, invalid resource files (substratus's own exit 3)
#      and a held state lock (its exit 4) included, and a usage error of this script; the summary
#      then holds substratus's error lines and its exit code
#
# The summary has the counts per action, a table of the pending changes (address, action,
# reason) and a section for drift (what changed outside substratus). Environment: SUBSTRATUS,
# the command to run (default: substratus on PATH); PYTHON, the Python 3 that reads the JSON
# plan (default: python3; only its standard library is used).
# Needs: a POSIX shell, substratus, python3.
set -u

usage() {
  sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
  printf 'drift-check.sh: %s\n' "$1" >&2
  exit 1
}

summary_file=""
json_file=""
workspace=""
while [ $# -gt 0 ]; do
  case "$1" in
    --summary) [ $# -ge 2 ] || die "--summary needs a FILE"; summary_file=$2; shift 2 ;;
    --summary=*) summary_file=${1#--summary=}; shift ;;
    --json) [ $# -ge 2 ] || die "--json needs a FILE"; json_file=$2; shift 2 ;;
    --json=*) json_file=${1#--json=}; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) usage >&2; die "unknown option: $1 (plan options go after --)" ;;
    *)
      [ -z "$workspace" ] || die "one workspace at a time (got $workspace and $1)"
      workspace=$1; shift ;;
  esac
done
[ -n "$workspace" ] || workspace=.
# What is left in "$@" is passed on to `substratus plan`.

substratus=${SUBSTRATUS:-substratus}
python=${PYTHON:-python3}
command -v "$substratus" >/dev/null 2>&1 \
  || die "$substratus not found on PATH (install substratus, or set SUBSTRATUS)"
command -v "$python" >/dev/null 2>&1 \
  || die "$python not found on PATH (it reads the JSON plan; set PYTHON to a Python 3)"

work=$(mktemp -d "${TMPDIR:-/tmp}/drift-check.XXXXXX") || die "cannot make a temporary folder"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

# --input=false only where this substratus has it: listed by `plan --help`, and accepted in that
# spelling (an option parser refuses `--input=false --help` before it shows any help).
input_flag=""
if "$substratus" plan --help 2>/dev/null | grep -q -e '--input' \
    && "$substratus" plan --input=false --help >/dev/null 2>&1; then
  input_flag="--input=false"
fi

# shellcheck disable=SC2086 # $input_flag is empty or one word, on purpose unquoted
"$substratus" plan --detailed-exitcode --json $input_flag "$@" "$workspace" \
  >"$work/plan.json" 2>"$work/stderr.txt" </dev/null
plan_code=$?
# substratus's messages (warnings, errors) go on to the log as they were.
cat "$work/stderr.txt" >&2
if [ -n "$json_file" ]; then
  cp "$work/plan.json" "$json_file" || die "cannot write $json_file"
fi

# Reads the plan (resource_changes[].address, .change.actions and .reason, substratus's words
# (else Terraform's .action_reason keyword);
# resource_drift[], each entry with substratus's reason and field_changes or with a change in
# Terraform's `show -json` shape; a diagnostics document on invalid files) and prints the
# summary; its exit code is the script's.
# shellcheck disable=SC2016 # a Python program, not shell: nothing in it is expanded
summarize='
import json, sys

plan_path, stderr_path, code_text, workspace = sys.argv[1:5]
code = int(code_text)
out = []


def cell(value):
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|") if text else "-"


def action_name(actions):
    actions = list(actions or [])
    if sorted(actions) == ["create", "delete"]:
        return "replace"
    return "+".join(actions) if actions else "update"


def leaf_paths(before, after, prefix=""):
    """The paths of the values that differ between two JSON values."""
    if isinstance(before, dict) and isinstance(after, dict):
        paths = []
        for key in sorted(set(before) | set(after)):
            paths += leaf_paths(before.get(key), after.get(key), prefix + "." + str(key))
        return paths
    return [] if before == after else [prefix.lstrip(".")]


def drift_fields(entry):
    fields = [f.get("path", "?") for f in entry.get("field_changes") or []]
    if not fields and isinstance(entry.get("change"), dict):
        change = entry["change"]
        fields = leaf_paths(change.get("before"), change.get("after"))
    shown = ", ".join("`%s`" % f if f else "(whole object)" for f in fields[:6])
    return shown + (" and %d more" % (len(fields) - 6) if len(fields) > 6 else "") or "-"


def drift_what(entry):
    if entry.get("reason"):
        return entry["reason"]
    actions = (entry.get("change") or {}).get("actions") or []
    if actions == ["delete"]:
        return "deleted outside substratus"
    return "changed outside substratus"


def error_lines(text):
    lines, keep = [], False
    for line in text.splitlines():
        if line.startswith("Error"):
            keep = True
        elif not line.startswith((" ", "\t")):
            keep = False
        if keep:
            lines.append(line)
    return lines or [line for line in text.splitlines() if line.strip()][-20:]


def diagnostics(document):
    lines = []
    for d in document.get("diagnostics") or []:
        where = d.get("range") or {}
        place = where.get("filename") or ""
        line = (where.get("start") or {}).get("line")
        place = "%s:%s" % (place, line) if place and line else place
        text = ": ".join(t for t in (place, d.get("field"), d.get("summary"), d.get("detail"))
                         if t)
        lines.append("%s: %s" % ((d.get("severity") or "error").capitalize(), text))
    return lines


def report_error(why, lines):
    out.append("**Error:** %s" % why)
    if lines:
        out.extend(["", "```text", *(line.replace("```", "`\u200b``") for line in lines[:50])])
        if len(lines) > 50:
            out.append("... %d more lines" % (len(lines) - 50))
        out.append("```")


with open(stderr_path, encoding="utf-8", errors="replace") as f:
    stderr = f.read()
try:
    with open(plan_path, encoding="utf-8") as f:
        document = json.load(f)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
except ValueError as error:
    document, unreadable = None, str(error)

out.append("### substratus drift check: `%s`" % workspace)
out.append("")
if code not in (0, 2) or document is None or document.get("valid") is False:
    if code in (0, 2):
        why = "`substratus plan` exited %d but its JSON plan could not be read (%s)." % (
            code, unreadable if document is None else "no plan in it")
    else:
        meaning = {3: "invalid resource files or usage", 4: "the state is locked"}.get(code)
        why = "`substratus plan` exited %d%s." % (code, " (%s)" % meaning if meaning else "")
    report_error(why, (diagnostics(document) if document else []) + error_lines(stderr))
    print("\n".join(out))
    sys.exit(1)

changes = [c for c in document.get("resource_changes") or []
           if not set((c.get("change") or {}).get("actions") or ["no-op"]) <= {"no-op", "read"}]
drift = list(document.get("resource_drift") or [])
counts = {}
for c in changes:
    name = action_name(c["change"]["actions"])
    counts[name] = counts.get(name, 0) + 1

if not changes and not drift:
    out.append("**No changes.** Live state matches the resource files, and nothing changed "
               "outside substratus.")
    print("\n".join(out))
    sys.exit(0)

status = []
if drift:
    plural = "s" * (len(drift) != 1)
    status.append("%d resource%s changed outside substratus" % (len(drift), plural))
if changes:
    status.append("%d pending change%s" % (len(changes), "s" * (len(changes) != 1)))
out.append("**%s.**" % "; ".join(status))
out.append("")

if changes:
    order = ["create", "update", "replace", "delete"]
    out += ["| action | count |", "| --- | ---: |"]
    for name in sorted(counts, key=lambda n: (order.index(n) if n in order else len(order), n)):
        out.append("| %s | %d |" % (name, counts[name]))
    out += ["", "#### Pending changes", "", "| address | action | reason |", "| --- | --- | --- |"]
    for c in changes:
        out.append("| `%s` | %s | %s |" % (c.get("address"), action_name(c["change"]["actions"]),
                                          cell(c.get("reason") or c.get("action_reason")
                                               or "")))
    out.append("")

out += ["#### Drift", ""]
if drift:
    out += ["Changed outside substratus since the last apply (the pending changes put them back):",
            "", "| address | what happened | fields |", "| --- | --- | --- |"]
    for d in drift:
        out.append("| `%s` | %s | %s |" % (d.get("address"), cell(drift_what(d)), drift_fields(d)))
else:
    out.append("None: nothing changed outside substratus since the last apply.")
print("\n".join(out))
sys.exit(2)
'

if [ -n "$summary_file" ]; then
  : >"$summary_file" || die "cannot write $summary_file"
  "$python" -c "$summarize" "$work/plan.json" "$work/stderr.txt" "$plan_code" "$workspace" \
    >"$summary_file"
  code=$?
else
  "$python" -c "$summarize" "$work/plan.json" "$work/stderr.txt" "$plan_code" "$workspace"
  code=$?
fi
case "$code" in
  0 | 2) ;;
  *) code=1 ;;
esac
case "$code" in
  0) echo "drift-check.sh: no changes (exit 0)" >&2 ;;
  2) echo "drift-check.sh: drift or pending changes (exit 2)" >&2 ;;
  *) echo "drift-check.sh: error (exit 1; substratus plan exited $plan_code)" >&2 ;;
esac
exit "$code"
