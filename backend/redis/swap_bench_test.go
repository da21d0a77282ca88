package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
)

// BenchmarkRedisSwap measures increments of one counter with benchkit.Swap
// (one op is one increment that took effect; 1 goroutine, uncontended, and
// 16 on the one counter, contended; the counter must have grown by exactly
// b.N after each run), against one real redis-server (testserver's:
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
// Each variant has its own go-redis client with the round-trip hook of
// BenchmarkRedisTransfer and its own key or prefix.
//
// Metrics: ops/s, retries/op (attempts beyond the first: for atom-swap
// the extra calls of the swap function), p50-µs and p99-µs (the latency
// of one increment, retries included) and round-trips/op.
func BenchmarkRedisSwap(b *testing.B) {
	srv := testserver.StartRedis(b, testserver.RedisOptions{})
	if srv == nil {
		return
	}
	benchkit.Swap(b, "round-trips", []benchkit.CounterImpl{
		{Name: "atom-swap", Open: func(b *testing.B) benchkit.Counter {
			return openEpochal(b, srv, "swap-atom").Counter(b)
		}},
		{Name: "watch-multi", Open: func(b *testing.B) benchkit.Counter {
			return &watchCounter{plainCounter: openPlainCounter(b, srv, newPrefix("swap-watch"))}
		}},
		{Name: "incr", Open: func(b *testing.B) benchkit.Counter {
			return &incrCounter{openPlainCounter(b, srv, newPrefix("swap-incr"))}
		}},
	})
}

// plainCounter: one string key holding a decimal value; the base of
// watch-multi and incr.
type plainCounter struct {
	c   *goredis.Client
	h   *countHook
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

func (p *plainCounter) Count(*testing.B) int64 { return p.h.n.Load() }

func (p *plainCounter) Value(ctx context.Context) (int64, error) {
	return p.c.Get(ctx, p.key).Int64()
}

func (p *plainCounter) Close() { _ = p.c.Close() }

// watchCounter: WATCH, GET, MULTI/SET/EXEC, retried on TxFailedErr.
type watchCounter struct {
	*plainCounter
	nretries atomic.Int64
}

func (w *watchCounter) Incr(ctx context.Context) error {
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

func (w *watchCounter) Retries() int64 { return w.nretries.Load() }

// incrCounter: INCR.
type incrCounter struct{ *plainCounter }

func (i *incrCounter) Incr(ctx context.Context) error { return i.c.Incr(ctx, i.key).Err() }

func (i *incrCounter) Retries() int64 { return 0 }
