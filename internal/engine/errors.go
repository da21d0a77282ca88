package engine

import (
	"errors"
	"fmt"
)

// Errors of transactions.
var (
	// ErrOutsideTx: a Tx was used after its Dosync returned (or after the
	// attempt it belonged to ended). Nothing it asked for is written.
	ErrOutsideTx = errors.New("txn: transaction used outside its Dosync")
	// ErrSetAfterCommute: Set or Alter of a ref already commuted in the
	// same transaction (Clojure forbids it too). Not retried.
	ErrSetAfterCommute = errors.New("txn: set after commute of the same ref")
	// ErrOutcomeUnknown: a commit step failed in a way that may or may not
	// have applied, and the outcome could not be learned from the
	// transaction record. The transaction may have committed; it was not
	// run again. Its intents, if any, are resolved by others once its
	// lease runs out.
	ErrOutcomeUnknown = errors.New("txn: commit outcome unknown")
	// ErrForeignRef: a ref of a backend the transaction's STM does not know
	// was used in it.
	ErrForeignRef = errors.New("txn: ref of a backend unknown to this STM")
	// ErrConflict is wrapped by the error of a Dosync that stopped
	// retrying (stm.ErrRetryLimit), with the reason of its last retry: a
	// conflict (first committer wins), a read fault, or an abort by an
	// older transaction. It does not ask an outer Dosync to retry.
	ErrConflict = errors.New("txn: conflict")
	// ErrForeignCoordinator: an intent names a coordinator this STM does
	// not use. Refs are shared only by STMs with the same coordinator,
	// whose clock their points come from.
	ErrForeignCoordinator = errors.New("txn: intent held by a transaction of another coordinator")
	// ErrUnknownBackend: a record names refs in a backend this process
	// does not know; a process that knows it finishes the record.
	ErrUnknownBackend = errors.New("txn: record names a backend this STM does not know")
	// ErrListRecords wraps a failure to list the coordinator's records.
	ErrListRecords = errors.New("txn: cannot list records")
)

// RetryError marks an attempt that must run again: a conflict (first
// committer wins), a read fault, or yielding to an older transaction.
type RetryError struct {
	Reason string
	atOnce bool // the attempt gave way to an older one of this process: no backoff
}

func (e *RetryError) Error() string { return "txn: retry: " + e.Reason }

// Cause returns the reason for the retry as an error wrapping ErrConflict
// that is not itself a *RetryError (see ErrConflict).
func (e *RetryError) Cause() error { return fmt.Errorf("%w: %s", ErrConflict, e.Reason) }

func retryf(format string, args ...any) *RetryError {
	return &RetryError{Reason: fmt.Sprintf(format, args...)}
}

// RetryAtOnce reports whether err asks for another attempt without a
// pause: the attempt only gave its local turns to an older transaction of
// this process (see Turns), which it will now wait for.
func RetryAtOnce(err error) bool {
	var r *RetryError
	return errors.As(err, &r) && r.atOnce
}

// IsRetry reports whether err asks for another attempt.
func IsRetry(err error) bool {
	if err == nil {
		return false
	}
	var r *RetryError
	return errors.As(err, &r)
}

// abort is the panic value that unwinds a transaction's function. Only the
// engine raises and recovers it.
type abort struct{ err error }

// Recover tells whether v, a value recovered from a panic, is the engine's
// own unwinding, and returns the error it carries.
func Recover(v any) (error, bool) {
	a, ok := v.(abort)
	if !ok {
		return nil, false
	}
	return a.err, true
}
