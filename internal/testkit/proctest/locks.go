package proctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/locks"
)

func init() {
	workers["lock-count"] = lockCountWorker
	workers["lock-hold"] = lockHoldWorker
	workers["group"] = groupWorker
}

const lockName = "proc/lock"

// Locks runs the multi-process tests of mutexes and groups.
func Locks(t *testing.T, h Harness) {
	t.Run("Exclusion", func(t *testing.T) { lockExclusion(t, h) })
	t.Run("HolderKilled", func(t *testing.T) { lockHolderKilled(t, h) })
	t.Run("HolderStopped", func(t *testing.T) { lockHolderStopped(t, h) })
	t.Run("GroupMemberKilled", func(t *testing.T) { groupMemberKilled(t, h) })
}

// countArg is lock-count's argument.
type countArg struct {
	File       string
	Goroutines int
	Rounds     int
}

// countReport is what lock-count prints when it is done.
type countReport struct {
	Acquisitions int
	// Stale counts critical sections that found in the file a token not
	// below their own: a fencing token that did not increase.
	Stale  int
	Errors []string
}

// lockCountWorker: goroutines, each with its own Mutex, increment a
// counter kept in a file, with a plain read and a plain write (no
// atomics, no rename): an increment is lost unless exclusion holds across
// processes. The file also keeps the token of the last writer.
func lockCountWorker(ctx context.Context, d backend.Driver, lease time.Duration) error {
	var arg countArg
	if err := json.Unmarshal([]byte(os.Getenv(envArg)), &arg); err != nil {
		return err
	}
	var mu sync.Mutex
	var rep countReport
	fail := func(err error) {
		mu.Lock()
		rep.Errors = append(rep.Errors, err.Error())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := 0; g < arg.Goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := locks.NewMutex(sessionStore(d), lockName, locks.WithLease(lease))
			if err != nil {
				fail(err)
				return
			}
			for i := 0; i < arg.Rounds; i++ {
				if err := m.Lock(ctx); err != nil {
					fail(err)
					return
				}
				n, last, err := readCounter(arg.File)
				if err != nil {
					fail(err)
				}
				tok := m.Token()
				stale := tok <= last
				err = os.WriteFile(arg.File, []byte(fmt.Sprintf("%d %d\n", n+1, tok)), 0o644)
				if err != nil {
					fail(err)
				}
				mu.Lock()
				rep.Acquisitions++
				if stale {
					rep.Stale++
				}
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

func readCounter(file string) (n int, token uint64, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("counter file %q", b)
	}
	n, err = strconv.Atoi(f[0])
	if err != nil {
		return 0, 0, err
	}
	token, err = strconv.ParseUint(f[1], 10, 64)
	return n, token, err
}

// lockExclusion: two processes of eight goroutines each increment the
// file counter under one lock: no increment lost, tokens increasing.
func lockExclusion(t *testing.T, h Harness) {
	env, _ := h.Env(t)
	file := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(file, []byte("0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	arg := countArg{File: file, Goroutines: 8, Rounds: 15}
	b, _ := json.Marshal(arg)
	var ps []*Proc
	for i := 0; i < 2; i++ {
		ps = append(ps, Start(t, "lock-count", env, h.Lease, string(b)))
	}
	total := 0
	for _, p := range ps {
		var rep countReport
		line := p.Next(t, 5*Patience)
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatalf("worker %d: %q: %v", p.Pid(), line, err)
		}
		p.Wait(t)
		if len(rep.Errors) > 0 || rep.Stale > 0 {
			t.Fatalf("worker %d: %+v", p.Pid(), rep)
		}
		total += rep.Acquisitions
	}
	n, _, err := readCounter(file)
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * arg.Goroutines * arg.Rounds
	if total != want || n != want {
		t.Fatalf("counter %d after %d acquisitions, want %d: exclusion failed across processes", n, total, want)
	}
}

// lockHoldWorker takes the lock, prints "held <token>", and then reports
// "lost" when Lost is closed, and answers "unlock" with "unlock ok" or
// "unlock <error>".
func lockHoldWorker(ctx context.Context, d backend.Driver, lease time.Duration) error {
	m, err := locks.NewMutex(sessionStore(d), lockName, locks.WithLease(lease))
	if err != nil {
		return err
	}
	if err := m.Lock(ctx); err != nil {
		return err
	}
	fmt.Printf("held %d\n", m.Token())
	lost := m.Lost()
	cmds := stdinLines()
	for {
		select {
		case <-lost:
			fmt.Println("lost")
			lost = nil
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			if c == "unlock" {
				err := m.Unlock(ctx)
				switch {
				case err == nil:
					fmt.Println("unlock ok")
				case errors.Is(err, locks.ErrLost):
					fmt.Println("unlock lost")
				default:
					fmt.Println("unlock", err)
				}
			}
		}
	}
}

func parentMutex(t *testing.T, d backend.Driver, lease time.Duration) *locks.Mutex {
	t.Helper()
	m, err := locks.NewMutex(sessionStore(d), lockName, locks.WithLease(lease))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lockHolderKilled: a holder SIGKILLed: the lock is free within the lease
// plus slack, with a larger token.
func lockHolderKilled(t *testing.T, h Harness) {
	env, d := h.parent(t, h.Lease)
	p := Start(t, "lock-hold", env, h.Lease, "")
	tok, err := strconv.ParseUint(p.Expect(t, "held"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	m := parentMutex(t, d, h.Lease)
	if ok, err := m.TryLock(context.Background()); ok || err != nil {
		t.Fatalf("TryLock while the worker holds = %v, %v", ok, err)
	}
	p.Signal(t, syscall.SIGKILL)
	killed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), h.Lease+h.Slack)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("the lock of a holder killed %v ago is not free (lease %v + slack %v): %v", time.Since(killed), h.Lease, h.Slack, err)
	}
	t.Logf("free %v after the holder was killed (lease %v)", time.Since(killed).Round(time.Millisecond), h.Lease)
	if m.Token() <= tok {
		t.Fatalf("token %d after a killed holder's %d", m.Token(), tok)
	}
	if err := m.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// lockHolderStopped: a holder SIGSTOPped past its lease: another takes
// the lock with a larger token; resumed, the old holder sees Lost and its
// Unlock says ErrLost.
func lockHolderStopped(t *testing.T, h Harness) {
	env, d := h.parent(t, h.Lease)
	p := Start(t, "lock-hold", env, h.Lease, "")
	tok, err := strconv.ParseUint(p.Expect(t, "held"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGSTOP)
	m := parentMutex(t, d, h.Lease)
	ctx, cancel := context.WithTimeout(context.Background(), h.Lease+h.Slack)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("the lock of a stopped holder is not free within lease %v + slack %v: %v", h.Lease, h.Slack, err)
	}
	if m.Token() <= tok {
		t.Fatalf("new holder's token %d is not above the stopped holder's %d", m.Token(), tok)
	}
	p.Signal(t, syscall.SIGCONT)
	p.Expect(t, "lost")
	p.Send(t, "unlock")
	p.Expect(t, "unlock lost")
	// The new holder still holds.
	select {
	case <-m.Lost():
		t.Fatal("the new holder lost the lock")
	default:
	}
	if err := m.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// groupWorker joins the group as the member named by its argument and
// prints "event <joined> <left>" (comma-separated names, "-" for none) for
// each event, and "members <names>" when asked "members".
func groupWorker(ctx context.Context, d backend.Driver, lease time.Duration) error {
	g, err := group.Join(ctx, sessionStore(d), "proc/group", os.Getenv(envArg), group.WithLease(lease))
	if err != nil {
		return err
	}
	cmds := stdinLines()
	for {
		select {
		case ev := <-g.Events():
			fmt.Printf("event %s %s\n", list(ev.Joined), list(ev.Left))
		case c, ok := <-cmds:
			if !ok {
				return g.Leave(ctx)
			}
			if c == "members" {
				ms, err := group.Members(ctx, sessionStore(d), "proc/group")
				if err != nil {
					fmt.Println("members error", err)
					continue
				}
				var names []string
				for _, m := range ms {
					names = append(names, m.Name)
				}
				fmt.Printf("members %s\n", list(names))
			}
		}
	}
}

func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

func unlist(s string) []string {
	if s == "-" {
		return nil
	}
	return strings.Split(s, ",")
}

// memberView follows a worker's events until its view is want; it fails
// the test after within.
func memberView(t *testing.T, p *Proc, view map[string]bool, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got []string
		for n := range view {
			got = append(got, n)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("worker %d sees %v, want %v", p.Pid(), got, want)
		}
		line := p.Next(t, left)
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "event" {
			t.Fatalf("worker %d said %q", p.Pid(), line)
		}
		for _, n := range unlist(f[1]) {
			view[n] = true
		}
		for _, n := range unlist(f[2]) {
			delete(view, n)
		}
	}
}

// groupMemberKilled: three processes join; one is SIGKILLed; the other two
// get its Left event within lease plus slack, and Members agrees in every
// process.
func groupMemberKilled(t *testing.T, h Harness) {
	env, d := h.parent(t, h.Lease)
	names := []string{"p0", "p1", "p2"}
	var ps []*Proc
	views := make([]map[string]bool, 3)
	for i, n := range names {
		ps = append(ps, Start(t, "group", env, h.Lease, n))
		views[i] = map[string]bool{}
	}
	for i, p := range ps {
		memberView(t, p, views[i], Patience, names...)
	}
	ps[2].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	for i, p := range ps[:2] {
		memberView(t, p, views[i], h.Lease+h.Slack, "p0", "p1")
	}
	t.Logf("both saw p2 leave within %v (lease %v)", time.Since(killed).Round(time.Millisecond), h.Lease)
	for _, p := range ps[:2] {
		p.Send(t, "members")
		if got := p.Expect(t, "members"); got != "p0,p1" {
			t.Fatalf("worker %d: Members %s, want p0,p1", p.Pid(), got)
		}
	}
	ms, err := group.Members(context.Background(), sessionStore(d), "proc/group")
	if err != nil || len(ms) != 2 || ms[0].Name != "p0" || ms[1].Name != "p1" {
		t.Fatalf("Members here: %+v, %v", ms, err)
	}
}

// sessionStore is d as a store of locks and groups (nil when it keeps no
// sessions, which they refuse).
func sessionStore(d backend.Driver) backend.SessionStore {
	st, _ := d.(backend.SessionStore)
	return st
}
