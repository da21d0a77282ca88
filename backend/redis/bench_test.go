package redis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// xferInitial is every account's starting balance: large enough that no
// balance goes negative in any run, so transfers need no overdraft check.
const xferInitial = 1 << 30

// xferConfEnv names the environment variable with extra redis.conf lines
// for BenchmarkRedisTransfer's server.
const xferConfEnv = "EPOCHAL_BENCH_REDIS_CONF"

// BenchmarkRedisTransfer measures transfers of 1 unit between two distinct
// accounts chosen at random, one op being one committed transfer, against
// one real redis-server (started once per run of the benchmark), four ways:
//
//   - epochal: s.Dosync with two refs.Ref[int], Alter on both, on the Redis
//     backend with default options (the one-phase Lua commit);
//   - epochal-prefetch: the same, starting with refs.Prefetch(tx, from, to),
//     which reads both accounts and the read point in one round trip;
//   - watch-multi: go-redis optimistic locking: WATCH both keys, MGET them,
//     then MULTI/SET/SET/EXEC (TxPipelined); a TxFailedErr is retried at
//     once. Values are decimal strings;
//   - lua: one EVALSHA doing DECRBY and INCRBY, the one-round-trip limit.
//
// uncontended-1000 spreads the transfers over 1000 accounts, contended-10
// over 10; each runs with 1 and 16 goroutines taking ops from a shared
// counter. Every variant has its own go-redis client with a hook counting
// round trips: one per command processed and one per pipeline or
// MULTI/EXEC pipeline sent. Each sub-benchmark uses its own key prefix,
// set up once and reused by the benchmark's successive runs; after each run
// the sum of all balances must be unchanged.
//
// The server is testserver's (appendonly yes, appendfsync always: every
// write is on disk before its reply). EPOCHAL_BENCH_REDIS_CONF adds
// redis.conf lines, separated by ";", e.g. "appendfsync no".
//
// Metrics: commits/s (b.N / elapsed), retries/commit, p50-µs and p99-µs
// (the latency of one committed transfer, retries included) and
// round-trips/commit (round trips during the timed run / b.N).
func BenchmarkRedisTransfer(b *testing.B) {
	var conf []string
	if v := os.Getenv(xferConfEnv); v != "" {
		conf = strings.Split(v, ";")
	}
	srv := testserver.StartRedis(b, testserver.RedisOptions{Args: conf})
	if srv == nil {
		return
	}
	workloads := []struct {
		name     string
		accounts int
	}{
		{"uncontended-1000", 1000},
		{"contended-10", 10},
	}
	variants := []struct {
		name string
		open func(b *testing.B, srv *testserver.Redis, accounts int) xferBank
	}{
		{"epochal", openEpochalBank},
		{"epochal-prefetch", func(b *testing.B, srv *testserver.Redis, accounts int) xferBank {
			bank := openEpochalBank(b, srv, accounts).(*epochalBank)
			bank.prefetch = true
			return bank
		}},
		{"watch-multi", openWatchBank},
		{"lua", openLuaBank},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, g := range []int{1, 16} {
				b.Run(fmt.Sprintf("workers=%d", g), func(b *testing.B) {
					for _, v := range variants {
						var bank xferBank // set up by the first run, reused by the next
						b.Run(v.name, func(b *testing.B) {
							if bank == nil {
								bank = v.open(b, srv, w.accounts)
							}
							xferBench(b, bank, w.accounts, g)
						})
						if bank != nil {
							bank.close()
						}
					}
				})
			}
		})
	}
}

// xferBank is one way to keep the accounts.
type xferBank interface {
	// transfer moves 1 from account i to account j, retrying until it
	// commits.
	transfer(ctx context.Context, i, j int) error
	// retries is the number of retries so far.
	retries() int64
	// roundTrips is the number of round trips so far.
	roundTrips() int64
	// total is the sum of all balances.
	total(ctx context.Context) (int64, error)
	close()
}

// rtHook counts round trips: one per command processed, one per pipeline
// or MULTI/EXEC pipeline sent.
type rtHook struct{ n atomic.Int64 }

func (h *rtHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *rtHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *rtHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// xferClient returns a new go-redis client of srv with default options and
// a round-trip counter.
func xferClient(srv *testserver.Redis) (*goredis.Client, *rtHook) {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: srv.User, Password: srv.Password, TLSConfig: srv.ClientTLS()})
	h := &rtHook{}
	c.AddHook(h)
	return c, h
}

// xferBench runs b.N transfers over g goroutines, each with its own random
// source, checks the total and reports the metrics.
func xferBench(b *testing.B, bank xferBank, accounts, g int) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	retries0, rt0 := bank.retries(), bank.roundTrips()
	b.ResetTimer()
	for w := range g {
		r := rand.New(rand.NewPCG(uint64(w), 0x5eed))
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.N) || failed.Load() != nil {
					return
				}
				i := r.IntN(accounts)
				j := r.IntN(accounts - 1)
				if j >= i {
					j++
				}
				start := time.Now()
				if err := bank.transfer(ctx, i, j); err != nil {
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
	retries, rts := bank.retries()-retries0, bank.roundTrips()-rt0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		k := int(p*float64(len(lat))+0.999999) - 1
		k = max(0, min(k, len(lat)-1))
		return float64(lat[k]) / float64(time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(retries)/float64(b.N), "retries/commit")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(rts)/float64(b.N), "round-trips/commit")
	total, err := bank.total(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if want := int64(accounts) * xferInitial; total != want {
		b.Fatalf("total %d after %d transfers, want %d", total, b.N, want)
	}
}

// epochalBank: refs on the Redis backend.
type epochalBank struct {
	c        *goredis.Client
	h        *rtHook
	s        *stm.STM
	accts    []*refs.Ref[int]
	prefetch bool // read both accounts (and the read point) in one round trip
}

func openEpochalBank(b *testing.B, srv *testserver.Redis, accounts int) xferBank {
	ctx := context.Background()
	c, h := xferClient(srv)
	be, err := redis.New(c, redis.Config{Prefix: newPrefix("xfer-epochal")})
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	s, err := stm.Open(ctx, be)
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	bank := &epochalBank{c: c, h: h, s: s, accts: make([]*refs.Ref[int], accounts)}
	// Created by 16 goroutines: each create is a write the server syncs
	// to its append-only file before it answers.
	var wg sync.WaitGroup
	errs := make([]error, accounts)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < accounts; i += 16 {
				bank.accts[i], errs[i] = refs.New(ctx, s, fmt.Sprintf("acct/%04d", i), xferInitial)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		bank.close()
		b.Fatal(err)
	}
	return bank
}

func xferMinus(v int) int { return v - 1 }
func xferPlus(v int) int  { return v + 1 }

func (e *epochalBank) transfer(ctx context.Context, i, j int) error {
	from, to := e.accts[i], e.accts[j]
	return e.s.Dosync(ctx, func(tx *txn.Tx) error {
		if e.prefetch {
			refs.Prefetch(tx, from, to)
		}
		from.Alter(tx, xferMinus)
		to.Alter(tx, xferPlus)
		return nil
	})
}

func (e *epochalBank) retries() int64    { return e.s.Stats().Retries }
func (e *epochalBank) roundTrips() int64 { return e.h.n.Load() }

func (e *epochalBank) total(ctx context.Context) (int64, error) {
	var sum int64
	err := e.s.Dosync(ctx, func(tx *txn.Tx) error {
		sum = 0
		for _, a := range e.accts {
			sum += int64(a.Get(tx))
		}
		return nil
	})
	return sum, err
}

func (e *epochalBank) close() {
	_ = e.s.Close()
	_ = e.c.Close()
}

// plainBank: one string key per account, decimal values; the base of
// watch-multi and lua.
type plainBank struct {
	c    *goredis.Client
	h    *rtHook
	keys []string
}

func openPlainBank(b *testing.B, srv *testserver.Redis, accounts int, prefix string) *plainBank {
	ctx := context.Background()
	c, h := xferClient(srv)
	p := &plainBank{c: c, h: h, keys: make([]string, accounts)}
	pairs := make([]any, 0, 2*accounts)
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("{%s}:acct/%04d", prefix, i)
		pairs = append(pairs, p.keys[i], xferInitial)
	}
	if err := c.MSet(ctx, pairs...).Err(); err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	return p
}

func (p *plainBank) roundTrips() int64 { return p.h.n.Load() }

func (p *plainBank) total(ctx context.Context) (int64, error) {
	vals, err := p.c.MGet(ctx, p.keys...).Result()
	if err != nil {
		return 0, err
	}
	var sum int64
	for i, v := range vals {
		s, _ := v.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s = %v: %w", p.keys[i], v, err)
		}
		sum += n
	}
	return sum, nil
}

func (p *plainBank) close() { _ = p.c.Close() }

// watchBank: WATCH, MGET, MULTI/SET/SET/EXEC, retried on TxFailedErr.
type watchBank struct {
	*plainBank
	nretries atomic.Int64
}

func openWatchBank(b *testing.B, srv *testserver.Redis, accounts int) xferBank {
	return &watchBank{plainBank: openPlainBank(b, srv, accounts, newPrefix("xfer-watch"))}
}

func (w *watchBank) transfer(ctx context.Context, i, j int) error {
	ka, kb := w.keys[i], w.keys[j]
	fn := func(tx *goredis.Tx) error {
		vals, err := tx.MGet(ctx, ka, kb).Result()
		if err != nil {
			return err
		}
		sa, _ := vals[0].(string)
		sb, _ := vals[1].(string)
		a, err1 := strconv.ParseInt(sa, 10, 64)
		c, err2 := strconv.ParseInt(sb, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, ka, strconv.FormatInt(a-1, 10), 0)
			p.Set(ctx, kb, strconv.FormatInt(c+1, 10), 0)
			return nil
		})
		return err
	}
	for {
		err := w.c.Watch(ctx, fn, ka, kb)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
		w.nretries.Add(1)
	}
}

func (w *watchBank) retries() int64 { return w.nretries.Load() }

// luaBank: one script per transfer.
type luaBank struct{ *plainBank }

var xferScript = goredis.NewScript(`
redis.call("DECRBY", KEYS[1], ARGV[1])
redis.call("INCRBY", KEYS[2], ARGV[1])
return 1
`)

func openLuaBank(b *testing.B, srv *testserver.Redis, accounts int) xferBank {
	l := &luaBank{openPlainBank(b, srv, accounts, newPrefix("xfer-lua"))}
	if err := xferScript.Load(context.Background(), l.c).Err(); err != nil {
		l.close()
		b.Fatal(err)
	}
	return l
}

func (l *luaBank) transfer(ctx context.Context, i, j int) error {
	return xferScript.EvalSha(ctx, l.c, []string{l.keys[i], l.keys[j]}, 1).Err()
}

func (l *luaBank) retries() int64 { return 0 }
