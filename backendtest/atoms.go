package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// testAtoms: atoms (refs.Atom) on the driver, through its one-phase
// commit: semantics, bad input, concurrency, watches, linearizability.
func testAtoms(t *testing.T, newDriver NewDriver) {
	t.Run("Semantics", func(t *testing.T) { testAtomSemantics(t, newDriver(t)) })
	t.Run("BadInput", func(t *testing.T) { testAtomBadInput(t, newDriver(t)) })
	t.Run("SwapCounter", func(t *testing.T) { testAtomSwapCounter(t, newDriver(t)) })
	t.Run("Watch", func(t *testing.T) { testAtomWatch(t, newDriver(t)) })
	t.Run("Linearizable", func(t *testing.T) { testAtomLinearizable(t, newDriver(t)) })
}

func newAtom[T any](t testing.TB, s *stm.STM, name string, v T, opts ...refs.Option) *refs.Atom[T] {
	t.Helper()
	a, err := refs.NewAtom(tctx(t), s, name, v, opts...)
	if err != nil {
		t.Fatalf("refs.NewAtom(%q): %v", name, err)
	}
	return a
}

func atomValue[T any](t testing.TB, a *refs.Atom[T]) T {
	t.Helper()
	v, err := a.Deref(tctx(t))
	if err != nil {
		t.Fatalf("%s Deref: %v", a, err)
	}
	return v
}

func testAtomSemantics(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	s := open(t, d)
	name := uniq("atom")
	a := newAtom(t, s, name, 10)
	// Creating again joins, never resets.
	if _, err := a.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
		t.Fatal(err)
	}
	b := newAtom(t, open(t, d), name, 99)
	if v := atomValue(t, b); v != 11 {
		t.Fatalf("second handle reads %d, want 11 (joined, not reset)", v)
	}
	// Swap returns the new value; the other handle's stale cache costs a
	// retry, not a lost update.
	if v, err := b.Swap(ctx, func(v int) int { return v * 2 }); err != nil || v != 22 {
		t.Fatalf("Swap = %d, %v; want 22", v, err)
	}
	if v, err := a.Swap(ctx, func(v int) int { return v + 1 }); err != nil || v != 23 {
		t.Fatalf("Swap through a handle that had not seen the last change = %d, %v; want 23", v, err)
	}
	// CompareAndSet compares encoded values.
	if ok, err := a.CompareAndSet(ctx, 22, 0); err != nil || ok {
		t.Fatalf("CompareAndSet(22, 0) on 23 = %v, %v; want false", ok, err)
	}
	if v := atomValue(t, a); v != 23 {
		t.Fatalf("a failed CompareAndSet changed the atom to %d", v)
	}
	if ok, err := a.CompareAndSet(ctx, 23, 5); err != nil || !ok {
		t.Fatalf("CompareAndSet(23, 5) = %v, %v; want true", ok, err)
	}
	if err := b.Reset(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if v := atomValue(t, a); v != 7 {
		t.Fatalf("after Reset(7): %d", v)
	}
	// A validator rejects, and nothing changes.
	a.SetValidator(func(v int) error {
		if v < 0 {
			return errors.New("negative")
		}
		return nil
	})
	if _, err := a.Swap(ctx, func(v int) int { return -v }); !errors.Is(err, refs.ErrValidation) {
		t.Fatalf("Swap to a negative value: %v, want ErrValidation", err)
	}
	if err := a.Reset(ctx, -1); !errors.Is(err, refs.ErrValidation) {
		t.Fatalf("Reset(-1): %v, want ErrValidation", err)
	}
	if ok, err := a.CompareAndSet(ctx, 7, -7); ok || !errors.Is(err, refs.ErrValidation) {
		t.Fatalf("CompareAndSet(7, -7): %v, %v; want ErrValidation", ok, err)
	}
	if v := atomValue(t, b); v != 7 {
		t.Fatalf("rejected changes changed the atom to %d", v)
	}
	// History: every change is a version, newest first.
	h, err := a.History(ctx)
	if err != nil || len(h) == 0 || h[0].Value != 7 {
		t.Fatalf("History = %+v, %v; want the newest 7 first", h, err)
	}
	// Meta, changed atomically.
	if _, err := a.AlterMeta(ctx, func(m map[string]any) map[string]any { return map[string]any{"owner": "ops"} }); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Meta(ctx); err != nil || m["owner"] != "ops" {
		t.Fatalf("Meta = %v, %v", m, err)
	}
	// Maps compare by their encoding, whatever the order they were built in.
	m := newAtom(t, s, uniq("map"), map[string]any{"a": 1, "b": 2})
	if ok, err := m.CompareAndSet(ctx, map[string]any{"b": 2, "a": 1}, map[string]any{"a": 3}); err != nil || !ok {
		t.Fatalf("CompareAndSet of an equal map = %v, %v; want true", ok, err)
	}
}

func testAtomBadInput(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	s := open(t, d)
	a := newAtom(t, s, uniq("atom"), 1)
	if _, err := a.Swap(ctx, nil); !errors.Is(err, stm.ErrNilFunc) {
		t.Fatalf("Swap(nil): %v, want stm.ErrNilFunc", err)
	}
	// A name holds one kind of reference.
	rname := uniq("ref")
	newRef(t, s, rname, 1)
	if _, err := refs.NewAtom(ctx, s, rname, 1); !errors.Is(err, refs.ErrType) {
		t.Fatalf("NewAtom on a ref's name: %v, want ErrType", err)
	}
	if _, err := refs.New(ctx, s, a.Name(), 1); !errors.Is(err, refs.ErrType) {
		t.Fatalf("refs.New on an atom's name: %v, want ErrType", err)
	}
	if _, err := refs.NewAtom(ctx, s, "", 1); !errors.Is(err, refs.ErrName) {
		t.Fatalf("NewAtom with an empty name: %v, want ErrName", err)
	}
	// Another process stored a value of another type.
	other := newAtom(t, open(t, d), uniq("typed"), "text")
	if _, err := refs.NewAtom(ctx, s, other.Name(), 0); err != nil {
		t.Fatal(err)
	}
	wrong, _ := refs.NewAtom(ctx, s, other.Name(), 0)
	if _, err := wrong.Deref(ctx); !errors.Is(err, refs.ErrType) {
		t.Fatalf("Deref of a string as an int: %v, want ErrType", err)
	}
	// A closed STM.
	s2 := open(t, d)
	c := newAtom(t, s2, uniq("closed"), 1)
	_ = s2.Close()
	if _, err := c.Swap(ctx, func(v int) int { return v + 1 }); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("Swap after Close: %v, want stm.ErrClosed", err)
	}
	if _, err := refs.NewAtom(ctx, s2, uniq("late"), 1); !errors.Is(err, stm.ErrClosed) {
		t.Fatalf("NewAtom after Close: %v, want stm.ErrClosed", err)
	}
}

// testAtomSwapCounter: increments from many goroutines on two STM
// handles: none lost.
func testAtomSwapCounter(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("counter")
	handles := []*refs.Atom[int]{newAtom(t, open(t, d), name, 0), newAtom(t, open(t, d), name, 0)}
	const goroutines, per = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range per {
				if _, err := handles[g%2].Swap(ctx, func(v int) int { return v + 1 }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v := atomValue(t, handles[0]); v != goroutines*per {
		t.Fatalf("counter = %d after %d increments", v, goroutines*per)
	}
}

// testAtomWatch: a watch sees every change in order, old and new values
// (or a gap notice).
func testAtomWatch(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("watched")
	a := newAtom(t, open(t, d), name, 0, refs.WithMinHistory(2))
	type change struct{ old, new int }
	ch := make(chan change, 1000)
	gaps := make(chan struct{}, 1000)
	a.AddWatch("w", func(_ string, _ *refs.Atom[int], old, new int) { ch <- change{old, new} },
		refs.OnGap(func(string, clock.Point, clock.Point) { gaps <- struct{}{} }))
	defer a.RemoveWatch("w")
	writer := newAtom(t, open(t, d), name, 0)
	const n = 50
	for range n {
		if _, err := writer.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
			t.Fatal(err)
		}
	}
	last := 0
	deadline := time.After(wait)
	for last < n {
		select {
		case c := <-ch:
			if c.new <= last {
				t.Fatalf("watch went from %d to %d: out of order", last, c.new)
			}
			if c.new != last+1 && len(gaps) == 0 {
				t.Fatalf("watch skipped from %d to %d without a gap notice", last, c.new)
			}
			last = c.new
		case <-deadline:
			t.Fatalf("watch saw changes up to %d of %d", last, n)
		}
	}
}

// Atom operations for porcupine: Deref, Reset, CompareAndSet, Swap(+1).
type atomOp struct {
	kind     string // deref, reset, cas, inc
	arg, new int
}

type atomOut struct {
	v  int
	ok bool
}

var atomModel = porcupine.Model{
	Init: func() any { return 0 },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int), input.(atomOp), output.(atomOut)
		switch in.kind {
		case "deref":
			return out.v == s, s
		case "reset":
			return true, in.arg
		case "inc":
			return out.v == s+1, s + 1
		}
		if s == in.arg {
			return out.ok, in.new
		}
		return !out.ok, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(atomOp), output.(atomOut)
		switch in.kind {
		case "deref":
			return fmt.Sprintf("deref() -> %d", out.v)
		case "reset":
			return fmt.Sprintf("reset(%d)", in.arg)
		case "inc":
			return fmt.Sprintf("swap(+1) -> %d", out.v)
		}
		return fmt.Sprintf("cas(%d -> %d) -> %v", in.arg, in.new, out.ok)
	},
}

// testAtomLinearizable: porcupine checks a history of concurrent atom
// operations from two STM handles.
func testAtomLinearizable(t *testing.T, d backend.Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := uniq("lin")
	handles := []*refs.Atom[int]{newAtom(t, open(t, d), name, 0), newAtom(t, open(t, d), name, 0)}
	start := time.Now()
	ops := make([][]porcupine.Operation, linClients)
	var wg sync.WaitGroup
	errs := make(chan error, linClients)
	for c := range linClients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 9))
			a := handles[c%2]
			for range linOps {
				in := atomOp{kind: []string{"deref", "reset", "cas", "inc"}[r.IntN(4)], arg: r.IntN(4), new: r.IntN(4)}
				call := time.Since(start).Nanoseconds()
				var out atomOut
				var err error
				switch in.kind {
				case "deref":
					out.v, err = a.Deref(ctx)
				case "reset":
					err = a.Reset(ctx, in.arg)
				case "cas":
					out.ok, err = a.CompareAndSet(ctx, in.arg, in.new)
				case "inc":
					out.v, err = a.Swap(ctx, func(v int) int { return v + 1 })
				}
				if err != nil {
					errs <- err
					return
				}
				ops[c] = append(ops[c], porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: time.Since(start).Nanoseconds()})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var history []porcupine.Operation
	for _, o := range ops {
		history = append(history, o...)
	}
	checkLinearizable(t, atomModel, history)
}
