package zk_test

import (
	"context"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/locks"
)

// BenchmarkZKLock measures locks.Mutex on the ZooKeeper backend beside
// go-zookeeper's own lock recipe (zk.Lock: an ephemeral sequential node,
// a watch on the predecessor, delete to release), with benchkit.Locks:
// uncontended lock+unlock latency and writes (zxids drawn per op, from
// the server's srvr output), and handoff latency between four goroutines.
// Each variant has one ZooKeeper connection (10 s session) shared by its
// holders, against one standalone server.
func BenchmarkZKLock(b *testing.B) {
	srv := testserver.StartZK(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	be, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: newRoot("benchlock")})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	conn, _, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	writes := func() int64 { return zxid(b, srv) }
	benchkit.Locks(b, []benchkit.LockImpl{
		{
			Name: "epochal",
			New: func(b *testing.B, name string) benchkit.Lock {
				m, err := locks.NewMutex(be, name)
				if err != nil {
					b.Fatal(err)
				}
				return m
			},
			Count: writes, Unit: "writes/op",
		},
		{
			Name: "gozk-lock",
			New: func(b *testing.B, name string) benchkit.Lock {
				return gozkLock{gozk.NewLock(conn, "/gozklock-"+name[len("bench/"):], gozk.WorldACL(gozk.PermAll))}
			},
			Count: writes, Unit: "writes/op",
		},
	})
}

// gozkLock adapts go-zookeeper's lock (no ctx) to benchkit.Lock.
type gozkLock struct{ l *gozk.Lock }

func (g gozkLock) Lock(context.Context) error   { return g.l.Lock() }
func (g gozkLock) Unlock(context.Context) error { return g.l.Unlock() }
