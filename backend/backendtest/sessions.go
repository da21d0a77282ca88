package backendtest

import (
	"context"
	"errors"
	"fmt"
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
	t.Run("Open", func(t *testing.T) { sessionsOpen(t, sd(t)) })
	t.Run("Sequential", func(t *testing.T) { sessionsSequential(t, sd(t)) })
	t.Run("Named", func(t *testing.T) { sessionsNamed(t, sd(t)) })
	t.Run("CloseEndsEntries", func(t *testing.T) { sessionsClose(t, sd(t)) })
	t.Run("Wait", func(t *testing.T) { sessionsWait(t, sd(t)) })
	t.Run("BadInput", func(t *testing.T) { sessionsBadInput(t, sd(t)) })
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

func sessionsBadInput(t *testing.T, d backend.Sessions) {
	ctx := tctx(t)
	a, _ := openSession(t, d, 5*time.Second)
	for _, bad := range []string{"", "a\x00b", "new\nline", string(make([]byte, backend.MaxSessionName+1))} {
		if _, err := d.AddEntry(ctx, backend.AddEntryRequest{Session: a, Dir: "ok", Name: bad}); !errors.Is(err, backend.ErrBadName) {
			t.Errorf("AddEntry name %q: %v, want ErrBadName", bad, err)
		}
		if _, err := d.AddEntry(ctx, backend.AddEntryRequest{Session: a, Dir: bad, Name: "ok"}); !errors.Is(err, backend.ErrBadName) {
			t.Errorf("AddEntry dir %q: %v, want ErrBadName", bad, err)
		}
		if _, err := d.OpenSession(ctx, bad, time.Second, "x"); !errors.Is(err, backend.ErrBadName) {
			t.Errorf("OpenSession id %q: %v, want ErrBadName", bad, err)
		}
	}
	if _, err := d.OpenSession(ctx, uniqID("neg"), -time.Second, "x"); err == nil {
		t.Error("OpenSession with a negative lease: no error")
	}
	if es := entries(t, d, "ok", false); len(es) != 0 {
		t.Errorf("bad input left entries: %+v", es)
	}
}
