package redis_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// These examples need a Redis server: they are compiled, not run.

// Open dials one server. Every key of the backend lives under "{app1}:".
// Run the server with appendonly yes (docs/operations.md).
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redis.Open(ctx, redis.Config{
		Addr:     "127.0.0.1:6379",
		Prefix:   "app1",
		Username: "epochal", // a Redis ACL user; empty for the default user
		Password: "secret",
		// TLS: &tls.Config{...} to connect with TLS.
	})
	if err != nil {
		panic(err) // unreachable server, bad credentials, bad Config (redis.ErrConfig)
	}
	defer b.Close()
	s, err := stm.Open(ctx, b) // b is the coordinator: it holds the clock
	if err != nil {
		panic(err)
	}
	defer s.Close()

	visits, _ := refs.New(ctx, s, "site/visits", 0) // created, or joined if it exists
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		visits.Commute(tx, func(n int) int { return n + 1 })
		return nil
	})
	if errors.Is(err, stm.ErrOutcomeUnknown) {
		fmt.Println("the server did not answer in time: the visit may have been counted")
	}
}

// New runs over a go-redis client of your own: here a Sentinel failover
// client. A failover can lose acknowledged commits the old master had not
// yet replicated (docs/operations.md).
func ExampleNew() {
	client := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName:    "mymaster",
		SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
		Username:      "epochal",
		Password:      "secret",
		// Give up a command, and free its connection, at the ctx's
		// deadline rather than after ReadTimeout.
		ContextTimeoutEnabled: true,
	})
	defer client.Close()
	b, err := redis.New(client, redis.Config{Prefix: "app1"}) // Close does not close client
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

// Over a Cluster: every key of a prefix shares one hash tag, so one slot
// (one master). Spread load by giving tenants different prefixes. A
// client that reads from replicas is refused with redis.ErrConfig.
func ExampleNew_cluster() {
	client := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
		ContextTimeoutEnabled: true,
		// ReadOnly, RouteByLatency and RouteRandomly must stay false.
	})
	defer client.Close()
	b, err := redis.New(client, redis.Config{Prefix: "tenant-42"})
	if errors.Is(err, redis.ErrConfig) {
		panic(err) // e.g. a client that routes reads to replicas
	}
	if err != nil {
		panic(err)
	}
	defer b.Close()
}
