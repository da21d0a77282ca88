package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestJepsenUsage: bad command lines of epochal jepsen are usage errors
// (exit 2) saying what is wrong, before anything starts; none passes.
func TestJepsenUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// check takes exactly one run directory.
		{[]string{"jepsen", "check"}, "takes 1 argument(s), RUN-DIR; got 0"},
		{[]string{"jepsen", "check", "a", "b"}, "takes 1 argument(s), RUN-DIR; got 2"},
		// ZooKeeper runs 1 or 3 nodes (2 exited 3, a server that would
		// not start); Redis one (3 was ignored).
		{[]string{"--backend", "zk", "jepsen", "--nodes", "2"}, "--nodes 2: want 1 or 3"},
		{[]string{"--backend", "redis", "jepsen", "--nodes", "3"}, "--nodes 3 is for ZooKeeper"},
		// mixed with one client per process wrote nothing and passed.
		{[]string{"jepsen", "--workload", "mixed", "--clients", "1"}, "the mixed workload needs at least 2"},
		{[]string{"jepsen", "--clients", "1000"}, "--clients 1000: at most 900"},
		// Negative values were silently replaced by the defaults.
		{[]string{"jepsen", "--workers", "-1"}, "--workers -1"},
		{[]string{"jepsen", "--clients", "-2"}, "--clients -2"},
		{[]string{"jepsen", "--interval", "-1s"}, "--interval -1s"},
		{[]string{"jepsen", "--check-timeout", "-1s"}, "--check-timeout -1s"},
		{[]string{"jepsen", "--lease", "-1s"}, "--lease -1s"},
	} {
		// Under a context already done: a command line wrongly accepted
		// gets no further than starting (no servers, no client
		// processes, which here would be this test binary), and the test
		// fails on its exit code.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var out, errOut bytes.Buffer
		root := newRootCmd(&out, &errOut)
		args := tc.args
		if len(args) > 0 && args[len(args)-1] != "check" && !slices.Contains(args, "check") {
			args = append(slices.Clone(args), "--dir", t.TempDir())
		}
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		if code := exitCode(err); code != exitUsage || err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(out.String(), "PASS") {
			t.Errorf("epochal %q: exit %d, error %v; want exit %d and an error saying %s", tc.args, code, err, exitUsage, tc.want)
		}
	}
}

// TestByteSizeFlag: --value-limit takes a size of at least one byte;
// NaN (accepted before: every comparison with it is false) and sizes
// below a byte are refused.
func TestByteSizeFlag(t *testing.T) {
	for _, bad := range []string{"NaN", "nan", "NaNMiB", "0", "-1", "0.5", "0.5B", "Inf", "+Inf", "3GiB", "x"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("--value-limit %s accepted (%d)", bad, b)
		}
	}
	for s, want := range map[string]byteSize{"1": 1, "1B": 1, "4MiB": 4 << 20, "1.5KiB": 1536, "512KB": 512 << 10} {
		var b byteSize
		if err := b.Set(s); err != nil || b != want {
			t.Errorf("--value-limit %s: %d, %v; want %d", s, b, err, want)
		}
	}
}

// TestJepsenCheckIncomplete: 'jepsen check' of a run that did not finish
// (INCOMPLETE, no results.json: its history may be cut short) is refused
// as bad usage, exit 2, and the directory keeps its mark.
func TestJepsenCheckIncomplete(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"config.json":   `{"Backend":"mem","Workload":"bank","Time":1000000000}`,
		"history.jsonl": "",
		"INCOMPLETE":    "this run has not finished: its results are not a verdict\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := runCLI(t, "jepsen", "check", dir)
	if code := exitCode(err); code != exitUsage || !strings.Contains(fmt.Sprint(err), "INCOMPLETE") || strings.Contains(out, "verdict") {
		t.Errorf("jepsen check of an unfinished run: exit %d, error %v, stdout %q; want exit %d saying it is INCOMPLETE", code, err, out, exitUsage)
	}
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); err != nil {
		t.Errorf("the INCOMPLETE mark is gone: %v", err)
	}
}

// TestJepsenTooLittleTested: a run that did next to nothing (the
// embedded backend, in this process: at 0.01 operations per second not
// one transfer in a second) is UNKNOWN, exit 5, "too little was tested",
// not a PASS; --min-ok below 0 is bad usage.
func TestJepsenTooLittleTested(t *testing.T) {
	out, _, err := runCLI(t, "jepsen", "--workload", "bank", "--time", "1s", "--rate", "0.01", "--dir", t.TempDir())
	if code := exitCode(err); code != exitUnknown || !strings.Contains(out, "verdict: UNKNOWN") || !strings.Contains(out, "too little was tested") ||
		!strings.Contains(out, "tested (ok, final reads not counted): transfer 0 (at least 10 of each)") {
		t.Errorf("a run of next to nothing: exit %d, error %v; want exit %d\nstdout:\n%s", code, err, exitUnknown, out)
	}
	_, _, err = runCLI(t, "jepsen", "--min-ok", "-1", "--dir", t.TempDir())
	if code := exitCode(err); code != exitUsage || !strings.Contains(fmt.Sprint(err), "--min-ok -1") {
		t.Errorf("--min-ok -1: exit %d, error %v; want exit %d", code, err, exitUsage)
	}
}
