package refs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/testkit/logrec"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// refusing is the mem backend whose Subscribe fails, and whose
// CommitOnePhase is refused (certainly not applied), while their
// switches are set.
type refusing struct {
	*mem.Backend
	subscribe, commit atomic.Bool
}

var errRefused = errors.New("refused (test)")

func (r *refusing) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if r.subscribe.Load() {
		return nil, errRefused
	}
	return r.Backend.Subscribe(ctx, name)
}

func (r *refusing) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (backend.OnePhaseResult, error) {
	if r.commit.Load() {
		return backend.OnePhaseResult{}, fmt.Errorf("%w: %w", errRefused, backend.ErrNotApplied)
	}
	return r.Backend.CommitOnePhase(ctx, req)
}

func openRefusing(t *testing.T) (*refusing, *stm.STM, *logrec.Handler) {
	t.Helper()
	be := &refusing{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	s, err := stm.Open(context.Background(), be, stm.WithLogger(log), stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return be, s, h
}

// find returns the first record of msg, failing the test without one.
func find(t *testing.T, h *logrec.Handler, msg string) logrec.Record {
	t.Helper()
	for _, r := range h.Records() {
		if r.Message == msg {
			return r
		}
	}
	t.Fatalf("not logged: %q; records: %v", msg, h.Records())
	return logrec.Record{}
}

// A Deref that waits for a promise and cannot subscribe to its changes
// polls, and logs the failure (once per wait).
func TestPromiseSubscribeFailureLogged(t *testing.T) {
	ctx := context.Background()
	be, s, h := openRefusing(t)
	p, err := refs.NewPromise[int](ctx, s, "log/promise")
	if err != nil {
		t.Fatal(err)
	}
	be.subscribe.Store(true)
	// Two waits: a cause that persists is one Warn per ref, not per wait.
	for range 2 {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := p.Deref(dctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Deref = %v, want DeadlineExceeded", err)
		}
		cancel()
	}
	rec := find(t, h, "epochal: a wait for a ref cannot subscribe to its changes; it polls instead")
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRefused) || rec.Attrs["ref"] != "log/promise" || rec.Level != slog.LevelWarn {
		t.Fatalf("record %+v", rec)
	}
	if n := h.AtLeast(slog.LevelWarn); n != 1 {
		t.Errorf("%d records at Warn, want 1: %v", n, h.Records())
	}
}

// A delay whose body failed (RetryErrors) releases its claim; a release
// that fails is logged: the next caller waits for the claim's lease.
func TestDelayClaimReleaseFailureLogged(t *testing.T) {
	ctx := context.Background()
	be, s, h := openRefusing(t)
	errBody := errors.New("body failed (test)")
	d, err := refs.NewDelay(ctx, s, "log/delay", func(context.Context) (int, error) {
		be.commit.Store(true) // the release is refused
		return 0, errBody
	}, refs.RetryErrors())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deref(ctx); !errors.Is(err, errBody) {
		t.Fatalf("Deref = %v, want the body's error", err)
	}
	rec := find(t, h, "epochal: a delay could not release its claim; another caller takes it over once its lease runs out")
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errRefused) || rec.Attrs["ref"] != "log/delay" || rec.Level != slog.LevelWarn {
		t.Fatalf("record %+v", rec)
	}
}
