package zk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

func init() {
	standaloneTests = append(standaloneTests,
		serverTest{"MalformedNodeIsNamed", testMalformedNode},
		serverTest{"OnePhaseRecordsDeletedOnClose", testOnePhaseClose},
		serverTest{"OnePhaseRecordsOfKilledProcessSwept", testOnePhaseKilled},
		serverTest{"TombstoneOutlivesSweeperAhead", testTombstoneSkew})
}

// rawConn is a plain go-zookeeper connection to srv, closed at cleanup.
func rawConn(t *testing.T, srv *testserver.ZK) *gozk.Conn {
	t.Helper()
	c, ev, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(discard{}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ev {
		}
	}()
	t.Cleanup(c.Close)
	return c
}

// testMalformedNode: a ref znode whose data another program replaced is
// backend.ErrCorrupt naming the ref; List lists the other refs and reports
// it in its own RefInfo.
func testMalformedNode(t *testing.T, srv *testserver.ZK) {
	root := newRoot("malformed")
	b := open(t, srv, zk.Config{Root: root})
	s := openSTM(t, b, stm.WithSweepInterval(0))
	ctx := t.Context()
	for _, n := range []string{"a/one", "a/two", "c/three"} {
		if _, err := refs.New(ctx, s, n, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := rawConn(t, srv)
	if _, err := c.Set(root+"/r/a%2Ftwo", []byte("garbage"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(root+"/r/b%2Fempty", nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, srv, zk.Config{Root: root}) // no cached nodes
	infos, err := b2.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v, want the good refs listed and the bad ones reported", err)
	}
	var good, bad []string
	for _, in := range infos {
		if in.Err == nil {
			good = append(good, in.Name)
			continue
		}
		bad = append(bad, in.Name)
		if !errors.Is(in.Err, backend.ErrCorrupt) || !strings.Contains(in.Err.Error(), in.Name) {
			t.Errorf("List: %s: %v, want backend.ErrCorrupt naming it", in.Name, in.Err)
		}
	}
	if strings.Join(good, " ") != "a/one c/three" || strings.Join(bad, " ") != "a/two b/empty" {
		t.Errorf("List: good %v, bad %v; want a/one c/three, and a/two b/empty", good, bad)
	}
	if _, err := b2.Versions(ctx, "a/two"); !errors.Is(err, backend.ErrCorrupt) || !strings.Contains(err.Error(), "a/two") {
		t.Errorf("Versions: %v, want backend.ErrCorrupt naming a/two", err)
	}
	s2 := openSTM(t, b2, stm.WithSweepInterval(0))
	r, err := refs.New(ctx, s2, "a/two", 0)
	if err == nil {
		_, err = r.Deref(ctx)
	}
	if !errors.Is(err, refs.ErrCorrupt) {
		t.Errorf("refs on a/two: %v, want refs.ErrCorrupt", err)
	}
}

// oneRecords counts the one-phase records under root.
func oneRecords(t *testing.T, c *gozk.Conn, root string) int {
	t.Helper()
	kids, _, err := c.Children(root + "/o")
	if err != nil {
		t.Fatal(err)
	}
	return len(kids)
}

// commitMany commits n one-phase transactions over 10 refs.
func commitMany(ctx context.Context, s *stm.STM, n int) error {
	var rs []*refs.Ref[int]
	for i := range 10 {
		r, err := refs.New(ctx, s, fmt.Sprintf("r/%d", i), 0)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	for i := range n {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			rs[i%10].Alter(tx, func(v int) int { return v + 1 })
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// testOnePhaseClose: a process that commits and then closes its backend
// leaves no one-phase record behind (it deletes those it queued).
func testOnePhaseClose(t *testing.T, srv *testserver.ZK) {
	root := newRoot("oneclose")
	b, err := zk.Open(t.Context(), zk.Config{Servers: srv.Servers, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stm.Open(t.Context(), b, stm.WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := commitMany(t.Context(), s, 300); err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, srv)
	before := oneRecords(t, c, root)
	_ = s.Close()
	_ = b.Close()
	after := oneRecords(t, c, root)
	t.Logf("one-phase records after 300 commits: %d before Close, %d after", before, after)
	if after != 0 {
		t.Errorf("%d one-phase records left under %s/o after Close, want 0", after, root)
	}
}

// testOnePhaseKilled: a process SIGKILLed while it commits leaves the
// records of its last commits; any backend opened on the root afterwards
// (with no STM, so no recovery sweep) deletes them once they are older
// than OnePhaseKeep, within OnePhaseKeep and a half.
func testOnePhaseKilled(t *testing.T, srv *testserver.ZK) {
	root := newRoot("onekill")
	cmd := procCommand("onephase", procEnvServers+"="+srv.ConnectString(), procEnvRoot+"="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "committed" {
		t.Fatalf("worker said %q (%v), want committed", sc.Text(), sc.Err())
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	c := rawConn(t, srv)
	left := oneRecords(t, c, root)
	t.Logf("one-phase records left by the killed process: %d", left)
	if left == 0 {
		t.Fatalf("the killed process left no record: the test shows nothing")
	}
	const keep = time.Second
	start := time.Now()
	_ = open(t, srv, zk.Config{Root: root, OnePhaseKeep: keep})
	bound := keep + keep/2 + 5*time.Second // the sweep's bound, and slack for a slow machine
	for n := left; n > 0; n = oneRecords(t, c, root) {
		if time.Since(start) > bound {
			t.Fatalf("%d of %d one-phase records still there %v after a backend opened on the root", n, left, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond) // polling the server: nothing to wait on
	}
	t.Logf("swept within %v", time.Since(start).Round(time.Millisecond))
}

// procOnePhaseWorker commits one-phase transactions over 10 refs until it
// is killed, saying "committed" once 200 are done.
func procOnePhaseWorker() int {
	b, err := procOpen(10 * time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "onephase worker:", err)
		return 1
	}
	ctx := context.Background()
	s, err := stm.Open(ctx, b, stm.WithSweepInterval(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "onephase worker:", err)
		return 1
	}
	if err := commitMany(ctx, s, 200); err != nil {
		fmt.Fprintln(os.Stderr, "onephase worker:", err)
		return 1
	}
	fmt.Println("committed")
	if err := commitMany(ctx, s, 1<<30); err != nil {
		fmt.Fprintln(os.Stderr, "onephase worker:", err)
		return 1
	}
	return 0
}

// testTombstoneSkew: a tombstone (an abort of an id with no record, which a
// delayed one-phase commit of that id must meet) is kept for its time by
// the server's clock: a sweep by a process whose clock runs ten minutes
// ahead leaves it, and it goes once the server's clock says so.
func testTombstoneSkew(t *testing.T, srv *testserver.ZK) {
	const keep = 4 * time.Second
	zk.SetTombstoneKeep(t, keep)
	root := newRoot("tombskew")
	p := open(t, srv, zk.Config{Root: root})
	q := open(t, srv, zk.Config{Root: root, OnePhaseKeep: time.Second}) // sweeps o/ every 0.5 s
	zk.SetWall(q, func() time.Time { return time.Now().Add(10 * time.Minute) })
	ctx := t.Context()
	aborted := time.Now()
	if r, err := p.AbortRecord(ctx, "tomb-1"); err != nil || r.Status != backend.Aborted {
		t.Fatalf("AbortRecord = %+v, %v", r, err)
	}
	// q's sweeps of t/ (ListRecords) and o/ (every half OnePhaseKeep;
	// ListRecords too when due) within a second.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := q.ListRecords(ctx); err != nil {
			t.Fatal(err)
		}
		rs, err := p.Records(ctx, []string{"tomb-1"})
		if err != nil {
			t.Fatal(err)
		}
		// (On a machine so slow that keep has passed, it may go.)
		if rs[0].Status != backend.Aborted && time.Since(aborted) < keep {
			t.Fatalf("after sweeps by a process 10 minutes ahead: %+v; want the tombstone (aborted)", rs)
		}
	}
	// Gone once the server's clock is past its keep (polled: it is the
	// server's clock that must move).
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := q.ListRecords(ctx); err != nil {
			t.Fatal(err)
		}
		rs, err := p.Records(ctx, []string{"tomb-1"})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status == backend.Missing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tombstone is still there a minute after its %v keep: %+v", keep, rs[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
}
