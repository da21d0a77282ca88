package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestJepsenCutShort: `epochal jepsen` interrupted (SIGINT, ^C) mid-run
// stops, says INCOMPLETE (the run was cut short) and exits 6; nothing
// says PASS, results.json's verdict is INCOMPLETE, and `jepsen check`
// refuses the run directory.
func TestJepsenCutShort(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "jepsen", "--workload", "bank", "--time", "10m", "--dir", dir)
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The first progress output: the run is under way.
	first := make([]byte, 1)
	if _, err := io.ReadFull(stderr, first); err != nil {
		t.Fatalf("no progress output: %v", err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	errOut := string(first) + string(rest)
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != exitIncomplete || !strings.Contains(out.String(), "verdict: INCOMPLETE (the run was cut short: interrupted") ||
		!strings.Contains(lastLine(errOut), "cut short") || strings.Contains(out.String()+errOut, "PASS") {
		t.Fatalf("interrupted run: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitIncomplete, out.String(), errOut)
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
