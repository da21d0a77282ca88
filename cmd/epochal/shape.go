package main

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// shape is what refs set compares between a ref's stored value and the
// one it would write, so that it does not break the ref's typed readers (a
// Go program reading a Ref[int] cannot read a string). It is the msgpack
// type of the value (nil, bool, integer, float, string, binary, array,
// map, extension; signed and unsigned integers alike, float32 and float64
// alike) and, for a non-empty map, the type of its first key, and for a
// non-empty array the type of its first element. Nothing deeper is
// compared.
type shape struct {
	Type string // "nil", "bool", "integer", "float", "string", "binary", "array", "map", "extension"
	Key  string // a non-empty map's key type
	Elem string // a non-empty array's element type
}

func (s shape) String() string {
	switch {
	case s.Key != "":
		return "map with " + s.Key + " keys"
	case s.Elem != "":
		return "array of " + s.Elem
	case s.Type == "map" || s.Type == "array":
		return "empty " + s.Type
	}
	return s.Type
}

// codeType is the msgpack type a value's first byte announces ("" for a
// byte no value starts with).
func codeType(c byte) string {
	switch {
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.False || c == msgpcode.True:
		return "bool"
	case msgpcode.IsFixedNum(c), c == msgpcode.Uint8, c == msgpcode.Uint16, c == msgpcode.Uint32, c == msgpcode.Uint64,
		c == msgpcode.Int8, c == msgpcode.Int16, c == msgpcode.Int32, c == msgpcode.Int64:
		return "integer"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case msgpcode.IsString(c):
		return "string"
	case msgpcode.IsBin(c):
		return "binary"
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		return "array"
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		return "map"
	case msgpcode.IsExt(c), msgpcode.IsFixedExt(c):
		return "extension"
	}
	return ""
}

// shapeOf is the shape of one msgpack value; ok is false when data is not
// one well-formed msgpack value (another codec's bytes).
func shapeOf(data []byte) (s shape, ok bool) {
	if _, isMsgpack := decodeMsgpack(data); !isMsgpack || len(data) == 0 {
		return shape{}, false
	}
	s.Type = codeType(data[0])
	if s.Type == "" {
		return shape{}, false
	}
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	switch s.Type {
	case "map":
		if n, err := dec.DecodeMapLen(); err == nil && n > 0 {
			if c, err := dec.PeekCode(); err == nil {
				s.Key = codeType(c)
			}
		}
	case "array":
		if n, err := dec.DecodeArrayLen(); err == nil && n > 0 {
			if c, err := dec.PeekCode(); err == nil {
				s.Elem = codeType(c)
			}
		}
	}
	return s, true
}

// sameShape says why a value of shape next cannot replace one of shape old
// ("" when it can). A stored nil (a pointer or interface ref holding
// nothing) takes any shape; an empty map or array matches any map or
// array.
func sameShape(old, next shape) string {
	if old.Type == "nil" {
		return ""
	}
	if old.Type != next.Type || (old.Key != "" && next.Key != "" && old.Key != next.Key) ||
		(old.Elem != "" && next.Elem != "" && old.Elem != next.Elem) {
		return fmt.Sprintf("the stored value is %s, the new one %s", describe(old), describe(next))
	}
	return ""
}

// describe is a shape with its article: "an integer", "a map with string
// keys", "nil".
func describe(s shape) string {
	t := s.String()
	switch t[0] {
	case 'n':
		return t
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + t
	}
	return "a " + t
}
