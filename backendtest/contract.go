package backendtest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// testContract checks the driver contract directly, method by method.
func testContract(t *testing.T, newDriver NewDriver) {
	t.Run("Identity", func(t *testing.T) {
		a, b := newDriver(t), newDriver(t)
		if a.ID() == "" || a.ID() != a.ID() {
			t.Fatalf("ID() = %q: want a stable, non-empty name", a.ID())
		}
		if a.ID() == b.ID() {
			t.Fatalf("two independent backends share ID %q", a.ID())
		}
	})
	t.Run("CreateJoins", func(t *testing.T) { contractCreate(t, newDriver(t)) })
	t.Run("ReadRule", func(t *testing.T) { contractRead(t, newDriver(t)) })
	t.Run("Records", func(t *testing.T) { contractRecords(t, newDriver(t)) })
	t.Run("Intents", func(t *testing.T) { contractIntents(t, newDriver(t)) })
	t.Run("ResolveIdempotent", func(t *testing.T) { contractResolve(t, newDriver(t)) })
	t.Run("GiveBackRounds", func(t *testing.T) { contractRounds(t, newDriver(t)) })
	t.Run("HistoryTrimming", func(t *testing.T) { contractTrim(t, newDriver(t)) })
	t.Run("ReadFaultGrowsHistory", func(t *testing.T) { contractFault(t, newDriver(t)) })
	t.Run("OnePhase", func(t *testing.T) { contractOnePhase(t, newDriver(t)) })
	t.Run("ChangeStream", func(t *testing.T) { contractChanges(t, newDriver(t)) })
	t.Run("Meta", func(t *testing.T) { contractMeta(t, newDriver(t)) })
	t.Run("List", func(t *testing.T) { contractList(t, newDriver(t)) })
	t.Run("CancelledContext", func(t *testing.T) {
		d := newDriver(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := d.Create(ctx, backend.CreateRequest{Name: uniq("c"), Kind: backend.KindRef, Value: []byte{1}, MaxHistory: 1}); err == nil {
			t.Fatal("Create with a cancelled ctx succeeded")
		}
		if _, err := d.ReadPoint(ctx); err == nil {
			t.Fatal("ReadPoint with a cancelled ctx succeeded")
		}
	})
	t.Run("Closed", func(t *testing.T) {
		d := newDriver(t)
		if err := d.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		_, err := d.ReadPoint(context.Background())
		if !errors.Is(err, backend.ErrClosed) {
			t.Fatalf("ReadPoint after Close: %v, want backend.ErrClosed", err)
		}
	})
}

// create makes a ref holding val and fails the test otherwise.
func create(t *testing.T, d backend.Driver, name string, val string, min, max int) {
	t.Helper()
	res, err := d.Create(tctx(t), backend.CreateRequest{Name: name, Kind: backend.KindRef, Value: []byte(val), MinHistory: min, MaxHistory: max})
	if err != nil || !res.Created {
		t.Fatalf("Create(%q) = %+v, %v", name, res, err)
	}
}

// commit writes vals to names through the general path's driver calls, as
// transaction id, and returns the commit point.
func commit(t *testing.T, d backend.Driver, id string, vals map[string]string) clock.Point {
	t.Helper()
	ctx := tctx(t)
	rp, err := d.ReadPoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := backend.Record{ID: id, RP: rp, Priority: rp, Created: time.Now(), Lease: time.Now().Add(time.Minute)}
	var items []backend.LockItem
	var names []string
	for n, v := range vals {
		items = append(items, backend.LockItem{Name: n, Mode: backend.ModeWrite, Value: []byte(v)})
		names = append(names, n)
		rec.Refs = append(rec.Refs, backend.RefAddr{Backend: d.ID(), Name: n})
	}
	if ok, err := d.PutRecord(ctx, rec); err != nil || !ok {
		t.Fatalf("PutRecord(%s) = %v, %v", id, ok, err)
	}
	lr, err := d.Lock(ctx, backend.LockRequest{Txn: id, Coord: d.ID(), RP: rp, Items: items})
	if err != nil || len(lr.Conflicts) > 0 {
		t.Fatalf("Lock(%s) = %+v, %v", id, lr, err)
	}
	fin, err := d.CommitRecord(ctx, id)
	if err != nil || fin.Status != backend.Committed || fin.CP <= rp {
		t.Fatalf("CommitRecord(%s) = %+v, %v; want committed after %d", id, fin, err, rp)
	}
	if err := d.Resolve(ctx, backend.ResolveRequest{Txn: id, Commit: true, CP: fin.CP, Time: time.Now(), Names: names}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteRecord(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	return fin.CP
}

func read1(t *testing.T, d backend.Driver, name string, rp clock.Point) backend.ReadItem {
	t.Helper()
	res, err := d.Read(tctx(t), backend.ReadRequest{RP: rp, Names: []string{name}})
	if err != nil {
		t.Fatalf("Read(%q at %d): %v", name, rp, err)
	}
	if len(res.Items) != 1 {
		t.Fatalf("Read returned %d items for 1 name", len(res.Items))
	}
	return res.Items[0]
}

func versions(t *testing.T, d backend.Driver, name string) backend.VersionsResult {
	t.Helper()
	vr, err := d.Versions(tctx(t), name)
	if err != nil {
		t.Fatalf("Versions(%q): %v", name, err)
	}
	return vr
}

func contractCreate(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	name := uniq("c")
	create(t, d, name, "first", 0, 10)
	res, err := d.Create(ctx, backend.CreateRequest{Name: name, Kind: backend.KindAtom, Value: []byte("second"), MaxHistory: 10})
	if err != nil || res.Created || res.Kind != backend.KindRef {
		t.Fatalf("second Create = %+v, %v; want not created, kind ref", res, err)
	}
	it := read1(t, d, name, 0)
	if !it.Found || string(it.Version.Value) != "first" || it.Version.Point != 0 || it.Version.Txn != "" {
		t.Fatalf("after a joining Create the ref holds %+v; want the first value at point 0", it)
	}
	if it := read1(t, d, uniq("absent"), 0); it.Found {
		t.Fatalf("Read of an absent ref: %+v, want not found", it)
	}
	if _, err := d.Versions(ctx, uniq("absent")); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Versions of an absent ref: %v, want ErrNotFound", err)
	}
}

func contractRead(t *testing.T, d backend.Driver) {
	name := uniq("r")
	create(t, d, name, "v0", 5, 10)
	p1 := commit(t, d, "read-1", map[string]string{name: "v1"})
	p2 := commit(t, d, "read-2", map[string]string{name: "v2"})
	if !(0 < p1 && p1 < p2) {
		t.Fatalf("commit points %d, %d: want 0 < p1 < p2", p1, p2)
	}
	for _, c := range []struct {
		rp   clock.Point
		want string
	}{{0, "v0"}, {p1 - 1, "v0"}, {p1, "v1"}, {p2 - 1, "v1"}, {p2, "v2"}, {p2 + 100, "v2"}} {
		it := read1(t, d, name, c.rp)
		if it.Result != history.Found || string(it.Version.Value) != c.want {
			t.Errorf("read at %d = %q (%v), want %q", c.rp, it.Version.Value, it.Result, c.want)
		}
		if string(it.Newest.Value) != "v2" || it.Newest.Point != p2 {
			t.Errorf("read at %d: Newest = %+v, want v2 at %d", c.rp, it.Newest, p2)
		}
	}
	res, err := d.Read(tctx(t), backend.ReadRequest{Current: true, Names: []string{name}})
	if err != nil || res.RP < p2 || string(res.Items[0].Version.Value) != "v2" {
		t.Fatalf("Read at the current point = %+v, %v; want v2 at a point >= %d", res, err, p2)
	}
	if rp, _ := d.ReadPoint(tctx(t)); rp < p2 {
		t.Fatalf("ReadPoint %d after a commit at %d", rp, p2)
	}
}

func contractRecords(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	now := time.Now()
	rec := backend.Record{ID: "rec-1", RP: 3, Priority: 2, Created: now, Lease: now.Add(time.Minute),
		Refs: []backend.RefAddr{{Backend: d.ID(), Name: "x"}}}
	if ok, err := d.PutRecord(ctx, rec); err != nil || !ok {
		t.Fatalf("PutRecord = %v, %v", ok, err)
	}
	if ok, err := d.PutRecord(ctx, rec); err != nil || !ok {
		t.Fatalf("repeated PutRecord of a pending record = %v, %v; want created (idempotent)", ok, err)
	}
	other := rec
	other.RP = 99
	if ok, err := d.PutRecord(ctx, other); err != nil || ok {
		t.Fatalf("PutRecord of another record with the same id = %v, %v; want refused", ok, err)
	}
	got, err := d.Records(ctx, []string{"rec-1", "nope"})
	if err != nil || len(got) != 2 {
		t.Fatalf("Records = %+v, %v", got, err)
	}
	if g := got[0]; g.Status != backend.Pending || g.RP != 3 || g.Priority != 2 || len(g.Refs) != 1 || g.Refs[0].Name != "x" || g.Lease.UnixMilli() != rec.Lease.UnixMilli() {
		t.Fatalf("stored record = %+v, want %+v pending", g, rec)
	}
	if got[1].Status != backend.Missing || got[1].ID != "nope" {
		t.Fatalf("absent record = %+v, want Missing with its id", got[1])
	}
	before, _ := d.ReadPoint(ctx)
	c1, err := d.CommitRecord(ctx, "rec-1")
	if err != nil || c1.Status != backend.Committed || c1.CP <= before {
		t.Fatalf("CommitRecord = %+v, %v; want committed after %d", c1, err, before)
	}
	if after, _ := d.ReadPoint(ctx); after < c1.CP {
		t.Fatalf("ReadPoint %d after CommitRecord drew %d", after, c1.CP)
	}
	c2, err := d.CommitRecord(ctx, "rec-1")
	if err != nil || c2.Status != backend.Committed || c2.CP != c1.CP {
		t.Fatalf("repeated CommitRecord = %+v, %v; want the same CP %d", c2, err, c1.CP)
	}
	a, err := d.AbortRecord(ctx, "rec-1")
	if err != nil || a.Status != backend.Committed || a.CP != c1.CP {
		t.Fatalf("AbortRecord of a committed record = %+v, %v; want it still committed", a, err)
	}
	// A tombstone: an id aborted before its record exists can never be used.
	a, err = d.AbortRecord(ctx, "rec-2")
	if err != nil || a.Status != backend.Aborted {
		t.Fatalf("AbortRecord of an absent record = %+v, %v; want an aborted tombstone", a, err)
	}
	if ok, err := d.PutRecord(ctx, backend.Record{ID: "rec-2", Lease: now.Add(time.Minute)}); err != nil || ok {
		t.Fatalf("PutRecord over a tombstone = %v, %v; want refused", ok, err)
	}
	if c, err := d.CommitRecord(ctx, "rec-2"); err != nil || c.Status != backend.Aborted {
		t.Fatalf("CommitRecord of an aborted record = %+v, %v", c, err)
	}
	if c, err := d.CommitRecord(ctx, "rec-3"); err != nil || c.Status != backend.Missing {
		t.Fatalf("CommitRecord of an absent record = %+v, %v; want Missing", c, err)
	}
	// Pending -> aborted.
	if ok, err := d.PutRecord(ctx, backend.Record{ID: "rec-4", Lease: now}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if a, err := d.AbortRecord(ctx, "rec-4"); err != nil || a.Status != backend.Aborted {
		t.Fatalf("AbortRecord of a pending record = %+v, %v", a, err)
	}
	all, err := d.ListRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]backend.Status{}
	for _, r := range all {
		seen[r.ID] = r.Status
	}
	if seen["rec-1"] != backend.Committed || seen["rec-4"] != backend.Aborted {
		t.Fatalf("ListRecords = %v, want rec-1 committed and rec-4 aborted", seen)
	}
	if err := d.DeleteRecord(ctx, "rec-1", 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Records(ctx, []string{"rec-1"}); got[0].Status != backend.Missing {
		t.Fatalf("record after DeleteRecord: %+v", got[0])
	}
}

func contractIntents(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	x, y := uniq("x"), uniq("y")
	create(t, d, x, "x0", 0, 10)
	create(t, d, y, "y0", 0, 10)
	rp, _ := d.ReadPoint(ctx)
	p := commit(t, d, "int-0", map[string]string{y: "y1"})

	// All or none: y has a version newer than rp, so x is not locked either.
	lr, err := d.Lock(ctx, backend.LockRequest{Txn: "int-1", Coord: d.ID(), RP: rp, Items: []backend.LockItem{
		{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")}, {Name: y, Mode: backend.ModeWrite, Value: []byte("y2")}}})
	if err != nil || len(lr.Conflicts) != 1 || lr.Conflicts[0].Reason != backend.Newer || lr.Conflicts[0].Name != y || lr.Conflicts[0].Point != p {
		t.Fatalf("Lock over a newer version = %+v, %v; want one Newer conflict on %s at %d", lr, err, y, p)
	}
	if vr := versions(t, d, x); vr.Intent != nil {
		t.Fatalf("a failed Lock left an intent on %s: %+v", x, vr.Intent)
	}
	// A commute does not check the read point and learns the newest value.
	lr, err = d.Lock(ctx, backend.LockRequest{Txn: "int-1", Coord: d.ID(), RP: rp, Items: []backend.LockItem{
		{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")}, {Name: y, Mode: backend.ModeCommute}}})
	if err != nil || len(lr.Conflicts) != 0 || len(lr.Newest) != 2 || string(lr.Newest[1].Value) != "y1" {
		t.Fatalf("Lock = %+v, %v; want both locked, y's newest y1", lr, err)
	}
	// Repeating it is harmless.
	if lr, err := d.Lock(ctx, backend.LockRequest{Txn: "int-1", Coord: d.ID(), RP: rp, Items: []backend.LockItem{{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")}}}); err != nil || len(lr.Conflicts) != 0 {
		t.Fatalf("repeated Lock = %+v, %v", lr, err)
	}
	vr := versions(t, d, x)
	if vr.Intent == nil || vr.Intent.Txn != "int-1" || vr.Intent.Coord != d.ID() || !vr.Intent.Write || !vr.Intent.Staged || string(vr.Intent.Value) != "x1" {
		t.Fatalf("intent on x = %+v", vr.Intent)
	}
	// Another transaction meets the intent.
	rp2, _ := d.ReadPoint(ctx)
	lr, err = d.Lock(ctx, backend.LockRequest{Txn: "int-2", Coord: d.ID(), RP: rp2, Items: []backend.LockItem{{Name: x, Mode: backend.ModeEnsure}}})
	if err != nil || len(lr.Conflicts) != 1 || lr.Conflicts[0].Reason != backend.Locked || lr.Conflicts[0].Intent == nil || lr.Conflicts[0].Intent.Txn != "int-1" {
		t.Fatalf("Lock over another's intent = %+v, %v; want Locked by int-1", lr, err)
	}
	// A reader sees the intent with the version, atomically.
	it := read1(t, d, x, rp2)
	if it.Intent == nil || it.Intent.Txn != "int-1" || string(it.Version.Value) != "x0" {
		t.Fatalf("read of a locked ref = %+v; want x0 and int-1's intent", it)
	}
	// Stage: only into one's own write intents, all or none.
	if ok, err := d.Stage(ctx, "int-2", []backend.StageItem{{Name: y, Value: []byte("no")}}); err != nil || ok {
		t.Fatalf("Stage by a non-holder = %v, %v", ok, err)
	}
	if ok, err := d.Stage(ctx, "int-1", []backend.StageItem{{Name: y, Value: []byte("y1+")}}); err != nil || !ok {
		t.Fatalf("Stage = %v, %v", ok, err)
	}
	if vr := versions(t, d, y); vr.Intent == nil || !vr.Intent.Staged || string(vr.Intent.Value) != "y1+" {
		t.Fatalf("staged intent on y = %+v", vr.Intent)
	}
	// Roll back: intents gone, no version written.
	if err := d.Resolve(ctx, backend.ResolveRequest{Txn: "int-1", Names: []string{x, y}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{x, y} {
		vr := versions(t, d, n)
		if vr.Intent != nil || len(vr.Versions) != 1 || bytes.HasSuffix(vr.Versions[0].Value, []byte("+")) || string(vr.Versions[0].Value) == "x1" {
			t.Fatalf("%s after roll-back: %+v", n, vr)
		}
	}
	// An ensure intent writes nothing when rolled forward.
	lr, err = d.Lock(ctx, backend.LockRequest{Txn: "int-3", Coord: d.ID(), RP: rp2, Items: []backend.LockItem{{Name: x, Mode: backend.ModeEnsure}}})
	if err != nil || len(lr.Conflicts) != 0 {
		t.Fatal(lr, err)
	}
	if vr := versions(t, d, x); vr.Intent == nil || vr.Intent.Write {
		t.Fatalf("ensure intent = %+v, want Write false", vr.Intent)
	}
	if err := d.Resolve(ctx, backend.ResolveRequest{Txn: "int-3", Commit: true, CP: rp2 + 1, Names: []string{x}}); err != nil {
		t.Fatal(err)
	}
	if vr := versions(t, d, x); vr.Intent != nil || len(vr.Versions) != 1 || string(vr.Versions[0].Value) != "x0" || vr.Ensured != rp2+1 {
		t.Fatalf("after an ensure rolled forward at %d: %+v; want no new version and Ensured %d", rp2+1, vr, rp2+1)
	}
	lr, err = d.Lock(ctx, backend.LockRequest{Txn: "int-3b", Coord: d.ID(), RP: rp2, Items: []backend.LockItem{{Name: x, Mode: backend.ModeWrite, Value: []byte("x9")}}})
	if err != nil || len(lr.Conflicts) != 1 || lr.Conflicts[0].Reason != backend.Newer || lr.Conflicts[0].Point != rp2+1 {
		t.Fatalf("writing from before an ensure's commit = %+v, %v; want Newer at %d", lr, err, rp2+1)
	}
	// Locking a ref that does not exist.
	lr, err = d.Lock(ctx, backend.LockRequest{Txn: "int-4", Coord: d.ID(), RP: rp2, Items: []backend.LockItem{{Name: uniq("ghost"), Mode: backend.ModeWrite}}})
	if err != nil || len(lr.Conflicts) != 1 || lr.Conflicts[0].Reason != backend.Gone {
		t.Fatalf("Lock of an absent ref = %+v, %v; want Gone", lr, err)
	}
}

func contractResolve(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	x := uniq("x")
	create(t, d, x, "x0", 3, 10)
	rp, _ := d.ReadPoint(ctx)
	if lr, err := d.Lock(ctx, backend.LockRequest{Txn: "res-1", Coord: d.ID(), RP: rp, Items: []backend.LockItem{{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")}}}); err != nil || len(lr.Conflicts) > 0 {
		t.Fatal(lr, err)
	}
	cp := rp + 1
	req := backend.ResolveRequest{Txn: "res-1", Commit: true, CP: cp, Time: time.Now(), Names: []string{x}}
	// A resolve by another id changes nothing.
	if err := d.Resolve(ctx, backend.ResolveRequest{Txn: "res-x", Commit: true, CP: cp, Names: []string{x}}); err != nil {
		t.Fatal(err)
	}
	if vr := versions(t, d, x); vr.Intent == nil || len(vr.Versions) != 1 {
		t.Fatalf("Resolve by a non-holder changed %s: %+v", x, vr)
	}
	for i := 0; i < 2; i++ { // the second call must be a no-op
		if err := d.Resolve(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	vr := versions(t, d, x)
	if vr.Intent != nil || len(vr.Versions) != 2 || vr.Versions[0].Point != cp || vr.Versions[0].Txn != "res-1" || string(vr.Versions[0].Value) != "x1" {
		t.Fatalf("after roll-forward twice: %+v; want exactly one new version x1 at %d", vr, cp)
	}
}

func contractTrim(t *testing.T, d backend.Driver) {
	x := uniq("x")
	create(t, d, x, "v0", 2, 10)
	var pts []clock.Point
	for i := 1; i <= 5; i++ {
		pts = append(pts, commit(t, d, "trim-"+string(rune('0'+i)), map[string]string{x: "v" + string(rune('0'+i))}))
	}
	vr := versions(t, d, x)
	if len(vr.Versions) != 3 || vr.Keep != 2 || vr.Min != 2 || vr.Max != 10 {
		t.Fatalf("MinHistory 2 keeps %d versions (keep %d, min %d, max %d); want 3 (newest + 2)", len(vr.Versions), vr.Keep, vr.Min, vr.Max)
	}
	for i, v := range vr.Versions {
		if want := pts[4-i]; v.Point != want {
			t.Fatalf("version %d at %d, want %d (newest first)", i, v.Point, want)
		}
	}
	if vr.Trimmed != pts[1] {
		t.Fatalf("Trimmed = %d, want %d (the newest dropped point)", vr.Trimmed, pts[1])
	}
}

func contractFault(t *testing.T, d backend.Driver) {
	x := uniq("x")
	create(t, d, x, "v0", 0, 2)
	old := commit(t, d, "fault-1", map[string]string{x: "v1"})
	commit(t, d, "fault-2", map[string]string{x: "v2"})
	// Only the newest is kept: a read at old faults and grows history.
	for i, wantKeep := range []int{1, 2, 2} {
		it := read1(t, d, x, old)
		if it.Result != history.Fault {
			t.Fatalf("read %d at %d with history trimmed: %+v, want a fault", i, old, it)
		}
		if vr := versions(t, d, x); vr.Keep != wantKeep {
			t.Fatalf("after fault %d keep = %d, want %d (grows by one up to MaxHistory 2)", i+1, vr.Keep, wantKeep)
		}
	}
	commit(t, d, "fault-3", map[string]string{x: "v3"})
	if vr := versions(t, d, x); len(vr.Versions) != 2 {
		t.Fatalf("after growth, a commit keeps %d versions, want 2", len(vr.Versions))
	}
}

func contractOnePhase(t *testing.T, d backend.Driver) {
	op, ok := d.(backend.OnePhase)
	if !ok {
		t.Skip("the driver has no one-phase fast path (optional)")
	}
	ctx := tctx(t)
	x, y, c, z := uniq("x"), uniq("y"), uniq("c"), uniq("z")
	create(t, d, x, "x0", 5, 10)
	create(t, d, y, "y0", 0, 10)
	create(t, d, c, "c0", 0, 10)
	create(t, d, z, "z0", 0, 10)
	rp, _ := d.ReadPoint(ctx)
	req := backend.OnePhaseRequest{Txn: "op-1", RP: rp, Time: time.Now(), Items: []backend.OnePhaseItem{
		{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")},
		{Name: y, Mode: backend.ModeEnsure},
		{Name: c, Mode: backend.ModeCommute, Value: []byte("c1"), Base: 0},
	}}
	res, err := op.CommitOnePhase(ctx, req)
	if err != nil || res.Status != backend.Committed || res.CP <= rp {
		t.Fatalf("CommitOnePhase = %+v, %v", res, err)
	}
	// Idempotent by id: a repeat (a client retry) applies nothing.
	res2, err := op.CommitOnePhase(ctx, req)
	if err != nil || res2.Status != backend.Committed || res2.CP != res.CP {
		t.Fatalf("repeated CommitOnePhase = %+v, %v; want the same CP %d", res2, err, res.CP)
	}
	if vr := versions(t, d, x); len(vr.Versions) != 2 || vr.Versions[0].Point != res.CP || vr.Versions[0].Txn != "op-1" {
		t.Fatalf("x after one commit, sent twice: %+v", vr.Versions)
	}
	if vr := versions(t, d, y); len(vr.Versions) != 1 || vr.Ensured != res.CP {
		t.Fatalf("an ensured ref: versions %+v, Ensured %d; want no new version, Ensured %d", vr.Versions, vr.Ensured, res.CP)
	}
	if rec, _ := d.Records(ctx, []string{"op-1"}); rec[0].Status != backend.Committed || rec[0].CP != res.CP {
		t.Fatalf("record of a one-phase commit = %+v, want committed at %d (I7 looks it up)", rec[0], res.CP)
	}
	// I7 learns an unknown outcome with AbortRecord: it finds the commit.
	if rec, err := d.AbortRecord(ctx, "op-1"); err != nil || rec.Status != backend.Committed || rec.CP != res.CP {
		t.Fatalf("AbortRecord of a one-phase commit = %+v, %v; want committed at %d", rec, err, res.CP)
	}
	if res3, err := op.CommitOnePhase(ctx, req); err != nil || res3.Status != backend.Committed || res3.CP != res.CP {
		t.Fatalf("CommitOnePhase repeated after those = %+v, %v; want the same CP %d", res3, err, res.CP)
	}
	// Conflicts: nothing applied.
	for _, cse := range []struct {
		name string
		item backend.OnePhaseItem
		want backend.ConflictReason
	}{
		{"newer", backend.OnePhaseItem{Name: x, Mode: backend.ModeWrite, Value: []byte("no")}, backend.Newer},
		{"ensure-newer", backend.OnePhaseItem{Name: x, Mode: backend.ModeEnsure}, backend.Newer},
		{"stale-commute", backend.OnePhaseItem{Name: c, Mode: backend.ModeCommute, Value: []byte("no"), Base: 0}, backend.Stale},
		{"gone", backend.OnePhaseItem{Name: uniq("ghost"), Mode: backend.ModeWrite, Value: []byte("no")}, backend.Gone},
		// y was ensured by op-1 after rp: writing it from rp fails.
		{"write-after-ensure", backend.OnePhaseItem{Name: y, Mode: backend.ModeWrite, Value: []byte("no")}, backend.Newer},
	} {
		res, err := op.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "op-" + cse.name, RP: rp, Time: time.Now(), Items: []backend.OnePhaseItem{
			{Name: z, Mode: backend.ModeWrite, Value: []byte("no")}, cse.item}})
		if err != nil || res.Status == backend.Committed || len(res.Conflicts) != 1 || res.Conflicts[0].Reason != cse.want {
			t.Fatalf("%s: CommitOnePhase = %+v, %v; want one conflict %v", cse.name, res, err, cse.want)
		}
		if cse.want == backend.Stale && string(res.Conflicts[0].Newest.Value) != "c1" {
			t.Fatalf("stale commute conflict carries %+v, want the newest version c1", res.Conflicts[0].Newest)
		}
		if vr := versions(t, d, z); len(vr.Versions) != 1 {
			t.Fatalf("%s: a refused commit wrote z: %+v", cse.name, vr.Versions)
		}
	}
	// Ensures do not conflict with ensures (two readers), nor commutes with
	// an ensure.
	res, err = op.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "op-ensure-again", RP: rp, Time: time.Now(), Items: []backend.OnePhaseItem{
		{Name: z, Mode: backend.ModeWrite, Value: []byte("z1")}, {Name: y, Mode: backend.ModeEnsure}}})
	if err != nil || res.Status != backend.Committed {
		t.Fatalf("an ensure from before another ensure's commit = %+v, %v; want committed", res, err)
	}
	// An intent blocks it.
	rp, _ = d.ReadPoint(ctx)
	if lr, err := d.Lock(ctx, backend.LockRequest{Txn: "op-holder", Coord: d.ID(), RP: rp, Items: []backend.LockItem{{Name: y, Mode: backend.ModeEnsure}}}); err != nil || len(lr.Conflicts) > 0 {
		t.Fatal(lr, err)
	}
	res, err = op.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "op-blocked", RP: rp, Time: time.Now(), Items: []backend.OnePhaseItem{{Name: y, Mode: backend.ModeWrite, Value: []byte("no")}}})
	if err != nil || len(res.Conflicts) != 1 || res.Conflicts[0].Reason != backend.Locked || res.Conflicts[0].Intent.Txn != "op-holder" {
		t.Fatalf("CommitOnePhase over an intent = %+v, %v; want Locked", res, err)
	}
	// A tombstoned id never commits (a delayed request after I7 resolved it).
	if _, err := d.AbortRecord(ctx, "op-late"); err != nil {
		t.Fatal(err)
	}
	res, err = op.CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: "op-late", RP: rp, Time: time.Now(), Items: []backend.OnePhaseItem{{Name: x, Mode: backend.ModeWrite, Value: []byte("late")}}})
	if err != nil || res.Status != backend.Aborted {
		t.Fatalf("CommitOnePhase of a tombstoned id = %+v, %v; want Aborted", res, err)
	}
	if vr := versions(t, d, x); string(vr.Versions[0].Value) == "late" {
		t.Fatal("a tombstoned transaction was applied")
	}
}

func contractChanges(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	x := uniq("x")
	// Subscribing to a ref that does not exist yet works (promises wait so).
	sub, err := d.Subscribe(ctx, x)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	create(t, d, x, "v0", 0, 10)
	p := commit(t, d, "chg-1", map[string]string{x: "v1"})
	recv(t, sub.C(), "change hint after a commit")
	// The truth is the history: the hinted change is there.
	if vr := versions(t, d, x); vr.Versions[0].Point != p {
		t.Fatalf("after the hint, newest version at %d, want %d", vr.Versions[0].Point, p)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func contractMeta(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	x := uniq("x")
	create(t, d, x, "v0", 0, 10)
	m, ver, err := d.Meta(ctx, x)
	if err != nil || m != nil {
		t.Fatalf("Meta of a new ref = %q, %d, %v; want nil", m, ver, err)
	}
	if ok, err := d.SetMeta(ctx, x, ver, []byte("m1")); err != nil || !ok {
		t.Fatalf("SetMeta = %v, %v", ok, err)
	}
	if ok, err := d.SetMeta(ctx, x, ver, []byte("m2")); err != nil || ok {
		t.Fatalf("SetMeta with a stale version = %v, %v; want refused", ok, err)
	}
	if m, _, _ := d.Meta(ctx, x); string(m) != "m1" {
		t.Fatalf("Meta = %q, want m1", m)
	}
	if _, _, err := d.Meta(ctx, uniq("ghost")); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Meta of an absent ref: %v", err)
	}
}

func contractList(t *testing.T, d backend.Driver) {
	base := uniq("list")
	for _, n := range []string{"b", "a", "c/d"} {
		create(t, d, base+"/"+n, "12345", 0, 10)
	}
	create(t, d, base+"x", "1", 0, 10)
	got, err := d.List(tctx(t), base+"/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.Name[len(base)+1:])
		if r.Kind != backend.KindRef || r.Size != 5 || r.Versions != 1 {
			t.Errorf("List entry %+v", r)
		}
	}
	if len(names) != 3 || names[0] != "a" || names[1] != "b" || names[2] != "c/d" {
		t.Fatalf("List(%q) = %v, want [a b c/d] sorted", base+"/", names)
	}
}

// contractRounds: an intent remembers the Lock round that took it (a
// repeated Lock raises it, never lowers it); a rollback naming a round (a
// give-back) drops only that round's intents, and one with round 0 (or a
// commit) every intent of the transaction. The round survives Stage.
func contractRounds(t *testing.T, d backend.Driver) {
	ctx := tctx(t)
	x, y := uniq("x"), uniq("y")
	create(t, d, x, "x0", 0, 10)
	create(t, d, y, "y0", 0, 10)
	rp, _ := d.ReadPoint(ctx)
	lock := func(round uint32) {
		t.Helper()
		lr, err := d.Lock(ctx, backend.LockRequest{Txn: "rnd-1", Coord: d.ID(), RP: rp, Round: round, Items: []backend.LockItem{
			{Name: x, Mode: backend.ModeWrite, Value: []byte("x1")}, {Name: y, Mode: backend.ModeCommute}}})
		if err != nil || len(lr.Conflicts) != 0 {
			t.Fatalf("Lock round %d = %+v, %v", round, lr, err)
		}
	}
	rounds := func(want uint32) {
		t.Helper()
		for _, n := range []string{x, y} {
			vr := versions(t, d, n)
			switch {
			case want == 0 && vr.Intent != nil:
				t.Fatalf("%s: intent %+v left, want none", n, vr.Intent)
			case want != 0 && (vr.Intent == nil || vr.Intent.Txn != "rnd-1" || vr.Intent.Round != want):
				t.Fatalf("%s: intent %+v, want rnd-1's of round %d", n, vr.Intent, want)
			}
		}
	}
	giveBack := func(round uint32) {
		t.Helper()
		if err := d.Resolve(ctx, backend.ResolveRequest{Txn: "rnd-1", Round: round, Names: []string{x, y}}); err != nil {
			t.Fatal(err)
		}
	}
	lock(1)
	rounds(1)
	giveBack(1)
	rounds(0)
	lock(2)
	giveBack(1) // a delayed copy of the first give-back
	rounds(2)
	lock(1) // a delayed copy of the first Lock
	rounds(2)
	lock(3) // a repeated Lock raises the round
	rounds(3)
	if ok, err := d.Stage(ctx, "rnd-1", []backend.StageItem{{Name: y, Value: []byte("y1")}}); err != nil || !ok {
		t.Fatalf("Stage = %v, %v", ok, err)
	}
	rounds(3)
	giveBack(2)
	rounds(3)
	giveBack(0) // the transaction's undo: every round
	rounds(0)
	// A commit ignores the round.
	lock(4)
	if err := d.Resolve(ctx, backend.ResolveRequest{Txn: "rnd-1", Commit: true, CP: rp + 1, Time: time.Now(), Round: 1, Names: []string{x}}); err != nil {
		t.Fatal(err)
	}
	if vr := versions(t, d, x); vr.Intent != nil || string(vr.Versions[0].Value) != "x1" {
		t.Fatalf("%s after a commit naming another round: %+v", x, vr)
	}
	giveBack(0)
}
