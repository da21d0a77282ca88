package zk_test

import (
	"testing"
	"time"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/testkit/benchkit"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

// benchTarget starts one real ZooKeeper server for a benchmark
// (standalone; its transaction log fsynced before each write is
// acknowledged, the default) and returns it as internal/bench's target,
// with writes counted from the server's zxid (srvr).
func benchTarget(b *testing.B) (bench.Target, bool) {
	srv := testserver.StartZK(b)
	if srv == nil {
		return bench.Target{}, false
	}
	return bench.Target{Backend: bench.ZK, ZKServers: srv.Servers, ZKWrites: bench.ZxidOf(srv.Servers[0], 5*time.Second),
		Prefix: newRoot("bench")[1:]}, true
}

// BenchmarkZKTransfer runs the bank workload (benchkit.Transfer: a
// transfer of 1 between two of 1000 or 10 accounts, 1 and 16 goroutines)
// against one real ZooKeeper server, three ways (internal/bench has the
// code of each):
//
//   - epochal: s.Dosync with two refs.Ref[int], Alter on both, default
//     options (the one-Multi commit);
//   - epochal-prefetch: the same, starting with refs.Prefetch(tx, from, to);
//   - zk-multi: read both account znodes with their versions (in
//     parallel), one Multi of two version-checked SetData, start again on
//     ErrBadVersion.
//
// writes/commit is the growth of the server's zxid (one per write request
// it applied, failed Multis included) per commit; for epochal it includes
// the batched deletes of one-phase records made during the run.
func BenchmarkZKTransfer(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Transfer(b, t, "epochal", "epochal-prefetch", "zk-multi")
	}
}

// BenchmarkZKSwap runs the swap workload on one counter (benchkit.Swap:
// 1 and 16 goroutines): epochal (refs.Atom[int].Swap), epochal-commute (a
// Dosync with Commute(+1)) and zk-multi (Get with the version, then a
// version-checked SetData).
func BenchmarkZKSwap(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Swap(b, t, "epochal", "epochal-commute", "zk-multi")
	}
}

// BenchmarkZKLock runs the lock workload on one lock (benchkit.Locks:
// uncontended, and handed off between four goroutines): epochal
// (locks.Mutex; its lease is the 10 s session) and zk-multi
// (go-zookeeper's zk.Lock recipe: an ephemeral sequential node, a watch
// on the one before).
func BenchmarkZKLock(b *testing.B) {
	if t, ok := benchTarget(b); ok {
		benchkit.Locks(b, t, "epochal", "zk-multi")
	}
}

// discard is a go-zookeeper logger that logs nothing.
type discard struct{}

func (discard) Printf(string, ...any) {}
