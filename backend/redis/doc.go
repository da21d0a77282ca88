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
// Config.WaitReplicas makes each commit WAIT for replicas before it is
// acknowledged; one that falls short is an unknown outcome
// (ErrNotReplicated, and stm.ErrOutcomeUnknown from Dosync).
//
// # Deadlines
//
// Every call returns by the time its ctx ends, whatever the server does:
// Open's client has ContextTimeoutEnabled (a command's socket deadline is
// its ctx's), and every command runs so that its caller returns when the
// ctx ends even over a client given to New without it (see New). A
// change the server had not confirmed by then has an unknown outcome: its
// error does not wrap backend.ErrNotApplied.
//
// # Sessions
//
// The backend implements backend.Sessions. A session is a hash
// {Prefix}:ss:id (holder, lease, heartbeat) with a PEXPIRE of its lease:
// Redis ends it by its own clock, and RenewSession restarts the countdown.
// {Prefix}:sx:id lists the session's entries (for CloseSession) and
// outlives it by 10 minutes, so that an ended id is not opened again
// (ErrSessionGone). A dir d is a sorted set {Prefix}:dz:d (score Seq,
// member the name: Entries come out by Seq then name) and a hash
// {Prefix}:dh:d (name -> session, created, data); sequence numbers come
// from the counter {Prefix}:sq:d, which is never deleted, so that Seq (a
// fencing token) never goes back, across restarts with AOF too. The
// change counter {Prefix}:dv:d is the dir's revision, and {Prefix}:dl:d
// logs the newest 256 additions of named entries with their revisions
// ({Prefix}:df:d: the revision of the newest one dropped), for ReadDir. Every key
// family has one variable part, at its end, so no two dirs or ids collide.
// An entry whose session key is gone is dead: every script that reads a
// dir drops such entries before answering. Every change is one idempotent
// script and publishes the entry's name on {Prefix}:dc:d, a hint only:
// WaitEntries subscribes, then looks at the dir, and looks again every
// 250ms (whatever max, 0 included), since an expired session publishes
// nothing and a hint is lost when the subscription reconnects. Every wait
// of a Backend shares one Pub/Sub connection, subscribed to a dir's
// channel while the dir has waiters (Close closes it).
//
// What the backend cannot return to a caller (the server lost its data) is
// logged to Config.Logger, by default slog.Default().
package redis
