package main

import (
	"strings"
	"testing"
)

// TestJepsenQuiet: epochal jepsen tells its progress on stderr, as plain
// lines when stderr is not a terminal; with --quiet it says nothing
// there, and the summary still comes on stdout.
func TestJepsenQuiet(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		args := []string{"jepsen", "--workload", "bank", "--time", "1s", "--workers", "1", "--dir", t.TempDir()}
		if quiet {
			args = append(args, "--quiet")
		}
		out, errOut, err := runCLI(t, args...)
		if err != nil || !strings.Contains(out, "verdict: PASS") {
			t.Fatalf("epochal %v: %v\nstdout:\n%s", args, err, out)
		}
		switch {
		case quiet && errOut != "":
			t.Errorf("--quiet: stderr %q, want nothing", errOut)
		case !quiet && (!strings.Contains(errOut, "clients started") || !strings.Contains(errOut, "clients stopped") || strings.Contains(errOut, "\r")):
			t.Errorf("progress to a buffer: %q, want plain lines", errOut)
		}
	}
}
