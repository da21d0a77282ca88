package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/stm"
)

// xferConfEnv names the environment variable with extra redis.conf lines
// for BenchmarkRedisTransfer's server.
const xferConfEnv = "EPOCHAL_BENCH_REDIS_CONF"

// BenchmarkRedisTransfer measures transfers of 1 unit between two distinct
// accounts chosen at random with benchkit.Transfer (one op is one committed
// transfer; workloads uncontended-1000 and contended-10, each with 1 and 16
// goroutines; the sum of all balances checked after each run), against one
// real redis-server (started once per run of the benchmark), four ways:
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
// Every variant has its own go-redis client with a hook counting round
// trips (countHook): one per command processed and one per pipeline or
// MULTI/EXEC pipeline sent. Each sub-benchmark uses its own key prefix.
//
// The server is testserver's (appendonly yes, appendfsync always: every
// write is on disk before its reply). EPOCHAL_BENCH_REDIS_CONF adds
// redis.conf lines, separated by ";", e.g. "appendfsync no".
//
// Metrics: commits/s, retries/commit, p50-µs and p99-µs (see
// benchkit.Transfer) and round-trips/commit (round trips during the timed
// run / b.N).
func BenchmarkRedisTransfer(b *testing.B) {
	var conf []string
	if v := os.Getenv(xferConfEnv); v != "" {
		conf = strings.Split(v, ";")
	}
	srv := testserver.StartRedis(b, testserver.RedisOptions{Args: conf})
	if srv == nil {
		return
	}
	epochal := benchkit.EpochalBanks(func(b *testing.B) benchkit.Epochal { return openEpochal(b, srv, "xfer-epochal") })
	benchkit.Transfer(b, "round-trips", append(epochal,
		benchkit.BankImpl{Name: "watch-multi", Open: func(b *testing.B, accounts int) benchkit.Bank {
			return &watchBank{plainBank: openPlainBank(b, srv, accounts, newPrefix("xfer-watch"))}
		}},
		benchkit.BankImpl{Name: "lua", Open: func(b *testing.B, accounts int) benchkit.Bank { return openLuaBank(b, srv, accounts) }},
	))
}

// xferClient returns a new go-redis client of srv with default options and
// a round-trip counter.
func xferClient(srv *testserver.Redis) (*goredis.Client, *countHook) {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: srv.User, Password: srv.Password, TLSConfig: srv.ClientTLS()})
	h := &countHook{}
	c.AddHook(h)
	return c, h
}

// openEpochal opens an STM on the Redis backend, default options, over a
// new xferClient, under a new prefix starting with base; the harness
// counts the client's round trips.
func openEpochal(b *testing.B, srv *testserver.Redis, base string) benchkit.Epochal {
	c, h := xferClient(srv)
	be, err := redis.New(c, redis.Config{Prefix: newPrefix(base)})
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	s, err := stm.Open(context.Background(), be)
	if err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	return benchkit.Epochal{
		S:     s,
		Count: func(*testing.B) int64 { return h.n.Load() },
		Close: func() { _ = c.Close() },
	}
}

// plainBank: one string key per account, decimal values; the base of
// watch-multi and lua.
type plainBank struct {
	c    *goredis.Client
	h    *countHook
	keys []string
}

func openPlainBank(b *testing.B, srv *testserver.Redis, accounts int, prefix string) *plainBank {
	ctx := context.Background()
	c, h := xferClient(srv)
	p := &plainBank{c: c, h: h, keys: make([]string, accounts)}
	pairs := make([]any, 0, 2*accounts)
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("{%s}:acct/%04d", prefix, i)
		pairs = append(pairs, p.keys[i], benchkit.Initial)
	}
	if err := c.MSet(ctx, pairs...).Err(); err != nil {
		_ = c.Close()
		b.Fatal(err)
	}
	return p
}

func (p *plainBank) Count(*testing.B) int64 { return p.h.n.Load() }

func (p *plainBank) Total(ctx context.Context) (int64, error) {
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

func (p *plainBank) Close() { _ = p.c.Close() }

// watchBank: WATCH, MGET, MULTI/SET/SET/EXEC, retried on TxFailedErr.
type watchBank struct {
	*plainBank
	nretries atomic.Int64
}

func (w *watchBank) Transfer(ctx context.Context, i, j int) error {
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

func (w *watchBank) Retries() int64 { return w.nretries.Load() }

// luaBank: one script per transfer.
type luaBank struct{ *plainBank }

var xferScript = goredis.NewScript(`
redis.call("DECRBY", KEYS[1], ARGV[1])
redis.call("INCRBY", KEYS[2], ARGV[1])
return 1
`)

func openLuaBank(b *testing.B, srv *testserver.Redis, accounts int) *luaBank {
	l := &luaBank{openPlainBank(b, srv, accounts, newPrefix("xfer-lua"))}
	if err := xferScript.Load(context.Background(), l.c).Err(); err != nil {
		l.Close()
		b.Fatal(err)
	}
	return l
}

func (l *luaBank) Transfer(ctx context.Context, i, j int) error {
	return xferScript.EvalSha(ctx, l.c, []string{l.keys[i], l.keys[j]}, 1).Err()
}

func (l *luaBank) Retries() int64 { return 0 }
