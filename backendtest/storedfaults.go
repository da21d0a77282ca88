package backendtest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// testStoredFaults: stored bytes that are not what the handle's codec
// wrote, values larger than the reader's limit, and a Tx misused as nil.
// The faults are planted through the driver itself (Create with raw bytes,
// or a transaction writing raw bytes), so every backend runs them; the
// drivers' own tests plant what only their storage can hold (a Redis key
// of the wrong type, a malformed ZooKeeper node).
func testStoredFaults(t *testing.T, newDriver NewDriver) {
	t.Run("NilTxPanicsOutsideTx", func(t *testing.T) { testNilTx(t, open(t, newDriver(t))) })
	t.Run("CorruptValueIsNotErrType", func(t *testing.T) { testCorruptValue(t, newDriver(t)) })
	t.Run("HistoryKeepsReadableVersions", func(t *testing.T) { testHistoryCorrupt(t, newDriver(t)) })
	t.Run("OversizedValueRefusedOnRead", func(t *testing.T) { testOversizedRead(t, newDriver(t)) })
}

// plant creates name holding data, as stored bytes, at point 0.
func plant(t *testing.T, drv backend.Driver, name string, data []byte, minHistory int) {
	t.Helper()
	res, err := drv.Create(tctx(t), backend.CreateRequest{Name: name, Kind: backend.KindRef, Value: data, MinHistory: minHistory, MaxHistory: 10})
	if err != nil || !res.Created {
		t.Fatalf("Create(%q): %+v, %v", name, res, err)
	}
}

// setRaw commits data as name's new value, bytes as they are.
func setRaw(t *testing.T, s *stm.STM, name string, data []byte) {
	t.Helper()
	if err := s.Dosync(tctx(t), func(tx *txn.Tx) error {
		engine.Write(tx, engine.Key{Drv: s.Coordinator(), Name: name}, data, nil)
		return nil
	}); err != nil {
		t.Fatalf("write raw bytes to %q: %v", name, err)
	}
}

// corruptValues are stored bytes no msgpack encoder writes.
var corruptValues = []struct {
	name string
	data []byte
}{
	{"empty", []byte{}},
	{"truncated", []byte{0x92, 0x01}},                // an array of 2 holding 1 element
	{"truncated-string", []byte{0xa5, 'a', 'b'}},     // a 5-byte string holding 2
	{"never-used-code", []byte{0xc1}},                // 0xc1 is never used
	{"trailing", []byte{0x01, 0x02}},                 // two values where one belongs
	{"truncated-map", []byte{0x82, 0xa1, 'a', 0x01}}, // a map of 2 holding 1 pair
}

// catchPanic runs f and returns what it panicked with (nil if nothing).
func catchPanic(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// testNilTx: a nil *txn.Tx is outside any transaction; each verb panics
// with an error wrapping txn.ErrOutsideTx that names the ref, not with a
// nil-pointer dereference.
func testNilTx(t *testing.T, s *stm.STM) {
	r := newRef(t, s, uniq("niltx"), 1)
	for _, c := range []struct {
		verb string
		f    func()
	}{
		{"Get", func() { r.Get(nil) }},
		{"Set", func() { r.Set(nil, 2) }},
		{"Alter", func() { r.Alter(nil, func(v int) int { return v + 1 }) }},
		{"Commute", func() { r.Commute(nil, func(v int) int { return v + 1 }) }},
		{"Ensure", func() { r.Ensure(nil) }},
		{"Prefetch", func() { refs.Prefetch(nil, r) }},
	} {
		v := catchPanic(c.f)
		err, ok := v.(error)
		if !ok || !errors.Is(err, txn.ErrOutsideTx) {
			t.Errorf("%s(nil): panicked with %v (%T), want an error wrapping txn.ErrOutsideTx", c.verb, v, v)
			continue
		}
		if c.verb != "Prefetch" && !strings.Contains(err.Error(), r.Name()) {
			t.Errorf("%s(nil): %v, want the ref's name in it", c.verb, err)
		}
	}
	if got := deref(t, r); got != 1 {
		t.Errorf("value %d after the refused calls, want 1", got)
	}
}

// testCorruptValue: bytes that are not one well-formed msgpack value are
// refs.ErrCorrupt, on every read path, never refs.ErrType; valid msgpack of
// another type stays ErrType. A transaction that reads a corrupt value
// ends with the error and writes nothing.
func testCorruptValue(t *testing.T, drv backend.Driver) {
	s := open(t, drv)
	ctx := tctx(t)
	other := newRef(t, s, uniq("other"), 10)
	for _, c := range corruptValues {
		t.Run(c.name, func(t *testing.T) {
			name := uniq("corrupt-" + c.name)
			plant(t, drv, name, c.data, 0)
			r := newRef(t, s, name, 0) // joins: the bytes stay
			_, err := r.Deref(ctx)
			if !errors.Is(err, refs.ErrCorrupt) || errors.Is(err, refs.ErrType) || !strings.Contains(err.Error(), name) {
				t.Errorf("Deref: %v, want refs.ErrCorrupt (not ErrType) naming %q", err, name)
			}
			if _, err := r.History(ctx); !errors.Is(err, refs.ErrCorrupt) {
				t.Errorf("History: %v, want refs.ErrCorrupt", err)
			}
			if _, err := r.At(ctx, 0); !errors.Is(err, refs.ErrCorrupt) {
				t.Errorf("At(0): %v, want refs.ErrCorrupt", err)
			}
			calls := 0
			err = s.Dosync(ctx, func(tx *txn.Tx) error {
				calls++
				other.Set(tx, 99)
				_ = r.Get(tx)
				return nil
			})
			if !errors.Is(err, refs.ErrCorrupt) || calls != 1 {
				t.Errorf("Dosync reading it: %v after %d runs, want refs.ErrCorrupt after one", err, calls)
			}
			if got := deref(t, other); got != 10 {
				t.Errorf("the transaction that met the corrupt value wrote %d", got)
			}
			err = s.Dosync(ctx, func(tx *txn.Tx) error {
				r.Commute(tx, func(v int) int { return v + 1 })
				return nil
			})
			if !errors.Is(err, refs.ErrCorrupt) {
				t.Errorf("Dosync commuting it: %v, want refs.ErrCorrupt", err)
			}
		})
	}
	t.Run("another-type", func(t *testing.T) {
		name := uniq("a-string")
		newRef(t, s, name, "not an int")
		r := newRef(t, s, name, 0)
		_, err := r.Deref(ctx)
		if !errors.Is(err, refs.ErrType) || errors.Is(err, refs.ErrCorrupt) {
			t.Errorf("Deref of a string as int: %v, want refs.ErrType, not ErrCorrupt", err)
		}
	})
}

// testHistoryCorrupt: one corrupt version does not hide the others:
// History returns every version that decodes, with an error naming the
// point of each that does not.
func testHistoryCorrupt(t *testing.T, drv backend.Driver) {
	s := open(t, drv)
	ctx := tctx(t)
	name := uniq("hist")
	r := newRef(t, s, name, 1, refs.WithMinHistory(5))
	for _, v := range []int{2, 3} {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setRaw(t, s, name, []byte{0x92, 0x01}) // truncated
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, 5); return nil }); err != nil {
		t.Fatal(err)
	}
	raw, err := drv.Versions(ctx, name)
	if err != nil || len(raw.Versions) != 5 {
		t.Fatalf("Versions: %d, %v; want 5", len(raw.Versions), err)
	}
	bad := raw.Versions[1].Point
	hist, err := r.History(ctx)
	var got []int
	for _, v := range hist {
		got = append(got, v.Value)
	}
	if fmt.Sprint(got) != "[5 3 2 1]" {
		t.Errorf("History kept %v, want the readable versions [5 3 2 1]", got)
	}
	if !errors.Is(err, refs.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at point %d", bad)) {
		t.Errorf("History: %v, want refs.ErrCorrupt naming point %d", err, bad)
	}
	if v, err := r.At(ctx, raw.Versions[2].Point); err != nil || v != 3 {
		t.Errorf("At before the corrupt version: %d, %v; want 3", v, err)
	}
	if _, err := r.At(ctx, bad); !errors.Is(err, refs.ErrCorrupt) {
		t.Errorf("At the corrupt version: %v, want refs.ErrCorrupt", err)
	}
	if got := deref(t, r); got != 5 {
		t.Errorf("Deref: %d, want 5", got)
	}
}

// testOversizedRead: a stored value larger than the reader's limit
// (stm.WithMaxValueSize) is refused when read, with refs.ErrTooLarge
// naming the ref, its size and the limit, and never decoded; History
// keeps the versions within the limit.
func testOversizedRead(t *testing.T, drv backend.Driver) {
	const limit = 256
	big, err := refs.Msgpack.Marshal(strings.Repeat("x", 4000))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, drv, stm.WithMaxValueSize(limit))
	ctx := tctx(t)
	name := uniq("big")
	r := newRef(t, s, name, "small", refs.WithMinHistory(3))
	setRaw(t, s, name, big) // as a process with a larger limit would
	want := fmt.Sprintf("%d bytes", len(big))
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, refs.ErrTooLarge) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), fmt.Sprint(limit)) {
			t.Errorf("%s: %v, want refs.ErrTooLarge naming %q, %s and the limit %d", what, err, name, want, limit)
		}
	}
	_, err = r.Deref(ctx)
	check("Deref", err)
	err = s.Dosync(ctx, func(tx *txn.Tx) error { _ = r.Get(tx); return nil })
	check("Get in a Dosync", err)
	hist, err := r.History(ctx)
	check("History", err)
	if len(hist) != 1 || hist[0].Value != "small" {
		var points []string
		for _, v := range hist {
			points = append(points, fmt.Sprintf("%d (%d bytes)", v.Point, len(v.Value)))
		}
		t.Errorf("History kept %v, want the initial value alone", points)
	}
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, "again"); return nil }); err != nil {
		t.Fatalf("Set within the limit: %v", err)
	}
	if got := deref(t, r); got != "again" {
		t.Errorf("Deref after a small value: %q", got)
	}
	// A driver that can leave large values out of a history does.
	if bv, ok := drv.(backend.BoundedVersions); ok {
		vr, err := bv.VersionsBounded(ctx, name, limit)
		if err != nil || len(vr.Versions) != 3 {
			t.Fatalf("VersionsBounded: %+v, %v", vr, err)
		}
		mid := vr.Versions[1]
		if mid.Value != nil || mid.Omitted != len(big) || string(vr.Versions[0].Value) != string(mustEncode(t, "again")) {
			t.Errorf("VersionsBounded: the large value came back as %d bytes, omitted %d; want it left out, %d bytes", len(mid.Value), mid.Omitted, len(big))
		}
		full, err := drv.Versions(ctx, name)
		if err != nil || !bytes.Equal(full.Versions[1].Value, big) {
			t.Errorf("Versions (unbounded): %v", err)
		}
	}
}
