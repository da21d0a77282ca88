// Package refs holds Epochal's reference types: Ref[T], the coordinated,
// transactional reference of Clojure's refs, with its validators, watches,
// history and meta.
//
// # Usage
//
//	alice, err := refs.New(ctx, s, "accounts/alice", 100)
//	err = s.Dosync(ctx, func(tx *txn.Tx) error {
//		alice.Alter(tx, func(v int) int { return v - 10 })
//		return nil
//	})
//	v, err := alice.Deref(ctx)
//
// Values are encoded with msgpack unless WithCodec says otherwise; a value
// must encode to at most the STM's MaxValueSize. Names are slash-separated
// paths of letters, digits and ._~:@+=- ("accounts/alice"). New creates the
// ref if absent and otherwise joins it: it never resets a value.
package refs
