package engine

// The byte-level verbs reference types (package refs) build their typed
// ones on. They are functions of this package, not methods, so that a
// *txn.Tx (an alias of *Tx) offers its users only Context, ReadPoint and
// ID. Like the typed verbs, they unwind the transaction's function on a
// conflict or a backend failure (see Recover).

// Read returns k's value in tx: its own write if it made one, else the
// newest version committed at or before the read point.
func Read(tx *Tx, k Key) []byte { return tx.read(k) }

// Write sets k's value in tx (ref-set). validate, if not nil, is run on the
// final value before commit.
func Write(tx *Tx, k Key, v []byte, validate func([]byte) error) { tx.write(k, v, validate) }

// Commute applies f to k's in-transaction value and returns the result; at
// commit f runs again on the newest committed value, so commutes never
// conflict with each other.
func Commute(tx *Tx, k Key, f CommuteFn, validate func([]byte) error) []byte {
	return tx.commute(k, f, validate)
}

// Ensure protects k from writes by others until tx commits (ruling out
// write skew) and returns its value.
func Ensure(tx *Tx, k Key) []byte { return tx.ensure(k) }

// Claim takes k's local turn (Turns) before a read-modify-write of it.
func Claim(tx *Tx, k Key) { tx.claim(k) }

// Abort ends tx's function with err, without retry: nothing is written.
func Abort(tx *Tx, err error) { tx.abortWith(err) }

// Preload reads the refs of keys that tx has not read yet, one round trip
// per backend (an optimisation; see Tx.preload).
func Preload(tx *Tx, keys ...Key) { tx.preload(keys...) }
