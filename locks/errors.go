package locks

import "errors"

// Errors of lock users.
var (
	// ErrNotHeld is returned by Unlock of a lock the caller does not hold.
	ErrNotHeld = errors.New("locks: not held")
	// ErrLost is returned once the holder can no longer be sure it holds
	// the lock (its lease or session ran out).
	ErrLost = errors.New("locks: lease lost")
	// ErrForeignCoordinator: an intent names a coordinator this STM does
	// not use. Refs are shared only by STMs with the same coordinator,
	// whose clock their points come from.
	ErrForeignCoordinator = errors.New("locks: intent held by a transaction of another coordinator")
	// ErrUnknownBackend: a record names refs in a backend this process
	// does not know; a process that knows it finishes the record.
	ErrUnknownBackend = errors.New("locks: record names a backend this STM does not know")
	// ErrListRecords wraps a failure to list the coordinator's records.
	ErrListRecords = errors.New("locks: cannot list records")
)
