package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	gostm "github.com/anacrolix/stm"
	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

func counterName(i int) string { return fmt.Sprintf("counter/%04d", i) }

// atomCounters: one refs.Atom[int] per counter, each increment one Swap;
// its retries are the calls of the swap function beyond one per Swap that
// returned.
type atomCounters struct {
	*epochal
	atoms []*refs.Atom[int]
	calls atomic.Int64
	swaps atomic.Int64
}

func openAtomCounters(ctx context.Context, t Target, n int) (Counters, error) {
	e, err := openEpochal(ctx, t, "epochal")
	if err != nil {
		return nil, err
	}
	c := &atomCounters{epochal: e, atoms: make([]*refs.Atom[int], n)}
	for i := range c.atoms {
		if c.atoms[i], err = refs.NewAtom(ctx, e.s, counterName(i), 0); err != nil {
			e.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *atomCounters) Incr(ctx context.Context, i int) error {
	_, err := c.atoms[i].Swap(ctx, func(v int) int { c.calls.Add(1); return v + 1 })
	if err == nil {
		c.swaps.Add(1)
	}
	return err
}

func (c *atomCounters) Retries() int64 { return c.calls.Load() - c.swaps.Load() }

func (c *atomCounters) Values(ctx context.Context) ([]int64, error) {
	out := make([]int64, len(c.atoms))
	for i, a := range c.atoms {
		v, err := a.Deref(ctx)
		if err != nil {
			return nil, err
		}
		out[i] = int64(v)
	}
	return out, nil
}

// commuteCounters: one refs.Ref[int] per counter, each increment a
// Dosync with Commute(+1).
type commuteCounters struct {
	*epochal
	rs []*refs.Ref[int]
}

func openCommuteCounters(ctx context.Context, t Target, n int) (Counters, error) {
	e, err := openEpochal(ctx, t, "epochal-commute")
	if err != nil {
		return nil, err
	}
	rs, err := newRefs(ctx, e, n, counterName, 0)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &commuteCounters{epochal: e, rs: rs}, nil
}

func (c *commuteCounters) Incr(ctx context.Context, i int) error {
	r := c.rs[i]
	return c.s.Dosync(ctx, func(tx *txn.Tx) error {
		r.Commute(tx, plus)
		return nil
	})
}

func (c *commuteCounters) Values(ctx context.Context) ([]int64, error) {
	return readAll(ctx, c.epochal, c.rs)
}

// watchCounters: WATCH, GET, MULTI/SET/EXEC.
type watchCounters struct{ *redisPlain }

func openWatchCounters(ctx context.Context, t Target, n int) (Counters, error) {
	p, err := openRedisPlain(ctx, t, "watch-multi", n, 0)
	if err != nil {
		return nil, err
	}
	return watchCounters{p}, nil
}

func (w watchCounters) Incr(ctx context.Context, i int) error {
	k := w.keys[i]
	fn := func(tx *goredis.Tx) error {
		v, err := tx.Get(ctx, k).Int64()
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, k, strconv.FormatInt(v+1, 10), 0)
			return nil
		})
		return err
	}
	for {
		err := w.c.Watch(ctx, fn, k)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
		w.retries.Add(1)
	}
}

// luaCounters: one EVALSHA of INCRBY.
type luaCounters struct{ *redisPlain }

var incrScript = goredis.NewScript(`return redis.call("INCRBY", KEYS[1], ARGV[1])`)

func openLuaCounters(ctx context.Context, t Target, n int) (Counters, error) {
	p, err := openRedisPlain(ctx, t, "lua", n, 0)
	if err != nil {
		return nil, err
	}
	if err := incrScript.Load(ctx, p.c).Err(); err != nil {
		p.Close()
		return nil, err
	}
	return luaCounters{p}, nil
}

func (l luaCounters) Incr(ctx context.Context, i int) error {
	return incrScript.EvalSha(ctx, l.c, []string{l.keys[i]}, 1).Err()
}

// zkCounters: Get with the version, Set with that version, start again
// on ErrBadVersion.
type zkCounters struct{ *zkPlain }

func openZKCounters(ctx context.Context, t Target, n int) (Counters, error) {
	p, err := openZKPlain(ctx, t, "zk-multi", n, 0)
	if err != nil {
		return nil, err
	}
	return zkCounters{p}, nil
}

func (z zkCounters) Incr(_ context.Context, i int) error {
	for {
		v, st, err := z.get(i)
		if err != nil {
			return err
		}
		_, err = z.c.Set(z.paths[i], []byte(strconv.Itoa(v+1)), st.Version)
		if errors.Is(err, gozk.ErrBadVersion) {
			z.retries.Add(1)
			continue
		}
		return err
	}
}

// goSTMCounters: one anacrolix stm.Var[int] per counter.
type goSTMCounters struct{ vs []*gostm.Var[int] }

func openGoSTMCounters(_ context.Context, _ Target, n int) (Counters, error) {
	c := &goSTMCounters{vs: make([]*gostm.Var[int], n)}
	for i := range c.vs {
		c.vs[i] = gostm.NewVar(0)
	}
	return c, nil
}

func (c *goSTMCounters) Incr(_ context.Context, i int) error {
	v := c.vs[i]
	gostm.Atomically(gostm.VoidOperation(func(tx *gostm.Tx) { v.Set(tx, v.Get(tx)+1) }))
	return nil
}

func (c *goSTMCounters) Retries() int64       { return goSTMRetries() }
func (c *goSTMCounters) Count() (int64, bool) { return noCount() }
func (c *goSTMCounters) Close()               {}

func (c *goSTMCounters) Values(context.Context) ([]int64, error) {
	out := make([]int64, len(c.vs))
	for i, v := range c.vs {
		out[i] = int64(gostm.AtomicGet(v))
	}
	return out, nil
}

// mutexCounters: a slice of ints under one sync.Mutex.
type mutexCounters struct {
	mu sync.Mutex
	vs []int64
}

func openMutexCounters(_ context.Context, _ Target, n int) (Counters, error) {
	return &mutexCounters{vs: make([]int64, n)}, nil
}

func (c *mutexCounters) Incr(_ context.Context, i int) error {
	c.mu.Lock()
	c.vs[i]++
	c.mu.Unlock()
	return nil
}

func (c *mutexCounters) Retries() int64       { return 0 }
func (c *mutexCounters) Count() (int64, bool) { return noCount() }
func (c *mutexCounters) Close()               {}

func (c *mutexCounters) Values(context.Context) ([]int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.vs), nil
}
