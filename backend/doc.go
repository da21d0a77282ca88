// Package backend is the contract between the transaction engine and the
// stores that hold refs, in the way database/sql/driver is the contract
// between database/sql and databases.
//
// Users do not call this package: they open a backend (backend/mem,
// backend/redis, backend/zk) and hand it to stm.Open. Drivers implement
// [Driver]; the conformance suite in package backendtest checks that they do.
//
// # Roles
//
// Every ref lives in one backend. One backend per STM is the coordinator: it
// holds the clock (points) and the transaction records. A transaction may
// touch refs in several backends; the coordinator alone decides whether it
// committed, in one atomic step that draws the commit point and marks the
// record committed.
//
// [Driver] is made of small role interfaces, each documented with who
// calls it:
//
//   - [Coordinator]: the clock and the transaction records (ReadPoint,
//     PutRecord, CommitRecord, AbortRecord, Records, ListRecords,
//     DeleteRecord).
//   - [RefStore]: the refs (Create, Read, Versions, List).
//   - [Participant]: the general commit path's steps on a backend's refs,
//     its intents (Lock, Stage, Resolve).
//   - [MetaStore]: a ref's meta, by compare-and-set (Meta, SetMeta).
//   - [ChangeStream]: change hints (Subscribe).
//
// Driver adds ID and Close. Optional capabilities stay separate
// interfaces, found by type assertion: [OnePhase] (a whole commit in one
// atomic operation), [ValueLimit], [BoundedVersions], [LocalClock] and
// [ReadInto] (in-process stores), [RoundTripCounter] (drivers with a
// server), [Feed] and [Unmarked] (on a subscription), and
// [Sessions] with [EntryLister] (ephemeral state for locks and groups; a
// driver that keeps sessions is also a [SessionStore], what locks and
// groups take: one method returning the driver itself).
//
// # Where each role lives in a driver
//
// The drivers (backend/mem, backend/redis, backend/zk) share one file
// layout: a file name holds the same role in each driver that has it, and
// a role a driver does not have has no file (mem stores no encodings and
// sends no requests).
//
//	file         what it holds                                mem redis zk
//	doc.go       package doc; how the data is stored           x   x    x
//	driver.go    Config, Open/New, ID, Close; the assertions   x   x    x
//	             of Driver, its roles and the capabilities
//	conn.go      requests: round trips within ctx, and the         x    x
//	             checks that notice lost data
//	clock.go     Coordinator: ReadPoint (mem: LocalClock)      x   x    x
//	records.go   Coordinator: the transaction records          x   x    x
//	refs.go      RefStore: Create, Read, Versions, List        x   x    x
//	             (mem: ReadInto; redis: VersionsBounded)
//	commit.go    Participant: Lock, Stage, Resolve; OnePhase   x   x    x
//	meta.go      MetaStore: Meta, SetMeta                      x   x    x
//	watch.go     ChangeStream: Subscribe (a Feed on mem and    x   x    x
//	             Redis)
//	sessions.go  Sessions: open, renew, close; SessionStore   x   x    x
//	entries.go   Sessions: entries and dirs (EntryLister)      x   x    x
//	waits.go     Sessions: WaitEntries                         x   x    x
//	codec.go     the encodings of what is stored (refs,            x    x
//	             intents, records; zk: session nodes too)
//	scripts.go   the Lua scripts (every change, some reads)        x
//	hub.go       the Pub/Sub connection the waits share            x
//	sniff.go     the session timeout from the connect reply             x
//
// Tests keep their own names (the conformance suite runs from
// mem_test.go, redis_test.go and zk_test.go).
//
// # Batches
//
// Each commit step names every ref of the transaction that lives in this
// backend at once ([RefStore.Read], [Participant.Lock], [Participant.Stage],
// [Participant.Resolve]), so a server-backed driver runs it in one round trip. A
// driver that holds the clock and every ref of a transaction may also offer
// [OnePhase], which commits the whole transaction in one atomic operation
// (a Redis script, a ZooKeeper Multi).
//
// # Errors: definite and unknown
//
// Logical outcomes (a conflict, a record that is no longer pending, a ref of
// another kind) are results, not errors. An error returned by a method that
// changes state means the outcome is UNKNOWN: the change may or may not have
// been applied, now or later (a request delayed in the network). The engine
// never assumes either; it learns the outcome from the transaction record
// (I7 in docs/design.md). A driver returns an error wrapping [ErrNotApplied] only
// when it is certain nothing was or will be applied (the request was never
// sent, or the server refused it before acting). Every method must be safe to
// apply twice with the same arguments (go-redis and go-zookeeper retry), and
// must honour ctx at every round trip.
//
// # Change stream
//
// [ChangeStream.Subscribe] delivers hints that a ref may have changed. Hints may be
// late, merged or lost (a Pub/Sub message during a reconnect); the truth is
// the version history read with [RefStore.Versions], and the Trimmed point it
// reports lets a watcher tell a gap from a quiet ref. A subscription may also
// be a [Feed] of the versions themselves. A subscription marks its ref as
// watched, so that commits keep more history (and, on Redis, publish their
// versions), unless it is [Unmarked]: a read-only driver's marks nothing,
// and its watcher relies on reading the history in time.
//
// # Read-only drivers
//
// redis.Config.ReadOnly and zk.Config.ReadOnly open only a namespace that
// already holds Epochal data, for tools that inspect (the CLI). Such a
// backend writes nothing on its own: its open creates nothing; its reads
// (ReadPoint, Read, Versions, List, Records, ListRecords, Entries,
// ReadDir, Dirs, WaitEntries) and its Subscribe leave the stored data as
// they found it, doing none of the housekeeping a writing backend does
// on the way (dropping expired records and dead entries, sweeping
// one-phase records, growing a ref's history after a read fault, marking
// a watched ref). Only the changes its caller asks for are written (a
// commit, PutRecord, AddEntry, ...: the CLI's 'refs set' commits through
// one).
//
// # Usage
//
// A driver implements Driver (and, optionally, OnePhase, LocalClock and, on
// its subscriptions, Feed), states each role it plays, and proves it with
// the conformance suite:
//
//	var (
//		_ backend.Driver       = (*Backend)(nil)
//		_ backend.Coordinator  = (*Backend)(nil)
//		_ backend.RefStore     = (*Backend)(nil)
//		_ backend.Participant  = (*Backend)(nil)
//		_ backend.MetaStore    = (*Backend)(nil)
//		_ backend.ChangeStream = (*Backend)(nil)
//	)
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Driver { return newBackend(t) })
//	}
package backend
