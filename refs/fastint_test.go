package refs

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestFastIntMatchesCodec holds the hand-written ints of fastint.go to
// the codec: every int encodes to the bytes Msgpack.Marshal writes, and
// every encoding the hand-written reader accepts decodes to what
// Msgpack.Unmarshal makes of it; what it leaves to the codec is left.
func TestFastIntMatchesCodec(t *testing.T) {
	ints := []int64{0, 1, 126, 127, 128, 254, 255, 256, 1<<15 - 1, 1 << 15, 1<<16 - 1, 1 << 16,
		1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -31, -32, -33, -127, -128, -129, -1 << 15, -1<<15 - 1, -1 << 31, -1<<31 - 1, math.MinInt64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ints = append(ints, int64(r.Uint64())>>r.IntN(64))
	}
	for _, n := range ints {
		want, err := Msgpack.Marshal(int(n))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendInt(nil, n); !bytes.Equal(got, want) {
			t.Fatalf("%d encodes to %x, the codec writes %x", n, got, want)
		}
		want64, err := Msgpack.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendKind(nil, int64s, n); !bytes.Equal(got, want64) {
			t.Fatalf("int64 %d encodes to %x, the codec writes %x", n, got, want64)
		}
		if got := appendKind(nil, compactInts, n); !bytes.Equal(got, want) {
			t.Fatalf("int %d encodes to %x, the codec writes %x", n, got, want)
		}
	}

	// Every form of an integer the codec reads, and forms it does not.
	var forms [][]byte
	for _, n := range ints {
		forms = append(forms, appendInt(nil, n))
		for _, enc := range []func(*msgpack.Encoder) error{
			func(e *msgpack.Encoder) error { return e.EncodeInt64(n) },
			func(e *msgpack.Encoder) error { return e.EncodeUint64(uint64(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeInt32(int32(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeUint32(uint32(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeInt16(int16(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeUint16(uint16(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeInt8(int8(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeUint8(uint8(n)) },
			func(e *msgpack.Encoder) error { return e.EncodeFloat64(float64(n)) },
		} {
			var buf bytes.Buffer
			if err := enc(msgpack.NewEncoder(&buf)); err != nil {
				t.Fatal(err)
			}
			forms = append(forms, buf.Bytes())
		}
	}
	forms = append(forms, nil, []byte{0xc0}, []byte{0xc2}, []byte{0xa1, 'x'}, []byte{0xcd, 1}, []byte{0x01, 0x02},
		binary.BigEndian.AppendUint64([]byte{0xcf}, math.MaxUint64), []byte{0xd3, 1, 2, 3})
	for _, f := range forms {
		var want int
		werr := Msgpack.Unmarshal(f, &want)
		var want64 int64
		werr64 := Msgpack.Unmarshal(f, &want64)
		got, ok := readInt(f)
		if !ok {
			continue // left to the codec
		}
		if werr != nil || werr64 != nil {
			t.Fatalf("%x: read as %d, the codec fails: %v, %v", f, got, werr, werr64)
		}
		if got != int64(want) || got != want64 {
			t.Fatalf("%x: read as %d, the codec reads %d (int) and %d (int64)", f, got, want, want64)
		}
	}
	for _, f := range [][]byte{{0xc0}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, {0x01, 0x02}, {0xcd, 1}, {0xa1, 'x'}} {
		if _, ok := readInt(f); ok {
			t.Fatalf("%x read by hand: the codec must read it", f)
		}
	}
}

// TestFastIntOnlyForDefaultCodec: a handle takes the hand-written path
// only for int or int64 in the default codec.
func TestFastIntOnlyForDefaultCodec(t *testing.T) {
	type cents int
	for _, c := range []struct {
		got, want intKind
		what      string
	}{
		{intCodec[int](Msgpack), compactInts, "int, msgpack"},
		{intCodec[int64](Msgpack), int64s, "int64, msgpack"},
		{intCodec[int32](Msgpack), noInts, "int32"},
		{intCodec[uint64](Msgpack), noInts, "uint64"},
		{intCodec[cents](Msgpack), noInts, "a named int"},
		{intCodec[string](Msgpack), noInts, "string"},
		{intCodec[int](otherCodec{}), noInts, "int, another codec"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}

type otherCodec struct{ msgpackCodec }
