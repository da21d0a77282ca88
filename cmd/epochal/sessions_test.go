package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/locks"
)

// testHolder replaces this process's holder string (host/pid/program),
// which differs between machines and runs, so tables are reproducible.
const testHolder = "test-host/4242/epochal.test"

// sessionsLease is long enough that no renewal (a new heartbeat) happens
// during a test: every holder's and member's lease left is then the same.
const sessionsLease = time.Hour

// heldState is what holdLocks holds, through the library, as any process
// would:
//
//	jobs/nightly: a Mutex held (token 1), another Mutex waiting (2)
//	cache/index:  an RWMutex's two readers holding (1, 2), a writer waiting (3)
type heldState struct {
	mutex   *locks.Mutex
	readers [2]*locks.RWMutex
}

func setTestHolder(t *testing.T) {
	old := lease.Holder
	lease.Holder = testHolder
	t.Cleanup(func() { lease.Holder = old })
}

// holdLocks takes the locks of heldState; cleanups release them.
func holdLocks(t *testing.T, drv backend.Driver) *heldState {
	t.Helper()
	ctx := t.Context()
	ss := drv.(backend.Sessions)
	st := &heldState{}
	var err error
	st.mutex, err = locks.NewMutex(sessionStore(drv), "jobs/nightly", locks.WithLease(sessionsLease))
	mustNoErr(t, err, "NewMutex")
	mustNoErr(t, st.mutex.Lock(ctx), "Lock jobs/nightly")
	t.Cleanup(func() { _ = st.mutex.Unlock(context.Background()) })
	for i := range st.readers {
		st.readers[i], err = locks.NewRWMutex(sessionStore(drv), "cache/index", locks.WithLease(sessionsLease))
		mustNoErr(t, err, "NewRWMutex")
		mustNoErr(t, st.readers[i].RLock(ctx), "RLock cache/index")
		rw := st.readers[i]
		t.Cleanup(func() { _ = rw.RUnlock(context.Background()) })
	}

	// The waiters queue until the test ends (cleanups run last in, first
	// out: they give up before the holders unlock).
	waitCtx, stop := context.WithCancel(context.Background())
	var waiters []chan error
	wait := func(name string, lock func(context.Context) error) {
		// Until its entry is in line: the dir then has one entry more.
		dir := lease.LockDirPrefix + name
		es, err := ss.Entries(ctx, dir, false)
		mustNoErr(t, err, "Entries")
		want := len(es) + 1
		done := make(chan error, 1)
		waiters = append(waiters, done)
		go func() { done <- lock(waitCtx) }()
		for {
			es, err := ss.Entries(ctx, dir, false)
			mustNoErr(t, err, "Entries")
			if len(es) >= want {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("waiter on %s returned %v, want it to wait", name, err)
			default:
			}
			if err := ss.WaitEntries(ctx, dir, "", 100*time.Millisecond); err != nil {
				t.Fatalf("WaitEntries: %v", err)
			}
		}
	}
	m2, err := locks.NewMutex(sessionStore(drv), "jobs/nightly", locks.WithLease(sessionsLease))
	mustNoErr(t, err, "NewMutex")
	w, err := locks.NewRWMutex(sessionStore(drv), "cache/index", locks.WithLease(sessionsLease))
	mustNoErr(t, err, "NewRWMutex")
	t.Cleanup(func() {
		stop()
		for _, done := range waiters {
			if err := <-done; err == nil {
				t.Errorf("a waiter took its lock before the holders let go")
			}
		}
	})
	wait("jobs/nightly", m2.Lock)
	wait("cache/index", w.Lock)
	return st
}

// joinGroup makes two members of group "workers", with data.
func joinGroup(t *testing.T, drv backend.Driver) {
	t.Helper()
	for _, m := range []struct {
		name string
		data any
	}{
		{"w1", map[string]any{"addr": "10.0.0.1:7000", "slots": 4}},
		{"w2", map[string]any{"addr": "10.0.0.2:7000", "slots": 8, "tags": []string{"gpu"}}},
	} {
		g, err := group.Join(t.Context(), sessionStore(drv), "workers", m.name, group.WithData(m.data), group.WithLease(sessionsLease))
		mustNoErr(t, err, "Join "+m.name)
		t.Cleanup(func() { _ = g.Leave(context.Background()) })
	}
}

// heartbeat is the last renewal of the session that holds dir's first
// entry.
func heartbeat(t *testing.T, drv backend.Driver, dir string) time.Time {
	t.Helper()
	es, err := drv.(backend.Sessions).Entries(t.Context(), dir, true)
	if err != nil || len(es) == 0 || es[0].Session.Heartbeat.IsZero() {
		t.Fatalf("Entries %s: %+v, %v", dir, es, err)
	}
	return es[0].Session.Heartbeat
}

// wallTimes are the absolute times in tables, which the library stamps
// from the real clock.
var wallTimes = regexp.MustCompile(`\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\b`)

func maskWallTimes(s string) string { return wallTimes.ReplaceAllString(s, "YYYY-MM-DD hh:mm:ss UTC") }

// checkLocksJSON checks locks ls --json against holdLocks's state.
func checkLocksJSON(t *testing.T, ls []lockOut, st *heldState, drv backend.Driver, leaseLeft *int64) {
	t.Helper()
	var got []string
	for _, l := range ls {
		if l.Kind != kindLock {
			continue
		}
		if l.Token == nil || l.Waiting == nil || l.Holder != testHolder || l.Backend != drv.ID() || l.Session == "" || l.Heartbeat.IsZero() ||
			l.LeaseLeftMs == nil || (leaseLeft != nil && *l.LeaseLeftMs != *leaseLeft) || l.Ref != "" || l.Txn != "" || l.Staged != nil {
			t.Errorf("locks ls --json: lock row %+v", l)
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %d waiting %d", l.Lock, l.Mode, *l.Token, *l.Waiting))
	}
	want := []string{
		fmt.Sprintf("cache/index read %d waiting 1", st.readers[0].Token()),
		fmt.Sprintf("cache/index read %d waiting 1", st.readers[1].Token()),
		fmt.Sprintf("jobs/nightly write %d waiting 1", st.mutex.Token()),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("locks ls --json: locks\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkGroupJSON checks group ls workers --json against joinGroup's.
func checkGroupJSON(t *testing.T, out groupOut, drv backend.Driver) {
	t.Helper()
	if out.Group != "workers" || out.Backend != drv.ID() || len(out.Members) != 2 {
		t.Fatalf("group ls --json: %+v", out)
	}
	for i, want := range []string{`{"addr":"10.0.0.1:7000","slots":4}`, `{"addr":"10.0.0.2:7000","slots":8,"tags":["gpu"]}`} {
		m := out.Members[i]
		var v any
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Errorf("member %d data %s: %v", i, m.Data, err)
		}
		compact, _ := json.Marshal(v)
		if m.Name != fmt.Sprintf("w%d", i+1) || string(compact) != want || m.Encoding != "msgpack" || m.Holder != testHolder ||
			m.Joined.IsZero() || m.Heartbeat.IsZero() || m.LeaseMs <= 0 || m.LeaseLeftMs == nil || m.Size == 0 {
			t.Errorf("member %d: %+v (data %s), want w%d with %s", i, m, compact, i+1, want)
		}
	}
}

// testSessionsRedis inspects locks and a group held on prefix "sessions"
// of the server the other inspect tests use.
func testSessionsRedis(t *testing.T, bin, addr string, drv backend.Driver) {
	setTestHolder(t)
	st := holdLocks(t, drv)
	joinGroup(t, drv)
	// Every holder and member shares this process's one session (of
	// sessionsLease): measured from 10s after its heartbeat, every lease
	// has 59m50s left.
	hb := heartbeat(t, drv, lease.LockDirPrefix+"jobs/nightly")
	if g := heartbeat(t, drv, group.DirPrefix+"workers"); !g.Equal(hb) {
		t.Fatalf("the group's heartbeat %v is not the locks' %v: not one session", g, hb)
	}
	env := append(cliEnv(backendRedis, addr, "sessions"), envNow+"="+hb.Add(10*time.Second).Format(time.RFC3339Nano))

	for _, c := range []struct {
		name string
		args []string
	}{
		{"locks_ls_held", []string{"locks", "ls"}},
		{"group_ls", []string{"group", "ls", "workers"}},
	} {
		golden(t, c.name, c.args, maskWallTimes(cli(t, bin, env, c.args...)))
	}

	var ls []lockOut
	cliJSON(t, bin, env, &ls, "locks", "ls")
	left := (sessionsLease - 10*time.Second).Milliseconds()
	checkLocksJSON(t, ls, st, drv, &left)
	if len(ls) != 3 {
		t.Errorf("locks ls --json: %d rows, want the 3 holders (no intents)", len(ls))
	}
	for _, l := range ls {
		if want := hb.Add(sessionsLease); !l.Lease.Equal(want) || !l.Heartbeat.Equal(hb) {
			t.Errorf("locks ls --json: %s lease %v heartbeat %v, want %v and %v", l.Lock, l.Lease, l.Heartbeat, want, hb)
		}
	}

	var g groupOut
	cliJSON(t, bin, env, &g, "group", "ls", "workers")
	checkGroupJSON(t, g, drv)
	for _, m := range g.Members {
		if m.LeaseMs != sessionsLease.Milliseconds() || *m.LeaseLeftMs != left || !m.Heartbeat.Equal(hb) || m.Joined.Before(hb) {
			t.Errorf("member %s: lease %dms (%dms left), heartbeat %v, joined %v; want %v, %dms left, %v, not before it",
				m.Name, m.LeaseMs, *m.LeaseLeftMs, m.Heartbeat, m.Joined, sessionsLease, left, hb)
		}
	}

	unreachable := append(append([]string(nil), env...), envAddr+"="+closedAddr(t))
	wantExit(t, bin, env, exitNotFound, `no group "idle" on redis:`, "group", "ls", "idle")
	wantExit(t, bin, env, exitNotFound, "groups with members: workers", "group", "ls", "idle")
	wantExit(t, bin, env, exitUsage, `group name "bad//name"`, "group", "ls", "bad//name")
	wantExit(t, bin, env, exitUsage, "takes at most one NAME", "group", "ls", "workers", "idle")
	wantExit(t, bin, env, exitUsage, "--backend mem", "--backend", "mem", "group", "ls", "workers")
	wantExit(t, bin, unreachable, exitDown, "--addr", "--connect-timeout", "500ms", "group", "ls", "workers")
	wantExit(t, bin, unreachable, exitDown, "--addr", "--connect-timeout", "500ms", "locks", "ls")

	if out := cli(t, bin, env, "__complete", "group", "ls", "w"); !strings.HasPrefix(out, "workers\n:4\n") {
		t.Errorf("completing group ls w: %q", out)
	}
}

// testSessionsZK runs locks ls and group ls against ZooKeeper: JSON only,
// its leases being the session timeout.
func testSessionsZK(t *testing.T, bin string, env []string, drv backend.Driver) {
	setTestHolder(t)
	st := holdLocks(t, drv)
	joinGroup(t, drv)
	env = append(env, envNow+"=") // now: leases left are real
	var ls []lockOut
	cliJSON(t, bin, env, &ls, "locks", "ls")
	checkLocksJSON(t, ls, st, drv, nil)
	var g groupOut
	cliJSON(t, bin, env, &g, "group", "ls", "workers")
	checkGroupJSON(t, g, drv)
	out := cli(t, bin, env, "locks", "ls")
	if !strings.Contains(out, "jobs/nightly  write  "+testHolder) || !strings.Contains(out, "intents (write locks of transactions on refs)") {
		t.Errorf("locks ls table:\n%s", out)
	}
	wantExit(t, bin, env, exitNotFound, `no group "idle"`, "group", "ls", "idle")
}

// sessionStore is d as a store of locks and groups.
func sessionStore(d backend.Driver) backend.SessionStore {
	st, _ := d.(backend.SessionStore)
	return st
}
