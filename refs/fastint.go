package refs

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// The default codec's ints, by hand. A Ref[int] or Ref[int64] in msgpack
// (the default) encodes and decodes its values here instead of through
// the codec: no boxing into an interface, no encoder or decoder, no copy.
// The bytes are the ones the codec writes (msgpack's compact ints: the
// shortest form), and a value is read by hand only in a form the codec
// reads the same way (an integer code, nothing after it); anything else
// (nil, a float, another type, damaged bytes) goes through the codec, so
// its value or its error are the codec's own. TestFastIntMatchesCodec
// holds both to the codec.

// intKind says how a handle's values are encoded: not by hand (noInts),
// or as the codec encodes an int (the shortest form) or an int64 (always
// 9 bytes).
type intKind uint8

const (
	noInts intKind = iota
	compactInts
	int64s
)

// intCodec tells whether the values of a handle of T with codec c are
// ints this file handles, and how: T is int or int64, 64 bits wide (so
// that a T and an int64 share one representation), and c is the default
// codec.
func intCodec[T any](c Codec) intKind {
	if _, msgpack := c.(msgpackCodec); !msgpack {
		return noInts
	}
	var zero T
	if unsafe.Sizeof(zero) != 8 {
		return noInts
	}
	switch any(zero).(type) {
	case int:
		return compactInts
	case int64:
		return int64s
	}
	return noInts
}

// appendKind appends n as the codec writes a value of kind k.
func appendKind(b []byte, k intKind, n int64) []byte {
	if k == int64s {
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
	}
	return appendInt(b, n)
}

// intFrom and intTo convert between a T of a handle for which intCodec
// holds and an int64.
func intFrom[T any](v T) int64 { return *(*int64)(unsafe.Pointer(&v)) }
func intTo[T any](n int64) T   { return *(*T)(unsafe.Pointer(&n)) }

// appendInt appends n as msgpack's Encoder.EncodeInt writes it.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8, n < 0 && n >= -32: // positive, negative fixnum
		return append(b, byte(n))
	case n >= 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
	}
}

// readInt reads data as msgpack's Decoder.DecodeInt64 does, if data is
// exactly one integer (a fixnum or an int or uint code of 8 to 64 bits);
// ok is false for anything else, which the codec is left to read.
func readInt(data []byte) (n int64, ok bool) {
	if len(data) == 0 {
		return 0, false
	}
	c, rest := data[0], data[1:]
	if c <= 0x7f || c >= 0xe0 { // fixnum
		return int64(int8(c)), len(rest) == 0
	}
	switch {
	case (c == 0xcc || c == 0xd0) && len(rest) == 1:
		if c == 0xcc {
			return int64(rest[0]), true
		}
		return int64(int8(rest[0])), true
	case (c == 0xcd || c == 0xd1) && len(rest) == 2:
		u := binary.BigEndian.Uint16(rest)
		if c == 0xcd {
			return int64(u), true
		}
		return int64(int16(u)), true
	case (c == 0xce || c == 0xd2) && len(rest) == 4:
		u := binary.BigEndian.Uint32(rest)
		if c == 0xce {
			return int64(u), true
		}
		return int64(int32(u)), true
	case (c == 0xcf || c == 0xd3) && len(rest) == 8:
		return int64(binary.BigEndian.Uint64(rest)), true // uint64 wraps, as in msgpack
	}
	return 0, false
}
