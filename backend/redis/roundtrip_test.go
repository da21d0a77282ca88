package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// TestRoundTripsPerTransfer: an uncontended two-ref transfer costs 3 round
// trips (read point with the first read, second read, commit script), and 2
// when it prefetches both refs.
func TestRoundTripsPerTransfer(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	h := &bench.CountHook{}
	c.AddHook(h)
	b, err := redis.New(c, redis.Config{Prefix: newPrefix("rt")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := openSTM(t, b, stm.WithSweepInterval(0))
	a, _ := refs.New(ctx, s, "a", 100)
	z, _ := refs.New(ctx, s, "z", 100)
	warm := false
	transfer := func(prefetch bool) int64 {
		t.Helper()
		before, own := h.N.Load(), b.RoundTrips()
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
		// The driver's own count (backend.RoundTripCounter, the metric
		// epochal.backend.round_trips) agrees with the client's once the
		// script is loaded (its first EVALSHA is refused, then EVAL).
		n := h.N.Load() - before
		if counted := b.RoundTrips() - own; warm && counted != uint64(n) {
			t.Errorf("the driver counted %d round trips, the client %d", counted, n)
		}
		return n
	}
	transfer(false) // loads the commit script into the server
	warm = true
	if n := transfer(false); n != 3 {
		t.Fatalf("a transfer took %d round trips, want 3", n)
	}
	if n := transfer(true); n != 2 {
		t.Fatalf("a prefetching transfer took %d round trips, want 2", n)
	}
	if v, _ := a.Deref(ctx); v != 97 {
		t.Fatalf("a = %d after 3 transfers", v)
	}
}

// TestRoundTripsPerLock: an uncontended Mutex Lock is one round trip (add
// the entry and list the queue in one script: backend.EntryLister) and
// Unlock one, as a hand-written SET NX PX lock with a Lua release; the
// session's open is paid once per process, its renewals every third of a
// lease.
func TestRoundTripsPerLock(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	h := &bench.CountHook{}
	c.AddHook(h)
	b, err := redis.New(c, redis.Config{Prefix: newPrefix("rtl")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := locks.NewMutex(b, "x", locks.WithLease(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: the session's open, and each script's first EVALSHA
	// (NOSCRIPT, then EVAL).
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		before, own := h.N.Load(), b.RoundTrips()
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		mid := h.N.Load()
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		lock, unlock := mid-before, h.N.Load()-mid
		if lock != 1 || unlock != 1 {
			t.Fatalf("round %d: Lock took %d round trips, Unlock %d; want 1 and 1", i, lock, unlock)
		}
		if counted := b.RoundTrips() - own; counted != 2 {
			t.Fatalf("round %d: the driver counted %d round trips for Lock and Unlock, want 2", i, counted)
		}
	}
}

// TestRoundTripMetric: the STM reports each backend's round trips as
// epochal.backend.round_trips, by backend ID (the coordinator's and a
// second backend's), equal to the drivers' own counts; after Close it
// reports nothing.
func TestRoundTripMetric(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	coord := open(t, srv, newPrefix("rtm"))
	other := open(t, srv, newPrefix("rtm"))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()
	s, err := stm.Open(ctx, coord, stm.WithSweepInterval(0), stm.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := refs.New(ctx, s, "a", 100)
	z, err := refs.New(ctx, s, "z", 100, refs.On(other))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			a.Alter(tx, func(v int) int { return v - 1 })
			z.Alter(tx, func(v int) int { return v + 1 })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A second STM with the same provider, whose coordinator is the
	// first's second backend: each driver is still reported once (not
	// the sum of two reports), and closing one STM does not make a count
	// fall.
	s2, err := stm.Open(ctx, other, stm.WithSweepInterval(0), stm.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got := roundTrips(t, reader)
		for _, b := range []*redis.Backend{coord, other} {
			if n, ok := got[b.ID()]; !ok || n == 0 || uint64(n) != b.RoundTrips() {
				t.Errorf("%s: round_trips of %s = %d (reported: %v), the driver counted %d", when, b.ID(), n, ok, b.RoundTrips())
			}
		}
		if len(got) != 2 {
			t.Errorf("%s: round_trips reported for %v, want the two backends", when, got)
		}
	}
	check("two STMs")
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	check("one STM closed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := roundTrips(t, reader); len(got) != 0 {
		t.Errorf("after Close, round_trips still reported: %v", got)
	}
}

// roundTrips collects epochal.backend.round_trips from r, by backend ID.
func roundTrips(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "epochal.backend.round_trips" {
				continue
			}
			if m.Unit != "{round_trip}" {
				t.Errorf("unit %q", m.Unit)
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("round_trips is a %T (monotonic: %v), want a monotonic Sum[int64]", m.Data, ok && sum.IsMonotonic)
			}
			for _, dp := range sum.DataPoints {
				id, _ := dp.Attributes.Value("epochal.backend")
				out[id.AsString()] = dp.Value
			}
		}
	}
	return out
}
