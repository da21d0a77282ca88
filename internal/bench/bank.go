package bench

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	gostm "github.com/anacrolix/stm"
	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/txn"
)

// impls is every implementation, Epochal's first, then the peers in the
// order a cell's ratio is taken to (the first that ran in the regime).
var impls = []Impl{
	{
		Name: "epochal", Epochal: true,
		Doc:      "Epochal with default options: bank, s.Dosync with Alter on both refs.Ref[int]; swap, refs.Atom[int].Swap; lock, locks.Mutex",
		Backends: []string{Mem, Redis, ZK},
		Unit:     map[string]string{Redis: "round-trips", ZK: "writes"},
		Bank: func(ctx context.Context, t Target, n int) (Accounts, error) {
			return openEpochalBank(ctx, t, n, "epochal")
		},
		Swap:  func(ctx context.Context, t Target, n int) (Counters, error) { return openAtomCounters(ctx, t, n) },
		Locks: openEpochalLocks,
	},
	{
		Name: "epochal-commute", Epochal: true,
		Doc:      "Epochal, the commutative way: bank, Alter the debit and Commute the credit; swap, s.Dosync with Commute(+1) on a refs.Ref[int]",
		Backends: []string{Mem, Redis, ZK},
		Unit:     map[string]string{Redis: "round-trips", ZK: "writes"},
		Bank: func(ctx context.Context, t Target, n int) (Accounts, error) {
			return openEpochalBank(ctx, t, n, "epochal-commute")
		},
		Swap: func(ctx context.Context, t Target, n int) (Counters, error) { return openCommuteCounters(ctx, t, n) },
	},
	{
		Name: "epochal-prefetch", Epochal: true, Optional: true,
		Doc:      "Epochal, bank only: as epochal, starting with refs.Prefetch(tx, from, to) (both accounts and the read point in one round trip)",
		Backends: []string{Mem, Redis, ZK},
		Unit:     map[string]string{Redis: "round-trips", ZK: "writes"},
		Bank: func(ctx context.Context, t Target, n int) (Accounts, error) {
			return openEpochalBank(ctx, t, n, "epochal-prefetch")
		},
	},
	{
		Name:     "watch-multi",
		Doc:      "go-redis optimistic locking by hand: WATCH, MGET/GET, MULTI/SET/EXEC (TxPipelined), retried at once on TxFailedErr",
		Backends: []string{Redis},
		Unit:     map[string]string{Redis: "round-trips"},
		Bank:     openWatchBank,
		Swap:     openWatchCounters,
	},
	{
		Name:     "lua",
		Doc:      "one EVALSHA doing the whole op on the server (the one-round-trip limit); lock: SET NX PX, retried every ms, released by a compare-and-delete script",
		Backends: []string{Redis},
		Unit:     map[string]string{Redis: "round-trips"},
		Bank:     openLuaBank,
		Swap:     openLuaCounters,
		Locks:    openSetNXLocks,
	},
	{
		Name:     "zk-multi",
		Doc:      "go-zookeeper by hand: read the znodes with their versions, write with version-checked SetData (one Multi for a transfer), start again on ErrBadVersion; lock: go-zookeeper's zk.Lock recipe",
		Backends: []string{ZK},
		Unit:     map[string]string{ZK: "writes"},
		Bank:     openZKBank,
		Swap:     openZKCounters,
		Locks:    openZKLocks,
	},
	{
		Name:     "go-stm",
		Doc:      "github.com/anacrolix/stm, a TVar STM for Go (in process): one stm.Var[int] per account or counter; lock: a Var[bool] taken with Retry",
		Backends: []string{Mem},
		Bank:     openGoSTMBank,
		Swap:     openGoSTMCounters,
		Locks:    openGoSTMLocks,
	},
	{
		Name:     "mutex",
		Doc:      "a slice of ints under one sync.Mutex (in process); lock: a sync.Mutex per lock",
		Backends: []string{Mem},
		Bank:     openMutexBank,
		Swap:     openMutexCounters,
		Locks:    openMutexLocks,
	},
}

func acctName(i int) string { return fmt.Sprintf("acct/%04d", i) }

// epochalBank: one refs.Ref[int] per account; a transfer is one Dosync.
type epochalBank struct {
	*epochal
	accts    []*refs.Ref[int]
	commute  bool // Commute the credit
	prefetch bool // read both accounts first, in one go
}

// newRefs creates n refs named by name with value v, 16 at a time (each
// create is a round trip to a server that may make it durable first).
func newRefs(ctx context.Context, e *epochal, n int, name func(int) string, v int) ([]*refs.Ref[int], error) {
	rs := make([]*refs.Ref[int], n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range min(16, n) {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				rs[i], errs[i] = refs.New(ctx, e.s, name(i), v)
			}
		})
	}
	wg.Wait()
	return rs, errors.Join(errs...)
}

func openEpochalBank(ctx context.Context, t Target, n int, name string) (Accounts, error) {
	e, err := openEpochal(ctx, t, name)
	if err != nil {
		return nil, err
	}
	rs, err := newRefs(ctx, e, n, acctName, Initial)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &epochalBank{epochal: e, accts: rs, commute: name == "epochal-commute", prefetch: name == "epochal-prefetch"}, nil
}

func minus(v int) int { return v - 1 }
func plus(v int) int  { return v + 1 }

func (b *epochalBank) Transfer(ctx context.Context, i, j int) (declined bool, err error) {
	from, to := b.accts[i], b.accts[j]
	err = b.s.Dosync(ctx, func(tx *txn.Tx) error {
		if b.prefetch {
			refs.Prefetch(tx, from, to)
		}
		declined = from.Get(tx) < 1
		if declined {
			return nil
		}
		from.Alter(tx, minus)
		if b.commute {
			to.Commute(tx, plus)
		} else {
			to.Alter(tx, plus)
		}
		return nil
	})
	return declined, err
}

func (b *epochalBank) Balances(ctx context.Context) ([]int64, error) {
	return readAll(ctx, b.epochal, b.accts)
}

// readAll reads refs in one Dosync: one snapshot.
func readAll(ctx context.Context, e *epochal, rs []*refs.Ref[int]) ([]int64, error) {
	vs := make([]int64, len(rs))
	err := e.s.Dosync(ctx, func(tx *txn.Tx) error {
		for i, r := range rs {
			vs[i] = int64(r.Get(tx))
		}
		return nil
	})
	return vs, err
}

// redisPlain: one string key per account or counter, decimal values; the
// base of the Redis peers.
type redisPlain struct {
	c       *goredis.Client
	h       *CountHook
	keys    []string
	retries atomic.Int64
}

func openRedisPlain(ctx context.Context, t Target, impl string, n int, v int) (*redisPlain, error) {
	c, h, err := redisClient(ctx, t)
	if err != nil {
		return nil, err
	}
	p := &redisPlain{c: c, h: h, keys: make([]string, n)}
	space := t.space(impl)
	pairs := make([]any, 0, 2*n)
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("{%s}:%04d", space, i)
		pairs = append(pairs, p.keys[i], v)
	}
	if err := c.MSet(ctx, pairs...).Err(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return p, nil
}

func (p *redisPlain) Retries() int64       { return p.retries.Load() }
func (p *redisPlain) Count() (int64, bool) { return p.h.N.Load(), true }
func (p *redisPlain) Close()               { _ = p.c.Close() }

func (p *redisPlain) values(ctx context.Context) ([]int64, error) {
	vals, err := p.c.MGet(ctx, p.keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(vals))
	for i, v := range vals {
		s, _ := v.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s = %v: %w", p.keys[i], v, err)
		}
		out[i] = n
	}
	return out, nil
}

func (p *redisPlain) Balances(ctx context.Context) ([]int64, error) { return p.values(ctx) }
func (p *redisPlain) Values(ctx context.Context) ([]int64, error)   { return p.values(ctx) }

// watchBank: WATCH both keys, MGET them, MULTI/SET/SET/EXEC.
type watchBank struct{ *redisPlain }

func openWatchBank(ctx context.Context, t Target, n int) (Accounts, error) {
	p, err := openRedisPlain(ctx, t, "watch-multi", n, Initial)
	if err != nil {
		return nil, err
	}
	return watchBank{p}, nil
}

func (w watchBank) Transfer(ctx context.Context, i, j int) (declined bool, err error) {
	ka, kb := w.keys[i], w.keys[j]
	fn := func(tx *goredis.Tx) error {
		vals, err := tx.MGet(ctx, ka, kb).Result()
		if err != nil {
			return err
		}
		sa, _ := vals[0].(string)
		sb, _ := vals[1].(string)
		a, err1 := strconv.ParseInt(sa, 10, 64)
		b, err2 := strconv.ParseInt(sb, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if declined = a < 1; declined {
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, ka, strconv.FormatInt(a-1, 10), 0)
			p.Set(ctx, kb, strconv.FormatInt(b+1, 10), 0)
			return nil
		})
		return err
	}
	for {
		err := w.c.Watch(ctx, fn, ka, kb)
		if !errors.Is(err, goredis.TxFailedErr) {
			return declined, err
		}
		w.retries.Add(1)
	}
}

// luaBank: one script per transfer.
type luaBank struct{ *redisPlain }

var transferScript = goredis.NewScript(`
local a = tonumber(redis.call("GET", KEYS[1]))
if a < tonumber(ARGV[1]) then return 0 end
redis.call("DECRBY", KEYS[1], ARGV[1])
redis.call("INCRBY", KEYS[2], ARGV[1])
return 1
`)

func openLuaBank(ctx context.Context, t Target, n int) (Accounts, error) {
	p, err := openRedisPlain(ctx, t, "lua", n, Initial)
	if err != nil {
		return nil, err
	}
	if err := transferScript.Load(ctx, p.c).Err(); err != nil {
		p.Close()
		return nil, err
	}
	return luaBank{p}, nil
}

func (l luaBank) Transfer(ctx context.Context, i, j int) (bool, error) {
	n, err := transferScript.EvalSha(ctx, l.c, []string{l.keys[i], l.keys[j]}, 1).Int()
	return n == 0, err
}

// zkPlain: one znode per account or counter holding a decimal string.
type zkPlain struct {
	c       *gozk.Conn
	paths   []string
	count   func() (int64, bool)
	retries atomic.Int64
}

func openZKPlain(ctx context.Context, t Target, impl string, n, v int) (*zkPlain, error) {
	c, root, err := zkConn(ctx, t, impl)
	if err != nil {
		return nil, err
	}
	p := &zkPlain{c: c, paths: make([]string, n), count: zkWrites(t)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range min(16, n) {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				p.paths[i] = fmt.Sprintf("%s/%04d", root, i)
				_, errs[i] = c.Create(p.paths[i], []byte(strconv.Itoa(v)), 0, gozk.WorldACL(gozk.PermAll))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

func (p *zkPlain) Retries() int64       { return p.retries.Load() }
func (p *zkPlain) Count() (int64, bool) { return p.count() }
func (p *zkPlain) Close()               { p.c.Close() }

func (p *zkPlain) get(i int) (int, *gozk.Stat, error) {
	d, st, err := p.c.Get(p.paths[i])
	if err != nil {
		return 0, nil, err
	}
	v, err := strconv.Atoi(string(d))
	return v, st, err
}

func (p *zkPlain) values(context.Context) ([]int64, error) {
	out := make([]int64, len(p.paths))
	for i := range p.paths {
		v, _, err := p.get(i)
		if err != nil {
			return nil, err
		}
		out[i] = int64(v)
	}
	return out, nil
}

func (p *zkPlain) Balances(ctx context.Context) ([]int64, error) { return p.values(ctx) }
func (p *zkPlain) Values(ctx context.Context) ([]int64, error)   { return p.values(ctx) }

// zkBank: read both znodes in parallel, one Multi of two version-checked
// SetData.
type zkBank struct{ *zkPlain }

func openZKBank(ctx context.Context, t Target, n int) (Accounts, error) {
	p, err := openZKPlain(ctx, t, "zk-multi", n, Initial)
	if err != nil {
		return nil, err
	}
	return zkBank{p}, nil
}

func (z zkBank) Transfer(ctx context.Context, i, j int) (bool, error) {
	for {
		var (
			wg     sync.WaitGroup
			vi, vj int
			si, sj *gozk.Stat
			ei, ej error
		)
		wg.Go(func() { vi, si, ei = z.get(i) })
		vj, sj, ej = z.get(j)
		wg.Wait()
		if err := errors.Join(ei, ej); err != nil {
			return false, err
		}
		if vi < 1 {
			return true, nil
		}
		_, err := z.c.Multi(
			&gozk.SetDataRequest{Path: z.paths[i], Data: []byte(strconv.Itoa(vi - 1)), Version: si.Version},
			&gozk.SetDataRequest{Path: z.paths[j], Data: []byte(strconv.Itoa(vj + 1)), Version: sj.Version},
		)
		if errors.Is(err, gozk.ErrBadVersion) {
			z.retries.Add(1)
			continue
		}
		return false, err
	}
}

// goSTMBank: one anacrolix stm.Var[int] per account.
type goSTMBank struct {
	accts []*gostm.Var[int]
}

func openGoSTMBank(_ context.Context, _ Target, n int) (Accounts, error) {
	b := &goSTMBank{accts: make([]*gostm.Var[int], n)}
	for i := range b.accts {
		b.accts[i] = gostm.NewVar(Initial)
	}
	return b, nil
}

func (b *goSTMBank) Transfer(_ context.Context, i, j int) (bool, error) {
	from, to := b.accts[i], b.accts[j]
	declined := gostm.Atomically(func(tx *gostm.Tx) bool {
		a := from.Get(tx)
		if a < 1 {
			return true
		}
		from.Set(tx, a-1)
		to.Set(tx, to.Get(tx)+1)
		return false
	})
	return declined, nil
}

func (b *goSTMBank) Retries() int64       { return goSTMRetries() }
func (b *goSTMBank) Count() (int64, bool) { return noCount() }
func (b *goSTMBank) Close()               {}

func (b *goSTMBank) Balances(context.Context) ([]int64, error) {
	return gostm.Atomically(func(tx *gostm.Tx) []int64 {
		out := make([]int64, len(b.accts))
		for i, a := range b.accts {
			out[i] = int64(a.Get(tx))
		}
		return out
	}), nil
}

// mutexBank: a slice of ints under one sync.Mutex.
type mutexBank struct {
	mu    sync.Mutex
	accts []int
}

func openMutexBank(_ context.Context, _ Target, n int) (Accounts, error) {
	b := &mutexBank{accts: make([]int, n)}
	for i := range b.accts {
		b.accts[i] = Initial
	}
	return b, nil
}

func (b *mutexBank) Transfer(_ context.Context, i, j int) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.accts[i] < 1 {
		return true, nil
	}
	b.accts[i]--
	b.accts[j]++
	return false, nil
}

func (b *mutexBank) Retries() int64       { return 0 }
func (b *mutexBank) Count() (int64, bool) { return noCount() }
func (b *mutexBank) Close()               {}

func (b *mutexBank) Balances(context.Context) ([]int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]int64, len(b.accts))
	for i, v := range b.accts {
		out[i] = int64(v)
	}
	return out, nil
}

// goSTMRetries reads how often anacrolix/stm ran a transaction again, so
// far, in the process: its expvar map "stm" counts "failed commits" (a
// read changed before the commit) and "retries" (an explicit Retry).
func goSTMRetries() int64 {
	m, ok := expvar.Get("stm").(*expvar.Map)
	if !ok {
		return 0
	}
	var n int64
	for _, k := range []string{"failed commits", "retries"} {
		if v, ok := m.Get(k).(*expvar.Int); ok {
			n += v.Value()
		}
	}
	return n
}
