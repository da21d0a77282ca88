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

// setDefault makes l slog's default logger until the test ends.
func setDefault(t *testing.T, l *slog.Logger) {
	prev := slog.Default()
	slog.SetDefault(l)
	t.Cleanup(func() { slog.SetDefault(prev) })
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
	setDefault(t, log)
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
