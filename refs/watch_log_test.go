package refs_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/testkit/logrec"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

var errUndecodable = errors.New("undecodable (test)")

// picky is msgpack that refuses to decode one encoding.
type picky struct{ bad []byte }

func (p picky) Marshal(v any) ([]byte, error) { return refs.Msgpack.Marshal(v) }
func (p picky) Unmarshal(data []byte, v any) error {
	if bytes.Equal(data, p.bad) {
		return errUndecodable
	}
	return refs.Msgpack.Unmarshal(data, v)
}

// observedSTM opens an STM on mem whose logs go to a recorder and whose
// metrics to a manual reader.
func observedSTM(t *testing.T) (*stm.STM, *mem.Backend, *logrec.Handler, *sdkmetric.ManualReader) {
	t.Helper()
	ctx := context.Background()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	h, log := logrec.New()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	s, err := stm.Open(ctx, be, stm.WithLogger(log), stm.WithSweepInterval(0), stm.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, be, h, reader
}

// A value a watcher cannot decode is skipped and logged, with the ref and
// the error, to the STM's logger (stm.WithLogger); the next is delivered,
// announced as a gap (its old value is the undecodable one): counted in
// epochal.watch.gaps.
func TestWatchDecodeFailureLogged(t *testing.T) {
	ctx := context.Background()
	s, _, h, reader := observedSTM(t)
	bad, err := refs.Msgpack.Marshal(13)
	if err != nil {
		t.Fatal(err)
	}
	r, err := refs.New(ctx, s, "log/w", 0, refs.WithCodec(picky{bad: bad}))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 10)
	r.AddWatch("w", func(_ string, _ *refs.Ref[int], _, new int) { got <- new })
	defer r.RemoveWatch("w")
	for _, v := range []int{13, 14} {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	select {
	case v := <-got:
		if v != 14 {
			t.Fatalf("delivered %d, want 14 (13 skipped)", v)
		}
	case <-wctx.Done():
		t.Fatal("14 was never delivered")
	}
	rec, ok := h.Wait(wctx, func(r logrec.Record) bool {
		return r.Message == "epochal: watch skipped a value it cannot decode"
	})
	if !ok {
		t.Fatalf("no decode failure logged: %v", h.Records())
	}
	if e, _ := rec.Attrs["err"].(error); !errors.Is(e, errUndecodable) || rec.Attrs["ref"] != "log/w" {
		t.Fatalf("record %+v", rec)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	gaps := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == engine.MetricWatchGaps {
				gaps = 0
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					gaps += dp.Value
				}
			}
		}
	}
	if gaps != 1 {
		t.Fatalf("%s = %d, want 1", engine.MetricWatchGaps, gaps)
	}
}

// undecodableFrom is msgpack that refuses to decode an int of at least
// min.
type undecodableFrom struct{ min int }

func (u undecodableFrom) Marshal(v any) ([]byte, error) { return refs.Msgpack.Marshal(v) }
func (u undecodableFrom) Unmarshal(data []byte, v any) error {
	if err := refs.Msgpack.Unmarshal(data, v); err != nil {
		return err
	}
	if p, ok := v.(*int); ok && *p >= u.min {
		return errUndecodable
	}
	return nil
}

// A gap is announced (OnGap, epochal.watch.gaps) even when the first
// version after the hole is skipped because it cannot be decoded: a
// watcher stuck in its call for 1 while more versions commit than the
// feed buffers, with history trimmed, every later value undecodable.
// The gap used to be dropped with the skipped value.
func TestWatchGapBeforeSkippedValue(t *testing.T) {
	ctx := context.Background()
	s, be, h, reader := observedSTM(t)
	r, err := refs.New(ctx, s, "log/gap", 0, refs.WithCodec(undecodableFrom{min: 2}))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	calls := make(chan int, 10)
	gaps := make(chan [2]clock.Point, backend.FeedLimit+200)
	r.AddWatch("w", func(_ string, _ *refs.Ref[int], _, new int) {
		calls <- new
		if new == 1 {
			<-release
		}
	}, refs.OnGap(func(_ string, from, to clock.Point) { gaps <- [2]clock.Point{from, to} }))
	defer r.RemoveWatch("w")
	var lastPoint clock.Point
	set := func(v int) {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			r.Set(tx, v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(1)
	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing
	defer cancel()
	select {
	case <-calls: // the watcher is now stuck in the call for 1
	case <-wctx.Done():
		t.Fatal("no first watch call")
	}
	const last = backend.FeedLimit + 100
	for v := 2; v <= last; v++ {
		set(v)
	}
	vr, err := be.Versions(ctx, "log/gap")
	if err != nil {
		t.Fatal(err)
	}
	lastPoint = vr.Versions[0].Point
	close(release)
	// Every later value is skipped: wait for the newest's skip.
	if _, ok := h.Wait(wctx, func(rec logrec.Record) bool {
		return rec.Message == "epochal: watch skipped a value it cannot decode" && rec.Attrs["point"] == lastPoint
	}); !ok {
		t.Fatalf("the newest value's skip was never logged; %d records", len(h.Records()))
	}
	select {
	case g := <-gaps:
		if g[1] <= g[0]+1 {
			t.Errorf("gap %v, want one that skips versions", g)
		}
	default:
		t.Fatal("no gap notice for the versions the watcher missed")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == engine.MetricWatchGaps {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					n += dp.Value
				}
			}
		}
	}
	if n < 1 {
		t.Errorf("%s = %d, want at least 1", engine.MetricWatchGaps, n)
	}
}
