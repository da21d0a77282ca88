package zk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/locks"
)

func init() {
	standaloneTests = append(standaloneTests,
		serverTest{"SessionsOpenRenewClose", testSessionsOpenRenewClose},
		serverTest{"SessionsLease", testSessionsLease},
		serverTest{"SessionsExpiry", testSessionsExpiry},
		serverTest{"LockLostOnSessionExpiry", testLockLostOnSessionExpiry},
		serverTest{"SessionsWatchdog", testSessionsWatchdog},
		serverTest{"SessionsSeq", testSessionsSeq},
		serverTest{"SessionsEntries", testSessionsEntries},
		serverTest{"SessionsWait", testSessionsWait},
		serverTest{"SessionsDirs", testSessionsDirs},
		serverTest{"SessionsBadNames", testSessionsBadNames},
		serverTest{"SessionsACL", testSessionsACL},
		// Last: it restarts the server.
		serverTest{"SessionsSeqAcrossRestart", testSessionsSeqAcrossRestart},
	)
}

func sctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustOpenSession(t testing.TB, b *zk.Backend, id string) time.Duration {
	t.Helper()
	lease, err := b.OpenSession(sctx(t), id, 30*time.Second, "test "+id)
	if err != nil {
		t.Fatalf("OpenSession(%s): %v", id, err)
	}
	return lease
}

func mustAdd(t testing.TB, b *zk.Backend, req backend.AddEntryRequest) backend.Entry {
	t.Helper()
	e, err := b.AddEntry(sctx(t), req)
	if err != nil {
		t.Fatalf("AddEntry(%+v): %v", req, err)
	}
	return e
}

func entryNames(t testing.TB, b *zk.Backend, dir string) []string {
	t.Helper()
	es, err := b.Entries(sctx(t), dir, false)
	if err != nil {
		t.Fatalf("Entries(%s): %v", dir, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func testSessionsOpenRenewClose(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	b := open(t, srv, zk.Config{})
	lease := mustOpenSession(t, b, "s1")
	if lease <= 0 {
		t.Fatalf("lease %v", lease)
	}
	// Opening again is idempotent.
	if l2, err := b.OpenSession(ctx, "s1", time.Second, "again"); err != nil || l2 != lease {
		t.Fatalf("OpenSession again: %v, %v; want %v", l2, err, lease)
	}
	hb := time.Unix(1_700_000_000, 123456789)
	if err := b.RenewSession(ctx, "s1", hb); err != nil {
		t.Fatalf("RenewSession: %v", err)
	}
	created := time.Now()
	mustAdd(t, b, backend.AddEntryRequest{Session: "s1", Dir: "orc/d", Name: "n", Data: []byte("v"), Time: created})
	mustAdd(t, b, backend.AddEntryRequest{Session: "s1", Dir: "orc/d", Name: "q1", Sequential: true, Data: []byte("w")})
	// Another backend on the same root sees them, with details.
	o := open(t, srv, zk.Config{Root: rootOf(t, b)})
	es, err := o.Entries(ctx, "orc/d", true)
	if err != nil || len(es) != 2 {
		t.Fatalf("Entries: %+v, %v", es, err)
	}
	n := es[0]
	if n.Name != "n" || n.Seq != 0 || string(n.Data) != "v" || !n.Created.Equal(created) {
		t.Fatalf("named entry %+v", n)
	}
	if s := n.Session; s.ID != "s1" || s.Holder != "test s1" || s.Lease != lease || !s.Heartbeat.Equal(hb) {
		t.Fatalf("session info %+v (lease %v, heartbeat %v)", s, lease, hb)
	}
	if q := es[1]; q.Name != "q1" || q.Seq == 0 || string(q.Data) != "w" || !q.Created.IsZero() {
		t.Fatalf("sequential entry %+v", q)
	}

	if err := b.CloseSession(ctx, "s1"); err != nil {
		t.Fatalf("CloseSession: %v", err)
	}
	if got := entryNames(t, o, "orc/d"); len(got) != 0 {
		t.Fatalf("entries after CloseSession: %v", got)
	}
	if err := b.RenewSession(ctx, "s1", time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("RenewSession after close: %v", err)
	}
	if _, err := b.AddEntry(ctx, backend.AddEntryRequest{Session: "s1", Dir: "orc/d", Name: "x"}); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("AddEntry after close: %v", err)
	}
	if _, err := b.OpenSession(ctx, "s1", time.Second, ""); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("OpenSession of a closed id: %v", err)
	}
	if err := b.CloseSession(ctx, "s1"); err != nil {
		t.Fatalf("CloseSession again: %v", err)
	}
	if err := b.CloseSession(ctx, "never"); err != nil {
		t.Fatalf("CloseSession of an unknown id: %v", err)
	}
	if err := b.RenewSession(ctx, "never", time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("RenewSession of an unknown id: %v", err)
	}
	// The session node is gone too.
	c := sessConnect(t, srv.Servers)
	if ok, _, err := c.Exists(rootOf(t, b) + "/ss/s1"); err != nil || ok {
		t.Fatalf("session node after close: exists %v, %v", ok, err)
	}
	// Another backend cannot take over a session open here.
	mustOpenSession(t, b, "s2")
	if _, err := o.OpenSession(ctx, "s2", time.Second, ""); err == nil || !strings.HasPrefix(err.Error(), "zk: ") {
		t.Fatalf("OpenSession of a session open elsewhere: %v", err)
	}
	// Closing the backend ends its sessions.
	mustAdd(t, b, backend.AddEntryRequest{Session: "s2", Dir: "orc/e", Name: "n"})
	_ = b.Close()
	sessPoll(t, 20*time.Second, "the entries of a closed backend to vanish", func() bool { return len(entryNames(t, o, "orc/e")) == 0 })
}

// rootOf finds a backend's root from its ID ("zk:<hex><root>").
func rootOf(t testing.TB, b *zk.Backend) string {
	t.Helper()
	id := b.ID()
	i := strings.Index(id, "/")
	if i < 0 {
		t.Fatalf("backend id %q has no root", id)
	}
	return id[i:]
}

// testSessionsLease: the lease is what the server negotiated (the test
// server's tickTime of 500ms allows 1s to 10s), not what was asked for.
func testSessionsLease(t *testing.T, srv *testserver.ZK) {
	for _, c := range []struct{ asked, want time.Duration }{
		{4 * time.Second, 4 * time.Second},
		{30 * time.Second, 10 * time.Second},
		{100 * time.Millisecond, time.Second},
	} {
		b := open(t, srv, zk.Config{SessionTimeout: c.asked})
		if got := mustOpenSession(t, b, "l"); got != c.want {
			t.Errorf("SessionTimeout %v: lease %v, want %v (negotiated)", c.asked, got, c.want)
		}
	}
	// New cannot learn it: it reports Config.SessionTimeout.
	n, err := zk.New(sessConnect(t, srv.Servers), zk.Config{Root: newRoot("t"), SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := mustOpenSession(t, n, "l"); got != 4*time.Second {
		t.Errorf("New: lease %v, want 4s", got)
	}
}

// testSessionsExpiry: the ZooKeeper session expires under open logical
// sessions: their entries vanish at once for everybody, a waiter wakes,
// and the sessions stay ended although the connection has a new session.
// An AddEntry sent while the connection is between sessions never creates
// an entry under the new one.
func testSessionsExpiry(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	root := newRoot("sx")
	conn, d, b := expirable(t, srv, root)
	o := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b, "a")
	mustOpenSession(t, b, "b")
	mustAdd(t, b, backend.AddEntryRequest{Session: "a", Dir: "x", Name: "held"})
	mustAdd(t, b, backend.AddEntryRequest{Session: "b", Dir: "x", Name: "q", Sequential: true})
	if got := entryNames(t, o, "x"); len(got) != 2 {
		t.Fatalf("entries %v", got)
	}
	// Another client waits for "held" to go, with no time limit.
	woke := make(chan error, 1)
	go func() { woke <- o.WaitEntries(ctx, "x", "held", 0) }()

	old := conn.SessionID()
	pw := d.password(old)
	if pw == nil {
		t.Fatal("the dialer did not see the connect response")
	}
	d.blocked.Store(true)
	killSession(t, srv.Servers[0], old, pw)
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("WaitEntries: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter did not wake when the holder's session expired")
	}
	if got := entryNames(t, o, "x"); len(got) != 0 {
		t.Fatalf("entries after expiry: %v", got)
	}
	sessPoll(t, 10*time.Second, "the connection to drop", func() bool { return conn.State() != gozk.StateHasSession })
	// Sent while the connection has no session: the request waits and may
	// go out under the next session.
	added := make(chan error, 1)
	go func() {
		_, err := b.AddEntry(ctx, backend.AddEntryRequest{Session: "a", Dir: "x", Name: "late"})
		added <- err
	}()
	d.blocked.Store(false)
	sessPoll(t, 20*time.Second, "a new session", func() bool {
		return conn.State() == gozk.StateHasSession && conn.SessionID() != 0 && conn.SessionID() != old
	})
	if err := <-added; err == nil {
		t.Fatal("AddEntry for a session whose ZooKeeper session expired succeeded")
	} else {
		t.Logf("AddEntry while between sessions: %v", err)
	}
	for _, id := range []string{"a", "b"} {
		if err := b.RenewSession(ctx, id, time.Now()); !errors.Is(err, backend.ErrSessionGone) {
			t.Fatalf("RenewSession(%s) after expiry: %v", id, err)
		}
		if _, err := b.AddEntry(ctx, backend.AddEntryRequest{Session: id, Dir: "x", Name: "again"}); !errors.Is(err, backend.ErrSessionGone) {
			t.Fatalf("AddEntry(%s) after expiry: %v", id, err)
		}
		if err := b.CloseSession(ctx, id); err != nil {
			t.Fatalf("CloseSession(%s) after expiry: %v", id, err)
		}
	}
	if got := entryNames(t, o, "x"); len(got) != 0 {
		t.Fatalf("entries under the new session: %v", got)
	}
	// The sessions' nodes are gone; a new session works.
	if ok, _, err := conn.Exists(root + "/ss/a"); err != nil || ok {
		t.Fatalf("session node after expiry: %v, %v", ok, err)
	}
	mustOpenSession(t, b, "c")
	mustAdd(t, b, backend.AddEntryRequest{Session: "c", Dir: "x", Name: "held"})
	if got := entryNames(t, o, "x"); len(got) != 1 {
		t.Fatalf("entries of a new session: %v", got)
	}
}

// testSessionsWatchdog: a session not renewed within its lease ends,
// although the ZooKeeper session lives on.
func testSessionsWatchdog(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	b := open(t, srv, zk.Config{SessionTimeout: 2 * time.Second})
	start := time.Now()
	lease := mustOpenSession(t, b, "w")
	mustOpenSession(t, b, "kept")
	mustAdd(t, b, backend.AddEntryRequest{Session: "w", Dir: "wd", Name: "e"})
	mustAdd(t, b, backend.AddEntryRequest{Session: "kept", Dir: "wd", Name: "k"})
	stop := make(chan struct{})
	renewed := make(chan error, 1)
	go func() {
		t := time.NewTicker(lease / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				renewed <- nil
				return
			case <-t.C:
				if err := b.RenewSession(ctx, "kept", time.Now()); err != nil {
					renewed <- err
					return
				}
			}
		}
	}()
	if err := b.WaitEntries(ctx, "wd", "e", 3*lease); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	close(stop)
	if err := <-renewed; err != nil {
		t.Fatalf("renewing the other session: %v", err)
	}
	if got := entryNames(t, b, "wd"); len(got) != 1 || got[0] != "k" {
		t.Fatalf("entries after %v: %v; want [k]", el, got)
	}
	if el < lease {
		t.Fatalf("the entry went after %v, before the lease of %v", el, lease)
	}
	if err := b.RenewSession(ctx, "w", time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("RenewSession after the lease: %v", err)
	}
}

func testSessionsSeq(t *testing.T, srv *testserver.ZK) {
	root := newRoot("sq")
	b1 := open(t, srv, zk.Config{Root: root})
	b2 := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b1, "s1")
	mustOpenSession(t, b2, "s2")
	var last uint64
	seqs := map[string]uint64{}
	for i := range 6 {
		b, s := b1, "s1"
		if i%2 == 1 {
			b, s = b2, "s2"
		}
		e := mustAdd(t, b, backend.AddEntryRequest{Session: s, Dir: "q", Name: fmt.Sprintf("e%d", i), Sequential: true})
		if e.Seq <= last || e.Name != fmt.Sprintf("e%d", i) {
			t.Fatalf("entry %d: %+v after seq %d", i, e, last)
		}
		if e.Seq <= 1<<32 {
			t.Fatalf("entry %d: seq %d, not above 2^32 (the largest of the old scheme)", i, e.Seq)
		}
		last = e.Seq
		seqs[e.Name] = e.Seq
	}
	// Both backends list the Seqs the adders were given (b2 learns b1's
	// from the znodes), in that order.
	for _, b := range []*zk.Backend{b1, b2} {
		es, err := b.Entries(sctx(t), "q", false)
		if err != nil || len(es) != 6 {
			t.Fatalf("Entries: %v, %v", es, err)
		}
		for i, e := range es {
			if e.Name != fmt.Sprintf("e%d", i) || e.Seq != seqs[e.Name] {
				t.Fatalf("Entries %+v, want e0..e5 with seqs %v", es, seqs)
			}
		}
	}
	// Idempotent: the same name again is the same entry, with its Seq,
	// also while the bounded cache of learned Seqs is emptied (as when it
	// fills up) by other calls meanwhile: a token of 0 would be one no
	// holder ever had.
	stop := make(chan struct{})
	forgot := make(chan struct{})
	go func() {
		defer close(forgot)
		for {
			select {
			case <-stop:
				return
			default:
				zk.ForgetSeqs(b1)
			}
		}
	}()
	for range 100 {
		e := mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "q", Name: "e4", Sequential: true})
		if e.Seq != seqs["e4"] {
			close(stop)
			t.Fatalf("repeated AddEntry: seq %d, want %d", e.Seq, seqs["e4"])
		}
	}
	close(stop)
	<-forgot
	if got := entryNames(t, b1, "q"); len(got) != 6 {
		t.Fatalf("entries after a repeat: %v", got)
	}
	// Removing everything does not reset the counter.
	for i := range 6 {
		b, s := b1, "s1"
		if i%2 == 1 {
			b, s = b2, "s2"
		}
		if err := b.RemoveEntry(sctx(t), s, "q", fmt.Sprintf("e%d", i)); err != nil {
			t.Fatalf("RemoveEntry e%d: %v", i, err)
		}
	}
	if got := entryNames(t, b1, "q"); len(got) != 0 {
		t.Fatalf("entries after removing all: %v", got)
	}
	if err := b1.CloseSession(sctx(t), "s1"); err != nil {
		t.Fatal(err)
	}
	mustOpenSession(t, b1, "s3")
	e := mustAdd(t, b1, backend.AddEntryRequest{Session: "s3", Dir: "q", Name: "after", Sequential: true})
	if e.Seq <= last {
		t.Fatalf("seq %d after removing all, not above %d", e.Seq, last)
	}
	// Named entries have Seq 0 and come first.
	n := mustAdd(t, b1, backend.AddEntryRequest{Session: "s3", Dir: "q", Name: "zz-0000000001"})
	if n.Seq != 0 {
		t.Fatalf("named entry seq %d", n.Seq)
	}
	if got := entryNames(t, b2, "q"); len(got) != 2 || got[0] != "zz-0000000001" || got[1] != "after" {
		t.Fatalf("entries %v", got)
	}
}

// testSessionsSeqAcrossRestart: the counter survives a server restart.
func testSessionsSeqAcrossRestart(t *testing.T, srv *testserver.ZK) {
	root := newRoot("sr")
	b := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b, "s")
	var last uint64
	for i := range 3 {
		last = mustAdd(t, b, backend.AddEntryRequest{Session: "s", Dir: "r", Name: fmt.Sprint(i), Sequential: true}).Seq
	}
	if err := b.CloseSession(sctx(t), "s"); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t, 0)
	b2 := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b2, "s2")
	e := mustAdd(t, b2, backend.AddEntryRequest{Session: "s2", Dir: "r", Name: "x", Sequential: true})
	if e.Seq <= last {
		t.Fatalf("seq %d after a restart, not above %d", e.Seq, last)
	}
}

func testSessionsEntries(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	root := newRoot("se")
	b1 := open(t, srv, zk.Config{Root: root})
	b2 := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b1, "s1")
	mustOpenSession(t, b1, "s1b") // same backend, another session
	mustOpenSession(t, b2, "s2")
	mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "d/x", Name: "lock", Data: []byte("1")})
	// Same session: idempotent, data replaced.
	e := mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "d/x", Name: "lock", Data: []byte("2")})
	if e.Name != "lock" || e.Seq != 0 || e.Dir != "d/x" {
		t.Fatalf("repeat: %+v", e)
	}
	for _, c := range []struct {
		b  *zk.Backend
		id string
	}{{b2, "s2"}, {b1, "s1b"}} {
		if _, err := c.b.AddEntry(ctx, backend.AddEntryRequest{Session: c.id, Dir: "d/x", Name: "lock"}); !errors.Is(err, backend.ErrEntryExists) {
			t.Fatalf("AddEntry by %s of a held name: %v", c.id, err)
		}
		if err := c.b.SetEntry(ctx, c.id, "d/x", "lock", []byte("x")); !errors.Is(err, backend.ErrEntryGone) {
			t.Fatalf("SetEntry by %s: %v", c.id, err)
		}
		if err := c.b.RemoveEntry(ctx, c.id, "d/x", "lock"); !errors.Is(err, backend.ErrEntryGone) {
			t.Fatalf("RemoveEntry by %s: %v", c.id, err)
		}
	}
	es, err := b2.Entries(ctx, "d/x", true)
	if err != nil || len(es) != 1 || string(es[0].Data) != "2" || es[0].Session.ID != "s1" {
		t.Fatalf("Entries: %+v, %v", es, err)
	}
	if err := b1.SetEntry(ctx, "s1", "d/x", "lock", []byte("3")); err != nil {
		t.Fatalf("SetEntry: %v", err)
	}
	if es, err := b2.Entries(ctx, "d/x", true); err != nil || string(es[0].Data) != "3" {
		t.Fatalf("after SetEntry: %+v, %v", es, err)
	}
	// Sequential entries too.
	q := mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "d/x", Name: "r1", Sequential: true, Data: []byte("a")})
	if err := b1.SetEntry(ctx, "s1", "d/x", "r1", []byte("b")); err != nil {
		t.Fatalf("SetEntry sequential: %v", err)
	}
	if err := b2.RemoveEntry(ctx, "s2", "d/x", "r1"); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("RemoveEntry of another's sequential entry: %v", err)
	}
	es, _ = b2.Entries(ctx, "d/x", true)
	if len(es) != 2 || es[1].Name != "r1" || es[1].Seq != q.Seq || string(es[1].Data) != "b" {
		t.Fatalf("entries %+v", es)
	}
	for _, name := range []string{"lock", "r1"} {
		if err := b1.RemoveEntry(ctx, "s1", "d/x", name); err != nil {
			t.Fatalf("RemoveEntry %s: %v", name, err)
		}
		if err := b1.RemoveEntry(ctx, "s1", "d/x", name); !errors.Is(err, backend.ErrEntryGone) {
			t.Fatalf("RemoveEntry %s twice: %v", name, err)
		}
		if err := b1.SetEntry(ctx, "s1", "d/x", name, nil); !errors.Is(err, backend.ErrEntryGone) {
			t.Fatalf("SetEntry of removed %s: %v", name, err)
		}
	}
	// Now another session can take the name.
	mustAdd(t, b2, backend.AddEntryRequest{Session: "s2", Dir: "d/x", Name: "lock"})
	if es, _ := b1.Entries(ctx, "d/x", true); len(es) != 1 || es[0].Session.ID != "s2" {
		t.Fatalf("entries %+v", es)
	}
	// A missing dir has no entries.
	if got := entryNames(t, b1, "nothing/here"); len(got) != 0 {
		t.Fatalf("entries of a missing dir: %v", got)
	}
	// Odd names round-trip.
	for _, name := range []string{".", "..", "a/b", "50% #1", "é-0000000003", "x#0000000001"} {
		mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "odd/" + name, Name: name})
		mustAdd(t, b1, backend.AddEntryRequest{Session: "s1", Dir: "odd/" + name, Name: name + "s", Sequential: true})
		if got := entryNames(t, b2, "odd/"+name); len(got) != 2 || got[0] != name || got[1] != name+"s" {
			t.Fatalf("entries of dir %q: %q", "odd/"+name, got)
		}
	}
	// Data beyond a request is refused before anything is sent.
	if _, err := b1.AddEntry(ctx, backend.AddEntryRequest{Session: "s1", Dir: "d/x", Name: "big", Data: make([]byte, 2_000_000)}); !errors.Is(err, zk.ErrTooLarge) {
		t.Fatalf("AddEntry of 2 MB: %v", err)
	}
}

// waitResult runs WaitEntries in the background.
func waitResult(b *zk.Backend, ctx context.Context, dir, name string, max time.Duration) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.WaitEntries(ctx, dir, name, max) }()
	return ch
}

func testSessionsWait(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	root := newRoot("sw")
	b1 := open(t, srv, zk.Config{Root: root})
	b2 := open(t, srv, zk.Config{Root: root})
	mustOpenSession(t, b1, "h")
	mustOpenSession(t, b2, "w")
	mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "q", Name: "A", Sequential: true})
	mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "q", Name: "B", Sequential: true})
	mustAdd(t, b2, backend.AddEntryRequest{Session: "w", Dir: "q", Name: "W", Sequential: true})

	// A gone name returns at once.
	start := time.Now()
	if err := b2.WaitEntries(ctx, "q", "nope", time.Minute); err != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("WaitEntries on a missing entry: %v after %v", err, time.Since(start))
	}

	t.Run("UnrelatedChangesDoNotWake", func(t *testing.T) {
		// The waiter on B sees none of the changes to C (added, changed,
		// removed, again and again): it returns at max.
		const max = 1500 * time.Millisecond
		start := time.Now()
		ch := waitResult(b2, ctx, "q", "B", max)
		for i := 0; ; i++ {
			select {
			case err := <-ch:
				el := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				if el < max {
					t.Fatalf("the waiter on B woke after %v (%d changes to C), before max %v", el, i, max)
				}
				return
			default:
			}
			name := fmt.Sprintf("C%d", i%2)
			mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "q", Name: name, Sequential: i%3 == 0})
			if err := b1.SetEntry(ctx, "h", "q", name, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if err := b1.RemoveEntry(ctx, "h", "q", name); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("RemovalWakes", func(t *testing.T) {
		// The waiter learns B's node from Entries, as a lock would.
		if got := entryNames(t, b2, "q"); len(got) != 3 {
			t.Fatalf("entries %v", got)
		}
		ch := waitResult(b2, ctx, "q", "B", 0)
		for i := range 3 {
			mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "q", Name: fmt.Sprint("D", i), Sequential: true})
		}
		select {
		case err := <-ch:
			t.Fatalf("the waiter on B returned before B was removed: %v", err)
		default:
		}
		if err := b1.RemoveEntry(ctx, "h", "q", "B"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("woke %v after B's removal", time.Since(start).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Fatal("the waiter on B did not wake within 20s of its removal")
		}
	})

	t.Run("Dir", func(t *testing.T) {
		// Any change of the dir wakes a dir waiter: an add, a data change
		// and a removal.
		steps := []func() error{
			func() error {
				_, err := b1.AddEntry(ctx, backend.AddEntryRequest{Session: "h", Dir: "q", Name: "E"})
				return err
			},
			func() error { return b1.SetEntry(ctx, "h", "q", "E", []byte("new")) },
			func() error { return b1.RemoveEntry(ctx, "h", "q", "E") },
		}
		for i, step := range steps {
			entryNames(t, b2, "q") // the waiter reads, then waits
			ch := waitResult(b2, ctx, "q", "", 0)
			if err := step(); err != nil {
				t.Fatal(err)
			}
			st := time.Now()
			select {
			case err := <-ch:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("step %d did not wake the dir waiter", i)
			}
			t.Logf("step %d woke the dir waiter after %v", i, time.Since(st))
		}
		// A change between the read and the wait is not missed.
		entryNames(t, b2, "q")
		mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "q", Name: "F"})
		if err := b2.WaitEntries(ctx, "q", "", time.Minute); err != nil {
			t.Fatal(err)
		}
		// A dir that does not exist yet wakes on its first entry.
		ch := waitResult(b2, ctx, "fresh", "", 0)
		mustAdd(t, b1, backend.AddEntryRequest{Session: "h", Dir: "fresh", Name: "first"})
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the first entry of a dir did not wake its waiter")
		}
	})

	t.Run("CtxAndMax", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		ch := waitResult(b2, cctx, "q", "A", 0)
		cancel()
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("WaitEntries after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("WaitEntries ignored its ctx")
		}
		start := time.Now()
		if err := b2.WaitEntries(ctx, "q", "", 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("WaitEntries with max 200ms took %v", el)
		}
	})
}

func testSessionsDirs(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	b := open(t, srv, zk.Config{})
	mustOpenSession(t, b, "s")
	for _, d := range []string{"locks/a", "locks/b/c", "locks/b", "groups/g", "locksmith"} {
		mustAdd(t, b, backend.AddEntryRequest{Session: "s", Dir: d, Name: "e"})
	}
	got, err := b.Dirs(ctx, "locks/")
	if want := []string{"locks/a", "locks/b", "locks/b/c"}; err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Dirs(locks/) = %q, %v; want %q", got, err, want)
	}
	if err := b.RemoveEntry(ctx, "s", "locks/b", "e"); err != nil {
		t.Fatal(err)
	}
	got, err = b.Dirs(ctx, "locks")
	if want := []string{"locks/a", "locks/b/c", "locksmith"}; err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Dirs(locks) = %q, %v; want %q", got, err, want)
	}
	if got, err := b.Dirs(ctx, ""); err != nil || len(got) != 4 {
		t.Fatalf("Dirs() = %q, %v", got, err)
	}
	if err := b.CloseSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Dirs(ctx, ""); err != nil || len(got) != 0 {
		t.Fatalf("Dirs() after close = %q, %v", got, err)
	}
}

func testSessionsBadNames(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	b := open(t, srv, zk.Config{})
	mustOpenSession(t, b, "ok")
	long := strings.Repeat("x", backend.MaxSessionName+1)
	fine := strings.Repeat("é", backend.MaxSessionName/2)
	for _, bad := range []string{"", long, "a\x00b", "a\nb", "\x7f", "a\u0085"} {
		errs := map[string]error{}
		_, errs["OpenSession"] = b.OpenSession(ctx, bad, time.Second, "")
		_, errs["AddEntry id"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: bad, Dir: "d", Name: "n"})
		_, errs["AddEntry dir"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: "ok", Dir: bad, Name: "n"})
		_, errs["AddEntry name"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: "ok", Dir: "d", Name: bad, Sequential: true})
		_, errs["Entries"] = b.Entries(ctx, bad, false)
		errs["SetEntry"] = b.SetEntry(ctx, "ok", "d", bad, nil)
		errs["RemoveEntry"] = b.RemoveEntry(ctx, "ok", bad, "n")
		errs["WaitEntries"] = b.WaitEntries(ctx, bad, "", 0)
		if bad != "" {
			errs["WaitEntries name"] = b.WaitEntries(ctx, "d", bad, 0)
		}
		for what, err := range errs {
			if !errors.Is(err, backend.ErrBadName) || !strings.HasPrefix(err.Error(), "zk: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s(%.20q): %v; want a one-line zk: error wrapping ErrBadName", what, bad, err)
			}
		}
	}
	// The longest names work.
	mustAdd(t, b, backend.AddEntryRequest{Session: "ok", Dir: fine, Name: fine})
	mustAdd(t, b, backend.AddEntryRequest{Session: "ok", Dir: fine, Name: fine[2:] + "xy", Sequential: true})
	if got := entryNames(t, b, fine); len(got) != 2 || got[0] != fine {
		t.Fatalf("entries of the longest dir: %d", len(got))
	}
}

// testSessionsACL: with Auth, session, dir and entry nodes carry the ACL.
func testSessionsACL(t *testing.T, srv *testserver.ZK) {
	root := newRoot("sa")
	b := open(t, srv, zk.Config{Root: root, Auth: "alice:secret"})
	mustOpenSession(t, b, "s")
	mustAdd(t, b, backend.AddEntryRequest{Session: "s", Dir: "d/1", Name: "n", Data: []byte("secret")})
	mustAdd(t, b, backend.AddEntryRequest{Session: "s", Dir: "d/1", Name: "q", Sequential: true})
	owner := sessConnect(t, srv.Servers)
	if err := owner.AddAuth("digest", []byte("alice:secret")); err != nil {
		t.Fatal(err)
	}
	kids, _, err := owner.Children(root + "/sd/d%2F1")
	if err != nil || len(kids) != 2 {
		t.Fatalf("children of the dir node: %v, %v", kids, err)
	}
	paths := []string{root + "/ss", root + "/sd", root + "/ss/s", root + "/sd/d%2F1"}
	for _, k := range kids {
		paths = append(paths, root+"/sd/d%2F1/"+k)
		if strings.Contains(k, "#") && !strings.HasPrefix(k, "q#") {
			t.Errorf("sequential node %q", k)
		}
	}
	for _, p := range paths {
		acl, _, err := owner.GetACL(p)
		if err != nil {
			t.Fatalf("GetACL %s: %v", p, err)
		}
		if len(acl) != 1 || acl[0].Scheme != "digest" || !strings.HasPrefix(acl[0].ID, "alice:") || acl[0].Perms != gozk.PermAll {
			t.Fatalf("ACL of %s: %+v", p, acl)
		}
	}
	noAuth := sessConnect(t, srv.Servers)
	for _, p := range paths[2:] {
		if _, _, err := noAuth.Get(p); !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("Get %s without auth: %v", p, err)
		}
		if err := noAuth.Delete(p, -1); !errors.Is(err, gozk.ErrNoAuth) {
			t.Errorf("Delete %s without auth: %v", p, err)
		}
	}
	if _, err := noAuth.Create(root+"/sd/d%2F1/evil", nil, gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); !errors.Is(err, gozk.ErrNoAuth) {
		t.Errorf("Create in a dir without auth: %v", err)
	}
	if data, _, err := owner.Get(root + "/sd/d%2F1/n"); err != nil || !bytes.Contains(data, []byte("secret")) {
		t.Fatalf("entry data: %q, %v", data, err)
	}
}

// testLockLostOnSessionExpiry: the ZooKeeper session of a lock holder (and
// of a group member in the same process) expires: Lost is closed, Unlock
// says ErrLost, another process's client takes the lock with a larger
// token, and the member joins again under the new session.
func testLockLostOnSessionExpiry(t *testing.T, srv *testserver.ZK) {
	ctx := sctx(t)
	root := newRoot("lx")
	conn, d, b := expirable(t, srv, root)
	o := open(t, srv, zk.Config{Root: root})
	m, err := locks.NewMutex(b, "jobs/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok, lost := m.Token(), m.Lost()
	g, err := group.Join(ctx, b, "workers", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Leave(context.Background())
	other, err := locks.NewMutex(o, "jobs/x")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := other.TryLock(context.Background()); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v", ok, err)
	}

	old := conn.SessionID()
	pw := d.password(old)
	if pw == nil {
		t.Fatal("the dialer did not see the connect response")
	}
	killSession(t, srv.Servers[0], old, pw)
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("Lost not closed 30s after the holder's ZooKeeper session expired")
	}
	if err := other.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if other.Token() <= tok {
		t.Fatalf("token %d after the expired holder's %d", other.Token(), tok)
	}
	if err := m.Unlock(ctx); !errors.Is(err, locks.ErrLost) {
		t.Fatalf("Unlock after expiry: %v, want ErrLost", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The member is back, under a new ZooKeeper session.
	sessPoll(t, 30*time.Second, "the member to rejoin", func() bool {
		ms, err := group.Members(ctx, o, "workers")
		return err == nil && len(ms) == 1 && ms[0].Name == "a" && conn.SessionID() != old
	})
	// And the expired holder's process can lock again.
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
