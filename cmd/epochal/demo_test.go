package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// runCLI runs the command line args in-process and returns what it wrote
// and the error the root command returned.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// figure returns the first integer after label in a demo report.
func figure(t testing.TB, report, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("report has no %q figure:\n%s", label, report)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDemoPasses(t *testing.T) {
	out, _, err := runCLI(t, "demo", "--duration", "300ms", "--seed", "1")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"epochal demo: backend mem, 10 accounts x 1000, 8 workers, 2 readers, seed 1",
		"/s)", // commits per second
		"declined:",
		"retries per commit:",
		"latency p50 / p99:",
		"final total:        10000 (expected 10000)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := figure(t, out, "commits:"); n == 0 {
		t.Errorf("no transfer committed:\n%s", out)
	}
	if n := figure(t, out, "snapshot reads:"); n == 0 {
		t.Errorf("no snapshot read done:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != "check: PASS" {
		t.Errorf("last line %q, want %q:\n%s", last, "check: PASS", out)
	}
}

// TestDemoCatchesLostUpdate runs the demo on an engine that commits without
// checking for versions newer than the read point: concurrent Alters of one
// account lose updates, and the check must say so.
func TestDemoCatchesLostUpdate(t *testing.T) {
	out, _, err := runCLI(t, "demo", "--fault", faultSkipReadPointCheck,
		"--accounts", "3", "--workers", "16", "--readers", "2", "--duration", "300ms", "--seed", "1")
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("demo on a broken engine: err = %v, want %v\n%s", err, errCheckFailed, out)
	}
	if exitCode(err) != exitFail {
		t.Errorf("exit code %d, want %d", exitCode(err), exitFail)
	}
	if !strings.Contains(out, "check: FAIL (") {
		t.Errorf("report lacks check: FAIL:\n%s", out)
	}
	if strings.Contains(out, "final total:        3000 (expected 3000)") {
		t.Errorf("total conserved on an engine that loses updates:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error message
	}{
		{"no accounts", []string{"demo", "--accounts", "0"}, "--accounts 0"},
		{"one account", []string{"demo", "--accounts", "1"}, "at least 2"},
		{"negative duration", []string{"demo", "--duration", "-1s"}, "--duration -1s"},
		{"zero duration", []string{"demo", "--duration", "0s"}, "must be > 0"},
		{"no workers", []string{"demo", "--workers", "0"}, "--workers 0"},
		{"negative readers", []string{"demo", "--readers", "-1"}, "--readers -1"},
		{"no money", []string{"demo", "--initial", "0"}, "--initial 0"},
		{"not a number", []string{"demo", "--accounts", "ten"}, "invalid argument"},
		{"not a duration", []string{"demo", "--duration", "soon"}, "invalid argument"},
		{"unknown flag", []string{"demo", "--acounts", "3"}, "unknown flag"},
		{"unknown fault", []string{"demo", "--fault", "gremlins"}, "--fault"},
		{"argument", []string{"demo", "extra"}, "takes no arguments"},
		{"unknown command", []string{"nosuch"}, "unknown command"},
		{"bad root", []string{"demo", "--backend", "zk", "--root", "relative"}, `Root "relative"`},
		{"bad timeout", []string{"demo", "--connect-timeout", "0s"}, "--connect-timeout"},
		{"bad prefix", []string{"--backend", "redis", "--prefix", "a b", "demo"}, `Prefix "a b"`},
		{"unknown backend", []string{"demo", "--backend", "etcd"}, `unknown backend "etcd"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCLI(t, tt.args...)
			var u *usageError
			if !errors.As(err, &u) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if exitCode(err) != exitUsage {
				t.Errorf("exit code %d, want %d", exitCode(err), exitUsage)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(out, "check:") {
				t.Errorf("the workload ran:\n%s", out)
			}
		})
	}
}

func TestBackendFromEnvironment(t *testing.T) {
	t.Setenv(envBackend, "etcd")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"demo", "--duration", "50ms"}, &out, &errOut); code != exitUsage {
		t.Fatalf("exit code %d, want %d\n%s%s", code, exitUsage, out.String(), errOut.String())
	}
	msg := errOut.String()
	if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "epochal: ") || !strings.Contains(msg, `unknown backend "etcd"`) {
		t.Errorf("stderr should be one line naming the unknown backend, got %q", msg)
	}

	// The flag wins over the environment.
	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), []string{"demo", "--backend", "mem", "--duration", "50ms"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d, want %d\n%s%s", code, exitOK, out.String(), errOut.String())
	}
}

func TestHelp(t *testing.T) {
	out, _, err := runCLI(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"software-transactional memory", "demo", "--backend"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCLI(t, "demo", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--accounts") {
		t.Errorf("demo help lacks --accounts:\n%s", out)
	}
	if strings.Contains(out, "--fault") {
		t.Errorf("demo help shows the hidden --fault flag:\n%s", out)
	}
}

// TestBinary builds the command and runs the README's first command.
func TestBinary(t *testing.T) {
	gomod, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(t.TempDir(), "epochal")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/epochal")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	exec1 := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.Env = append(cmd.Environ(), envBackend+"=")
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

	out, errOut, code := exec1("demo", "--duration", "300ms")
	if code != 0 || !strings.Contains(out, "check: PASS") {
		t.Errorf("epochal demo --duration 300ms: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	out, errOut, code = exec1("demo", "--backend", "etcd")
	if code != exitUsage || strings.Count(errOut, "\n") != 1 || out != "" {
		t.Errorf("epochal demo --backend etcd: exit %d, want %d and one line on stderr\nstdout:\n%s\nstderr:\n%s", code, exitUsage, out, errOut)
	}
}
