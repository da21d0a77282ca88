package history

import (
	"errors"
	"fmt"
	"time"

	"github.com/epochal/epochal/clock"
)

// Defaults for a ref's kept history, as in Clojure.
const (
	DefaultMinHistory = 0
	DefaultMaxHistory = 10
	// Limit bounds MaxHistory: more would make every commit carry an
	// unbounded history.
	Limit = 10000
)

// ErrBounds reports history bounds that make no sense.
var ErrBounds = errors.New("history: bad bounds")

// Version is one committed value of a ref.
type Version struct {
	Point clock.Point // commit point (0: the ref's initial value)
	Value []byte      // encoded value
	Txn   string      // id of the transaction that wrote it ("" for the initial value)
	Time  time.Time   // wall time of the commit, as the committer saw it
	// Omitted, when > 0, is the size in bytes of a value the driver left
	// out (Value is nil) because it is larger than the limit the reader
	// gave (backend.BoundedVersions).
	Omitted int
}

// Result says how a read at a point went.
type Result int

const (
	// Found: a version at or before the point exists in the kept history.
	Found Result = iota
	// Fault: versions existed at or before the point but were trimmed; the
	// reader must retry at a newer point and history should grow.
	Fault
)

// Pick returns the newest version at or before rp from versions (newest
// first). When every kept version is newer than rp the read faults.
func Pick(versions []Version, rp clock.Point) (Version, Result) {
	for _, v := range versions {
		if v.Point <= rp {
			return v, Found
		}
	}
	return Version{}, Fault
}

// Grow returns the kept-history length after a read fault.
func Grow(keep, max int) int {
	if keep < max {
		return keep + 1
	}
	return max
}

// Trim keeps the newest version and keep older ones. It returns the kept
// versions and the newest point ever trimmed away (given the previous one),
// which tells a watcher whether it missed a version.
func Trim(versions []Version, keep int, trimmed clock.Point) ([]Version, clock.Point) {
	n := keep + 1
	if len(versions) <= n {
		return versions, trimmed
	}
	if p := versions[n].Point; p > trimmed {
		trimmed = p
	}
	// Clear the dropped tail so its values can be collected.
	for i := n; i < len(versions); i++ {
		versions[i] = Version{}
	}
	return versions[:n], trimmed
}

// Check validates history bounds.
func Check(min, max int) error {
	if min < 0 || max < 0 || min > max || max > Limit {
		return fmt.Errorf("%w: MinHistory %d, MaxHistory %d (want 0 <= min <= max <= %d)", ErrBounds, min, max, Limit)
	}
	return nil
}
