package engine

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/clock"
)

// committedNotRolled leaves on ref "r" of a fresh mem backend the intent
// of a committed transaction whose write (value) is not rolled forward
// yet, and returns the backend and the record.
func committedNotRolled(t *testing.T, value []byte) (*mem.Backend, backend.Record) {
	t.Helper()
	ctx := context.Background()
	b := mem.New()
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "r", Kind: backend.KindRef, Value: []byte("v0"), MaxHistory: 10}); err != nil {
		t.Fatal(err)
	}
	rp, err := b.ReadPoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := backend.Record{ID: "t1", Status: backend.Pending, RP: rp, Lease: time.Now().Add(time.Minute), Created: time.Now(),
		Refs: []backend.RefAddr{{Backend: b.ID(), Name: "r"}}}
	if _, err := b.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	res, err := b.Lock(ctx, backend.LockRequest{Txn: "t1", Coord: b.ID(), RP: rp, Round: 1, Items: []backend.LockItem{{Name: "r", Mode: backend.ModeWrite, Value: value}}})
	if err != nil || len(res.Conflicts) > 0 {
		t.Fatalf("Lock: %+v, %v", res, err)
	}
	final, err := b.CommitRecord(ctx, "t1")
	if err != nil || final.Status != backend.Committed {
		t.Fatalf("CommitRecord: %+v, %v", final, err)
	}
	return b, final
}

// TestViewReadOnlyShowsCommittedIntent: the read-only view (the CLI's)
// shows a committed transaction's value as the newest version, marked
// unresolved, and changes nothing; a value over the limit is left out.
func TestViewReadOnlyShowsCommittedIntent(t *testing.T) {
	ctx := context.Background()
	b, rec := committedNotRolled(t, []byte("v1"))
	v, err := NewInspector(b).View(ctx, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Holder == nil || v.Holder.Status != backend.Committed {
		t.Fatalf("Holder = %+v, want the committed record", v.Holder)
	}
	if len(v.Versions) != 2 || !bytes.Equal(v.Versions[0].Value, []byte("v1")) || v.Versions[0].Point != rec.CP || v.Unresolved != rec.CP {
		t.Fatalf("view = %+v (unresolved %d), want v1 at %d first, unresolved", v.Versions, v.Unresolved, rec.CP)
	}
	if again, _ := b.Versions(ctx, "r"); again.Intent == nil || len(again.Versions) != 1 {
		t.Fatalf("the read-only view changed the ref: %+v", again)
	}
	v, err = NewInspector(b).View(ctx, "r", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Versions[0].Value != nil || v.Versions[0].Omitted != 2 {
		t.Fatalf("with a limit of 1 byte: %+v, want the value left out (Omitted 2)", v.Versions[0])
	}
}

// TestViewRollsCommittedIntentForward: a reader's view (refs' History)
// rolls the committed intent forward and reads again: the version is
// really there, with no intent left.
func TestViewRollsCommittedIntentForward(t *testing.T) {
	ctx := context.Background()
	b, rec := committedNotRolled(t, []byte("v1"))
	r := &Resolver{Coord: b, Wall: clock.System}
	v, err := r.View(ctx, b, "r", ViewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Intent != nil || v.Unresolved != 0 || len(v.Versions) == 0 || v.Versions[0].Point != rec.CP || !bytes.Equal(v.Versions[0].Value, []byte("v1")) {
		t.Fatalf("view = %+v, want v1 rolled forward at %d", v, rec.CP)
	}
}
