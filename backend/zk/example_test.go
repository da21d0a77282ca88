package zk_test

import (
	"context"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/stm"
)

// These examples need a ZooKeeper ensemble: they are compiled, not run.

// Open connects to an ensemble (list every server: the client moves to
// another when one fails) and keeps everything under Root. With Auth,
// every znode Epochal creates is readable and writable by that digest
// identity only.
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := zk.Open(ctx, zk.Config{
		Servers:        []string{"10.0.0.1:2181", "10.0.0.2:2181", "10.0.0.3:2181"},
		Root:           "/app1",
		Auth:           "epochal:secret",
		SessionTimeout: 10 * time.Second, // the lease of locks and group members
	})
	if err != nil {
		panic(err) // no session within ctx, wrong Auth for an existing Root, bad Config (zk.ErrConfig)
	}
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// A lock's lease on ZooKeeper is the session timeout the server granted.
	m, _ := locks.NewMutex(s, "jobs/nightly")
	if err := m.Lock(ctx); err != nil {
		panic(err)
	}
	defer m.Unlock(context.Background())
}

// New uses a go-zookeeper connection of your own; the backend does not
// close it. Set SessionTimeout to the timeout the connection was made
// with: New cannot learn the one the server granted.
func ExampleNew() {
	servers := []string{"10.0.0.1:2181", "10.0.0.2:2181", "10.0.0.3:2181"}
	conn, _, err := gozk.Connect(servers, 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	b, err := zk.New(conn, zk.Config{Root: "/app1", SessionTimeout: 10 * time.Second, SyncReads: true})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	s, err := stm.Open(context.Background(), b)
	if err != nil {
		panic(err)
	}
	defer s.Close()
}
