package redis_test

import (
	"os"
	"strings"
	"testing"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/benchkit"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// confEnv names the environment variable with extra redis.conf lines for
// the benchmarks' server, separated by ";", e.g.
// `appendonly no;save ""` for a server without persistence.
const confEnv = "EPOCHAL_BENCH_REDIS_CONF"

// benchTarget starts one real redis-server for a benchmark (testserver's:
// appendonly yes, appendfsync always, plus EPOCHAL_BENCH_REDIS_CONF's
// lines) and returns it as internal/bench's target.
func benchTarget(b *testing.B) (bench.Target, bool) {
	var conf []string
	if v := os.Getenv(confEnv); v != "" {
		conf = strings.Split(v, ";")
	}
	srv := testserver.StartRedis(b, testserver.RedisOptions{Args: conf})
	if srv == nil {
		return bench.Target{}, false
	}
	return bench.Target{Backend: bench.Redis, RedisAddr: srv.Addr, RedisUser: srv.User, RedisPassword: srv.Password,
		RedisTLS: srv.ClientTLS(), Prefix: newPrefix("bench")}, true
}

// BenchmarkRedisTransfer runs the bank workload (benchkit.Transfer: a
// transfer of 1 between two of 1000 or 10 accounts, 1 and 16 goroutines)
// against one real redis-server, four ways, each with its own go-redis
// client whose round trips are counted (internal/bench has the code of
// each):
//
//   - epochal: s.Dosync with two refs.Ref[int], Alter on both, default
//     options (the one-phase Lua commit);
//   - epochal-prefetch: the same, starting with refs.Prefetch(tx, from, to);
//   - watch-multi: go-redis WATCH, MGET, MULTI/SET/SET/EXEC, retried at
//     once on TxFailedErr;
//   - lua: one EVALSHA doing the whole transfer, the one-round-trip limit.
//
// `epochal bench --backend redis` runs the same cells for a time each.
func BenchmarkRedisTransfer(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Transfer(b, t, "epochal", "epochal-prefetch", "watch-multi", "lua")
	}
}

// BenchmarkRedisSwap runs the swap workload on one counter
// (benchkit.Swap: 1 and 16 goroutines): epochal (refs.Atom[int].Swap),
// epochal-commute (a Dosync with Commute(+1)), watch-multi (WATCH, GET,
// MULTI/SET/EXEC) and lua (one EVALSHA of INCRBY, the server-side limit).
func BenchmarkRedisSwap(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Swap(b, t, "epochal", "epochal-commute", "watch-multi", "lua")
	}
}

// BenchmarkRedisLock runs the lock workload on one lock (benchkit.Locks:
// uncontended, and handed off between four goroutines): epochal
// (locks.Mutex, 10 s lease) and lua (SET key token NX PX, tried again
// every millisecond while held, released by a compare-and-delete script).
func BenchmarkRedisLock(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Locks(b, t, "epochal", "lua")
	}
}
