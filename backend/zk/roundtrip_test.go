package zk_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

func init() {
	standaloneTests = append(standaloneTests, serverTest{"RoundTrips", testRoundTrips})
}

// testRoundTrips: the driver counts an uncontended two-ref transfer as 3
// round trips (the read point with the clock and epoch nodes, the two refs
// read together, the commit's Multi), and 2 when it prefetches both refs;
// the STM reports the driver's count as epochal.backend.round_trips.
func testRoundTrips(t *testing.T, srv *testserver.ZK) {
	ctx := context.Background()
	b := open(t, srv, zk.Config{})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()
	s := openSTM(t, b, stm.WithSweepInterval(0), stm.WithMeterProvider(mp))
	a, _ := refs.New(ctx, s, "a", 100)
	z, _ := refs.New(ctx, s, "z", 100)
	transfer := func(prefetch bool) uint64 {
		t.Helper()
		before := b.RoundTrips()
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			if prefetch {
				refs.Prefetch(tx, a, z)
			}
			a.Alter(tx, func(v int) int { return v - 1 })
			z.Alter(tx, func(v int) int { return v + 1 })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return b.RoundTrips() - before
	}
	transfer(false) // the session's first read syncs
	if n := transfer(false); n != 3 {
		t.Errorf("a transfer took %d round trips, want 3", n)
	}
	if n := transfer(true); n != 2 {
		t.Errorf("a prefetching transfer took %d round trips, want 2", n)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "epochal.backend.round_trips" {
				for _, dp := range sum.DataPoints {
					if id, _ := dp.Attributes.Value("epochal.backend"); id.AsString() == b.ID() {
						got = dp.Value
					}
				}
			}
		}
	}
	if got == 0 || uint64(got) != b.RoundTrips() {
		t.Errorf("epochal.backend.round_trips of %s = %d, the driver counted %d", b.ID(), got, b.RoundTrips())
	}
}
