package locks

import "errors"

// Errors of lock users.
var (
	// ErrNotHeld is returned by Unlock of a lock the caller does not hold.
	ErrNotHeld = errors.New("locks: not held")
	// ErrLost is returned once the holder can no longer be sure it holds
	// the lock (its lease or session ran out).
	ErrLost = errors.New("locks: lease lost")
)
