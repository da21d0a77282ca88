package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/testkit/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
)

// buildBinary builds epochal into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	gomod, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "epochal")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/epochal")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs the built binary and returns its output and exit code.
func runBinary(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// lastLine is the last line of stderr (the progress bar comes before).
func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// TestJepsenCommand runs `epochal jepsen` as a user would: the built
// binary, its own client processes and servers.
func TestJepsenCommand(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()

	out, errOut, code := runBinary(t, bin, nil, "jepsen", "--workload", "list-append", "--time", "2s", "--dir", dir)
	if code != exitOK || !strings.Contains(out, "verdict: PASS") || !strings.Contains(out, "checker list-append: valid") {
		t.Fatalf("jepsen on mem: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	reports, _ := filepath.Glob(filepath.Join(dir, "*-mem-list-append", "report.html"))
	if len(reports) != 1 {
		t.Fatalf("no report.html under %s", dir)
	}
	// The run checked again, and the histories it wrote (JSON lines, and
	// EDN for Elle) checked as files.
	runDir := filepath.Dir(reports[0])
	for _, args := range [][]string{
		{"jepsen", "check", runDir},
		{"jepsen", "check", "--workload", "list-append", filepath.Join(runDir, "history.jsonl")},
		{"jepsen", "check", "--workload", "list-append", filepath.Join(runDir, "history.edn")},
	} {
		out, errOut, code := runBinary(t, bin, nil, args...)
		if code != exitOK || !strings.Contains(out, "verdict: PASS") || !strings.Contains(out, "checker list-append: valid") {
			t.Fatalf("epochal %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}

	// A seeded bug is caught, by name, and fails the command.
	out, errOut, code = runBinary(t, bin, nil, "jepsen", "--workload", "bank", "--bug", "skip-read-point-check",
		"--time", "2s", "--rate", "0", "--dir", dir)
	if code != exitFail || !strings.Contains(out, "verdict: FAIL") || !strings.Contains(out, "wrong-total") {
		t.Fatalf("jepsen with a seeded bug: exit %d, want %d naming wrong-total\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
	}

	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"jepsen", "--workload", "nosuch"}, exitUsage, `unknown workload "nosuch"`},
		{nil, []string{"jepsen", "--nemesis", "gremlins"}, exitUsage, `nemesis "gremlins"`},
		{nil, []string{"jepsen", "--nemesis", "kill"}, exitUsage, "not available on mem"},
		{nil, []string{"jepsen", "--time", "0s"}, exitUsage, "--time"},
		{nil, []string{"jepsen", "--workload", "bank", "--coordinator", "zk"}, exitUsage, "--coordinator is for the mixed workload"},
		{nil, []string{"jepsen", "--workload", "mixed", "--coordinator", "etcd"}, exitUsage, `--coordinator "etcd"`},
		{nil, []string{"jepsen", "--workload", "mixed", "--nemesis", "lag", "--nodes", "1"}, exitUsage, `nemesis "lag" is not available on redis and zk with 1 node(s)`},
		{nil, []string{"jepsen", "--dir", filepath.Join(bin, "runs"), "--time", "1s"}, exitFail, "run directory"},
		{nil, []string{"--backend", "redis", "jepsen", "--nemesis", "kill,pause,partition,reset", "--time", "3s", "--interval", "1s"}, exitUsage,
			"--time 3s is too short for 4 fault kinds (kill,pause,partition,reset) at an interval of 1s"},
		{nil, []string{"jepsen", "check", filepath.Join(dir, "nosuch")}, exitUsage, "not a finished run directory"},
		// No redis-server on the PATH: the server never comes up.
		{[]string{"PATH=" + t.TempDir()}, []string{"--backend", "redis", "jepsen", "--time", "1s", "--dir", dir}, exitDown, "redis-server"},
	} {
		out, errOut, code := runBinary(t, bin, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(lastLine(errOut), tc.want) || strings.Contains(out, "verdict: PASS") {
			t.Errorf("epochal %v: exit %d, stderr %q; want exit %d and a line saying %s", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// TestJepsenCheckUnknown: a run whose history porcupine cannot decide
// within --check-timeout is UNKNOWN, exit code 5, said as such (not as a
// pass, nor as "allowed under snapshot isolation"), in the summary and in
// results.json.
func TestJepsenCheckUnknown(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg, err := json.Marshal(jepsenlite.Config{Backend: "mem", Workload: "register", Time: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	h := hardRegisterHistory()
	var buf bytes.Buffer
	if err := check.WriteJSONL(&buf, h); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, bin, nil, "jepsen", "check", dir, "--check-timeout", "100ms")
	if code != exitUnknown || !strings.Contains(out, "verdict: UNKNOWN") || !strings.Contains(out, "checker linearizable: UNKNOWN") ||
		!strings.Contains(out, "linearizability-unknown (not checked): key 0") || strings.Contains(out, "allowed") ||
		!strings.Contains(lastLine(errOut), "inconclusive (UNKNOWN)") {
		t.Fatalf("jepsen check: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitUnknown, out, errOut)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil || !strings.Contains(string(b), `"valid": "unknown"`) {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
}

// TestJepsenOnRedis: client processes against a real redis-server the
// command starts, with server kills and client kills.
func TestJepsenOnRedis(t *testing.T) {
	testserver.RequireRedis(t)
	bin := buildBinary(t)
	// A relative --dir, as a user would give it (the servers run in
	// directories of their own below it).
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(cwd, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, bin, nil, "--backend", "redis", "jepsen", "--workload", "bank",
		"--nemesis", "kill,client-kill", "--time", "4s", "--interval", "1s", "--dir", rel)
	if code != exitOK || !strings.Contains(out, "verdict: PASS") || !strings.Contains(out, "kill x") {
		t.Fatalf("jepsen on redis: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// hardRegisterHistory is 24 concurrent writes of key 0, then a read of a
// value none wrote: a linearizability search tries every order of the
// writes before it can say no (a check that runs out of time: UNKNOWN).
func hardRegisterHistory() []check.Op {
	var h []check.Op
	add := func(typ check.Type, p int, f string, v check.RegisterValue) {
		h = append(h, check.Op{Index: len(h), Type: typ, Process: p, F: f, Time: int64(10 * (len(h) + 1))}.WithValue(v))
	}
	for p := range 24 {
		add(check.Invoke, p, "write", check.RegisterValue{K: 0, V: p})
	}
	for p := range 24 {
		add(check.OK, p, "write", check.RegisterValue{K: 0, V: p})
	}
	add(check.Invoke, 99, "read", check.RegisterValue{K: 0})
	add(check.OK, 99, "read", check.RegisterValue{K: 0, V: 999, Found: true})
	return h
}
