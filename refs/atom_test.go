package refs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
)

// TestRefusedChangeIsNotUnknown: a change the backend refused certainly
// did not apply (backend.ErrNotApplied, here a ctx that had ended): the
// atom returns that error at once, never an unknown outcome to be learned.
func TestRefusedChangeIsNotUnknown(t *testing.T) {
	ctx := context.Background()
	s, err := stm.Open(ctx, mem.New())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := refs.NewAtom(ctx, s, "refused", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	// The handle knows the newest version: the swap goes straight to the
	// compare-and-set, which the backend refuses.
	_, err = a.Swap(done, func(v int) int { return v + 1 })
	if !errors.Is(err, context.Canceled) || errors.Is(err, stm.ErrOutcomeUnknown) {
		t.Fatalf("Swap with an ended ctx: %v; want context.Canceled, not ErrOutcomeUnknown", err)
	}
	if v, err := a.Deref(ctx); err != nil || v != 1 {
		t.Fatalf("Deref = %d, %v; want 1", v, err)
	}
}
