package txn

import "github.com/epochal/epochal/internal/engine"

// Errors of transactions, checked with errors.Is.
var (
	// ErrOutsideTx: a Tx was used after its Dosync returned (or after the
	// attempt it belonged to ended), or a nil Tx was used. Nothing it asked
	// for is written.
	ErrOutsideTx = engine.ErrOutsideTx
	// ErrSetAfterCommute: Set or Alter of a ref already commuted in the
	// same transaction (Clojure forbids it too). Not retried.
	ErrSetAfterCommute = engine.ErrSetAfterCommute
	// ErrOutcomeUnknown: a commit step failed in a way that may or may not
	// have applied, and the outcome could not be learned from the
	// transaction record. The transaction may have committed; it was not
	// run again. Its intents, if any, are resolved by others once its
	// lease runs out.
	ErrOutcomeUnknown = engine.ErrOutcomeUnknown
	// ErrForeignRef: a ref of a backend the transaction's STM does not know
	// was used in it.
	ErrForeignRef = engine.ErrForeignRef
	// ErrConflict is wrapped by the error of a Dosync that stopped
	// retrying (stm.ErrRetryLimit), with the reason of its last retry: a
	// conflict (first committer wins), a read fault, or an abort by an
	// older transaction.
	ErrConflict = engine.ErrConflict
	// ErrForeignCoordinator: an intent names a coordinator this STM does
	// not use. Refs are shared only by STMs with the same coordinator,
	// whose clock their points come from.
	ErrForeignCoordinator = engine.ErrForeignCoordinator
	// ErrUnknownBackend: a transaction record names refs in a backend this
	// process does not know; a process that knows it finishes the record.
	ErrUnknownBackend = engine.ErrUnknownBackend
	// ErrListRecords wraps a failure to list the coordinator's transaction
	// records (stm.Open, STM.Recover).
	ErrListRecords = engine.ErrListRecords
)
