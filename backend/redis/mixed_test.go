package redis_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// TestMixedWithMem: transfers between a ref in Redis and a ref in the
// embedded backend commit atomically, whichever backend coordinates, and
// concurrent readers never see a torn total.
func TestMixedWithMem(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	for _, redisCoordinates := range []bool{true, false} {
		name := map[bool]string{true: "redis-coordinates", false: "mem-coordinates"}[redisCoordinates]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rb := open(t, srv, newPrefix("mixed"))
			mb := mem.New()
			defer mb.Close()
			coord, other := backend.Driver(rb), backend.Driver(mb)
			if !redisCoordinates {
				coord, other = mb, rb
			}
			s := openSTM(t, coord)
			a, err := refs.New(ctx, s, "a", 500)
			if err != nil {
				t.Fatal(err)
			}
			b, err := refs.New(ctx, s, "b", 500, refs.On(other))
			if err != nil {
				t.Fatal(err)
			}
			var stop atomic.Bool
			var torn atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					_ = s.Dosync(ctx, func(tx *txn.Tx) error {
						if a.Get(tx)+b.Get(tx) != 1000 {
							torn.Add(1)
						}
						return nil
					})
				}
			}()
			var w sync.WaitGroup
			for g := 0; g < 3; g++ {
				w.Add(1)
				go func() {
					defer w.Done()
					for i := 0; i < 20; i++ {
						if err := s.Dosync(ctx, func(tx *txn.Tx) error {
							a.Alter(tx, func(v int) int { return v - 3 })
							b.Commute(tx, func(v int) int { return v + 3 })
							return nil
						}); err != nil {
							t.Errorf("transfer: %v", err)
						}
					}
				}()
			}
			w.Wait()
			stop.Store(true)
			wg.Wait()
			va, _ := a.Deref(ctx)
			vb, _ := b.Deref(ctx)
			if torn.Load() > 0 || va != 500-180 || vb != 500+180 {
				t.Fatalf("a=%d b=%d, %d torn reads; want 320, 680, none", va, vb, torn.Load())
			}
			if st := s.Stats(); st.General == 0 {
				t.Fatalf("no general-path commit: %+v", st)
			}
		})
	}
}

// TestWatchAcrossServerRestart: a watcher's Pub/Sub connection dies with the
// server; changes committed after the restart still reach it, in order, and
// anything it could not see is announced as a gap, never lost silently.
func TestWatchAcrossServerRestart(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	s := openSTM(t, open(t, srv, newPrefix("watch")))
	r, err := refs.New(ctx, s, "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	type call struct{ old, new int }
	calls := make(chan call, 100)
	gaps := make(chan clock.Point, 100)
	r.AddWatch("w", func(_ string, _ *refs.Ref[int], old, new int) { calls <- call{old, new} },
		refs.OnGap(func(_ string, _, to clock.Point) { gaps <- to }))
	defer r.RemoveWatch("w")
	set := func(v int) {
		t.Helper()
		// The client reconnects by itself; a commit attempted while the
		// server is down fails, so retry until it goes through.
		deadline := time.Now().Add(20 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := s.Dosync(cctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil })
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("set %d: %v", v, err)
			}
		}
	}
	next := func(prev int) call {
		t.Helper()
		select {
		case c := <-calls:
			if c.old != prev || c.new <= prev {
				t.Fatalf("watch call %d -> %d after %d", c.old, c.new, prev)
			}
			return c
		case <-time.After(20 * time.Second):
			t.Fatalf("no watch call after %d", prev)
			return call{}
		}
	}
	set(1)
	if c := next(0); c.new != 1 {
		t.Fatalf("first call %+v", c)
	}
	srv.Kill(t)
	srv.Restart(t)
	set(2)
	set(3)
	prev, jumps := 1, 0
	for prev != 3 {
		c := next(prev)
		if c.new != prev+1 {
			jumps++
		}
		prev = c.new
	}
	if len(gaps) < jumps {
		t.Fatalf("%d jumps, %d gap notices: a change was lost silently", jumps, len(gaps))
	}
}
