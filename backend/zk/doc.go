// Package zk is the ZooKeeper backend: refs, the clock and transaction
// records in znodes under a root, written with one Multi per commit.
//
// # Usage
//
//	b, err := zk.Open(ctx, zk.Config{Servers: []string{"127.0.0.1:2181"}, Root: "/app1"})
//	if err != nil { ... }
//	defer b.Close()
//	s, err := stm.Open(ctx, b)
//
// zk.New(conn, cfg) uses a *zk.Conn the caller already has. With
// Config.Auth ("user:password") the backend authenticates with the digest
// scheme and gives every node it creates an ACL that lets that identity,
// and nobody else, read and change it.
//
// # What it stores
//
// Under Root: id (the backend's identity), clock (touched by every commit),
// r/<name> (a ref: kind, history limits, intent and kept versions, one
// znode), m/<name> (its meta), t/<id> (general-path transaction records)
// and o/<id> (one-phase commit records, deleted once their client knows
// the outcome). Names are escaped into one znode name each. See
// docs/design.md for the clock (commit points are zxids), why reads at a
// point are snapshot-consistent although a server may lag, and what the
// backend guarantees under which faults.
//
// # Limits
//
// A ref's value may take up to MaxValueSize (half of Config.MaxRequest,
// about 480 KB by default: the newest value and a staged one share the
// ref's znode), and everything one transaction writes here must fit in one
// request (ErrTooLarge otherwise); older versions are trimmed to fit.
package zk
