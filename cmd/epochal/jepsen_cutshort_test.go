package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
)

// TestJepsenCutShort: `epochal jepsen` interrupted (SIGINT, ^C) mid-run
// stops, says INCOMPLETE (the run was cut short) and exits 6; nothing
// says PASS, results.json's verdict is INCOMPLETE, and `jepsen check`
// refuses the run directory.
func TestJepsenCutShort(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	// The first progress line: the run is under way.
	stdout, errOut, code := interruptWhen(t, bin, "clients started", "jepsen", "--workload", "bank", "--time", "10m", "--dir", dir)
	if code != exitIncomplete || !strings.Contains(stdout, "verdict: INCOMPLETE (the run was cut short: interrupted") ||
		!strings.Contains(lastLine(errOut), "cut short") || strings.Contains(stdout+errOut, "PASS") {
		t.Fatalf("interrupted run: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitIncomplete, stdout, errOut)
	}
	runs, _ := filepath.Glob(filepath.Join(dir, "*-mem-bank"))
	if len(runs) != 1 {
		t.Fatalf("run directories: %v", runs)
	}
	b, err := os.ReadFile(filepath.Join(runs[0], "results.json"))
	if err != nil || !strings.Contains(string(b), `"verdict": "INCOMPLETE"`) {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
	_, _, err = runCLI(t, "jepsen", "check", runs[0])
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("jepsen check of a cut-short run: exit %d, %v; want %d saying it was cut short", exitCode(err), err, exitUsage)
	}
}

// TestJepsenCheckCutShort: `epochal jepsen check` interrupted (SIGINT)
// while a checker searches stops at once with exit 6 and no verdict, for
// a history file and for a run directory (whose results.json is left as
// it was). The history is the 24 concurrent writes a linearizability
// search cannot finish within the 10 minutes allowed.
func TestJepsenCheckCutShort(t *testing.T) {
	bin := buildBinary(t)
	var buf bytes.Buffer
	if err := check.WriteJSONL(&buf, hardRegisterHistory()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "register.jsonl")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	cfg, err := json.Marshal(jepsenlite.Config{Backend: "mem", Workload: "register", Time: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	results := []byte(`{"verdict": "UNKNOWN", "valid": "unknown"}` + "\n")
	for name, data := range map[string][]byte{"config.json": cfg, "history.jsonl": buf.Bytes(), "results.json": results} {
		if err := os.WriteFile(filepath.Join(runDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, args := range map[string][]string{
		"file":    {"jepsen", "check", "--workload", "register", "--check-timeout", "10m", file},
		"run-dir": {"jepsen", "check", "--check-timeout", "10m", runDir},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := interruptWhen(t, bin, "^C stops", args...)
			if code != exitIncomplete || !strings.Contains(lastLine(errOut), "INCOMPLETE") || strings.Contains(out+errOut, "verdict:") {
				t.Fatalf("interrupted check: exit %d, want %d and no verdict\nstdout:\n%s\nstderr:\n%s", code, exitIncomplete, out, errOut)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(runDir, "results.json")); err != nil || !bytes.Equal(b, results) {
		t.Errorf("results.json after an interrupted check: %v\n%s", err, b)
	}
}

// interruptWhen runs bin with args, sends it SIGINT once its stderr shows
// a line containing mark, and returns its stdout, stderr and exit code.
func interruptWhen(t *testing.T, bin, mark string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// A command that ignores the signal is killed after a bound far
	// above the time it takes to stop (and then fails the test).
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	r := bufio.NewReader(pipe)
	for !strings.Contains(errOut.String(), mark) {
		line, err := r.ReadString('\n')
		errOut.WriteString(line)
		if err != nil {
			_ = cmd.Wait()
			t.Fatalf("%v: no %q on stderr before it ended (%v):\n%s\nstdout:\n%s", args, mark, err, errOut.String(), out.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	errOut.Write(rest)
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}
