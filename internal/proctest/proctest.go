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
// reach one fresh namespace:
//
//	proctest.Locks(t, harness)
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
	// Env returns the environment variables with which a worker's Opener
	// opens a driver on the namespace, and a driver for the test process
	// itself on the same namespace (closed at cleanup).
	Env func(t *testing.T, lease time.Duration) (env []string, parent backend.Driver)
	// Lease is the lease the tests use (lease.Safety applies); a killed
	// holder's lock must be free within Lease plus Slack.
	Lease time.Duration
	Slack time.Duration
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
