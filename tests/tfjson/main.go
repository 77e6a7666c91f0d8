// tfjson-check reads substratus JSON plans (`plan --json`, `show --json`) with HashiCorp's own
// reader of Terraform's JSON plans, github.com/hashicorp/terraform-json, and checks what a
// Terraform tool relies on: every plan unmarshals into tfjson.Plan and passes Validate; every
// resource change and drift entry is a managed resource with an address, type, name and provider,
// a change whose actions are one of Terraform's, before/after present as the actions say,
// sensitivity objects that mirror the values (true exactly where "(sensitive value)" is shown),
// after_unknown marking only what `after` leaves out, and an action_reason from Terraform's
// keywords that fits the action. A plan whose file name is known (the goldens of
// tests/unit/goldens/) is also checked against what that scenario must plan. A diagnostics
// document (invalid files) is read as tfjson.ValidateOutput, `terraform validate -json`'s type.
//
// Usage: tfjson-check PLAN.json...; exits 1 naming each mismatch, 2 on bad usage.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"
)

const sensitiveText = "(sensitive value)"

// A resource change a scenario must plan.
type wantChange struct {
	actions         string              // create, update, delete, no-op or replace
	reason          tfjson.ActionReason // "" where Terraform would give none
	beforeSensitive []string            // dotted paths marked true, exactly
	afterSensitive  []string
	afterUnknown    []string
	replacePath     string // a path replace_paths must hold, dotted
}

type scenario struct {
	changes map[string]wantChange // every resource change, by address
	drift   map[string]string     // every drift entry: address -> update | delete
}

var quickstartCreates = map[string]wantChange{
	"Dataset/default/color-facts":     {actions: "create"},
	"Dataset/default/favorite-colors": {actions: "create"},
}

// What each golden plan (tests/unit/goldens/tfjson/NAME.json, tests/unit/goldens/NAME.json) holds.
var scenarios = map[string]scenario{
	"create": {changes: quickstartCreates},
	"update": {changes: map[string]wantChange{
		"Dataset/default/color-facts":     {actions: "no-op"},
		"Dataset/default/favorite-colors": {actions: "update"},
	}},
	"replace": {changes: map[string]wantChange{
		"Dataset/default/color-facts": {actions: "replace",
			reason: tfjson.ActionReasonReplaceBecauseCannotUpdate, replacePath: "spec.source.path"},
		"Dataset/default/favorite-colors": {actions: "replace",
			reason: tfjson.ActionReasonReplaceByRequest},
	}},
	"delete": {changes: map[string]wantChange{
		"Dataset/default/color-facts": {actions: "delete",
			reason: tfjson.ActionReasonDeleteBecauseNoResourceConfig},
		"Dataset/default/favorite-colors": {actions: "no-op"},
	}},
	"drift": {
		changes: map[string]wantChange{
			"Dataset/default/color-facts": {actions: "create"},
			"Dataset/default/favorite-colors": {actions: "replace",
				reason: tfjson.ActionReasonReplaceBecauseCannotUpdate, replacePath: "spec.source.path"},
		},
		drift: map[string]string{
			"Dataset/default/color-facts":     "delete",
			"Dataset/default/favorite-colors": "update",
		},
	},
	"sensitive": {changes: map[string]wantChange{
		"Dataset/default/table": {actions: "update",
			beforeSensitive: []string{"spec.env.HF_TOKEN"},
			afterSensitive:  []string{"spec.env.HF_TOKEN"}},
		"Dataset/default/private": {actions: "create",
			afterSensitive: []string{"spec.env.HF_TOKEN", "spec.source.headers.Authorization"},
			afterUnknown:   []string{"status.digest"}},
	}},
	"plan_every_action": {
		changes: map[string]wantChange{
			"Dataset/default/new": {actions: "create",
				afterSensitive: []string{"spec.env.HF_TOKEN"}, afterUnknown: []string{"status.digest"}},
			"Dataset/default/data": {actions: "replace",
				reason:          tfjson.ActionReasonReplaceBecauseCannotUpdate,
				beforeSensitive: []string{"spec.env.HF_TOKEN"},
				afterSensitive:  []string{"spec.env.HF_TOKEN"}, replacePath: "spec.source.path"},
			"Dataset/default/old":  {actions: "delete", reason: tfjson.ActionReasonDeleteBecauseNoResourceConfig},
			"Model/default/same":   {actions: "no-op"},
			"Model/default/server": {actions: "update"},
		},
		drift: map[string]string{"Model/default/server": "update"},
	},
}

type checker struct {
	file     string
	problems []string
}

func (c *checker) fail(format string, args ...interface{}) {
	c.problems = append(c.problems, fmt.Sprintf("%s: %s", c.file, fmt.Sprintf(format, args...)))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tfjson-check PLAN.json...")
		os.Exit(2)
	}
	fmt.Printf("tfjson-check: reading with github.com/hashicorp/terraform-json %s\n", libraryVersion())
	var problems []string
	for _, path := range os.Args[1:] {
		c := &checker{file: filepath.Base(path)}
		c.checkFile(path)
		problems = append(problems, c.problems...)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "tfjson-check: %s\n", p)
		}
		fmt.Fprintf(os.Stderr, "tfjson-check: %d problem(s) in %d plan(s)\n", len(problems), len(os.Args)-1)
		os.Exit(1)
	}
	fmt.Printf("tfjson-check: %d plan(s) read and checked\n", len(os.Args)-1)
}

func libraryVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/hashicorp/terraform-json" {
				return dep.Version
			}
		}
	}
	return "(version unknown)"
}

func (c *checker) checkFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.fail("%v", err)
		return
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) == nil && top["valid"] != nil {
		c.checkDiagnostics(data) // `plan --json` on invalid files
		return
	}
	var plan tfjson.Plan
	// tfjson.Plan's UnmarshalJSON validates the format version too; Validate says so plainly.
	if err := json.Unmarshal(data, &plan); err != nil {
		c.fail("tfjson.Plan does not unmarshal it: %v", err)
		return
	}
	if err := plan.Validate(); err != nil {
		c.fail("tfjson.Plan.Validate: %v", err)
	}
	for _, rc := range plan.ResourceChanges {
		c.checkResourceChange("resource_changes", rc, false)
	}
	for _, rc := range plan.ResourceDrift {
		c.checkResourceChange("resource_drift", rc, true)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".json")
	if want, ok := scenarios[name]; ok {
		c.checkScenario(&plan, want)
	}
	if len(c.problems) == 0 {
		fmt.Printf("tfjson-check: %s: ok (%d resource changes, %d drift)\n", c.file,
			len(plan.ResourceChanges), len(plan.ResourceDrift))
	}
}

// checkDiagnostics reads a diagnostics document (`plan --json` and `validate --json` on invalid
// files) as terraform-json reads `terraform validate -json`, and checks that its counts, validity
// and severities agree and that every range is a real position (1-based, end not before start).
func (c *checker) checkDiagnostics(data []byte) {
	var out tfjson.ValidateOutput
	if err := json.Unmarshal(data, &out); err != nil {
		c.fail("tfjson.ValidateOutput does not unmarshal it: %v", err)
		return
	}
	if err := out.Validate(); err != nil {
		c.fail("tfjson.ValidateOutput.Validate: %v", err)
	}
	if out.FormatVersion == "" {
		c.fail("format_version is missing")
	}
	errorCount, warningCount := 0, 0
	for i, d := range out.Diagnostics {
		where := fmt.Sprintf("diagnostics[%d]", i)
		switch d.Severity {
		case tfjson.DiagnosticSeverityError:
			errorCount++
		case tfjson.DiagnosticSeverityWarning:
			warningCount++
		default:
			c.fail("%s: severity %q is neither error nor warning", where, d.Severity)
		}
		if d.Summary == "" {
			c.fail("%s: empty summary", where)
		}
		if r := d.Range; r != nil {
			if r.Filename == "" || r.Start.Line < 1 || r.Start.Column < 1 {
				c.fail("%s: range %q %d:%d is not a position in a file", where, r.Filename,
					r.Start.Line, r.Start.Column)
			}
			if r.End.Line < r.Start.Line || (r.End.Line == r.Start.Line && r.End.Column < r.Start.Column) {
				c.fail("%s: range ends (%d:%d) before it starts (%d:%d)", where, r.End.Line,
					r.End.Column, r.Start.Line, r.Start.Column)
			}
		}
	}
	if out.ErrorCount != errorCount || out.WarningCount != warningCount {
		c.fail("error_count %d and warning_count %d, but the diagnostics hold %d and %d",
			out.ErrorCount, out.WarningCount, errorCount, warningCount)
	}
	if out.Valid != (errorCount == 0) {
		c.fail("valid is %v with %d error(s)", out.Valid, errorCount)
	}
	if len(c.problems) == 0 {
		fmt.Printf("tfjson-check: %s: ok (diagnostics: %d error(s), %d warning(s))\n", c.file,
			errorCount, warningCount)
	}
}

// actionName is the one word for a valid actions array, "" for any other.
func actionName(a tfjson.Actions) string {
	switch {
	case a.NoOp():
		return "no-op"
	case a.Create():
		return "create"
	case a.Update():
		return "update"
	case a.Delete():
		return "delete"
	case a.DestroyBeforeCreate():
		return "replace"
	}
	return ""
}

func (c *checker) checkResourceChange(list string, rc *tfjson.ResourceChange, drift bool) {
	if rc == nil {
		c.fail("%s: a null entry", list)
		return
	}
	where := fmt.Sprintf("%s[%s]", list, rc.Address)
	if rc.Address == "" || rc.Type == "" || rc.Name == "" || rc.ProviderName == "" {
		c.fail("%s: address %q, type %q, name %q, provider_name %q: none may be empty", where,
			rc.Address, rc.Type, rc.Name, rc.ProviderName)
	}
	if !strings.HasPrefix(rc.Address, rc.Type+"/") || !strings.HasSuffix(rc.Address, "/"+rc.Name) {
		c.fail("%s: the address is not TYPE/NAMESPACE/NAME of type %q and name %q", where, rc.Type, rc.Name)
	}
	if rc.Mode != tfjson.ManagedResourceMode {
		c.fail("%s: mode %q, want %q", where, rc.Mode, tfjson.ManagedResourceMode)
	}
	ch := rc.Change
	if ch == nil {
		c.fail("%s: no change", where)
		return
	}
	action := actionName(ch.Actions)
	if action == "" || (drift && action != "update" && action != "delete") {
		c.fail("%s: change.actions %v is not one Terraform writes here", where, ch.Actions)
	}
	if (ch.Before == nil) != (action == "create") {
		c.fail("%s: change.before is %v for actions %v", where, describe(ch.Before), ch.Actions)
	}
	if (ch.After == nil) != (action == "delete") {
		c.fail("%s: change.after is %v for actions %v", where, describe(ch.After), ch.Actions)
	}
	c.checkMarks(where+".change.before_sensitive", ch.Before, ch.BeforeSensitive)
	c.checkMarks(where+".change.after_sensitive", ch.After, ch.AfterSensitive)
	c.checkUnknown(where+".change.after_unknown", ch.After, ch.AfterUnknown)
	for _, p := range ch.ReplacePaths {
		steps, ok := p.([]interface{})
		if !ok || len(steps) == 0 {
			c.fail("%s: change.replace_paths holds %v, not a list of steps", where, p)
		}
	}
	allowed := map[string][]tfjson.ActionReason{
		"replace": {tfjson.ActionReasonReplaceBecauseCannotUpdate, tfjson.ActionReasonReplaceByRequest,
			tfjson.ActionReasonReplaceBecauseTainted},
		"delete": {tfjson.ActionReasonNone, tfjson.ActionReasonDeleteBecauseNoResourceConfig},
	}[action]
	if drift {
		allowed = nil
	}
	if rc.ActionReason != tfjson.ActionReasonNone && !contains(allowed, rc.ActionReason) {
		c.fail("%s: action_reason %q does not fit actions %v", where, rc.ActionReason, ch.Actions)
	}
	if action == "replace" && !drift && rc.ActionReason == tfjson.ActionReasonNone {
		c.fail("%s: a replacement without an action_reason", where)
	}
}

func contains(list []tfjson.ActionReason, r tfjson.ActionReason) bool {
	for _, x := range list {
		if x == r {
			return true
		}
	}
	return false
}

func describe(v interface{}) string {
	if v == nil {
		return "null"
	}
	return "present"
}

// checkMarks: `marks` is `false` where `value` is null; else it mirrors `value` (objects by key,
// lists element by element) with `true` exactly at the leaves shown as "(sensitive value)".
func (c *checker) checkMarks(where string, value, marks interface{}) {
	if value == nil {
		if marks != false {
			c.fail("%s: %v for a null value, want false", where, marks)
		}
		return
	}
	got := map[string]bool{}
	c.walkMarks(where, "", value, marks, got)
	want := map[string]bool{}
	leaves(value, "", func(path string, leaf interface{}) {
		if leaf == sensitiveText {
			want[path] = true
		}
	})
	if !equalSets(got, want) {
		c.fail("%s: marks %v, but the values show %q at %v", where, keys(got), sensitiveText, keys(want))
	}
}

func (c *checker) walkMarks(where, path string, value, marks interface{}, marked map[string]bool) {
	switch m := marks.(type) {
	case bool:
		if m {
			marked[path] = true
		}
	case map[string]interface{}:
		object, ok := value.(map[string]interface{})
		if !ok {
			c.fail("%s: an object at %q where the value is %T", where, path, value)
			return
		}
		for k, sub := range m {
			v, ok := object[k]
			if !ok {
				c.fail("%s: marks %q, which the value does not have", where, join(path, k))
				continue
			}
			c.walkMarks(where, join(path, k), v, sub, marked)
		}
	case []interface{}:
		list, ok := value.([]interface{})
		if !ok || len(list) != len(m) {
			c.fail("%s: a list of %d at %q where the value is %v", where, len(m), path, value)
			return
		}
		for i, sub := range m {
			c.walkMarks(where, join(path, fmt.Sprint(i)), list[i], sub, marked)
		}
	default:
		c.fail("%s: %v (%T) at %q: marks are objects, lists and booleans", where, marks, marks, path)
	}
}

// checkUnknown: after_unknown is an object whose `true` leaves are not in `after`.
func (c *checker) checkUnknown(where string, after, unknown interface{}) {
	if _, ok := unknown.(map[string]interface{}); !ok {
		c.fail("%s: %v, want an object", where, unknown)
		return
	}
	for path := range markedPaths(unknown) {
		if _, found := lookup(after, path); found {
			c.fail("%s: %q is unknown but after holds a value there", where, path)
		}
	}
}

func (c *checker) checkScenario(plan *tfjson.Plan, want scenario) {
	got := map[string]*tfjson.ResourceChange{}
	for _, rc := range plan.ResourceChanges {
		if rc != nil {
			got[rc.Address] = rc
		}
	}
	for address := range got {
		if _, ok := want.changes[address]; !ok {
			c.fail("resource_changes: %s is not expected", address)
		}
	}
	for address, w := range want.changes {
		rc, ok := got[address]
		if !ok || rc.Change == nil {
			c.fail("resource_changes: %s is missing", address)
			continue
		}
		where := fmt.Sprintf("resource_changes[%s]", address)
		if a := actionName(rc.Change.Actions); a != w.actions {
			c.fail("%s: actions %v (%s), want %s", where, rc.Change.Actions, a, w.actions)
		}
		if rc.ActionReason != w.reason {
			c.fail("%s: action_reason %q, want %q", where, rc.ActionReason, w.reason)
		}
		c.wantMarked(where+".change.before_sensitive", rc.Change.BeforeSensitive, w.beforeSensitive)
		c.wantMarked(where+".change.after_sensitive", rc.Change.AfterSensitive, w.afterSensitive)
		c.wantMarked(where+".change.after_unknown", rc.Change.AfterUnknown, w.afterUnknown)
		if w.replacePath != "" && !holdsPath(rc.Change.ReplacePaths, w.replacePath) {
			c.fail("%s: replace_paths %v do not hold %s", where, rc.Change.ReplacePaths, w.replacePath)
		}
	}
	drifted := map[string]string{}
	for _, rc := range plan.ResourceDrift {
		if rc != nil && rc.Change != nil {
			drifted[rc.Address] = actionName(rc.Change.Actions)
		}
	}
	wantDrift := want.drift
	if wantDrift == nil {
		wantDrift = map[string]string{}
	}
	if fmt.Sprint(drifted) != fmt.Sprint(wantDrift) {
		c.fail("resource_drift: %v, want %v", drifted, wantDrift)
	}
}

func (c *checker) wantMarked(where string, marks interface{}, want []string) {
	got := markedPaths(marks)
	wantSet := map[string]bool{}
	for _, p := range want {
		wantSet[p] = true
	}
	if !equalSets(got, wantSet) {
		c.fail("%s: true at %v, want %v", where, keys(got), keys(wantSet))
	}
}

func holdsPath(paths []interface{}, want string) bool {
	for _, p := range paths {
		steps, _ := p.([]interface{})
		parts := make([]string, len(steps))
		for i, s := range steps {
			parts[i] = fmt.Sprint(s)
		}
		if strings.Join(parts, ".") == want {
			return true
		}
	}
	return false
}

func markedPaths(marks interface{}) map[string]bool {
	out := map[string]bool{}
	leaves(marks, "", func(path string, leaf interface{}) {
		if leaf == true {
			out[path] = true
		}
	})
	return out
}

// leaves calls fn with the dotted path of every leaf under v (not descending into nothing).
func leaves(v interface{}, path string, fn func(string, interface{})) {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, sub := range x {
			leaves(sub, join(path, k), fn)
		}
	case []interface{}:
		for i, sub := range x {
			leaves(sub, join(path, fmt.Sprint(i)), fn)
		}
	default:
		fn(path, v)
	}
}

func lookup(v interface{}, path string) (interface{}, bool) {
	for _, step := range strings.Split(path, ".") {
		object, ok := v.(map[string]interface{})
		if !ok {
			return nil, false
		}
		if v, ok = object[step]; !ok {
			return nil, false
		}
	}
	return v, true
}

func join(path, step string) string {
	if path == "" {
		return step
	}
	return path + "." + step
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
