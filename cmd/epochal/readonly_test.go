package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/group"
	"github.com/epochal/epochal/internal/lease"
	"github.com/epochal/epochal/internal/testkit/snapshot"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// The records and the ref that roSeed adds to seed's.
const (
	roCommittedID = "cli-ro-committed" // a committed general-path record, its intents never resolved
	roExpiredID   = "cli-ro-expired"   // an aborted tombstone (Redis: expired, its id still indexed)
	roWatched     = "watched"          // a ref keeping 10 older versions, for refs watch
)

// roSeed adds to seed's data what gives a writing backend's housekeeping
// work: a committed general-path record, a tombstone (on Redis expired at
// once, its id left in the index), and ref roWatched.
func roSeed(t *testing.T, drv backend.Driver, sd *seeded) {
	t.Helper()
	ctx := t.Context()
	_, err := refs.New(ctx, sd.s, roWatched, 0, refs.WithMinHistory(10))
	mustNoErr(t, err, "new "+roWatched)
	rp, err := drv.ReadPoint(ctx)
	mustNoErr(t, err, "read point")
	now := sd.wall.Now()
	ok, err := drv.PutRecord(ctx, backend.Record{ID: roCommittedID, Status: backend.Pending, RP: rp, Priority: rp,
		Lease: now.Add(time.Hour), Created: now, Refs: []backend.RefAddr{{Backend: drv.ID(), Name: "bank/alice"}}})
	if err != nil || !ok {
		t.Fatalf("PutRecord: %v, %v", ok, err)
	}
	_, err = drv.CommitRecord(ctx, roCommittedID)
	mustNoErr(t, err, "CommitRecord")
	_, err = drv.AbortRecord(ctx, roExpiredID)
	mustNoErr(t, err, "AbortRecord")
	if _, ok := drv.(*redis.Backend); ok {
		mustNoErr(t, drv.DeleteRecord(ctx, roExpiredID, time.Millisecond), "DeleteRecord")
	}
}

// holdLive holds lock "jobs/nightly" and is member "w1" of group
// "workers" through drv's sessions, with an hour's lease, as package locks
// and group store them, but without their goroutines (a member's watch of
// its group drops dead entries: the test's own writes).
func holdLive(t *testing.T, drv backend.Driver) {
	t.Helper()
	ctx := t.Context()
	ss := drv.(backend.Sessions)
	_, err := ss.OpenSession(ctx, "live", time.Hour, testHolder)
	mustNoErr(t, err, "OpenSession")
	data, err := refs.Msgpack.Marshal(map[string]any{"slots": 4})
	mustNoErr(t, err, "encode")
	for _, e := range []backend.AddEntryRequest{
		{Dir: lease.LockDirPrefix + "jobs/nightly", Name: "live", Sequential: true},
		{Dir: group.DirPrefix + "workers", Name: "w1", Data: data},
	} {
		e.Session, e.Time = "live", time.Now()
		_, err := ss.AddEntry(ctx, e)
		mustNoErr(t, err, "AddEntry")
	}
}

// addDeadRedis adds entries of a session whose lease then runs out (its
// key expires, as Redis expires it: a short lease could run out before
// its entries were added, on a loaded machine): beside the live lock's
// and group's, and alone in lock "gone". It waits for the tombstone of
// roExpiredID to expire too.
func addDeadRedis(t *testing.T, drv *redis.Backend, c *goredis.Client) {
	t.Helper()
	ctx := t.Context()
	_, err := drv.OpenSession(ctx, "dead", time.Hour, "dead-host/1/epochal.test")
	mustNoErr(t, err, "OpenSession")
	for _, e := range []backend.AddEntryRequest{
		{Dir: "lock/jobs/nightly", Name: "dead", Sequential: true},
		{Dir: "lock/gone", Name: "dead", Sequential: true},
		{Dir: "group/workers", Name: "w0"},
	} {
		e.Session, e.Time = "dead", time.Now()
		_, err := drv.AddEntry(ctx, e)
		mustNoErr(t, err, "AddEntry")
	}
	mustNoErr(t, c.Del(ctx, "{ro}:ss:dead").Err(), "DEL the dead session")
	for {
		n, err := c.Exists(ctx, "{ro}:t:"+roExpiredID).Result()
		mustNoErr(t, err, "EXISTS the tombstone")
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond) // polling for the expiry, not timing it
	}
}

// runReadOnly runs every inspecting command (and completion) in process
// with flags, each wanting exit 0; refs watch runs for 1.5 s.
func runReadOnly(t *testing.T, drv backend.Driver, flags ...string) {
	t.Helper()
	vr, err := drv.Versions(t.Context(), "bank/alice")
	mustNoErr(t, err, "Versions")
	p0, p1 := fmt.Sprint(vr.Versions[len(vr.Versions)-1].Point), fmt.Sprint(vr.Versions[0].Point)
	for _, args := range [][]string{
		{"refs", "ls"}, {"refs", "ls", "bank/", "-o", "json"},
		{"refs", "get", "bank/alice"}, {"refs", "get", "bank/alice", "--at", p0, "-o", "yaml"},
		{"refs", "history", "bank/alice"}, {"refs", "diff", "bank/alice", p0, p1},
		{"refs", "set", "bank/alice", `{"owner":"alice","balance":1}`, "--dry-run"},
		{"txn", "ls"}, {"txn", "ls", "--pending", "-o", "json"}, {"txn", "show", pendingID}, {"txn", "show", roCommittedID},
		{"locks", "ls"}, {"locks", "ls", "-o", "json"}, {"group", "ls"}, {"group", "ls", "workers"}, {"clock"},
		{"__complete", "refs", "get", ""}, {"__complete", "txn", "show", ""}, {"__complete", "group", "ls", ""},
	} {
		var out, errOut syncBuffer
		if code := run(t.Context(), append(append([]string{}, flags...), args...), &out, &errOut); code != exitOK {
			t.Errorf("epochal %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errOut.String())
		}
	}
	// refs watch, with nothing committed meanwhile: it ends at ^C (here
	// the context's end), exit 0.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	var out, errOut syncBuffer
	if code := run(ctx, append(append([]string{}, flags...), "refs", "watch", "bank/alice"), &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "watching bank/alice") {
		t.Errorf("epochal refs watch bank/alice: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}

// watchWhileCommitting runs refs watch roWatched --json in process with
// flags for at least 1.5 s, while commit commits values 1..5 to it: every
// change is printed, in order, without a gap notice.
func watchWhileCommitting(t *testing.T, commit func(v int), flags ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- run(ctx, append(append([]string{}, flags...), "refs", "watch", roWatched, "--json"), &out, &errOut)
	}()
	waitFor(t, 10*time.Second, "the watching notice", func() bool { return strings.Contains(errOut.String(), "watching "+roWatched) })
	for v := 1; v <= 5; v++ {
		commit(v)
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the fifth change", func() bool { return strings.Contains(out.String(), `"value":5`) })
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("refs watch: exit %d, stderr %s", code, errOut.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ch struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal([]byte(l), &ch); err != nil {
			t.Fatalf("watch line %q: %v", l, err)
		}
		got = append(got, ch.Type+" "+string(ch.Value))
	}
	if want := "change 1, change 2, change 3, change 4, change 5"; strings.Join(got, ", ") != want {
		t.Errorf("refs watch printed %q, want %q", strings.Join(got, ", "), want)
	}
}

// readerCommands are the commands docs/operations.md lists for a user that
// only inspects.
const readerCommands = `+get +multi +exec +hget +hmget +hgetall +lrange +smembers +zrangebylex +evalsha +eval +script|load +mget +exists +zrange +zcard +type`

// TestReadOnlyCommandsRedis: every inspecting command, on a prefix whose
// data gives housekeeping work (dead entries beside live ones in a lock
// and a group, and alone in a lock; an expired record's id still indexed),
// writes nothing: as a user without @write, each exits 0 and the ACL log
// is empty; as one who may write, every key is as it was (type, value,
// expiry). refs watch, while another handle commits, prints every change
// and sets no watch mark. Before, locks ls, group ls and completion
// dropped the dead entries, txn ls the id, and refs watch set {P}:w:<ref>
// (NOPERM for the reader).
func TestReadOnlyCommandsRedis(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{Args: []string{`user reader on >reader-Secret-1 resetkeys ~{ro}:* resetchannels -@all ` + readerCommands}})
	ctx := t.Context()
	drv, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro"})
	mustNoErr(t, err, "redis.Open")
	t.Cleanup(func() { drv.Close() })
	sd := seed(t, drv)
	roSeed(t, drv, sd)
	holdLive(t, drv)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	addDeadRedis(t, drv, c)
	flags := []string{"--backend", "redis", "--addr", srv.Addr, "--prefix", "ro"}
	reader := append(append([]string{}, flags...), "--user", "reader", "--password", "reader-Secret-1")
	aclLog := func(t *testing.T) {
		t.Helper()
		if log, err := c.Do(ctx, "ACL", "LOG").Slice(); err != nil || len(log) > 0 {
			t.Errorf("ACL LOG: %v, %v; want nothing refused to the reader", log, err)
		}
	}
	before := snapshot.Redis(t, c, "{ro}:*")
	mustNoErr(t, c.Do(ctx, "ACL", "LOG", "RESET").Err(), "ACL LOG RESET")

	t.Run("reader", func(t *testing.T) {
		runReadOnly(t, drv, reader...)
		aclLog(t)
	})
	t.Run("writer", func(t *testing.T) {
		runReadOnly(t, drv, flags...)
		if d := snapshot.Diff(before, snapshot.Redis(t, c, "{ro}:*"), nil); len(d) > 0 {
			t.Errorf("the inspecting commands wrote:\n%s", strings.Join(d, "\n"))
		}
	})
	t.Run("watch", func(t *testing.T) {
		w, err := refs.New(ctx, sd.s, roWatched, 0)
		mustNoErr(t, err, "refs.New")
		before := snapshot.Redis(t, c, "{ro}:*")
		watchWhileCommitting(t, func(v int) {
			mustNoErr(t, sd.s.Dosync(ctx, func(tx *txn.Tx) error { w.Set(tx, v); return nil }), "commit")
		}, reader...)
		aclLog(t)
		// The commits changed the ref, the clock and wrote one-phase
		// records; nothing else may differ: no watch mark {ro}:w:watched.
		committed := func(k string) bool {
			return k == "{ro}:r:"+roWatched || k == "{ro}:v:"+roWatched || k == "{ro}:clock" || strings.HasPrefix(k, "{ro}:o:")
		}
		if d := snapshot.Diff(before, snapshot.Redis(t, c, "{ro}:*"), committed); len(d) > 0 {
			t.Errorf("refs watch wrote:\n%s", strings.Join(d, "\n"))
		}
	})
}

// TestReadOnlyCommandsZK: every inspecting command, on a root with data
// (records, one-phase records, a lock and a group member), leaves every
// znode as it was (version, child version, Mzxid, Pzxid); refs watch,
// while another process's backend commits, prints every change and
// creates no child of the ref's znode. A root whose epoch node is gone is
// exit 1 saying its data is lost or damaged, and stays as it was. Before,
// txn ls and completing a record id set t/ and o/, refs watch's backend
// swept o/ and marked the ref, and the epoch node was created again.
func TestReadOnlyCommandsZK(t *testing.T) {
	srv := testserver.StartZK(t)
	ctx := t.Context()
	drv, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro"})
	mustNoErr(t, err, "zk.Open")
	sd := seed(t, drv)
	roSeed(t, drv, sd)
	// The writer closes (deleting its one-phase records); another backend
	// holds a lock and a group member, its first sweep of o/ done.
	mustNoErr(t, sd.s.Close(), "close the STM")
	mustNoErr(t, drv.Close(), "close the writer")
	conn, _, err := gozk.Connect(srv.Servers, 10*time.Second, gozk.WithLogInfo(false))
	mustNoErr(t, err, "connect")
	t.Cleanup(conn.Close)
	_, o, err := conn.Get("/ro/o")
	mustNoErr(t, err, "get /ro/o")
	h, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro", OnePhaseKeep: time.Hour})
	mustNoErr(t, err, "zk.Open")
	t.Cleanup(func() { h.Close() })
	holdLive(t, h)
	snapshot.AwaitSet(t, conn, "/ro/o", o.Version)
	flags := []string{"--backend", "zk", "--addr", srv.ConnectString(), "--root", "/ro"}

	t.Run("commands", func(t *testing.T) {
		before := snapshot.ZK(t, conn, "/ro")
		runReadOnly(t, h, flags...)
		if d := snapshot.Diff(before, snapshot.ZK(t, conn, "/ro"), nil); len(d) > 0 {
			t.Errorf("the inspecting commands wrote:\n%s", strings.Join(d, "\n"))
		}
	})
	t.Run("watch", func(t *testing.T) {
		_, o, err := conn.Get("/ro/o")
		mustNoErr(t, err, "get /ro/o")
		w, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro", OnePhaseKeep: time.Hour})
		mustNoErr(t, err, "zk.Open")
		defer w.Close()
		s, err := stm.Open(ctx, w, stm.WithSweepInterval(0))
		mustNoErr(t, err, "stm.Open")
		defer s.Close()
		r, err := refs.New(ctx, s, roWatched, 0)
		mustNoErr(t, err, "refs.New")
		snapshot.AwaitSet(t, conn, "/ro/o", o.Version)
		before := snapshot.ZK(t, conn, "/ro")
		watchWhileCommitting(t, func(v int) {
			mustNoErr(t, s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil }), "commit")
		}, flags...)
		mustNoErr(t, s.Close(), "close the STM")
		mustNoErr(t, w.Close(), "close the committer") // deletes its one-phase records
		after := snapshot.ZK(t, conn, "/ro")
		// The commits set the ref's znode and the clock, and created
		// (and deleted) one-phase records in o/: the ref's child version
		// and Pzxid (a mark), o/'s version (a sweep), everything else,
		// must be as they were.
		for _, p := range []snapshot.Picture{before, after} {
			p.Mask("/ro/r/"+roWatched, "version", "mzxid")
			p.Mask("/ro/clock", "version", "mzxid")
			p.Mask("/ro/o", "cversion", "pzxid")
		}
		if d := snapshot.Diff(before, after, nil); len(d) > 0 {
			t.Errorf("refs watch wrote:\n%s", strings.Join(d, "\n"))
		}
	})
	t.Run("lost epoch node", func(t *testing.T) {
		lost, err := zk.Open(ctx, zk.Config{Servers: srv.Servers, Root: "/ro-lost"})
		mustNoErr(t, err, "zk.Open")
		mustNoErr(t, lost.Close(), "close")
		kids, _, err := conn.Children("/ro-lost")
		mustNoErr(t, err, "children")
		for _, k := range kids {
			if strings.HasPrefix(k, "e.") {
				mustNoErr(t, conn.Delete("/ro-lost/"+k, -1), "delete the epoch node")
			}
		}
		before := snapshot.ZK(t, conn, "/ro-lost")
		var out, errOut syncBuffer
		code := run(ctx, []string{"--backend", "zk", "--addr", srv.ConnectString(), "--root", "/ro-lost", "clock"}, &out, &errOut)
		if code != exitFail || !strings.Contains(errOut.String(), "lost or damaged") || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("clock on a root without its epoch node: exit %d, stderr %q; want exit %d and one line saying its data is lost or damaged", code, errOut.String(), exitFail)
		}
		if d := snapshot.Diff(before, snapshot.ZK(t, conn, "/ro-lost"), nil); len(d) > 0 {
			t.Errorf("clock wrote:\n%s", strings.Join(d, "\n"))
		}
	})
}
