// Package redis is the Redis backend: refs, the clock and transaction
// records in a Redis server, over github.com/redis/go-redis/v9.
//
// # Usage
//
//	b, err := redis.Open(ctx, redis.Config{Addr: "127.0.0.1:6379", Prefix: "app1"})
//	defer b.Close()
//	s, err := stm.Open(ctx, b)
//
// or, over a client you already have (Sentinel, Cluster, your own options):
//
//	b, err := redis.New(client, redis.Config{Prefix: "app1"})
//
// Every key lives under "{Prefix}:" (the braces make the prefix a Cluster
// hash tag, so all keys of one prefix sit in one slot and one script can
// touch them). Tenants with different prefixes never see each other's keys.
// The key layout and the scripts are in docs/design.md.
//
// When the coordinator and every ref of a transaction live here, the commit
// is one Lua script (backend.OnePhase); otherwise the general path's steps
// are one script each. Change hints go out on Pub/Sub carrying the version
// itself; a subscriber that reconnects reports its feed incomplete and the
// watcher falls back on the history. Redis replicates asynchronously: a
// failover can lose acknowledged commits (see docs/design.md).
package redis
