package stm_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tnoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// instrumented opens an STM on mem whose metrics and spans go to an
// in-memory reader and recorder.
func instrumented(t *testing.T, opts ...stm.Option) (*stm.STM, *sdkmetric.ManualReader, *tracetest.SpanRecorder) {
	t.Helper()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	return instrumentedOn(t, be, opts...)
}

// instrumentedOn is instrumented over be.
func instrumentedOn(t *testing.T, be backend.Driver, opts ...stm.Option) (*stm.STM, *sdkmetric.ManualReader, *tracetest.SpanRecorder) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()); _ = tp.Shutdown(context.Background()) })
	s, err := stm.Open(context.Background(), be, append([]stm.Option{stm.WithSweepInterval(0), stm.WithMeterProvider(mp), stm.WithTracerProvider(tp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, reader, rec
}

// sum returns the value of the counter name's data point whose attributes
// include kv (any point when kv is empty).
func sum(t *testing.T, r *sdkmetric.ManualReader, name string, kv ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is a %T, want a Sum[int64]", name, m.Data)
			}
			for _, dp := range s.DataPoints {
				if has(dp.Attributes, kv) {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// histCount returns how many values the histogram name recorded with kv,
// and checks its unit.
func histCount(t *testing.T, r *sdkmetric.ManualReader, name, unit string, kv ...attribute.KeyValue) uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if m.Unit != unit {
				t.Errorf("%s: unit %q, want %q", name, m.Unit, unit)
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("%s is a %T, want a Histogram[float64]", name, m.Data)
			}
			for _, dp := range h.DataPoints {
				if has(dp.Attributes, kv) {
					n += dp.Count
				}
			}
		}
	}
	return n
}

func has(set attribute.Set, kv []attribute.KeyValue) bool {
	for _, want := range kv {
		if v, ok := set.Value(want.Key); !ok || v != want.Value {
			return false
		}
	}
	return true
}

// spanAttr returns the attribute key of span s.
func spanAttr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTelemetryCommitted(t *testing.T) {
	for _, general := range []bool{false, true} {
		name, path := "one_phase", "one_phase"
		var opts []stm.Option
		if general {
			name, path = "general", "general"
			opts = append(opts, engine.WithGeneralPath())
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, reader, rec := instrumented(t, opts...)
			a, err := refs.New(ctx, s, "otel/a", 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				a.Alter(tx, func(v int) int { return v + 1 })
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got := sum(t, reader, engine.MetricCommits, attribute.String(engine.AttrPath, path)); got != 1 {
				t.Errorf("%s{path=%s} = %d, want 1", engine.MetricCommits, path, got)
			}
			if got := histCount(t, reader, engine.MetricCommitDuration, "s", attribute.String(engine.AttrPath, path)); got != 1 {
				t.Errorf("%s{path=%s} count = %d, want 1", engine.MetricCommitDuration, path, got)
			}
			if got := sum(t, reader, engine.MetricRetries); got != 0 {
				t.Errorf("%s = %d, want 0", engine.MetricRetries, got)
			}
			spans := rec.Ended()
			var dosync sdktrace.ReadOnlySpan
			byName := map[string]sdktrace.ReadOnlySpan{}
			for _, sp := range spans {
				byName[sp.Name()] = sp
				if sp.Name() == engine.SpanDosync {
					dosync = sp
				}
			}
			if dosync == nil {
				t.Fatalf("no %s span among %d", engine.SpanDosync, len(spans))
			}
			if v, _ := spanAttr(dosync, engine.AttrAttempts); v.AsInt64() != 1 {
				t.Errorf("attempts = %v, want 1", v.Emit())
			}
			if v, _ := spanAttr(dosync, engine.AttrOutcome); v.AsString() != "committed" {
				t.Errorf("outcome = %v, want committed", v.Emit())
			}
			// Alter's read draws the read point (no span of its own).
			steps := []string{engine.SpanOnePhase}
			if general {
				steps = []string{engine.SpanRecord, engine.SpanLock, engine.SpanCommitRecord, engine.SpanResolve}
			}
			for _, n := range steps {
				sp := byName[n]
				if sp == nil {
					t.Errorf("no %s span", n)
					continue
				}
				if sp.Parent().SpanID() != dosync.SpanContext().SpanID() {
					t.Errorf("%s is not a child of the Dosync's span", n)
				}
			}
		})
	}
}

// A Dosync whose first attempt meets a newer version retries: one retry,
// one conflict "newer", a span with attempts 2.
func TestTelemetryRetried(t *testing.T) {
	ctx := context.Background()
	s, reader, rec := instrumented(t)
	a, err := refs.New(ctx, s, "otel/a", 1)
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	if err := s.Dosync(ctx, func(tx *txn.Tx) error {
		runs++
		v := a.Get(tx)
		if runs == 1 {
			// Another transaction commits after this one's read point.
			if err := s.Dosync(context.Background(), func(tx *txn.Tx) error { a.Set(tx, 100); return nil }); err != nil {
				return err
			}
		}
		a.Set(tx, v+1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("the function ran %d times, want 2", runs)
	}
	if got := sum(t, reader, engine.MetricRetries); got != 1 {
		t.Errorf("%s = %d, want 1", engine.MetricRetries, got)
	}
	if got := sum(t, reader, engine.MetricConflicts, attribute.String(engine.AttrReason, engine.ReasonNewer)); got != 1 {
		t.Errorf("%s{reason=newer} = %d, want 1", engine.MetricConflicts, got)
	}
	if got := sum(t, reader, engine.MetricCommits, attribute.String(engine.AttrPath, "one_phase")); got != 2 {
		t.Errorf("%s{one_phase} = %d, want 2 (the inner and the retried outer)", engine.MetricCommits, got)
	}
	var attempts []int64
	for _, sp := range rec.Ended() {
		if sp.Name() == engine.SpanDosync {
			v, _ := spanAttr(sp, engine.AttrAttempts)
			attempts = append(attempts, v.AsInt64())
		}
	}
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("Dosync spans' attempts = %v, want [1 2] (the inner, then the outer)", attempts)
	}
}

// A blind write draws its read point at commit, in a span of its own.
func TestTelemetryReadPointSpan(t *testing.T) {
	ctx := context.Background()
	s, _, rec := instrumented(t)
	a, err := refs.New(ctx, s, "otel/a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Set(tx, 2); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, sp := range rec.Ended() {
		if sp.Name() == engine.SpanReadPoint {
			return
		}
	}
	t.Fatalf("no %s span", engine.SpanReadPoint)
}

// Spans on while transactions of several goroutines collide, on both
// paths and with local turns (run with -race: the step spans swap the
// attempt's ctx): every increment lands, and each Dosync has its span.
func TestTelemetryConcurrent(t *testing.T) {
	for _, general := range []bool{false, true} {
		opts := []stm.Option{stm.WithLocalTurns()}
		if general {
			opts = append(opts, engine.WithGeneralPath())
		}
		ctx := context.Background()
		s, reader, rec := instrumented(t, opts...)
		a, err := refs.New(ctx, s, "otel/a", 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := refs.New(ctx, s, "otel/b", 0)
		if err != nil {
			t.Fatal(err)
		}
		const workers, each = 4, 25
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			go func() {
				for i := 0; i < each; i++ {
					if err := s.Dosync(ctx, func(tx *txn.Tx) error {
						a.Alter(tx, func(v int) int { return v + 1 })
						b.Commute(tx, func(v int) int { return v + 1 })
						return nil
					}); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for w := 0; w < workers; w++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		va, err := a.Deref(ctx)
		if err != nil {
			t.Fatal(err)
		}
		vb, err := b.Deref(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if va != workers*each || vb != workers*each {
			t.Fatalf("general %v: a = %d, b = %d, want %d", general, va, vb, workers*each)
		}
		// A fast-path commit of stale commutes may finish on the general
		// path (Escalated): count both.
		got := sum(t, reader, engine.MetricCommits, attribute.String(engine.AttrPath, "one_phase")) +
			sum(t, reader, engine.MetricCommits, attribute.String(engine.AttrPath, "general"))
		if got != workers*each {
			t.Errorf("general %v: %d commits counted, want %d", general, got, workers*each)
		}
		committed := 0
		for _, sp := range rec.Ended() {
			if v, _ := spanAttr(sp, engine.AttrOutcome); sp.Name() == engine.SpanDosync && v.AsString() == "committed" {
				committed++
			}
		}
		if committed < workers*each {
			t.Errorf("general %v: %d committed Dosync spans, want at least %d", general, committed, workers*each)
		}
	}
}

// With no WithTracerProvider, the global provider is looked up at each
// Dosync: one installed after Open gets the spans from then on. (It sets
// the process's global provider: a no-op one at the end.)
func TestTelemetryGlobalTracerInstalledLater(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	s, err := stm.Open(ctx, be, stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	a, err := refs.New(ctx, s, "otel/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	inc := func() {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Alter(tx, func(v int) int { return v + 1 }); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	inc() // before: the placeholder, no span anywhere
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(tnoop.NewTracerProvider()); _ = tp.Shutdown(ctx) })
	inc()
	n := 0
	for _, sp := range rec.Ended() {
		if sp.Name() == engine.SpanDosync {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d Dosync spans after the provider was installed, want 1", n)
	}
}

// A commit whose outcome had to be looked up (the commit's reply lost,
// FailAfter) and that did commit is counted as any other: the metric and
// the duration histogram agree with Stats on both paths.
func TestTelemetryCommittedAfterLookup(t *testing.T) {
	for _, general := range []bool{false, true} {
		name, path, op := "one_phase", "one_phase", faulty.OpCommitOnePhase
		var opts []stm.Option
		if general {
			name, path, op = "general", "general", faulty.OpCommitRecord
			opts = append(opts, engine.WithGeneralPath())
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			be := mem.New()
			t.Cleanup(func() { _ = be.Close() })
			f := faulty.Wrap(be)
			s, reader, _ := instrumentedOn(t, f, opts...)
			a, err := refs.New(ctx, s, "otel/a", 1)
			if err != nil {
				t.Fatal(err)
			}
			f.SetHook(func(c faulty.Call) faulty.Fault {
				if c.Op == op {
					return faulty.FailAfter
				}
				return faulty.Pass
			})
			if err := s.Dosync(ctx, func(tx *txn.Tx) error {
				a.Alter(tx, func(v int) int { return v + 1 })
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if st.Commits != 1 || st.Unknown != 1 {
				t.Fatalf("Stats: %d commits, %d unknown, want 1 and 1", st.Commits, st.Unknown)
			}
			if st.OnePhase+st.General != st.Commits {
				t.Errorf("Stats: OnePhase %d + General %d != Commits %d", st.OnePhase, st.General, st.Commits)
			}
			if got := sum(t, reader, engine.MetricCommits, attribute.String(engine.AttrPath, path)); got != st.Commits {
				t.Errorf("%s{path=%s} = %d, want Stats.Commits = %d", engine.MetricCommits, path, got, st.Commits)
			}
			if got := histCount(t, reader, engine.MetricCommitDuration, "s", attribute.String(engine.AttrPath, path)); got != uint64(st.Commits) {
				t.Errorf("%s{path=%s} count = %d, want %d", engine.MetricCommitDuration, path, got, st.Commits)
			}
		})
	}
}

// A Dosync whose function panics ends its span with outcome "panic" and
// status Error, and the panic goes on to the caller with its value.
func TestTelemetryPanicSpan(t *testing.T) {
	ctx := context.Background()
	s, _, rec := instrumented(t)
	a, err := refs.New(ctx, s, "otel/a", 1)
	if err != nil {
		t.Fatal(err)
	}
	type boom struct{}
	func() {
		defer func() {
			if v := recover(); v != (boom{}) {
				t.Errorf("recovered %v, want the function's panic", v)
			}
		}()
		_ = s.Dosync(ctx, func(tx *txn.Tx) error {
			a.Set(tx, 2)
			panic(boom{})
		})
		t.Error("Dosync returned")
	}()
	var dosync sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Name() == engine.SpanDosync {
			dosync = sp
		}
	}
	if dosync == nil {
		t.Fatalf("no %s span ended", engine.SpanDosync)
	}
	if v, _ := spanAttr(dosync, engine.AttrOutcome); v.AsString() != "panic" {
		t.Errorf("outcome = %q, want panic", v.AsString())
	}
	if dosync.Status().Code != codes.Error {
		t.Errorf("status = %v, want Error", dosync.Status())
	}
	if v, _ := a.Deref(ctx); v != 1 {
		t.Errorf("a = %d after the panic, want 1", v)
	}
}

// TestDataLostAfterApplyIsUnknown: a commit step that applied and whose
// resend then met lost data (faulty.LostAfter, as a go-redis retry meets
// a Redis failover) ends the Dosync (or an atom's Swap) with an unknown
// outcome that is data lost too, never a certain refusal: a jepsen run
// read such a "failed" append (G1a) before this. Each path: one-phase,
// general, an atom's compare-and-set.
func TestDataLostAfterApplyIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   faulty.Op
		opts []stm.Option
		atom bool
	}{
		{"one_phase", faulty.OpCommitOnePhase, nil, false},
		{"general", faulty.OpCommitRecord, []stm.Option{engine.WithGeneralPath()}, false},
		{"atom", faulty.OpCommitOnePhase, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			be := mem.New()
			t.Cleanup(func() { _ = be.Close() })
			f := faulty.Wrap(be)
			s, err := stm.Open(ctx, f, append([]stm.Option{stm.WithSweepInterval(0)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			a, err := refs.New(ctx, s, "lost/a", 1)
			if err != nil {
				t.Fatal(err)
			}
			at, err := refs.NewAtom(ctx, s, "lost/atom", 1)
			if err != nil {
				t.Fatal(err)
			}
			f.SetHook(func(c faulty.Call) faulty.Fault {
				if c.Op == tc.op {
					return faulty.LostAfter
				}
				return faulty.Pass
			})
			if tc.atom {
				_, err = at.Swap(ctx, func(v int) int { return v + 1 })
			} else {
				err = s.Dosync(ctx, func(tx *txn.Tx) error {
					a.Alter(tx, func(v int) int { return v + 1 })
					return nil
				})
			}
			if !errors.Is(err, stm.ErrOutcomeUnknown) || !errors.Is(err, stm.ErrDataLost) || errors.Is(err, backend.ErrNotApplied) {
				t.Fatalf("error %v: want an unknown outcome (%v), data lost (%v), and not 'not applied' (%v)",
					err, errors.Is(err, stm.ErrOutcomeUnknown), errors.Is(err, stm.ErrDataLost), errors.Is(err, backend.ErrNotApplied))
			}
			if !errors.Is(s.Err(), stm.ErrDataLost) {
				t.Errorf("the STM goes on after data lost: Err() = %v", s.Err())
			}
			// A later Dosync is refused: certainly not applied, and not
			// the first one's unknown outcome.
			err = s.Dosync(ctx, func(tx *txn.Tx) error { a.Alter(tx, func(v int) int { return v + 1 }); return nil })
			if !errors.Is(err, stm.ErrDataLost) || !errors.Is(err, backend.ErrNotApplied) || errors.Is(err, stm.ErrOutcomeUnknown) {
				t.Errorf("a Dosync after data lost: %v; want data lost, not applied, and not an unknown outcome", err)
			}
		})
	}
}
