package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// BenchmarkRedisSwap measures increments of one counter, one op being one
// increment that took effect, against one real redis-server (testserver's:
// appendonly yes, appendfsync always), three ways:
//
//   - atom-swap: refs.Atom[int].Swap(ctx, +1) on the Redis backend with
//     default options: each attempt one compare-and-set (the one-phase
//     Lua commit) from the newest version the handle knows, a read of
//     the atom only after a failed attempt;
//   - watch-multi: the hand-written optimistic loop with go-redis: WATCH
//     the key, GET it, MULTI/SET/EXEC (TxPipelined); a TxFailedErr is
//     retried at once. Values are decimal strings;
//   - incr: INCR, the server-side one-round-trip limit (no read-modify-
//     write on the client, so no retries).
//
// Each runs with 1 (uncontended) and 16 goroutines (all on the one
// counter: contended) taking ops from a shared counter; each variant has
// its own go-redis client with the round-trip hook of
// BenchmarkRedisTransfer and its own key or prefix, set up once and
// reused by the benchmark's successive runs. After each run the counter
// must have grown by exactly b.N.
//
// Metrics: ops/s, retries/op (attempts beyond the first: for atom-swap
// the extra calls of the swap function), p50-µs and p99-µs (the latency
// of one increment, retries included) and round-trips/op.
func BenchmarkRedisSwap(b *testing.B) {
	srv := testserver.StartRedis(b, testserver.RedisOptions{})
	if srv == nil {
		return
	}
	variants := []struct {
		name string
		open func(b *testing.B, srv *testserver.Redis) swapCounter
	}{
		{"atom-swap", openSwapAtom},
		{"watch-multi", openWatchCounter},
		{"incr", openIncrCounter},
	}
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
			for _, v := range variants {
				var c swapCounter // set up by the first run, reused by the next
				b.Run(v.name, func(b *testing.B) {
					if c == nil {
						c = v.open(b, srv)
					}
					swapBench(b, c, g)
				})
				if c != nil {
					c.close()
				}
			}
		})
	}
}

// swapCounter is one way to keep the counter.
type swapCounter interface {
	incr(ctx context.Context) error
	retries() int64
	roundTrips() int64
	value(ctx context.Context) (int64, error)
	close()
}

func swapBench(b *testing.B, c swapCounter, g int) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	v0, err := c.value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	retries0, rt0 := c.retries(), c.roundTrips()
	b.ResetTimer()
	for range g {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.N) || failed.Load() != nil {
					return
				}
				start := time.Now()
				if err := c.incr(ctx); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[k-1] = time.Since(start)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	retries, rts := c.retries()-retries0, c.roundTrips()-rt0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(retries)/float64(b.N), "retries/op")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(rts)/float64(b.N), "round-trips/op")
	v1, err := c.value(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if v1-v0 != int64(b.N) {
		b.Fatalf("the counter grew by %d in %d increments", v1-v0, b.N)
	}
}

// swapAtom: a refs.Atom[int] on the Redis backend.
type swapAtom struct {
	c     *goredis.Client
	h     *rtHook
	s     *stm.STM
	a     *refs.Atom[int]
	calls atomic.Int64 // calls of the swap function
	swaps atomic.Int64 // swaps that returned
}

func openSwapAtom(b *testing.B, srv *testserver.Redis) swapCounter {
	ctx := context.Background()
	c, h := xferClient(srv)
	be, err := redis.New(c, redis.Config{Prefix: newPrefix("swap-atom")})
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	s, err := stm.Open(ctx, be)
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	a, err := refs.NewAtom(ctx, s, "counter", 0)
	if err != nil {
		_ = s.Close()
		_ = c.Close()
		b.Fatal(err)
	}
	return &swapAtom{c: c, h: h, s: s, a: a}
}

func (a *swapAtom) incr(ctx context.Context) error {
	_, err := a.a.Swap(ctx, func(v int) int { a.calls.Add(1); return v + 1 })
	if err == nil {
		a.swaps.Add(1)
	}
	return err
}

func (a *swapAtom) retries() int64    { return a.calls.Load() - a.swaps.Load() }
func (a *swapAtom) roundTrips() int64 { return a.h.n.Load() }

func (a *swapAtom) value(ctx context.Context) (int64, error) {
	v, err := a.a.Deref(ctx)
	return int64(v), err
}

func (a *swapAtom) close() {
	_ = a.s.Close()
	_ = a.c.Close()
}

// plainCounter: one string key holding a decimal value; the base of
// watch-multi and incr.
type plainCounter struct {
	c   *goredis.Client
	h   *rtHook
	key string
}

func openPlainCounter(b *testing.B, srv *testserver.Redis, prefix string) *plainCounter {
	c, h := xferClient(srv)
	p := &plainCounter{c: c, h: h, key: fmt.Sprintf("{%s}:counter", prefix)}
	if err := c.Set(context.Background(), p.key, 0, 0).Err(); err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	return p
}

func (p *plainCounter) roundTrips() int64 { return p.h.n.Load() }

func (p *plainCounter) value(ctx context.Context) (int64, error) {
	return p.c.Get(ctx, p.key).Int64()
}

func (p *plainCounter) close() { _ = p.c.Close() }

// watchCounter: WATCH, GET, MULTI/SET/EXEC, retried on TxFailedErr.
type watchCounter struct {
	*plainCounter
	nretries atomic.Int64
}

func openWatchCounter(b *testing.B, srv *testserver.Redis) swapCounter {
	return &watchCounter{plainCounter: openPlainCounter(b, srv, newPrefix("swap-watch"))}
}

func (w *watchCounter) incr(ctx context.Context) error {
	fn := func(tx *goredis.Tx) error {
		s, err := tx.Get(ctx, w.key).Result()
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, w.key, strconv.FormatInt(v+1, 10), 0)
			return nil
		})
		return err
	}
	for {
		err := w.c.Watch(ctx, fn, w.key)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
		w.nretries.Add(1)
	}
}

func (w *watchCounter) retries() int64 { return w.nretries.Load() }

// incrCounter: INCR.
type incrCounter struct{ *plainCounter }

func openIncrCounter(b *testing.B, srv *testserver.Redis) swapCounter {
	return &incrCounter{openPlainCounter(b, srv, newPrefix("swap-incr"))}
}

func (i *incrCounter) incr(ctx context.Context) error { return i.c.Incr(ctx, i.key).Err() }

func (i *incrCounter) retries() int64 { return 0 }
