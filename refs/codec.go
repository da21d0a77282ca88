package refs

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns values into bytes and back. Every process must use the same
// codec for a reference.
//
// A value that fails to decode is refs.ErrCorrupt when its bytes are not a
// well-formed encoding at all, and refs.ErrType when they are one of a
// value of another type. For Msgpack the package tells the two apart
// itself (see wellFormed); another codec's Unmarshal error counts as
// corruption when it wraps ErrCorrupt, io.ErrUnexpectedEOF or io.EOF.
//
// The default, Msgpack, sorts the keys of map[string]any, map[string]string
// and map[string]bool, so equal maps of those types encode to equal bytes;
// other map types encode in Go's (random) iteration order.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Msgpack is the default codec.
var Msgpack Codec = msgpackCodec{}

type msgpackCodec struct{}

// Encoders and decoders are reused: building one per value was a large
// share of a transaction's allocations.
type encState struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

type decState struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var (
	encPool = sync.Pool{New: func() any { return &encState{enc: msgpack.NewEncoder(nil)} }}
	decPool = sync.Pool{New: func() any { return &decState{dec: msgpack.NewDecoder(nil)} }}
)

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	st := encPool.Get().(*encState)
	defer encPool.Put(st)
	st.buf.Reset()
	st.enc.Reset(&st.buf)
	st.enc.SetSortMapKeys(true)
	if err := st.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(st.buf.Bytes()), nil
}

func (msgpackCodec) Unmarshal(data []byte, v any) error {
	st := decPool.Get().(*decState)
	defer func() {
		st.r.Reset(nil)
		decPool.Put(st)
	}()
	st.r.Reset(data)
	st.dec.Reset(&st.r)
	if err := st.dec.Decode(v); err != nil {
		return err
	}
	// Trailing bytes mean the data was not one value of this type.
	if _, err := st.dec.PeekCode(); err == nil {
		return errTrailing
	}
	return nil
}

type codecError string

func (e codecError) Error() string { return string(e) }

const errTrailing = codecError("trailing bytes after the value")

// decodeError classifies a failure of codec c to decode data: ErrCorrupt
// when the bytes are not one well-formed value of the codec (they were
// damaged, truncated, or written by another codec), ErrType when they are
// one of another shape. It is only called on failure, so decoding pays
// nothing for it.
func decodeError(c Codec, data []byte, err error) error {
	if c == Msgpack {
		if !wellFormed(data) {
			return ErrCorrupt
		}
		return ErrType
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return ErrCorrupt
	}
	return ErrType
}

// wellFormed reports whether data is exactly one well-formed msgpack
// value: not empty, not truncated, no code msgpack never uses, nothing
// after it.
func wellFormed(data []byte) (ok bool) {
	if len(data) == 0 {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	st := decPool.Get().(*decState)
	defer func() {
		st.r.Reset(nil)
		decPool.Put(st)
	}()
	st.r.Reset(data)
	st.dec.Reset(&st.r)
	if err := st.dec.Skip(); err != nil {
		return false
	}
	_, err := st.dec.PeekCode()
	return err != nil // nothing left
}
