package locks_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/stm"
)

// hist returns the count and sum of the histogram name's points whose
// attributes include kv.
func hist(t *testing.T, r *sdkmetric.ManualReader, name string, kv ...attribute.KeyValue) (uint64, float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n uint64
	var sum float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("%s: unit %q, want s", name, m.Unit)
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				ok := true
				for _, want := range kv {
					if v, found := dp.Attributes.Value(want.Key); !found || v != want.Value {
						ok = false
					}
				}
				if ok {
					n += dp.Count
					sum += dp.Sum
				}
			}
		}
	}
	return n, sum
}

// A lock's waits and holds are measured: a TryLock that waits for a
// holder until its deadline (gave_up, at least that long), then a Lock that
// waits for the holder's Unlock (acquired), and both holds. The mutex is
// made over an *stm.STM: it takes the STM's meter provider.
func TestLockWaitMetrics(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	be := mem.New()
	t.Cleanup(func() { _ = be.Close() })
	s, err := stm.Open(ctx, be, stm.WithSweepInterval(0), stm.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m, err := locks.NewMutex(s, "otel/m", locks.WithLease(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	write := attribute.String(engine.AttrLockMode, "write")
	const patience = 50 * time.Millisecond
	tried := result(func() error {
		tctx, cancel := context.WithTimeout(ctx, patience)
		defer cancel()
		if ok, err := m.TryLock(tctx); ok || err != nil {
			t.Errorf("TryLock of a held lock = %v, %v; want false, nil", ok, err)
		}
		return nil
	})
	<-tried
	n, sum := hist(t, reader, engine.MetricLockWait, write, attribute.String(engine.AttrLockOutcome, "gave_up"))
	if n != 1 || sum < patience.Seconds() {
		t.Fatalf("gave_up waits: %d, %.3fs; want 1 of at least %v (its deadline)", n, sum, patience)
	}
	locked := make(chan error, 1)
	go func() {
		err := m.Lock(ctx)
		if err == nil {
			err = m.Unlock(ctx)
		}
		locked <- err
	}()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if n, _ := hist(t, reader, engine.MetricLockWait, write, attribute.String(engine.AttrLockOutcome, "acquired")); n != 2 {
		t.Errorf("acquired waits: %d, want 2", n)
	}
	if n, _ := hist(t, reader, engine.MetricLockHeld, write); n != 2 {
		t.Errorf("holds: %d, want 2", n)
	}
}
