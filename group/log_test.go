package group_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/testkit/logrec"
	"github.com/epochal/epochal/stm"
)

// failingReads is the mem backend whose ReadDir fails while fail is set.
type failingReads struct {
	*mem.Backend
	fail atomic.Bool
}

var errRead = errors.New("read refused (test)")

func (f *failingReads) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	if f.fail.Load() {
		return backend.DirState{}, errRead
	}
	return f.Backend.ReadDir(ctx, req)
}

// A member's watcher that cannot read its group logs it (once per run of
// failures) to the logger of the STM over which it joined... here the
// logger given with WithLogger, over a driver.
func TestWatcherReadFailureLogged(t *testing.T) {
	ctx := context.Background()
	be := &failingReads{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	g, err := group.Join(ctx, be, "log/g", "m1", group.WithLogger(log), group.WithLease(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Leave(ctx) })
	be.fail.Store(true)
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	rec, ok := h.Wait(wctx, func(r logrec.Record) bool {
		return r.Message == "epochal: a member's watcher cannot read its group; it tries again"
	})
	be.fail.Store(false)
	if !ok {
		t.Fatalf("no read failure logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRead) || rec.Attrs["group"] != "log/g" || rec.Attrs["member"] != "m1" {
		t.Fatalf("record %+v", rec)
	}
}

// Over an *stm.STM, a group watch logs to the STM's logger.
func TestWatchLogsToTheSTMsLogger(t *testing.T) {
	ctx := context.Background()
	be := &failingReads{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	s, err := stm.Open(ctx, be, stm.WithLogger(log), stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	snap, err := group.MembersAt(ctx, s, "log/w")
	if err != nil {
		t.Fatal(err)
	}
	be.fail.Store(true)
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	if _, err := group.Watch(wctx, s, "log/w", snap, group.WithLease(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	rec, ok := h.Wait(wctx, func(r logrec.Record) bool {
		return r.Message == "epochal: a group watch cannot read its group; it tries again"
	})
	if !ok {
		t.Fatalf("no read failure logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRead) {
		t.Fatalf("record %+v", rec)
	}
}

// A member joined over a driver, and a watch over an STM, without a
// logger of their own log to slog.Default() as it is at the time of the
// record, not at Join or Watch.
func TestLogsToDefaultAtRecord(t *testing.T) {
	ctx := context.Background()
	be := &failingReads{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	s, err := stm.Open(ctx, be, stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	g, err := group.Join(ctx, be, "log/d", "m1", group.WithLease(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Leave(ctx) })
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	snap, err := group.MembersAt(ctx, s, "log/d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := group.Watch(wctx, s, "log/d", snap, group.WithLease(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	h, log := logrec.New()
	logrec.SetDefault(t, log)
	be.fail.Store(true)
	defer be.fail.Store(false)
	for _, msg := range []string{
		"epochal: a member's watcher cannot read its group; it tries again",
		"epochal: a group watch cannot read its group; it tries again",
	} {
		if _, ok := h.Wait(wctx, func(r logrec.Record) bool { return r.Message == msg && r.Attrs["group"] == "log/d" }); !ok {
			t.Fatalf("not logged to slog.Default(): %q; records: %v", msg, h.Records())
		}
	}
}

// entryFaults is the mem backend whose AddEntry (an unknown outcome),
// SetEntry and WaitEntries fail while their switches are set, and which
// counts ReadDir calls.
type entryFaults struct {
	*mem.Backend
	add, set, wait atomic.Bool
	reads          atomic.Int64
}

var errEntry = errors.New("entry call refused (test)")

func (f *entryFaults) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	if f.add.Load() {
		return backend.Entry{}, errEntry
	}
	return f.Backend.AddEntry(ctx, req)
}

func (f *entryFaults) SetEntry(ctx context.Context, session, dir, name string, data []byte) error {
	if f.set.Load() {
		return errEntry
	}
	return f.Backend.SetEntry(ctx, session, dir, name, data)
}

func (f *entryFaults) WaitEntries(ctx context.Context, dir, name string, max time.Duration) error {
	if f.wait.Load() {
		return errEntry
	}
	return f.Backend.WaitEntries(ctx, dir, name, max)
}

func (f *entryFaults) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	f.reads.Add(1)
	return f.Backend.ReadDir(ctx, req)
}

// joinFaulty joins member m1 of group name over a fresh entryFaults with
// a logger of its own.
func joinFaulty(t *testing.T, name string) (*entryFaults, *group.Group, *logrec.Handler) {
	t.Helper()
	ctx := context.Background()
	be := &entryFaults{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	g, err := group.Join(ctx, be, name, "m1", group.WithLogger(log), group.WithLease(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.add.Store(false); be.set.Store(false); be.wait.Store(false); _ = g.Leave(ctx) })
	return be, g, h
}

// waitRecord waits (a bound, not a timing) for a record of msg at level
// about group name and member m1, with errEntry.
func waitRecord(t *testing.T, h *logrec.Handler, level slog.Level, name, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, ok := h.Wait(ctx, func(r logrec.Record) bool { return r.Message == msg })
	if !ok {
		t.Fatalf("not logged: %q; records: %v", msg, h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errEntry) || rec.Level != level || rec.Attrs["group"] != name || rec.Attrs["member"] != "m1" {
		t.Fatalf("record %+v", rec)
	}
}

// A member's entry deleted while its session lives is added again by the
// watcher (keep); when that add fails, it is logged (once per run of
// failures).
func TestKeepReaddFailureLogged(t *testing.T) {
	ctx := context.Background()
	be, _, h := joinFaulty(t, "log/keep")
	es, err := be.Entries(ctx, group.DirPrefix+"log/keep", true)
	if err != nil || len(es) != 1 {
		t.Fatalf("Entries = %v, %v", es, err)
	}
	be.add.Store(true)
	if err := be.Backend.RemoveEntry(ctx, es[0].Session.ID, group.DirPrefix+"log/keep", "m1"); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, h, slog.LevelWarn, "log/keep", "epochal: a member's entry is gone and adding it again failed; the next read tries again")
	// Once per run: the repeats are Debug.
	if n := h.AtLeast(slog.LevelWarn); n != 1 {
		t.Errorf("%d records at Warn, want 1: %v", n, h.Records())
	}
}

// Data an Update could not send is sent by the watcher after its next
// read; when that fails too, it is logged.
func TestCatchUpFailureLogged(t *testing.T) {
	ctx := context.Background()
	be, g, h := joinFaulty(t, "log/catchup")
	be.set.Store(true)
	if err := g.Update(ctx, "new"); !errors.Is(err, errEntry) {
		t.Fatalf("Update = %v, want the refusal", err)
	}
	waitRecord(t, h, slog.LevelWarn, "log/catchup", "epochal: a member could not send its newest data; the next read tries again")
}

// A wait for the group's changes that keeps failing at once while reads
// succeed is logged, and the watcher pauses between reads instead of
// spinning.
func TestWaitFailureBacksOff(t *testing.T) {
	ctx := context.Background()
	be, _, h := joinFaulty(t, "log/wait")
	snap, err := group.MembersAt(ctx, be, "log/wait")
	if err != nil {
		t.Fatal(err)
	}
	hw, log := logrec.New()
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if _, err := group.Watch(wctx, be, "log/wait", snap, group.WithLogger(log), group.WithLease(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	be.wait.Store(true)
	waitRecord(t, h, slog.LevelWarn, "log/wait", "epochal: a member's watcher cannot wait for its group's changes; it reads it again after a pause")
	bctx, bcancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer bcancel()
	rec, ok := hw.Wait(bctx, func(r logrec.Record) bool {
		return r.Message == "epochal: a group watch cannot wait for its group's changes; it reads it again after a pause"
	})
	if !ok {
		t.Fatalf("the group watch's failed wait not logged: %v", hw.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errEntry) || rec.Level != slog.LevelWarn || rec.Attrs["group"] != "log/wait" {
		t.Fatalf("record %+v", rec)
	}
	// Two watchers, each pausing at least 10ms (up to a third of the
	// lease) between reads: a few dozen reads in half a second at most,
	// where a spinning loop makes thousands.
	before := be.reads.Load()
	time.Sleep(500 * time.Millisecond)
	if n := be.reads.Load() - before; n > 200 {
		t.Errorf("%d reads in 500ms while every wait fails: the watchers spin", n)
	}
}

// stallingAdds is the mem backend whose AddEntry waits for its ctx to end.
type stallingAdds struct{ *mem.Backend }

func (s stallingAdds) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	<-ctx.Done()
	return backend.Entry{}, ctx.Err()
}

// A Join that gives up at its deadline is no background failure: the
// removal of the entry it may have added, made with the ended ctx, is
// left to the background (which logs it if it keeps failing) and logged
// at Debug only.
func TestJoinGiveUpLogsNoWarn(t *testing.T) {
	be := stallingAdds{mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := group.Join(ctx, be, "log/join", "m1", group.WithLogger(log)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join = %v, want DeadlineExceeded", err)
	}
	for _, r := range h.Records() {
		if r.Level >= slog.LevelWarn {
			t.Errorf("logged at %v: %s %v", r.Level, r.Message, r.Attrs)
		}
	}
}
