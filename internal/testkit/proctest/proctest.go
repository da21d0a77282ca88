// Package proctest is the kit for tests with more than one OS process,
// shared by every backend whose storage outlives a process (Redis,
// ZooKeeper): the test binary re-executes itself as worker processes that
// open the same storage, and the tests kill, stop and resume them.
//
// A backend's test package wires it up twice: in TestMain, so that a
// worker runs instead of the tests,
//
//	func TestMain(m *testing.M) {
//		if code, ok := proctest.Worker(openFromEnv); ok {
//			os.Exit(code)
//		}
//		os.Exit(m.Run())
//	}
//
// and in a test, with a Harness saying how the parent and its workers
// reach one fresh namespace (and how the server restarts):
//
//	proctest.Locks(t, harness) // mutexes and groups (locks.go)
//	proctest.Refs(t, harness)  // atoms, delays, promises, watches (refs.go)
package proctest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
)

// Opener opens a worker's driver from its environment (the variables the
// Harness's Env gave it). lease is the session lease the test wants; a
// backend whose lease is its session timeout (ZooKeeper) opens with it.
type Opener func(ctx context.Context, lease time.Duration) (backend.Driver, error)

// Harness is how a backend's test gives the kit a fresh namespace.
type Harness struct {
	// Env makes a fresh namespace. It returns the environment variables
	// with which a worker's Opener opens a driver on it, and open, which
	// opens a driver on it for the test process itself: a new connection
	// at every call, closed at cleanup, lease as for an Opener (0: the
	// backend's default).
	Env func(t *testing.T) (env []string, open func(t *testing.T, lease time.Duration) backend.Driver)
	// Restart kills the server (SIGKILL) and starts it again on the same
	// data, waiting until it serves. Nil: the backend cannot, and the
	// tests that need it are skipped.
	Restart func(t *testing.T)
	// Lease is the lease the lock tests use (lease.Safety applies); a
	// killed holder's lock must be free within Lease plus Slack.
	Lease time.Duration
	Slack time.Duration
}

// parent makes a fresh namespace and opens the test process's driver on
// it with the lease.
func (h Harness) parent(t *testing.T, lease time.Duration) ([]string, backend.Driver) {
	t.Helper()
	env, open := h.Env(t)
	return env, open(t, lease)
}

// Worker runs the worker named by the environment, if any: ok is false in
// the test process itself.
func Worker(open Opener) (code int, ok bool) {
	kind := os.Getenv(envKind)
	if kind == "" {
		return 0, false
	}
	w, found := workers[kind]
	if !found {
		fmt.Fprintln(os.Stderr, "proctest: unknown worker", kind)
		return 2, true
	}
	lease, err := time.ParseDuration(os.Getenv(envLease))
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest: lease:", err)
		return 2, true
	}
	ctx := context.Background()
	d, err := open(ctx, lease)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest: open:", err)
		return 1, true
	}
	defer d.Close()
	if err := w(ctx, d, lease); err != nil {
		fmt.Fprintln(os.Stderr, "proctest:", kind+":", err)
		return 1, true
	}
	return 0, true
}

const (
	envKind  = "EPOCHAL_PROCTEST"
	envLease = "EPOCHAL_PROCTEST_LEASE"
	envArg   = "EPOCHAL_PROCTEST_ARG" // worker-specific, see each worker
)

var workers = map[string]func(ctx context.Context, d backend.Driver, lease time.Duration) error{}

// Patience is how long a test waits for a worker's next line before it
// fails.
const Patience = 2 * time.Minute

// Proc is a worker process whose stdout lines arrive on a channel; it is
// SIGKILLed, by PID, when the test ends if it still runs.
type Proc struct {
	Cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// Start starts a worker of kind with env (from Harness.Env) and arg.
func Start(t *testing.T, kind string, env []string, lease time.Duration, arg string) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, envKind+"="+kind, envLease+"="+lease.String(), envArg+"="+arg)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return // waited for (Wait, Kill): its PID may be another's now
		}
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) // an error if it is gone
		_ = cmd.Wait()
	})
	return p
}

// Pid is the worker's process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Signal sends sig to the worker.
func (p *Proc) Signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), sig); err != nil {
		t.Fatalf("signal %v to worker %d: %v", sig, p.Pid(), err)
	}
}

// Next returns the worker's next line, failing the test if the worker
// ends its output or says nothing for within.
func (p *Proc) Next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("worker %d ended its output early", p.Pid())
		}
		return l
	case <-time.After(within):
		t.Fatalf("worker %d said nothing for %v", p.Pid(), within)
	}
	return ""
}

// Expect reads the next line and fails unless it starts with prefix; it
// returns the rest.
func (p *Proc) Expect(t *testing.T, prefix string) string {
	t.Helper()
	l := p.Next(t, Patience)
	if !strings.HasPrefix(l, prefix) {
		t.Fatalf("worker %d said %q, want %q...", p.Pid(), l, prefix)
	}
	return strings.TrimSpace(strings.TrimPrefix(l, prefix))
}

// ExpectLine reads the next line, waiting at most within, and fails
// unless it is want.
func (p *Proc) ExpectLine(t *testing.T, within time.Duration, want string) {
	t.Helper()
	if l := p.Next(t, within); l != want {
		t.Fatalf("worker %d said %q, want %q", p.Pid(), l, want)
	}
}

// Kill SIGKILLs the worker and waits until it has exited; what it still
// printed is dropped.
func (p *Proc) Kill(t *testing.T) {
	t.Helper()
	p.Signal(t, syscall.SIGKILL)
	for range p.lines {
	}
	_ = p.Cmd.Wait() // "signal: killed"
}

// Send writes a line to the worker's stdin.
func (p *Proc) Send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("worker %d: %v", p.Pid(), err)
	}
}

// Wait waits for the worker to exit and fails the test unless it exits 0;
// it returns the lines it printed that were not read.
func (p *Proc) Wait(t *testing.T) []string {
	t.Helper()
	var rest []string
	for l := range p.lines {
		rest = append(rest, l)
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("worker %d: %v", p.Pid(), err)
	}
	return rest
}

// stdinLines delivers a worker's stdin lines.
func stdinLines() <-chan string {
	ch := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}
