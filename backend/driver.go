package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Errors a driver returns.
var (
	// ErrNotApplied marks an error after which the driver is certain that
	// nothing was applied and nothing will be.
	ErrNotApplied = errors.New("backend: not applied")
	// ErrClosed is returned by every method of a closed driver (it wraps
	// ErrNotApplied: a closed driver sends nothing).
	ErrClosed = fmt.Errorf("backend: closed (%w)", ErrNotApplied)
	// ErrTooLarge: a request is larger than the store accepts (a
	// ZooKeeper request over Config.MaxRequest): refused for good,
	// nothing sent. It wraps ErrNotApplied.
	ErrTooLarge = fmt.Errorf("backend: request too large (%w)", ErrNotApplied)
	// ErrNotFound: the ref does not exist.
	ErrNotFound = errors.New("backend: no such ref")
	// ErrDataLost: the backend's storage lost data under this driver: it
	// was emptied or replaced (a Redis server restarted without
	// persistence, FLUSHALL, a ZooKeeper root deleted, possibly recreated
	// since) or went back in time (restored from an older backup), so
	// what this process knows (the points it has seen, the values it has
	// read) no longer matches it, and a commit on top of that would
	// corrupt the data silently. Nothing was applied, and the driver
	// refuses every later call: reopen it (and the STM) once the data is
	// restored or deliberately recreated. It wraps ErrNotApplied.
	ErrDataLost = fmt.Errorf("backend: data lost (%w)", ErrNotApplied)
	// ErrCorrupt: stored data is malformed: a ref's storage is not what
	// a driver writes (a Redis key of another type, a ref hash missing
	// its fields, a version entry or a ZooKeeper node that does not
	// parse), or, from package refs (refs.ErrCorrupt), a value's bytes
	// are not a well-formed encoding. Drivers wrap it with the ref's
	// name.
	ErrCorrupt = errors.New("backend: stored data corrupt")
)

// Kind is the reference type stored under a name: one name holds one kind.
type Kind string

// Kinds of references.
const (
	KindRef     Kind = "ref"
	KindAtom    Kind = "atom"
	KindPromise Kind = "promise"
	KindDelay   Kind = "delay"
)

// Version is one committed value of a ref; see history.Version.
type Version = history.Version

// Intent is a write lock on one ref held by a transaction. It lives with the
// ref's data so that lock, check and stage are one atomic step.
type Intent struct {
	Txn   string // the holder's transaction id
	Coord string // ID() of the coordinator that holds the holder's record
	// Write is true when the holder will write a new version (Staged tells
	// whether the value is already staged); false for an Ensure, which
	// only protects the ref.
	Write  bool
	Staged bool
	Value  []byte // the pending value once staged
	// Ensure is true when the holder ensured the ref (ModeEnsure or
	// ModeEnsureCommute): rolling it forward records the commit point as
	// the ref's Ensured point.
	Ensure bool
	// Round is the LockRequest.Round that took the intent (the largest,
	// when a repeated Lock found it taken already); 0 for an intent stored
	// by a version that had no rounds.
	Round uint32
}

// Status of a transaction record.
type Status int

// Record statuses. Missing is what a lookup of an absent record reports:
// the engine treats it like Aborted, because a missing record can never
// become committed (see Coordinator.PutRecord and Coordinator.CommitRecord).
const (
	Missing Status = iota
	Pending
	Committed
	Aborted
)

func (s Status) String() string {
	switch s {
	case Pending:
		return "pending"
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	}
	return "missing"
}

// RefAddr names a ref in a backend.
type RefAddr struct {
	Backend string // the backend's ID()
	Name    string
}

// Record is a transaction record, kept by the coordinator.
type Record struct {
	ID     string
	Status Status
	// RP is the attempt's read point; Priority the read point of the first
	// attempt of its Dosync (older wins).
	RP       clock.Point
	Priority clock.Point
	// CP is the commit point once committed.
	CP clock.Point
	// Lease is the wall time after which another process may abort a
	// pending record and roll its intents back.
	Lease time.Time
	// Refs are the refs the transaction locks, for recovery.
	Refs []RefAddr
	// Created is the wall time the record was written.
	Created time.Time
}

// Times (leases, creation and commit times) are kept to the millisecond.

// CreateRequest creates a ref if absent.
type CreateRequest struct {
	Name       string
	Kind       Kind
	Value      []byte // initial value, stored as a version at point 0
	MinHistory int
	MaxHistory int
}

// CreateResult tells whether the call created the ref, and what exists.
type CreateResult struct {
	Created bool
	Kind    Kind // the kind stored under the name (the caller's, if Created)
}

// ReadRequest reads refs at a point.
type ReadRequest struct {
	// RP is the point to read at.
	RP clock.Point
	// Current asks the driver, which must then be the coordinator, to read
	// at its current point instead, drawn atomically with the reads; the
	// point used is returned in ReadResult.RP. (Begin and prefetched reads
	// in one round trip.)
	Current bool
	// Foreign says RP was drawn from another backend's clock (this
	// driver is not the transaction's coordinator). A driver whose reads
	// may lag behind writes acknowledged elsewhere (a ZooKeeper follower)
	// must first catch up with every write acknowledged before the call.
	Foreign bool
	Names   []string
}

// ReadItem is what one ref holds as seen at a point. The fields are read
// in one atomic step, so an intent and the versions agree.
type ReadItem struct {
	Found bool // false: no such ref
	Kind  Kind
	// Result is history.Found when Version is the newest version at or
	// before RP; history.Fault when history no longer reaches back to RP.
	// On a fault the driver has already grown the ref's kept history by
	// one, up to its MaxHistory.
	Result  history.Result
	Version Version
	// Newest is the newest committed version (equal to Version when
	// nothing newer exists).
	Newest Version
	// Intent is the intent on the ref, if any. The engine decides whether
	// its pending value is visible at RP by asking the coordinator.
	Intent *Intent
}

// ReadResult answers a ReadRequest, in the order of its Names.
type ReadResult struct {
	RP    clock.Point
	Items []ReadItem
}

// Mode of a ref in a commit.
type Mode int

// Modes. Check refs (written or ensured) must have no version newer than the
// read point; Commute refs take the newest value whatever its point.
const (
	ModeWrite   Mode = iota // Set/Alter: Check, value known up front
	ModeEnsure              // Check, no new value
	ModeCommute             // value computed from the newest version under the lock
	ModeEnsureCommute
)

// Check reports whether the mode requires no version newer than the read
// point.
func (m Mode) Check() bool { return m != ModeCommute }

// Ensures reports whether the mode ensures the ref.
func (m Mode) Ensures() bool { return m == ModeEnsure || m == ModeEnsureCommute }

// Conflicts reports whether a ref in mode m, read at rp, whose newest
// version is at newest and which an ensure last protected at ensured,
// fails first committer wins. Written and ensured refs must have no newer
// version; a written ref must also not have been ensured by a transaction
// that committed after rp (I3 in docs/design.md: of an ensurer and a writer of one
// ref, at most one commits unless one saw the other). Ensures do not
// conflict with ensures, and commutes with nothing.
func (m Mode) Conflicts(rp, newest, ensured clock.Point) (bool, clock.Point) {
	switch {
	case m.Check() && newest > rp:
		return true, newest
	case m == ModeWrite && ensured > rp:
		return true, ensured
	}
	return false, 0
}

// Writes reports whether the mode produces a new version.
func (m Mode) Writes() bool { return m != ModeEnsure }

// LockItem asks for an intent on one ref.
type LockItem struct {
	Name  string
	Mode  Mode
	Value []byte // ModeWrite: the value to stage
}

// LockRequest takes intents on refs of one backend, all or none, refusing
// any item that Conflicts (Mode.Conflicts) at RP.
//
// Round numbers the transaction's Lock requests to this backend (1, 2,
// ...): an intent remembers the round that took it, and a give-back (a
// rollback naming a round, see ResolveRequest) drops only intents of that
// round. A transaction that gives intents back and takes them again later
// under the same id is then safe from a delayed copy of its give-back.
type LockRequest struct {
	Txn   string
	Coord string
	RP    clock.Point
	Round uint32
	Items []LockItem
}

// ConflictReason says why a ref blocked a commit.
type ConflictReason int

// Conflict reasons.
const (
	// Newer: a version newer than the read point exists, or (for a
	// written ref) an ensure committed after it (first committer wins: the
	// attempt must retry).
	Newer ConflictReason = iota
	// Locked: another transaction holds an intent (Intent says which).
	Locked
	// Stale: a commute was computed from a version that is no longer the
	// newest (Newest holds the current one): compute again.
	Stale
	// Gone: the ref does not exist.
	Gone
)

// Conflict is one ref that blocked a commit step.
type Conflict struct {
	Name   string
	Reason ConflictReason
	Point  clock.Point // Newer: the newer version's point
	Intent *Intent     // Locked: the holder's intent
	Newest Version     // Stale: the newest version
}

// LockResult answers a LockRequest. When Conflicts is empty every intent is
// held and Newest holds, in item order, each ref's newest committed version
// (commute values are computed from it). Otherwise no intent was taken.
type LockResult struct {
	Conflicts []Conflict
	Newest    []Version
}

// StageItem stages a value into an intent the transaction holds.
type StageItem struct {
	Name  string
	Value []byte
}

// ResolveRequest rolls a transaction's intents forward (Commit: each staged
// value becomes a version at CP, histories are trimmed, watchers hinted, and
// an ensuring intent raises the ref's Ensured point to CP) or back (the
// intents are dropped). Refs whose intent is not Txn's are left
// alone, so the call is idempotent and safe for any helper to make.
//
// A rollback with Round set (a give-back: the transaction goes on and may
// lock the refs again) drops only intents that Lock round took; with Round
// 0 it drops every intent of Txn. Commit ignores Round.
type ResolveRequest struct {
	Txn    string
	Commit bool
	CP     clock.Point
	Time   time.Time // commit time stamped on new versions
	Round  uint32
	Names  []string
}

// Drops reports whether the request resolves in, an intent of req.Txn: a
// commit or a rollback of round 0 resolves any; a give-back (a rollback
// naming a round) only one that round took.
func (req ResolveRequest) Drops(in *Intent) bool {
	return req.Commit || req.Round == 0 || in.Round == req.Round
}

// VersionsResult is a ref's whole kept history.
type VersionsResult struct {
	Kind     Kind
	Versions []Version // newest first, never empty
	// Trimmed is the newest point ever dropped from this history (0 if
	// none). A watcher that last saw point L missed a version iff
	// Trimmed > L.
	Trimmed clock.Point
	// Ensured is the newest commit point of a transaction that ensured
	// the ref (0 if none).
	Ensured clock.Point
	Keep    int // older versions kept beyond the newest
	Min     int // MinHistory
	Max     int // MaxHistory
	Intent  *Intent
}

// RefInfo describes a ref for listings.
type RefInfo struct {
	Name     string
	Kind     Kind
	Newest   clock.Point
	Versions int
	Size     int // bytes of the newest value
	// Err is set, wrapping ErrCorrupt and naming the ref, when the ref's
	// stored data is malformed (see RefStore.List); the fields above then
	// hold what could be read of it.
	Err error
}

// Subscription delivers change hints for one ref.
type Subscription interface {
	// C receives a value after the ref may have changed. It is never
	// closed; hints may be merged, late or lost.
	C() <-chan struct{}
	Close() error
}

// WatchKeep is how many older versions a ref keeps while it is subscribed
// to (see ChangeStream.Subscribe): a watcher that falls further behind than this
// may miss versions the history no longer holds, and is told so by a gap
// notice unless a Feed vouches for them.
const WatchKeep = 256

// KeepFor returns how many older versions a commit keeps of a ref whose
// own Keep is keep: keep, or WatchKeep if more while it is watched.
func KeepFor(keep int, watched bool) int {
	if watched {
		return max(keep, WatchKeep)
	}
	return keep
}

// Feed is an optional capability of a Subscription that also carries the
// versions themselves, so a watcher does not depend on the history still
// holding a version when it gets round to reading it.
type Feed interface {
	// Drain returns the versions appended to the ref since the previous
	// Drain (since Subscribe, the first time), in point order. complete is
	// false when some may be missing (a buffer overflowed, a connection
	// dropped): the watcher then falls back on the history, and announces
	// a gap where that was trimmed. Whatever is missing comes before the
	// first version returned: the versions of one Drain follow one
	// another with nothing missing between them (a feed that loses
	// versions drops what it holds and starts again after the loss).
	Drain() (versions []Version, complete bool)
}

// Unmarked is an optional capability of a Subscription that does not mark
// its ref as watched: a read-only driver's (redis.Config.ReadOnly,
// zk.Config.ReadOnly), which writes nothing. While only such
// subscriptions watch a ref, commits keep only the ref's own Keep older
// versions, and a driver whose commits send versions only to marked refs
// (Redis) sends it no hint at all: a watcher sees each change by reading
// the history, when hinted and when it polls, and announces a gap where the
// history no longer holds a change it missed. Never a silent loss; only
// later, and more gaps for a ref that keeps few versions and changes fast.
type Unmarked interface {
	// Unmarked reports whether the subscription leaves its ref unmarked.
	Unmarked() bool
}

// Driver is what every backend implements: an identity, the roles below,
// and Close. Each role is a small interface of its own, so a reader (or a
// wrapper, or a test double) sees what a caller needs of a backend:
//
//   - [Coordinator]: the clock and the transaction records. Every driver
//     can be the coordinator; one per STM is.
//   - [RefStore]: refs themselves: create, read at a point, history, list.
//   - [Participant]: the general commit path's steps on the refs a backend
//     holds (intents: lock, stage, resolve).
//   - [MetaStore]: a ref's meta, changed by compare-and-set.
//   - [ChangeStream]: hints (and, optionally, a [Feed]) of a ref's changes.
//
// Every backend of an STM is a participant for the refs it holds; the
// coordinator is also a participant for its own refs. Optional
// capabilities ([OnePhase], [ValueLimit], [BoundedVersions], [LocalClock],
// [ReadInto], [Sessions], [EntryLister]) are separate interfaces a driver
// may also implement; the engine finds them by type assertion.
type Driver interface {
	// ID names this backend instance (for example "mem:5f3c..." or
	// "redis:127.0.0.1:6379/app1"); intents and records refer to backends
	// by it. Two drivers over the same storage return the same ID.
	ID() string

	Coordinator
	RefStore
	Participant
	MetaStore
	ChangeStream

	// Close releases the driver's resources. Every later call fails with
	// an error wrapping ErrClosed.
	Close() error
}

// Coordinator is the clock and the transaction records: the role of the
// one backend per STM that decides whether a transaction committed, in one
// atomic step that draws the commit point and marks the record committed
// (CommitRecord).
//
// Who calls it: the engine (the transaction engine behind stm, txn and
// refs), on the STM's coordinator alone. It draws read points (through a
// batcher, or directly from a [LocalClock]); keeps a general-path commit's
// record (PutRecord, CommitRecord, AbortRecord, then DeleteRecord);
// settles the record of an intent it meets, aborts an expired one and
// sweeps the records left behind (Records, AbortRecord, ListRecords,
// DeleteRecord); and learns the unknown outcome of a one-phase
// compare-and-set by aborting its id (AbortRecord). The CLI reads the
// clock and the records to show them.
type Coordinator interface {
	// ReadPoint returns the current point: every commit point at or below
	// it has been drawn, and its record marked committed.
	ReadPoint(ctx context.Context) (clock.Point, error)
	// PutRecord creates a pending record, only if no record with its ID
	// exists (an aborted tombstone included): created is false then. A
	// repeat of the same request while the record is still pending (a
	// client library's retry) reports created again.
	PutRecord(ctx context.Context, r Record) (created bool, err error)
	// CommitRecord draws a commit point and marks the record committed
	// with it, in one atomic step, if the record is pending. It returns the
	// record as it stands after the call: Committed with CP (also when it
	// already was: idempotent), or Aborted or Missing.
	CommitRecord(ctx context.Context, id string) (Record, error)
	// AbortRecord marks a pending record aborted, or writes an aborted
	// tombstone when none exists, so that no delayed request can later
	// commit that id. It returns the record as it stands after the call,
	// which is Committed if the transaction won the race.
	AbortRecord(ctx context.Context, id string) (Record, error)
	// Records looks records up; an absent one comes back with Status
	// Missing and its ID.
	Records(ctx context.Context, ids []string) ([]Record, error)
	// ListRecords returns every record, for recovery and inspection.
	ListRecords(ctx context.Context) ([]Record, error)
	// DeleteRecord removes a record whose intents are all resolved. Keep
	// is how long a tombstone (or a one-phase commit record) must still
	// be kept so delayed duplicates meet it; zero deletes at once. A
	// later call never extends an expiry already set.
	DeleteRecord(ctx context.Context, id string, keep time.Duration) error
}

// RefStore is the refs a backend holds: their creation, their reads at a
// point (each with its intent, so the engine can tell a pending write),
// their kept history and a listing.
//
// Who calls it: the engine (a transaction's reads, at its read point or,
// on the coordinator, at the current point drawn with the reads; a ref's
// history as watchers and the CLI see it: Versions), package refs (Create
// for refs, atoms, promises and delays; Read at the current point, outside
// transactions), and the CLI and jepsen-lite (List, Versions).
type RefStore interface {
	// Create creates a ref with its initial value at point 0, if absent.
	Create(ctx context.Context, req CreateRequest) (CreateResult, error)
	// Read reads refs at a point, each with its intent, atomically per ref.
	// (Read and Versions of a malformed ref fail with an error wrapping
	// ErrCorrupt that names it; a Read of several refs fails as a whole.)
	Read(ctx context.Context, req ReadRequest) (ReadResult, error)
	// Versions returns a ref's kept history.
	Versions(ctx context.Context, name string) (VersionsResult, error)
	// List returns the refs whose names start with prefix, sorted by name.
	// A ref whose stored data is malformed does not fail the listing: it
	// is listed with Err set (wrapping ErrCorrupt), so the caller learns
	// its name and every other ref is still listed. An error is returned
	// only when the listing itself failed (the server could not be read).
	List(ctx context.Context, prefix string) ([]RefInfo, error)
}

// Participant is the general commit path's steps on the refs of one
// backend, the participant's part of a two-phase commit: take intents
// (write locks that live with the refs' data) checking for conflicts,
// stage values into them, and roll them forward at the commit point or
// back. Each step names every ref of the transaction in this backend at
// once (one round trip on a server).
//
// Who calls it: the engine alone: a general-path commit (Lock, Stage,
// then Resolve once the coordinator has decided), and the recovery that
// finishes, forward or back, the intents of a transaction whose record it
// settled (Resolve).
type Participant interface {
	// Lock takes intents on every item, or none (see LockResult). A ref
	// whose intent is already Txn's counts as taken (idempotent); its
	// Round becomes the larger of its own and the request's.
	Lock(ctx context.Context, req LockRequest) (LockResult, error)
	// Stage stores values into intents Txn holds. ok is false, and nothing
	// is staged, if any intent is no longer Txn's.
	Stage(ctx context.Context, txn string, items []StageItem) (ok bool, err error)
	// Resolve rolls intents forward or back (see ResolveRequest).
	Resolve(ctx context.Context, req ResolveRequest) error
}

// MetaStore is a small map stored beside a ref's value, outside its
// history and transactions, changed by compare-and-set on its version.
//
// Who calls it: package refs (Meta, ResetMeta and AlterMeta of refs,
// atoms, promises and delays).
type MetaStore interface {
	// Meta returns a ref's meta (nil if never set) and its version.
	Meta(ctx context.Context, name string) ([]byte, uint64, error)
	// SetMeta replaces meta if its version is still expect.
	SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (ok bool, err error)
}

// ChangeStream is the change stream: hints that a ref may have changed,
// the truth being its history (RefStore.Versions). A subscription may also
// be a [Feed] of the versions themselves.
//
// Who calls it: package refs (watches, and a promise's or a delay's
// waiters) and the CLI (watching a ref).
type ChangeStream interface {
	// Subscribe returns hints of changes to a ref. While a subscription
	// to a ref is open, in any process, every commit to the ref keeps at
	// least WatchKeep older versions (beyond what the ref's own Keep
	// asks; still fewer when they would not fit a size limit of the
	// backend, which Trimmed then shows), so a watcher that reads the
	// history within WatchKeep commits of a change misses none, with or
	// without a Feed. A subscription whose process died stops counting
	// within a bound the driver documents. A subscription that is
	// [Unmarked] (a read-only driver's, which writes nothing) does not
	// count, and says so.
	Subscribe(ctx context.Context, name string) (Subscription, error)
}

// OnePhaseItem is one ref of a one-phase commit.
type OnePhaseItem struct {
	Name  string
	Mode  Mode
	Value []byte // the new value (ModeWrite, or a commute computed from Base)
	// Base is the point of the version a commute value was computed from;
	// the commit reports Stale if the newest version is no longer it.
	Base clock.Point
}

// OnePhaseRequest commits a transaction whose refs all live in the
// coordinator.
type OnePhaseRequest struct {
	Txn   string
	RP    clock.Point
	Time  time.Time
	Items []OnePhaseItem
}

// OnePhaseResult answers a OnePhaseRequest: Committed with CP, or the
// conflicts that stopped it (nothing applied), or Aborted when the id was
// already aborted (a tombstone).
type OnePhaseResult struct {
	Status    Status
	CP        clock.Point
	Conflicts []Conflict
}

// OnePhase is the optional fast path of a driver that holds the clock and
// every ref of a transaction: in ONE atomic operation it checks that no item
// Conflicts (Mode.Conflicts), that no commute's Base is stale, and that no ref
// carries another transaction's intent; draws CP; appends the versions;
// raises the Ensured point of ensured refs to CP; trims histories; records
// the id as committed (so a repeated request returns the same CP and applies
// nothing, and one that meets an aborted tombstone applies nothing); and
// hints watchers.
type OnePhase interface {
	CommitOnePhase(ctx context.Context, req OnePhaseRequest) (OnePhaseResult, error)
}

// ValueLimit is implemented by a driver that cannot store values of any
// size: refs refuse larger values (refs.ErrTooLarge) before sending them.
type ValueLimit interface {
	MaxValueSize() int
}

// BoundedVersions is implemented by a driver that can read a ref's history
// without transferring values larger than a limit. VersionsBounded is
// Versions, except that each version whose value is larger than maxValue
// bytes comes back with Value nil and Omitted set to its size. Readers
// with a limit (package refs, the CLI) use it where the driver has it, so
// an oversized value planted in the storage costs them no memory.
type BoundedVersions interface {
	VersionsBounded(ctx context.Context, name string, maxValue int) (VersionsResult, error)
}

// LocalClock is implemented by a driver whose ReadPoint costs no round trip
// (an in-process clock). The engine then reads it directly instead of
// batching concurrent read-point requests, which only pays off when each
// request crosses a network.
type LocalClock interface {
	LocalClock()
}

// RoundTripCounter is implemented by a driver that talks to a server: it
// counts the requests it sent and waited on the answer to (a command, a
// pipeline or a script on Redis; a call, a multi or a batch of reads sent
// together on ZooKeeper), for every caller of the driver (transactions,
// atoms, locks, groups, watch marks, sweeps). A call the client library
// retries counts once; Redis's Pub/Sub connections (change feeds, lock
// and group hints) are not counted. The STM reports the count as the
// metric epochal.backend.round_trips of each backend it knows, once per
// driver and meter provider however many STMs know it.
type RoundTripCounter interface {
	RoundTrips() uint64
}

// ReadInto is implemented by a driver whose reads cost no round trip (an
// in-process store): Read, with the result's Items in dst's array when it
// has room for them, so that a read allocates nothing for its result. The
// engine uses it for the reads of one ref an attempt makes, with a buffer
// of its own that it reuses once it has copied the item out.
type ReadInto interface {
	ReadInto(ctx context.Context, req ReadRequest, dst []ReadItem) (ReadResult, error)
}
