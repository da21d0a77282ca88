package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
	transfer := func(prefetch bool) int64 {
		t.Helper()
		before := h.N.Load()
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
		return h.N.Load() - before
	}
	transfer(false) // loads the commit script into the server
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
		before := h.N.Load()
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
	}
}
