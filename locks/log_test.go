package locks_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/internal/testkit/logrec"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/stm"
)

// failingEntries is the mem backend whose AddEntry (an unknown outcome)
// and RemoveEntry fail while their switches are set.
type failingEntries struct {
	*mem.Backend
	add, remove atomic.Bool
}

var errEntry = errors.New("entry call refused (test)")

func (f *failingEntries) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	if f.add.Load() {
		return backend.Entry{}, errEntry
	}
	return f.Backend.AddEntry(ctx, req)
}

func (f *failingEntries) RemoveEntry(ctx context.Context, session, dir, name string) error {
	if f.remove.Load() {
		return errEntry
	}
	return f.Backend.RemoveEntry(ctx, session, dir, name)
}

// A lock made over an STM without a logger of its own logs to
// slog.Default() as it is at the time of the record, not at NewMutex.
func TestLockLogsToDefaultAtRecord(t *testing.T) {
	ctx := context.Background()
	be := &failingEntries{Backend: mem.New()}
	t.Cleanup(func() { _ = be.Close() })
	s, err := stm.Open(ctx, be, stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m, err := locks.NewMutex(s, "log/default")
	if err != nil {
		t.Fatal(err)
	}
	h, log := logrec.New()
	logrec.SetDefault(t, log)
	be.add.Store(true)
	be.remove.Store(true)
	t.Cleanup(func() { be.remove.Store(false) }) // let the background removal end
	if err := m.Lock(ctx); !errors.Is(err, errEntry) {
		t.Fatalf("Lock = %v, want the refused add", err)
	}
	for _, r := range h.Records() {
		if r.Message == "epochal: a lock could not yet remove an entry whose addition failed; it keeps trying" && r.Attrs["lock"] == "log/default" {
			return
		}
	}
	t.Fatalf("nothing logged to slog.Default(): %v", h.Records())
}

// A TryLock or Lock that gives up at its deadline while another holds the
// lock is no failure: nothing is logged at Warn (its entry's removal,
// made after the deadline, used to be given the expired ctx and logged
// that ctx's error).
func TestGiveUpAtDeadlineLogsNoWarn(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	holder, err := locks.NewMutex(be, "log/held")
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Unlock(ctx) })
	h, log := logrec.New()
	m, err := locks.NewMutex(be, "log/held", locks.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		ok, err := m.TryLock(tctx)
		cancel()
		// (On a loaded machine the deadline may pass before TryLock has
		// looked: it then says so. Either way it gave up.)
		if ok || err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("TryLock = %v, %v; want false, nil (or DeadlineExceeded)", ok, err)
		}
		lctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err = m.Lock(lctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v, want DeadlineExceeded", err)
		}
	}
	for _, r := range h.Records() {
		if r.Level >= slog.LevelWarn {
			t.Errorf("logged at %v: %s %v", r.Level, r.Message, r.Attrs)
		}
	}
	// The entries given up are gone: the holder's release lets another in.
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Lock(tctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(tctx); err != nil {
		t.Fatal(err)
	}
}

// An orderly shutdown is no loss: a lock taken and released, whose
// session lingers in the pool, then its backend closed: the session ends
// without a Warn and is not counted in epochal.session.lost, nor is its
// idle close.
func TestBackendClosedIsNoLoss(t *testing.T) {
	ctx := context.Background()
	linger := lease.Linger
	lease.Linger = 200 * time.Millisecond
	t.Cleanup(func() { lease.Linger = linger })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	be := mem.New()
	h, log := logrec.New()
	m, err := locks.NewMutex(be, "log/closed", locks.WithLogger(log), locks.WithMeterProvider(mp), locks.WithLease(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	// The session's next renewal (a third of the lease) finds the backend
	// closed, and its idle close comes after Linger.
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	if _, ok := h.Wait(wctx, func(r logrec.Record) bool {
		return r.Message == "epochal: session ended: its backend was closed" || r.Level >= slog.LevelWarn
	}); !ok {
		t.Fatalf("the session's end was not logged: %v", h.Records())
	}
	time.Sleep(2 * lease.Linger)
	for _, r := range h.Records() {
		if r.Level >= slog.LevelWarn {
			t.Errorf("logged at %v: %s %v", r.Level, r.Message, r.Attrs)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != engine.MetricSessionLost {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
				if dp.Value != 0 {
					t.Errorf("%s = %d, want 0", engine.MetricSessionLost, dp.Value)
				}
			}
		}
	}
}
