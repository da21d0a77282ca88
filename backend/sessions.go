package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
)

// Errors of the Sessions capability.
var (
	// ErrSessionGone: the session has ended (its lease ran out on the
	// server, it was closed, or the driver lost it), and every entry it
	// added is gone with it. Session ids are never reused.
	ErrSessionGone = errors.New("backend: session ended")
	// ErrEntryExists: a named entry is held by another live session.
	ErrEntryExists = errors.New("backend: entry held by another session")
	// ErrEntryGone: the entry is not there, or is not the session's.
	ErrEntryGone = errors.New("backend: no such entry of this session")
	// ErrBadName: a session id, dir or entry name is empty, longer than
	// MaxSessionName bytes, or holds NUL or control characters.
	ErrBadName = fmt.Errorf("backend: bad name (%w)", ErrNotApplied)
)

// MaxSessionName is the longest session id, dir or entry name, in bytes.
const MaxSessionName = 512

// CheckSessionNames checks pairs of (what, name): CheckSessionName of each,
// the first error.
func CheckSessionNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := CheckSessionName(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// CheckSessionName checks a session id, dir or entry name (what says which,
// for the message).
func CheckSessionName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrBadName, what)
	}
	if len(s) > MaxSessionName {
		return fmt.Errorf("%w: %s of %d bytes, more than %d", ErrBadName, what, len(s), MaxSessionName)
	}
	for _, c := range s {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return fmt.Errorf("%w: %s %q holds %q", ErrBadName, what, s, c)
		}
	}
	return nil
}

// SessionInfo describes a live session.
type SessionInfo struct {
	ID string
	// Holder says who runs the session, for people: host, pid, program.
	Holder string
	// Lease is the effective lease: the backend ends the session when
	// Lease has passed since its last renewal.
	Lease time.Duration
	// Heartbeat is the wall time (the renewing client's) of the last
	// renewal, the opening at first.
	Heartbeat time.Time
}

// Entry is a piece of ephemeral state: it lives in a directory as long as
// the session that added it, and no longer.
type Entry struct {
	Dir  string
	Name string // unique within Dir
	// Seq is a sequential entry's number, drawn from Dir's own counter when
	// the entry was added: strictly increasing, never reused, kept across
	// server restarts the backend survives (the counter outlives the
	// entries). Named entries have Seq 0.
	Seq uint64
	// The rest is filled only when details are asked for.
	Data    []byte
	Created time.Time // wall time at the adding client
	Session SessionInfo
}

// AddEntryRequest adds an entry owned by a session.
type AddEntryRequest struct {
	Session string
	Dir     string
	// Name is unique per call for sequential entries (callers draw random
	// names); for named entries it is the name to hold.
	Name       string
	Sequential bool
	Data       []byte
	Time       time.Time // Created
}

// DirRequest asks ReadDir for a dir's live entries, the dir's revision
// they reflect and, with Adds, the named entries added after a revision.
type DirRequest struct {
	Dir string
	// Details fills each entry's Data, Created and Session (as Entries
	// with details true).
	Details bool
	// Adds asks for the log of named entries added at revisions after
	// Since (DirState.Adds).
	Adds  bool
	Since uint64
}

// Added is the addition of a named entry, as a dir's log keeps it.
type Added struct {
	Name string
	// Rev is the dir's revision the addition made.
	Rev uint64
}

// MinAddLog is the fewest additions of named entries a dir's log keeps:
// a reader that comes back after more additions than that since its
// revision may find the log truncated (DirState.Truncated).
const MinAddLog = 256

// DirState is a dir as one ReadDir saw it.
type DirState struct {
	// Rev is the dir's revision that Entries reflects: every addition and
	// removal of an entry at a revision <= Rev shows in Entries, and none
	// after. 0: nothing was ever added.
	Rev uint64
	// Entries are the live entries at Rev, as Entries returns them.
	Entries []Entry
	// Adds (when asked for) are the additions of named entries at
	// revisions in (Since, Rev], oldest first: each addition of a name
	// that was not held (not a repeat replacing a name's data), whether
	// the entry is still there or has been removed since, so that a
	// member who came and went between two reads is not missed.
	Adds []Added
	// Truncated: the log no longer reaches back to Since (more than
	// MinAddLog additions since, or the dir's log began later): additions
	// after Since and before the oldest one kept are not in Adds.
	Truncated bool
}

// Sessions is the optional capability of a driver that keeps ephemeral
// state: sessions with a lease the backend enforces, and entries that die
// with their session. Mutexes, read-write locks and group membership
// (packages locks and group) are built on it.
//
// Names: ids, dirs and entry names are non-empty strings of at most 512
// bytes without NUL or control characters; the driver encodes them as its
// storage needs (a dir may contain '/').
//
// Liveness is the backend's: an entry is live while its session is, and a
// session is live until Lease passes without a renewal, by the backend's
// own clock (Redis key expiry, the process clock for mem). A backend may
// bind sessions to something that lives at most as long: on ZooKeeper a
// session ends with the client's ZooKeeper session, which its library keeps
// alive with pings while the process runs and which the ensemble expires
// within the session timeout (the effective lease) once it stops. No
// method returns an entry of an ended session.
type Sessions interface {
	// OpenSession starts session id with a lease and returns the effective
	// lease, the one the backend enforces (ZooKeeper negotiates it).
	OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error)
	// RenewSession restarts the lease's countdown and records a heartbeat
	// at now. ErrSessionGone when the session has ended; it stays ended.
	RenewSession(ctx context.Context, id string, now time.Time) error
	// CloseSession ends the session and deletes its entries. Closing an
	// ended or unknown session is not an error.
	CloseSession(ctx context.Context, id string) error

	// AddEntry adds an entry owned by a live session (ErrSessionGone
	// otherwise) and returns it (Name, Seq). It is idempotent for the same
	// session, dir and name: a repeat after an unknown outcome returns the
	// entry already added (a named entry's data is replaced). A named entry
	// held by another live session is ErrEntryExists.
	AddEntry(ctx context.Context, req AddEntryRequest) (Entry, error)
	// SetEntry replaces the data of the session's entry (ErrEntryGone if
	// the session holds no such entry).
	SetEntry(ctx context.Context, session, dir, name string, data []byte) error
	// RemoveEntry removes the session's entry; ErrEntryGone (and nothing
	// removed) if it is not there or not the session's.
	RemoveEntry(ctx context.Context, session, dir, name string) error

	// Entries lists the live entries of dir, by Seq then Name. Data,
	// Created and Session are filled only when details is true (they may
	// cost more round trips).
	Entries(ctx context.Context, dir string, details bool) ([]Entry, error)
	// WaitEntries blocks until entry name of dir may have been removed
	// (name != "") or dir may have changed in any way (name == ""), until
	// at most max has passed (0: no limit), or until ctx ends (its error).
	// It may return early; callers re-read Entries. A backend that cannot
	// notice an expired session by itself polls within max.
	WaitEntries(ctx context.Context, dir, name string, max time.Duration) error
	// Dirs lists the dirs starting with prefix that hold live entries,
	// sorted.
	Dirs(ctx context.Context, prefix string) ([]string, error)

	// ReadDir lists the live entries of a dir with the dir's revision
	// they reflect and, if asked, the named entries added since a
	// revision: the ground for a list-then-watch that misses nothing.
	//
	// A dir's revision is a number that grows with every addition and
	// every removal of one of its entries (a session's end included: the
	// first read after it counts it on Redis, the server's deletion on
	// ZooKeeper, the end itself on mem) and never goes back (across
	// server restarts the backend survives); it may also grow on other
	// changes. Revisions are the backend's own numbers (mem and Redis: a
	// per-dir change counter; ZooKeeper: the dir node's Pzxid): compare
	// them only within one dir of one backend.
	//
	// Each dir keeps a log of the additions of its named entries, at
	// least the MinAddLog newest (sequential entries are not logged:
	// their names are never reused, a queue needs no history). A reader
	// that lists at revision R and later asks for the adds since R learns
	// every member that came and went in between, even if the entry was
	// gone before it looked again: a session that ends by itself writes
	// nothing, but its joining did.
	ReadDir(ctx context.Context, req DirRequest) (DirState, error)
}

// EntryLister is an optional capability of a Sessions driver: AddEntry and
// then Entries(dir, false) in one round trip, the whole of an uncontended
// lock acquisition. The list reflects the dir just after the add.
type EntryLister interface {
	AddEntryList(ctx context.Context, req AddEntryRequest) (Entry, []Entry, error)
}

// SessionStore is what the coordination recipes (packages locks and group)
// are built over: a driver that keeps sessions (backend/mem, backend/redis
// and backend/zk do: their Sessions returns the driver itself), or an
// *stm.STM, whose coordinator's sessions they use. The type checks at
// compile time what was a runtime error. A driver of another module that
// implements Sessions should implement SessionStore too, with the same
// one-line method; one held as a Driver is passed as
// d.(backend.SessionStore).
//
// A store that is itself a Sessions is used as it is, never through its
// Sessions method: a wrapper that embeds a driver and overrides some
// session calls inherits the driver's Sessions method, which would hand
// out the driver underneath, without the overrides.
type SessionStore interface {
	// Sessions returns the store's sessions, nil if it keeps none (the
	// recipes then fail with their ErrUnsupported).
	Sessions() Sessions
}
