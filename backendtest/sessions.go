package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
)

// testSessions: the Sessions capability (sessions, ephemeral entries,
// sequence numbers, waits) directly, then the locks and groups built on it.
func testSessions(t *testing.T, newDriver NewDriver) {
	if _, ok := newDriver(t).(backend.Sessions); !ok {
		t.Fatalf("%T does not implement backend.Sessions", newDriver(t))
	}
	sd := func(t *testing.T) backend.Sessions { return newDriver(t).(backend.Sessions) }
	t.Run("SessionStore", func(t *testing.T) { sessionsStore(t, newDriver(t)) })
	t.Run("Open", func(t *testing.T) { sessionsOpen(t, sd(t)) })
	t.Run("Sequential", func(t *testing.T) { sessionsSequential(t, sd(t)) })
	t.Run("Named", func(t *testing.T) { sessionsNamed(t, sd(t)) })
	t.Run("CloseEndsEntries", func(t *testing.T) { sessionsClose(t, sd(t)) })
	t.Run("Wait", func(t *testing.T) { sessionsWait(t, sd(t)) })
	t.Run("BadInput", func(t *testing.T) { sessionsBadInput(t, sd(t)) })
	t.Run("ReadDir", func(t *testing.T) { sessionsReadDir(t, sd(t)) })
	t.Run("ReadDirLogTruncated", func(t *testing.T) { sessionsReadDirTruncated(t, sd(t)) })
	t.Run("Mutex", func(t *testing.T) { testMutex(t, newDriver) })
	t.Run("RWMutex", func(t *testing.T) { testRWMutex(t, newDriver) })
	t.Run("Group", func(t *testing.T) { testGroup(t, newDriver) })
}

func openSession(t *testing.T, d backend.Sessions, lease time.Duration) (string, time.Duration) {
	t.Helper()
	id := uniqID("s")
	eff, err := d.OpenSession(tctx(t), id, lease, "backendtest")
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	if eff <= 0 {
		t.Fatalf("OpenSession: effective lease %v", eff)
	}
	t.Cleanup(func() { _ = d.CloseSession(context.Background(), id) })
	return id, eff
}

var idSeq atomic.Int64

func uniqID(base string) string {
	return fmt.Sprintf("%s%d-%d", base, time.Now().UnixNano(), idSeq.Add(1))
}

func add(t *testing.T, d backend.Sessions, sess, dir, name string, seq bool, data string) backend.Entry {
	t.Helper()
	e, err := d.AddEntry(tctx(t), backend.AddEntryRequest{Session: sess, Dir: dir, Name: name, Sequential: seq, Data: []byte(data), Time: time.Now()})
	if err != nil {
		t.Fatalf("AddEntry(%s, %s): %v", dir, name, err)
	}
	if e.Name != name || (seq && e.Seq == 0) || (!seq && e.Seq != 0) {
		t.Fatalf("AddEntry(%s, %s, seq=%v) = %+v", dir, name, seq, e)
	}
	return e
}

func entries(t *testing.T, d backend.Sessions, dir string, details bool) []backend.Entry {
	t.Helper()
	es, err := d.Entries(tctx(t), dir, details)
	if err != nil {
		t.Fatalf("Entries(%s): %v", dir, err)
	}
	return es
}

func entryNamesOf(es []backend.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func sessionsOpen(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	id, eff := openSession(t, d, 5*time.Second)
	dir := uniq("open")
	add(t, d, id, dir, "a", false, "x")
	before := time.Now()
	if err := d.RenewSession(ctx, id, before); err != nil {
		t.Fatalf("RenewSession: %v", err)
	}
	es := entries(t, d, dir, true)
	if len(es) != 1 {
		t.Fatalf("entries %+v", es)
	}
	s := es[0].Session
	if s.ID != id || s.Holder != "backendtest" || s.Lease != eff || s.Heartbeat.Before(before.Add(-time.Millisecond)) {
		t.Fatalf("session info %+v (want id %s, lease %v, heartbeat >= %v)", s, id, eff, before)
	}
	if err := d.CloseSession(ctx, id); err != nil {
		t.Fatalf("CloseSession: %v", err)
	}
	if err := d.CloseSession(ctx, id); err != nil {
		t.Fatalf("second CloseSession: %v", err)
	}
	if err := d.RenewSession(ctx, id, time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("RenewSession after close: %v, want ErrSessionGone", err)
	}
	if _, err := d.AddEntry(ctx, backend.AddEntryRequest{Session: id, Dir: dir, Name: "b"}); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("AddEntry after close: %v, want ErrSessionGone", err)
	}
	if err := d.RenewSession(ctx, uniqID("never"), time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("RenewSession of an unknown id: %v, want ErrSessionGone", err)
	}
	if es := entries(t, d, dir, false); len(es) != 0 {
		t.Fatalf("entries of a closed session remain: %+v", es)
	}
}

// sessionsSequential: sequence numbers strictly increase across sessions
// and when the dir empties; a repeated add is idempotent.
func sessionsSequential(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir := uniq("seq")
	var last uint64
	for round := 0; round < 3; round++ {
		id, _ := openSession(t, d, 5*time.Second)
		var names []string
		for i := 0; i < 4; i++ {
			name := fmt.Sprintf("w.%d.%d", round, i)
			e := add(t, d, id, dir, name, true, "")
			if e.Seq <= last {
				t.Fatalf("round %d: seq %d after %d", round, e.Seq, last)
			}
			last = e.Seq
			again := add(t, d, id, dir, name, true, "")
			if again.Seq != e.Seq {
				t.Fatalf("repeated AddEntry got seq %d, first %d", again.Seq, e.Seq)
			}
			names = append(names, name)
		}
		if l, ok := d.(backend.EntryLister); ok {
			name := fmt.Sprintf("w.%d.listed", round)
			e, es, err := l.AddEntryList(ctx, backend.AddEntryRequest{Session: id, Dir: dir, Name: name, Sequential: true})
			if err != nil || e.Seq <= last || len(es) != len(names)+1 || es[len(es)-1].Name != name || es[len(es)-1].Seq != e.Seq {
				t.Fatalf("AddEntryList = %+v, %+v, %v; want the queue %v then %s with a seq above %d", e, es, err, names, name, last)
			}
			last = e.Seq
			names = append(names, name)
		}
		es := entries(t, d, dir, false)
		if got := entryNamesOf(es); fmt.Sprint(got) != fmt.Sprint(names) {
			t.Fatalf("entries %v, want %v in seq order", got, names)
		}
		for i := 1; i < len(es); i++ {
			if es[i].Seq <= es[i-1].Seq {
				t.Fatalf("entries not by seq: %+v", es)
			}
		}
		// Round 0 removes its entries one by one, later rounds close.
		if round == 0 {
			for _, n := range names {
				if err := d.RemoveEntry(ctx, id, dir, n); err != nil {
					t.Fatalf("RemoveEntry: %v", err)
				}
			}
		} else if err := d.CloseSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		if es := entries(t, d, dir, false); len(es) != 0 {
			t.Fatalf("round %d: entries remain %+v", round, es)
		}
	}
}

func sessionsNamed(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir := uniq("named")
	a, _ := openSession(t, d, 5*time.Second)
	b, _ := openSession(t, d, 5*time.Second)
	created := time.Now()
	add(t, d, a, dir, "m1", false, "one")
	add(t, d, a, dir, "m1", false, "uno") // same session: data replaced
	add(t, d, b, dir, "m2", false, "two")
	if _, err := d.AddEntry(ctx, backend.AddEntryRequest{Session: b, Dir: dir, Name: "m1", Data: []byte("stolen")}); !errors.Is(err, backend.ErrEntryExists) {
		t.Fatalf("AddEntry of a name held by another session: %v, want ErrEntryExists", err)
	}
	if err := d.SetEntry(ctx, b, dir, "m1", []byte("stolen")); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("SetEntry of another session's entry: %v, want ErrEntryGone", err)
	}
	if err := d.RemoveEntry(ctx, b, dir, "m1"); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("RemoveEntry of another session's entry: %v, want ErrEntryGone", err)
	}
	if err := d.RemoveEntry(ctx, a, dir, "nope"); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("RemoveEntry of a missing entry: %v, want ErrEntryGone", err)
	}
	if err := d.SetEntry(ctx, b, dir, "m2", []byte("dos")); err != nil {
		t.Fatalf("SetEntry: %v", err)
	}
	es := entries(t, d, dir, true)
	if len(es) != 2 || es[0].Name != "m1" || string(es[0].Data) != "uno" || es[0].Session.ID != a ||
		es[1].Name != "m2" || string(es[1].Data) != "dos" || es[1].Session.ID != b {
		t.Fatalf("entries %+v", es)
	}
	if d := es[0].Created.Sub(created); d < -time.Second || d > time.Minute {
		t.Fatalf("created %v, added at %v", es[0].Created, created)
	}
	// Once a's session ends, its name is free for b.
	if err := d.CloseSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	add(t, d, b, dir, "m1", false, "mine now")
	dirs, err := d.Dirs(ctx, dir)
	if err != nil || len(dirs) != 1 || dirs[0] != dir {
		t.Fatalf("Dirs(%q) = %v, %v", dir, dirs, err)
	}
	if err := d.CloseSession(ctx, b); err != nil {
		t.Fatal(err)
	}
	if dirs, err := d.Dirs(ctx, dir); err != nil || len(dirs) != 0 {
		t.Fatalf("Dirs after every session closed = %v, %v", dirs, err)
	}
}

func sessionsClose(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir1, dir2 := uniq("close1"), uniq("close2")
	a, _ := openSession(t, d, 5*time.Second)
	b, _ := openSession(t, d, 5*time.Second)
	add(t, d, a, dir1, "w.a", true, "")
	add(t, d, b, dir1, "w.b", true, "")
	add(t, d, a, dir2, "x", false, "")
	if err := d.CloseSession(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := entryNamesOf(entries(t, d, dir1, false)); fmt.Sprint(got) != "[w.b]" {
		t.Fatalf("dir1 after closing a: %v", got)
	}
	if got := entries(t, d, dir2, true); len(got) != 0 {
		t.Fatalf("dir2 after closing a: %v", got)
	}
}

// sessionsWait: a waiter on an entry wakes when it is removed; WaitEntries
// honours max and ctx.
func sessionsWait(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir := uniq("wait")
	a, _ := openSession(t, d, 5*time.Second)
	add(t, d, a, dir, "w.1", true, "")
	add(t, d, a, dir, "w.2", true, "")
	woke := make(chan error, 1)
	go func() {
		for {
			err := d.WaitEntries(ctx, dir, "w.1", 0)
			if err != nil {
				woke <- err
				return
			}
			es, err := d.Entries(ctx, dir, false)
			if err != nil {
				woke <- err
				return
			}
			if len(es) == 0 || es[0].Name != "w.1" {
				woke <- nil
				return
			}
		}
	}()
	if err := d.RemoveEntry(ctx, a, dir, "w.1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter on w.1 did not wake in 30s after its removal")
	}
	// max bounds a wait on an entry that stays.
	start := time.Now()
	if err := d.WaitEntries(ctx, dir, "w.2", 50*time.Millisecond); err != nil {
		t.Fatalf("WaitEntries with max: %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("WaitEntries with max 50ms took %v", time.Since(start))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.WaitEntries(cctx, dir, "w.2", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitEntries with a done ctx: %v, want context.Canceled", err)
	}
}

// sessionsBadInput: every method refuses a bad session id, dir or entry
// name with ErrBadName (before, mem's SetEntry and RemoveEntry said
// ErrEntryGone and its Entries listed nothing, where Redis and ZooKeeper
// said ErrBadName), and none leaves anything behind.
func sessionsBadInput(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	a, _ := openSession(t, d, 5*time.Second)
	add(t, d, a, "ok", "ok", false, "x")
	bad := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, backend.ErrBadName) {
			t.Errorf("%s: %v, want ErrBadName", what, err)
		}
	}
	l, lister := d.(backend.EntryLister)
	long := strings.Repeat("x", backend.MaxSessionName+1)
	for _, b := range []string{"", "a\x00b", "new\nline", long} {
		q := fmt.Sprintf("%q", b)
		if b == long {
			q = fmt.Sprintf("of %d bytes", len(b))
		}
		reqs := map[string]backend.AddEntryRequest{
			"session": {Session: b, Dir: "ok", Name: "ok"},
			"dir":     {Session: a, Dir: b, Name: "ok"},
			"name":    {Session: a, Dir: "ok", Name: b},
		}
		for what, req := range reqs {
			_, err := d.AddEntry(ctx, req)
			bad(fmt.Sprintf("AddEntry %s %s", what, q), err)
			if lister {
				_, _, err := l.AddEntryList(ctx, req)
				bad(fmt.Sprintf("AddEntryList %s %s", what, q), err)
			}
			bad(fmt.Sprintf("SetEntry %s %s", what, q), d.SetEntry(ctx, req.Session, req.Dir, req.Name, []byte("y")))
			bad(fmt.Sprintf("RemoveEntry %s %s", what, q), d.RemoveEntry(ctx, req.Session, req.Dir, req.Name))
		}
		_, err := d.OpenSession(ctx, b, time.Second, "x")
		bad(fmt.Sprintf("OpenSession id %s", q), err)
		bad(fmt.Sprintf("RenewSession id %s", q), d.RenewSession(ctx, b, time.Now()))
		bad(fmt.Sprintf("CloseSession id %s", q), d.CloseSession(ctx, b))
		_, err = d.Entries(ctx, b, false)
		bad(fmt.Sprintf("Entries dir %s", q), err)
		_, err = d.ReadDir(ctx, backend.DirRequest{Dir: b, Adds: true})
		bad(fmt.Sprintf("ReadDir dir %s", q), err)
		bad(fmt.Sprintf("WaitEntries dir %s", q), d.WaitEntries(ctx, b, "", time.Millisecond))
		if b != "" { // "": any entry, every dir
			bad(fmt.Sprintf("WaitEntries name %s", q), d.WaitEntries(ctx, "ok", b, time.Millisecond))
			_, err = d.Dirs(ctx, b)
			bad(fmt.Sprintf("Dirs prefix %s", q), err)
		}
	}
	if _, err := d.OpenSession(ctx, uniqID("neg"), -time.Second, "x"); err == nil {
		t.Error("OpenSession with a negative lease: no error")
	}
	es := entries(t, d, "ok", true)
	if len(es) != 1 || es[0].Name != "ok" || string(es[0].Data) != "x" || es[0].Session.ID != a {
		t.Errorf("bad input changed the entries: %+v", es)
	}
}

func readDir(t *testing.T, d backend.Sessions, req backend.DirRequest) backend.DirState {
	t.Helper()
	st, err := d.ReadDir(tctx(t), req)
	if err != nil {
		t.Fatalf("ReadDir(%+v): %v", req, err)
	}
	return st
}

func addedNames(as []backend.Added) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Name
	}
	return out
}

// sessionsReadDir: the revision grows with every addition and removal (a
// session's end included) and the listing reflects it; the log gives
// the named entries added after a revision, oldest first, those gone
// since included, and no sequential entry.
func sessionsReadDir(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir := uniq("rd")
	a, _ := openSession(t, d, 5*time.Second)
	b, _ := openSession(t, d, 5*time.Second)
	if st := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true}); len(st.Entries) != 0 || len(st.Adds) != 0 || st.Truncated {
		t.Fatalf("ReadDir of a new dir = %+v", st)
	}
	add(t, d, a, dir, "m1", false, "one")
	st0 := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true})
	if got := entryNamesOf(st0.Entries); fmt.Sprint(got) != "[m1]" || st0.Rev == 0 {
		t.Fatalf("ReadDir after adding m1 = %+v", st0)
	}
	if got := addedNames(st0.Adds); fmt.Sprint(got) != "[m1]" || st0.Adds[0].Rev > st0.Rev || st0.Adds[0].Rev == 0 {
		t.Fatalf("adds since 0 = %+v, want [m1] at a revision in (0, %d]", st0.Adds, st0.Rev)
	}
	// m2 comes and goes, m3 joins with a session that ends, a lock
	// waiter queues (sequential: not logged), m1's data changes.
	add(t, d, b, dir, "m2", false, "")
	if err := d.RemoveEntry(ctx, b, dir, "m2"); err != nil {
		t.Fatal(err)
	}
	c, _ := openSession(t, d, 5*time.Second)
	add(t, d, c, dir, "m3", false, "")
	add(t, d, b, dir, "w.1", true, "")
	if err := d.SetEntry(ctx, a, dir, "m1", []byte("uno")); err != nil {
		t.Fatal(err)
	}
	mid := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true, Since: st0.Rev})
	if got := entryNamesOf(mid.Entries); fmt.Sprint(got) != "[m1 m3 w.1]" || mid.Rev <= st0.Rev {
		t.Fatalf("ReadDir = %+v; want [m1 m3 w.1] at a revision above %d", mid, st0.Rev)
	}
	if got := addedNames(mid.Adds); fmt.Sprint(got) != "[m2 m3]" || mid.Truncated {
		t.Fatalf("adds since %d = %+v (truncated %v), want [m2 m3], m2 although it is gone", st0.Rev, mid.Adds, mid.Truncated)
	}
	for i, x := range mid.Adds {
		if x.Rev <= st0.Rev || x.Rev > mid.Rev || (i > 0 && x.Rev <= mid.Adds[i-1].Rev) {
			t.Fatalf("adds %+v: revisions not increasing within (%d, %d]", mid.Adds, st0.Rev, mid.Rev)
		}
	}
	if err := d.CloseSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	end := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true, Since: mid.Rev, Details: true})
	if got := entryNamesOf(end.Entries); fmt.Sprint(got) != "[m1 w.1]" || end.Rev <= mid.Rev {
		t.Fatalf("ReadDir after m3's session ended = %+v; want [m1 w.1] at a revision above %d", end, mid.Rev)
	}
	if len(end.Adds) != 0 || end.Truncated || string(end.Entries[0].Data) != "uno" || end.Entries[0].Session.ID != a {
		t.Fatalf("ReadDir with details since %d = %+v", mid.Rev, end)
	}
	// A name taken again is a new addition.
	add(t, d, b, dir, "m3", false, "")
	again := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true, Since: end.Rev})
	if got := addedNames(again.Adds); fmt.Sprint(got) != "[m3]" {
		t.Fatalf("adds after m3 came back = %+v", again.Adds)
	}
	if err := d.RemoveEntry(ctx, b, dir, "m3"); err != nil {
		t.Fatal(err)
	}
	if got := readDir(t, d, backend.DirRequest{Dir: dir}); got.Rev <= again.Rev || got.Adds != nil {
		t.Fatalf("ReadDir without adds after a removal = %+v; want a revision above %d and no adds", got, again.Rev)
	}
}

// sessionsReadDirTruncated: the log keeps at least the newest MinAddLog
// additions and says when it no longer reaches back to Since.
func sessionsReadDirTruncated(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	dir := uniq("rdt")
	a, _ := openSession(t, d, time.Minute)
	add(t, d, a, dir, "first", false, "")
	st0 := readDir(t, d, backend.DirRequest{Dir: dir})
	const n = backend.MinAddLog + 20
	for i := range n {
		name := fmt.Sprintf("m%03d", i)
		add(t, d, a, dir, name, false, "")
		if err := d.RemoveEntry(ctx, a, dir, name); err != nil {
			t.Fatal(err)
		}
	}
	st := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true, Since: st0.Rev})
	if !st.Truncated {
		t.Fatalf("adds since a revision %d additions ago: not truncated (%d adds)", n, len(st.Adds))
	}
	if len(st.Adds) < backend.MinAddLog || len(st.Adds) > n {
		t.Fatalf("%d adds kept, want at least %d", len(st.Adds), backend.MinAddLog)
	}
	last := st.Adds[len(st.Adds)-1]
	if last.Name != fmt.Sprintf("m%03d", n-1) {
		t.Fatalf("newest add %+v, want m%03d", last, n-1)
	}
	recent := st.Adds[len(st.Adds)-backend.MinAddLog]
	within := readDir(t, d, backend.DirRequest{Dir: dir, Adds: true, Since: recent.Rev})
	if within.Truncated || len(within.Adds) != backend.MinAddLog-1 {
		t.Fatalf("adds since the %d-th newest: truncated %v, %d adds; want %d", backend.MinAddLog, within.Truncated, len(within.Adds), backend.MinAddLog-1)
	}
}

// sessionsStore: a driver that keeps sessions is a backend.SessionStore
// whose Sessions is the driver itself, so locks and groups take it.
func sessionsStore(t *testing.T, d backend.Driver) {
	st, ok := d.(backend.SessionStore)
	if !ok {
		t.Fatalf("%T implements backend.Sessions but not backend.SessionStore: locks and groups cannot take it (add: func (b *T) Sessions() backend.Sessions { return b })", d)
	}
	if ss := st.Sessions(); ss != d.(backend.Sessions) {
		t.Fatalf("%T.Sessions() = %T, want the driver itself", d, ss)
	}
}
