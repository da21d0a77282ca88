package refs

import (
	"errors"

	"github.com/epochal/epochal/backend"
)

// Errors of reference types, checked with errors.Is.
var (
	// ErrValidation: a validator rejected a value. It wraps the
	// validator's own error too.
	ErrValidation = errors.New("refs: validator rejected value")
	// ErrNotFound: no reference of that name exists.
	ErrNotFound = backend.ErrNotFound
	// ErrType: the stored bytes are a well-formed encoding of a value
	// that does not decode as the handle's type, or the name holds
	// another kind of reference.
	ErrType = errors.New("refs: wrong type")
	// ErrCorrupt: the stored bytes are not a well-formed encoding at all
	// (for msgpack: empty, truncated, an invalid code, trailing bytes),
	// or the backend found the ref's stored data malformed. It is
	// backend.ErrCorrupt.
	ErrCorrupt = backend.ErrCorrupt
	// ErrTooLarge: the encoded value exceeds the STM's MaxValueSize.
	ErrTooLarge = errors.New("refs: value too large")
	// ErrEncode: the codec cannot encode the value.
	ErrEncode = errors.New("refs: cannot encode value")
	// ErrHistoryTrimmed: At asked for a point the kept history no longer
	// reaches.
	ErrHistoryTrimmed = errors.New("refs: history no longer reaches that point")
	// ErrName: the name is empty or malformed.
	ErrName = errors.New("refs: bad name")
	// ErrOption: an option does not fit the call.
	ErrOption = errors.New("refs: bad option")
)
