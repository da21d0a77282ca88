package refs

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns values into bytes and back. Every process must use the same
// codec for a reference.
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

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (msgpackCodec) Unmarshal(data []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Trailing bytes mean the data was not one value of this type.
	if _, err := dec.PeekCode(); err == nil {
		return errTrailing
	}
	return nil
}

type codecError string

func (e codecError) Error() string { return string(e) }

const errTrailing = codecError("trailing bytes after the value")
