package zk_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/testkit/snapshot"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// TestReadOnlyOpen: with Config.ReadOnly, Open of a root holding no
// Epochal data creates no znode and fails with a *NoNamespaceError
// (wrapping backend.ErrNotFound) naming the roots under /; of one that
// holds data, it opens it, with the identity the writers share.
func TestReadOnlyOpen(t *testing.T) {
	srv := testserver.StartZK(t)
	ctx := t.Context()
	a := open(t, srv, zk.Config{Root: "/ro-a"})
	_ = open(t, srv, zk.Config{Root: "/ro-b"})
	conn, _, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Create("/notours", nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	before, _, err := conn.Children("/")
	if err != nil {
		t.Fatal(err)
	}

	b, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro-typo/x", ReadOnly: true})
	var nn *zk.NoNamespaceError
	if b != nil || !errors.As(err, &nn) || !errors.Is(err, backend.ErrNotFound) || nn.Root != "/ro-typo/x" ||
		!slices.Equal(nn.Found, []string{"/ro-a", "/ro-b"}) {
		t.Fatalf("read-only Open of a root with no data: %v, %#v; want a NoNamespaceError finding /ro-a and /ro-b", b, err)
	}
	after, _, err := conn.Children("/")
	slices.Sort(before)
	slices.Sort(after)
	if err != nil || !slices.Equal(before, after) {
		t.Errorf("read-only Open of a missing root: / held %v, then %v (%v): it created znodes", before, after, err)
	}

	ro, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro-a", ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open of an existing root: %v", err)
	}
	defer ro.Close()
	if ro.ID() != a.ID() {
		t.Errorf("read-only Open: id %q, want the writers' %q", ro.ID(), a.ID())
	}
}

func init() {
	standaloneTests = append(standaloneTests,
		serverTest{"ReadOnlyWritesNothing", testReadOnlyWritesNothing},
		serverTest{"ReadOnlyWatchMarksNothing", testReadOnlyWatch},
		serverTest{"ReadOnlyOpenWithoutEpochNode", testReadOnlyNoEpoch})
}

// testReadOnlyNoEpoch: a root that holds its identity but not its epoch
// node is damaged: a read-only Open reports backend.ErrDataLost, saying
// so, and creates nothing (before, it created the epoch node, as a
// writing Open does).
func testReadOnlyNoEpoch(t *testing.T, srv *testserver.ZK) {
	root := newRoot("ro-noepoch")
	w := open(t, srv, zk.Config{Root: root})
	_ = w.Close()
	c := rawConn(t, srv)
	kids, _, err := c.Children(root)
	if err != nil {
		t.Fatal(err)
	}
	var epoch string
	for _, k := range kids {
		if strings.HasPrefix(k, "e.") {
			epoch = root + "/" + k
		}
	}
	if epoch == "" {
		t.Fatalf("no epoch node under %s: %v", root, kids)
	}
	if err := c.Delete(epoch, -1); err != nil {
		t.Fatal(err)
	}
	before := snapshot.ZK(t, c, root)
	ro, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: root, ReadOnly: true})
	if ro != nil {
		_ = ro.Close()
	}
	if !errors.Is(err, backend.ErrDataLost) || !strings.Contains(err.Error(), "epoch node") || !strings.Contains(err.Error(), "lost or damaged") {
		t.Errorf("read-only Open of a root without its epoch node: %v; want backend.ErrDataLost saying the data is lost or damaged", err)
	}
	if d := snapshot.Diff(before, snapshot.ZK(t, c, root), nil); len(d) > 0 {
		t.Errorf("read-only Open wrote under %s:\n%s", root, strings.Join(d, "\n"))
	}
}

// seedReadOnly writes, through a backend it closes again, a root that
// gives a sweeper work: ref a with a history, ref b keeping none (a read
// at the point returned, older than its newest version, faults), a committed general-path
// record whose intents were never resolved, an aborted tombstone (in t/
// and o/) that expires at once, and a committed one-phase record that a
// process which died left behind. Another backend, left open, holds a
// lock and a group member.
func seedReadOnly(t *testing.T, srv *testserver.ZK, root string) clock.Point {
	t.Helper()
	ctx := t.Context()
	c := rawConn(t, srv)
	w, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stm.Open(ctx, w, stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	a, err := refs.New(ctx, s, "a", 0, refs.WithMinHistory(8))
	if err != nil {
		t.Fatal(err)
	}
	b, err := refs.New(ctx, s, "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	var old clock.Point
	for i := 1; i <= 3; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Set(tx, i); b.Set(tx, i); return nil }); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if old, err = w.ReadPoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The one-phase commits' records are still there (deleted 5 s after
	// the commit, or at Close): copy one, as a record nobody will delete
	// but a sweep.
	kids, _, err := c.Children(root + "/o")
	if err != nil || len(kids) == 0 {
		t.Fatalf("one-phase records: %v, %v", kids, err)
	}
	data, _, err := c.Get(root + "/o/" + kids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(root+"/o/left-by-the-dead", data, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	rp, err := w.ReadPoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if ok, err := w.PutRecord(ctx, backend.Record{ID: "general", Status: backend.Pending, RP: rp, Priority: rp,
		Lease: now.Add(time.Hour), Created: now, Refs: []backend.RefAddr{{Backend: w.ID(), Name: "a"}}}); err != nil || !ok {
		t.Fatalf("PutRecord: %v, %v", ok, err)
	}
	if _, err := w.CommitRecord(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AbortRecord(ctx, "tombstone"); err != nil { // expires after tombstoneKeep
		t.Fatal(err)
	}
	_ = s.Close()
	_ = w.Close()

	_, o, err := c.Get(root + "/o")
	if err != nil {
		t.Fatal(err)
	}
	h := open(t, srv, zk.Config{Root: root, OnePhaseKeep: time.Hour})
	m, err := locks.NewMutex(h, "jobs", locks.WithLease(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unlock(context.Background()) })
	g, err := group.Join(ctx, h, "workers", "w1", group.WithLease(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Leave(context.Background()) })
	// h's own first sweep (right after its Open) has set o/; it deletes
	// nothing (h keeps one-phase records an hour), while the tombstone
	// and the copied record are old enough for a sweep of a backend with
	// a short OnePhaseKeep.
	snapshot.AwaitSet(t, c, root+"/o", o.Version)
	return old
}

// testReadOnlyWritesNothing: a read-only backend on a root with data does
// every read the CLI's inspecting commands do, and stays open while its
// background goroutines run: every znode under the root is as it was
// (version, child version, Mzxid, Pzxid). Before, ListRecords set t/ and
// o/ (to learn the server's time) and deleted the expired records, and
// the backend's first sweep did the same to o/.
func testReadOnlyWritesNothing(t *testing.T, srv *testserver.ZK) {
	zk.SetTombstoneKeep(t, 10*time.Millisecond)
	root := newRoot("ro-quiet")
	old := seedReadOnly(t, srv, root)
	c := rawConn(t, srv)
	ctx := t.Context()
	before := snapshot.ZK(t, c, root)

	ro, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: root, ReadOnly: true, OnePhaseKeep: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.ReadPoint(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := ro.Read(ctx, backend.ReadRequest{RP: old, Names: []string{"b"}}); err != nil || res.Items[0].Result != history.Fault {
		t.Fatalf("Read of b at %d: %+v, %v; want a read fault (which grows a writer's history)", old, res, err)
	}
	if infos, err := ro.List(ctx, ""); err != nil || len(infos) != 2 {
		t.Fatalf("List: %+v, %v", infos, err)
	}
	if vr, err := ro.Versions(ctx, "a"); err != nil || len(vr.Versions) != 4 {
		t.Fatalf("Versions: %+v, %v", vr, err)
	}
	recs, err := ro.ListRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID+" "+r.Status.String())
	}
	// The expired tombstone is still stored, and listed: nothing deleted it.
	if strings.Join(ids, ", ") != "general committed, tombstone aborted" {
		t.Errorf("ListRecords: %s; want the committed record and the tombstone", strings.Join(ids, ", "))
	}
	if _, err := ro.Records(ctx, []string{"general", "tombstone", "left-by-the-dead", "nosuch"}); err != nil {
		t.Fatal(err)
	}
	dirs, err := ro.Dirs(ctx, "")
	if err != nil || len(dirs) != 2 {
		t.Fatalf("Dirs: %v, %v; want the lock's and the group's", dirs, err)
	}
	for _, d := range dirs {
		if es, err := ro.Entries(ctx, d, true); err != nil || len(es) != 1 {
			t.Fatalf("Entries %s: %+v, %v", d, es, err)
		}
		if _, err := ro.ReadDir(ctx, backend.DirRequest{Dir: d, Details: true, Adds: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The backend's goroutines get their turn (its sweep ran right after
	// Open, and looks every half OnePhaseKeep).
	time.Sleep(1500 * time.Millisecond)
	if _, err := ro.ListRecords(ctx); err != nil {
		t.Fatal(err)
	}
	_ = ro.Close()
	if d := snapshot.Diff(before, snapshot.ZK(t, c, root), nil); len(d) > 0 {
		t.Errorf("a read-only backend wrote under %s:\n%s", root, strings.Join(d, "\n"))
	}
}

// testReadOnlyWatch: a read-only backend's subscription marks nothing (no
// ephemeral child of the ref's znode: the ref's child version and Pzxid
// stay as they were), says so (backend.Unmarked), and still hints at each
// change another backend commits. Before, it created a w.* child.
func testReadOnlyWatch(t *testing.T, srv *testserver.ZK) {
	root := newRoot("ro-watch")
	seedReadOnly(t, srv, root)
	c := rawConn(t, srv)
	ctx := t.Context()
	refP := root + "/r/a"
	_, st0, err := c.Get(refP)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: root, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	sub, err := ro.Subscribe(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := sub.(backend.Unmarked); !ok || !u.Unmarked() {
		t.Errorf("a read-only subscription does not say it is unmarked (%T)", sub)
	}
	w := open(t, srv, zk.Config{Root: root})
	s := openSTM(t, w, stm.WithSweepInterval(0))
	a, err := refs.New(ctx, s, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 13; i++ {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Set(tx, i); return nil }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.C():
		case <-time.After(5 * time.Second):
			t.Fatalf("no hint within 5s of commit %d", i)
		}
	}
	if kids, _, err := c.Children(refP); err != nil || len(kids) != 0 {
		t.Errorf("children of the watched ref's znode: %v, %v; want none (no mark)", kids, err)
	}
	_ = sub.Close()
	_ = ro.Close()
	_, st1, err := c.Get(refP)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Cversion != st0.Cversion || st1.Pzxid != st0.Pzxid {
		t.Errorf("the watched ref's znode: child version %d -> %d, Pzxid %d -> %d: a child was created or deleted",
			st0.Cversion, st1.Cversion, st0.Pzxid, st1.Pzxid)
	}
}
