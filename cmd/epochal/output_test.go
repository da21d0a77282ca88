package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// TestOutputFormats: -o json is --json; -o yaml is the same document as
// YAML; -o table the default; bad or conflicting values are usage errors.
func TestOutputFormats(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "out"})
	mustNoErr(t, err, "open")
	t.Cleanup(func() { drv.Close() })
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	t.Cleanup(func() { s.Close() })
	// It keeps older versions: refs watch marks nothing (it opens
	// read-only) and reads each change from the history, which two
	// quick commits would otherwise trim past (a gap notice).
	acct, err := refs.New(ctx, s, "acct", account{Owner: "a: b", Balance: 7, Note: "123"}, refs.WithMinHistory(8))
	mustNoErr(t, err, "new")
	flags := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "out"}
	t.Setenv(envNow, seedNow.Format(time.RFC3339)) // tables' relative times do not move between runs
	cmd := func(args ...string) string {
		t.Helper()
		out, _, err := runCLI(t, append(flags, args...)...)
		if err != nil {
			t.Fatalf("epochal %v: %v", args, err)
		}
		return out
	}
	for _, c := range [][]string{{"refs", "get", "acct"}, {"refs", "ls"}, {"refs", "history", "acct"}, {"clock"}, {"txn", "ls"}, {"locks", "ls"}, {"group", "ls"}} {
		j := cmd(append(c, "--json")...)
		if o := cmd(append(c, "-o", "json")...); o != j {
			t.Errorf("epochal %v: -o json differs from --json:\n%s\n%s", c, o, j)
		}
		if o := cmd(append([]string{"--output", "json"}, c...)...); o != j {
			t.Errorf("epochal --output json %v differs from --json", c)
		}
		y := cmd(append(c, "-o", "yaml")...)
		var fromJSON, fromYAML any
		mustNoErr(t, json.Unmarshal([]byte(j), &fromJSON), "decode JSON")
		if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
			t.Fatalf("epochal %v -o yaml: %v\n%s", c, err, y)
		}
		a, _ := json.Marshal(fromJSON)
		b, err := json.Marshal(fromYAML)
		if err != nil || string(a) != string(b) || strings.HasPrefix(strings.TrimSpace(y), "{") {
			t.Errorf("epochal %v: -o yaml is not the --json document in block YAML (%v):\n%s\n%s", c, err, y, j)
		}
		if tab := cmd(append(c, "-o", "table")...); tab != cmd(c...) || strings.HasPrefix(tab, "{") || strings.HasPrefix(tab, "[") {
			t.Errorf("epochal %v -o table:\n%s", c, tab)
		}
	}
	// refs watch -o yaml: one YAML document per change, each after "---".
	wctx, cancel := context.WithCancel(ctx)
	var wout, werr syncBuffer
	done := make(chan int)
	go func() { done <- run(wctx, append(flags, "refs", "watch", "acct", "-o", "yaml"), &wout, &werr) }()
	waitFor(t, 10*time.Second, "watch to start", func() bool { return strings.Contains(werr.String(), "watching acct") })
	for _, b := range []int{8, 9} {
		mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error {
			acct.Alter(tx, func(a account) account { a.Balance = b; return a })
			return nil
		}), "alter")
	}
	waitFor(t, 10*time.Second, "two changes", func() bool {
		return strings.Count(wout.String(), "---\n") == 2 && strings.Contains(wout.String(), "balance: 9")
	})
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("watch -o yaml: exit %d: %s", code, werr.String())
	}
	dec := yaml.NewDecoder(strings.NewReader(wout.String()))
	for _, want := range []int{8, 9} {
		var ch struct {
			Type  string
			Value struct{ Balance int }
		}
		if err := dec.Decode(&ch); err != nil || ch.Type != "change" || ch.Value.Balance != want {
			t.Errorf("watch -o yaml: document %+v, %v; want a change to balance %d\n%s", ch, err, want, wout.String())
		}
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"refs", "ls", "-o", "xml"}, `-o "xml"`},
		{[]string{"refs", "ls", "-o", "yaml", "--json"}, "pick one"},
		{[]string{"demo", "-o", "json"}, "-o applies to the inspecting commands"},
	} {
		_, _, err := runCLI(t, append(flags, c.args...)...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("epochal %v: exit %d, %v; want exit 2 saying %q", c.args, exitCode(err), err, c.want)
		}
	}
}

// TestSuggestions: a mistyped subcommand, at any level, is a usage error
// naming what was probably meant, on one line.
func TestSuggestions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rfs"}, `unknown command "rfs" for "epochal" (did you mean "refs"?)`},
		{[]string{"lock", "ls"}, `(did you mean "locks" or "clock"?)`},
		{[]string{"refs", "lss"}, `unknown command "lss" for "epochal refs" (did you mean "ls"?)`},
		{[]string{"refs", "histroy"}, `(did you mean "history"?)`},
		{[]string{"txn", "shw"}, `(did you mean "show"?)`},
		{[]string{"grop"}, `(did you mean "group"?)`},
		{[]string{"group", "sl"}, `(did you mean "ls"?)`},
		{[]string{"locks", "l"}, `(did you mean "ls"?)`},
	} {
		_, _, err := runCLI(t, c.args...)
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("epochal %v: exit %d, %v; want exit 2, one line saying %q", c.args, exitCode(err), err, c.want)
		}
	}
	_, _, err := runCLI(t, "refs", "frobnicate")
	if exitCode(err) != exitUsage || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("epochal refs frobnicate: %v; want a usage error suggesting nothing", err)
	}
}

// TestYAMLQuotesYAML11: -o yaml quotes the strings a YAML 1.1 reader
// (PyYAML, many tools) would read as another type: the booleans
// yes/no/on/off/y/n in any case, base-60 numbers such as 1:20, and the
// merge key "<<", as values and as keys; the document still reads back
// as the same strings.
func TestYAMLQuotesYAML11(t *testing.T) {
	special := []string{"yes", "Yes", "YES", "no", "No", "NO", "y", "Y", "n", "N", "on", "On", "ON", "off", "Off", "OFF", "1:20", "-190:20:30.15", "<<", "="}
	m := map[string]string{}
	for _, s := range special {
		m[s] = s
	}
	var out strings.Builder
	mustNoErr(t, printYAML(&out, m, false), "printYAML")
	for _, s := range special {
		if want := `"` + s + `": "` + s + `"`; !strings.Contains(out.String(), want+"\n") {
			t.Errorf("-o yaml does not quote %q as key and value (want the line %s):\n%s", s, want, out.String())
		}
	}
	var back map[string]string
	if err := yaml.Unmarshal([]byte(out.String()), &back); err != nil || len(back) != len(m) {
		t.Fatalf("reading it back: %v, %v", err, back)
	}
	for k, v := range m {
		if back[k] != v {
			t.Errorf("read back %q: %q, want %q", k, back[k], v)
		}
	}
	// Other strings stay plain.
	out.Reset()
	mustNoErr(t, printYAML(&out, map[string]string{"name": "bank/acct-000", "note": "yesterday"}, false), "printYAML")
	if want := "name: bank/acct-000\nnote: yesterday\n"; out.String() != want {
		t.Errorf("-o yaml:\n%s\nwant\n%s", out.String(), want)
	}
}
