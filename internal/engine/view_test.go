package engine

import (
	"bytes"
	"context"
	"errors"
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

// intentOn leaves on ref "r" of a fresh mem backend an intent of
// transaction t1 in mode, with its record in status st (coordinated by
// coord, "" for the backend itself), and returns the backend and the
// record.
func intentOn(t *testing.T, mode backend.Mode, coord string, st backend.Status) (*mem.Backend, backend.Record) {
	t.Helper()
	ctx := context.Background()
	b := mem.New()
	if coord == "" {
		coord = b.ID()
	}
	if _, err := b.Create(ctx, backend.CreateRequest{Name: "r", Kind: backend.KindRef, Value: []byte("v0"), MaxHistory: 10}); err != nil {
		t.Fatal(err)
	}
	rp, _ := b.ReadPoint(ctx)
	rec := backend.Record{ID: "t1", Status: backend.Pending, RP: rp, Lease: time.Now().Add(time.Minute), Created: time.Now(),
		Refs: []backend.RefAddr{{Backend: b.ID(), Name: "r"}}}
	if _, err := b.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	item := backend.LockItem{Name: "r", Mode: mode}
	if mode == backend.ModeWrite {
		item.Value = []byte("v1")
	}
	if res, err := b.Lock(ctx, backend.LockRequest{Txn: "t1", Coord: coord, RP: rp, Round: 1, Items: []backend.LockItem{item}}); err != nil || len(res.Conflicts) > 0 {
		t.Fatalf("Lock: %+v, %v", res, err)
	}
	var err error
	switch st {
	case backend.Committed:
		rec, err = b.CommitRecord(ctx, "t1")
	case backend.Aborted:
		rec, err = b.AbortRecord(ctx, "t1")
	}
	if err != nil || rec.Status != st {
		t.Fatalf("record: %+v, %v; want %v", rec, err, st)
	}
	return b, rec
}

// TestViewForeignCoordinator: a reader cannot tell what an intent held by
// a transaction of another coordinator is: ErrForeignCoordinator, as a
// transaction's read says; an inspector shows the intent, holder unknown.
func TestViewForeignCoordinator(t *testing.T) {
	ctx := context.Background()
	b, _ := intentOn(t, backend.ModeWrite, "redis:elsewhere", backend.Pending)
	r := &Resolver{Coord: b, Wall: clock.System}
	if _, err := r.View(ctx, b, "r", ViewOptions{}); !errors.Is(err, ErrForeignCoordinator) {
		t.Fatalf("reader's view: %v, want ErrForeignCoordinator", err)
	}
	v, err := NewInspector(b).View(ctx, "r", 0)
	if err != nil || v.Intent == nil || v.Holder != nil || len(v.Versions) != 1 {
		t.Fatalf("inspector's view: %+v, %v; want the version underneath and the intent, no holder", v, err)
	}
}

// TestViewFinishesFinalIntents: a reader finishes a final intent at once
// and reads again, a committed ensure (forward) and an aborted write
// (back) alike; an inspector changes nothing.
func TestViewFinishesFinalIntents(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		mode backend.Mode
		st   backend.Status
	}{{"committed ensure", backend.ModeEnsure, backend.Committed}, {"aborted write", backend.ModeWrite, backend.Aborted}} {
		t.Run(c.name, func(t *testing.T) {
			b, _ := intentOn(t, c.mode, "", c.st)
			v, err := NewInspector(b).View(ctx, "r", 0)
			if err != nil || v.Intent == nil || v.Holder == nil || v.Holder.Status != c.st || !bytes.Equal(v.Versions[0].Value, []byte("v0")) {
				t.Fatalf("inspector's view: %+v, %v; want v0 under the intent, holder %v", v, err, c.st)
			}
			r := &Resolver{Coord: b, Wall: clock.System}
			v, err = r.View(ctx, b, "r", ViewOptions{})
			if err != nil || v.Intent != nil || !bytes.Equal(v.Versions[0].Value, []byte("v0")) {
				t.Fatalf("reader's view: %+v, %v; want v0 and no intent left", v, err)
			}
		})
	}
}

// stuck is a mem backend whose Resolve does nothing: an intent on it
// never goes away.
type stuck struct {
	*mem.Backend
	resolves int
}

func (s *stuck) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	s.resolves++
	return nil
}

// TestViewBoundedOnStuckIntent: a reader reads at most viewTries times
// and then shows a committed write's value as its version, as the read
// rule says, rather than the stale one underneath.
func TestViewBoundedOnStuckIntent(t *testing.T) {
	ctx := context.Background()
	b, rec := intentOn(t, backend.ModeWrite, "", backend.Committed)
	s := &stuck{Backend: b}
	r := &Resolver{Coord: s, Wall: clock.System}
	v, err := r.View(ctx, s, "r", ViewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.resolves != viewTries-1 || v.Unresolved != rec.CP || !bytes.Equal(v.Versions[0].Value, []byte("v1")) {
		t.Fatalf("%d resolves, view %+v; want %d, and v1 at %d first", s.resolves, v, viewTries-1, rec.CP)
	}
}
