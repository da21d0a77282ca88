package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// cliTimeout is the --connect-timeout (and refs set's --timeout) of the
// commands run against a stalled server, and cliBound how late past it a
// command may exit: generous for a loaded machine (it includes starting
// the process), far below what a client library's read timeouts and
// retries add.
const (
	cliTimeout = 2 * time.Second
	cliBound   = time.Second
)

// stalledCommands are run, all at once, against a server that does not
// answer. refs set is refused before it writes anything: its Open does not
// get an answer.
var stalledCommands = [][]string{
	{"refs", "get", "acct"},
	{"refs", "ls"},
	{"refs", "history", "acct"},
	{"refs", "diff", "acct", "0", "1"},
	{"refs", "set", "acct", "7", "--yes", "--timeout", cliTimeout.String()},
	{"txn", "ls", "--pending"},
	{"locks", "ls"},
	{"group", "ls", "workers"},
	{"clock"},
}

// TestCLIDeadlines: with the server stopped (SIGSTOP) or behind a proxy
// that swallows every byte, every inspecting command exits with code 3
// and one line on stderr within cliBound of --connect-timeout; afterwards
// the data is as it was. On Redis, a refs set whose commit meets the
// fault says by its --timeout that its outcome is unknown (not that it
// did not commit).
func TestCLIDeadlines(t *testing.T) {
	bin := buildBinary(t)
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		seedAcct(t, func(ctx context.Context) (backend.Driver, error) {
			return redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "cli-dl"})
		})
		env := func(addr string) []string { return cliEnv(backendRedis, addr, "cli-dl") }
		t.Run("Stopped", func(t *testing.T) { cliStalled(t, bin, env(srv.Addr), srv.Pause, srv.Resume) })
		t.Run("Blackholed", func(t *testing.T) { cliBlackholed(t, bin, srv.Addr, env) })
		t.Run("SetMeetsFault", func(t *testing.T) { cliSetMeetsFault(t, bin, srv.Addr, env) })
	})
	t.Run("zk", func(t *testing.T) {
		srv := testserver.StartZK(t)
		seedAcct(t, func(ctx context.Context) (backend.Driver, error) {
			return zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/cli-dl"})
		})
		env := func(addr string) []string { return cliEnv(backendZK, addr, "/cli-dl") }
		pause := func(t testing.TB) { srv.Pause(t, 0) }
		resume := func(t testing.TB) { srv.Resume(t, 0) }
		t.Run("Stopped", func(t *testing.T) { cliStalled(t, bin, env(srv.ConnectString()), pause, resume) })
		t.Run("Blackholed", func(t *testing.T) { cliBlackholed(t, bin, srv.Servers[0], env) })
	})
}

// seedAcct writes the ref acct = 5 through the library.
func seedAcct(t *testing.T, open func(ctx context.Context) (backend.Driver, error)) {
	t.Helper()
	ctx := t.Context()
	drv, err := open(ctx)
	mustNoErr(t, err, "open")
	defer drv.Close()
	s, err := stm.Open(ctx, drv, stm.WithSweepInterval(0))
	mustNoErr(t, err, "stm.Open")
	defer s.Close()
	_, err = refs.New(ctx, s, "acct", 5)
	mustNoErr(t, err, "refs.New")
}

func cliBlackholed(t *testing.T, bin, upstream string, env func(addr string) []string) {
	p, err := jepsenlite.NewProxy(upstream)
	mustNoErr(t, err, "proxy")
	t.Cleanup(func() { _ = p.Close() })
	cliStalled(t, bin, env(p.Addr()), func(testing.TB) { p.Drop() }, func(testing.TB) { p.Pass() })
}

// cliStalled runs stalledCommands with the fault in place, then checks
// that the data is untouched once it is gone.
func cliStalled(t *testing.T, bin string, env []string, pause, resume func(testing.TB)) {
	timeout := "--connect-timeout=" + cliTimeout.String()
	pause(t)
	resumed := false
	defer func() {
		if !resumed {
			resume(t)
		}
	}()
	type res struct {
		stderr string
		code   int
		took   time.Duration
	}
	out := make([]res, len(stalledCommands))
	var wg sync.WaitGroup
	for i, args := range stalledCommands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, errOut, code := runBinary(t, bin, env, append([]string{timeout}, args...)...)
			out[i] = res{errOut, code, time.Since(start)}
		}()
	}
	wg.Wait()
	resume(t)
	resumed = true
	var lines []string
	for i, args := range stalledCommands {
		r := out[i]
		lines = append(lines, fmt.Sprintf("epochal %s: %v, exit %d: %s", strings.Join(args, " "), r.took.Round(time.Millisecond), r.code, strings.TrimSpace(r.stderr)))
		if r.took > cliTimeout+cliBound {
			t.Errorf("epochal %v took %v with --connect-timeout %v (bound %v)", args, r.took.Round(time.Millisecond), cliTimeout, cliBound)
		}
		if r.code != exitDown || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "epochal: ") {
			t.Errorf("epochal %v: exit %d, stderr %q; want exit %d and one line", args, r.code, r.stderr, exitDown)
		}
	}
	t.Logf("with the server not answering:\n%s", strings.Join(lines, "\n"))
	wantAcct(t, bin, env, 5)
}

// wantAcct waits until refs get answers (the server is back), and wants
// acct to hold one of want.
func wantAcct(t *testing.T, bin string, env []string, want ...int) {
	t.Helper()
	start := time.Now()
	for {
		stdout, stderr, code := runBinary(t, bin, env, "refs", "get", "acct", "--json")
		if code == exitOK {
			var got struct{ Value int }
			mustNoErr(t, json.Unmarshal([]byte(stdout), &got), "refs get --json")
			for _, w := range want {
				if got.Value == w {
					return
				}
			}
			t.Fatalf("acct = %d after the fault, want one of %v", got.Value, want)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("refs get after the fault: exit %d: %s", code, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cliSetMeetsFault: refs set through a proxy that swallows everything from
// the first script call on (the commit: every request before it is a
// plain read), so the commit meets the fault after the reads. The command
// exits by its --timeout, says the outcome is unknown, and the ref holds
// the old value or the new one.
func cliSetMeetsFault(t *testing.T, bin, upstream string, env func(addr string) []string) {
	p := newScriptStallProxy(t, upstream)
	start := time.Now()
	_, errOut, code := runBinary(t, bin, env(p.addr()), "--connect-timeout=30s",
		"refs", "set", "acct", "8", "--yes", "--timeout", cliTimeout.String())
	took := time.Since(start)
	t.Logf("refs set meeting the fault at its commit: %v, exit %d: %s", took.Round(time.Millisecond), code, strings.TrimSpace(errOut))
	if !p.stalled.Load() {
		t.Fatalf("the commit never reached the proxy (exit %d: %s)", code, errOut)
	}
	if took > cliTimeout+cliBound {
		t.Errorf("refs set took %v with --timeout %v (bound %v)", took.Round(time.Millisecond), cliTimeout, cliBound)
	}
	if code != exitDown || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "may or may not have committed") {
		t.Errorf("refs set whose commit got no answer: exit %d, stderr %q; want exit %d and one line saying it may or may not have committed", code, errOut, exitDown)
	}
	wantAcct(t, bin, env(upstream), 5, 8)
}

// scriptStallProxy forwards connections to a Redis server until a client
// sends a script call (EVALSHA or EVAL) on its own, outside a MULTI (a
// commit); from then on it swallows every byte of every connection,
// keeping them open.
type scriptStallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newScriptStallProxy(t *testing.T, target string) *scriptStallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustNoErr(t, err, "listen")
	p := &scriptStallProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *scriptStallProxy) addr() string { return p.ln.Addr().String() }

func (p *scriptStallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s, true)
		go p.pipe(s, c, false)
	}
}

// pipe copies src to dst until the stall, then reads and drops.
func (p *scriptStallProxy) pipe(src, dst net.Conn, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			// A script sent on its own is a commit; reads are a MULTI,
			// which may carry a script of their own (a bounded read).
			if low := bytes.ToLower(buf[:n]); fromClient && bytes.Contains(low, []byte("eval")) && !bytes.Contains(low, []byte("multi")) {
				p.stalled.Store(true)
			}
			if !p.stalled.Load() {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}
