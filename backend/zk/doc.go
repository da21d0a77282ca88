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
// znode), m/<name> (its meta), t/<id> (general-path transaction records),
// o/<id> (one-phase commit records, deleted once their client knows
// the outcome), and ss and sd (sessions, below). Names are escaped into one znode name each. See
// docs/design.md for the clock (commit points are zxids), why reads at a
// point are snapshot-consistent although a server may lag, and what the
// backend guarantees under which faults.
//
// # Sessions
//
// The backend implements backend.Sessions (ephemeral state for locks and
// groups) on its own ZooKeeper session. ss/<id> is a logical session's
// EPHEMERAL node (holder, lease, heartbeat); sd/<dir> is one flat
// PERSISTENT node per dir, never deleted; sd/<dir>/<name> is a named
// entry and sd/<dir>/<name>#<10 digits> a sequential one, both EPHEMERAL
// (data: session, data, created). sl/<dir> logs the dir's newest 256
// additions of named entries (name and zxid), written in the Multi that
// creates the entry, version checked; a dir's revision (ReadDir) is its
// node's Pzxid, which a session's expiry moves too. A Seq is 2^32 plus the zxid of the
// Multi that created the entry (its Czxid): 64-bit, strictly increasing,
// and above every Seq of the earlier scheme (the server's 32-bit sequence
// number plus one, which wrapped). When the ZooKeeper session expires the server
// deletes every session node and entry of this backend at once; the
// logical sessions then report ErrSessionGone, and since every AddEntry
// is a Multi that also writes the session's node, no entry is created for
// them under the next ZooKeeper session. The effective lease is the
// session timeout the server granted (Open reads it from the connect
// response; New reports Config.SessionTimeout), and the backend also ends
// a session itself when RenewSession is not called within it. Sessions
// belong to the Backend that opened them. WaitEntries watches the named
// entry's node alone (a lock waiter wakes only when its predecessor
// goes), or the dir's children and data for name "".
//
// # Limits
//
// A ref's value may take up to MaxValueSize (half of Config.MaxRequest,
// about 480 KB by default: the newest value and a staged one share the
// ref's znode), and everything one transaction writes here must fit in one
// request (ErrTooLarge otherwise); older versions are trimmed to fit.
//
// What the backend cannot return to a caller (the root deleted under it, a
// failed background sweep) is logged to Config.Logger, by default
// slog.Default(), which also gets go-zookeeper's own lines at Debug level.
package zk

// How sessions are stored, in more detail than the package doc (notes for
// maintainers; the records' directories are described in records.go, the
// nodes' encodings in codec.go).
//
// Sessions (backend.Sessions) ride on the driver's ZooKeeper session:
//
//	{root}/ss/<id>          EPHEMERAL, one per logical session: holder,
//	                        lease, heartbeat
//	{root}/sd/<dir>         PERSISTENT, one flat node per dir, never deleted
//	{root}/sd/<dir>/<name>  EPHEMERAL named entry
//	{root}/sd/<dir>/<name>#0000000042
//	                        EPHEMERAL|SEQUENTIAL entry, Seq 2^32 + Czxid
//	{root}/sl/<dir>         PERSISTENT, the dir's log of named additions
//	                        (logNode), never deleted
//
// A dir's revision (ReadDir) is its node's Pzxid: the zxid of the last
// child created or deleted, moved by the server's deletions at a session's
// expiry too. A named entry's addition is logged in sl/<dir> by the Multi
// that creates it (version checked), so the log is in step with the dir.
//
// Ids, dirs and names are escaped (escape), so a dir with slashes is one
// znode and dirs never nest; '#' never appears in an escaped name, so it
// marks sequential entries. Entries hold {session, data, created}.
//
// A logical session lives while its node does, and its node lives while
// the ZooKeeper session that created it: when that expires the server
// deletes the node and every entry at once. Every AddEntry is a Multi that
// also writes the session node, so no entry is ever created for a session
// whose node is gone (a new ZooKeeper session cannot bring it back), and
// CloseSession deletes the entries and the session node in one Multi that
// checks the session node's version, so an entry added meanwhile makes it
// start again rather than outlive the session.
//
// A Seq is seqBase plus the zxid of the Multi that created the entry (the
// entry znode's Czxid; the Mzxid of the session node that the same Multi
// sets, so the adder learns it from the reply). Zxids are 64-bit and
// strictly increasing across the ensemble's whole life (leader changes and
// restarts included), and one Multi creates at most one entry, so Seqs
// strictly increase per dir and never wrap. Listing learns the Seqs of
// other entries from their Czxid (an Exists each, pipelined, cached by
// znode: a sequential znode's name is never reused). Entries are queued in
// Seq order, so the lock queue is the creation order too.
//
// Before this scheme a Seq was the server's sequence number (the dir's
// 32-bit child version) plus one, at most 2^32, which wrapped; seqBase is
// 2^32, so every Seq handed out now is above every one handed out before,
// in roots created by either version. The server's sequence suffix is
// still part of a sequential entry's znode name, only for uniqueness.
