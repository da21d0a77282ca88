package redis_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
	"github.com/epochal/epochal/internal/testkit/snapshot"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// TestReadOnlyOpen: with Config.ReadOnly, Open of a prefix holding no
// Epochal data (no identity key, or one that holds something else: it was
// opened, and named "something else", before) writes nothing and fails
// with a *NoNamespaceError (wrapping backend.ErrNotFound) naming the
// prefixes there are; of one that holds data, it opens it, with the
// identity the writers share.
func TestReadOnlyOpen(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	a := open(t, srv, "ro-a")
	_ = open(t, srv, "ro-b")
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(ctx, "{notours}:id", "something else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before, err := c.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}

	b, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro-typo", ReadOnly: true})
	var nn *redis.NoNamespaceError
	if b != nil || !errors.As(err, &nn) || !errors.Is(err, backend.ErrNotFound) || nn.Prefix != "ro-typo" ||
		!slices.Equal(nn.Found, []string{"ro-a", "ro-b"}) {
		t.Fatalf("read-only Open of a prefix with no data: %v, %#v; want a NoNamespaceError finding ro-a and ro-b", b, err)
	}
	if after, err := c.DBSize(ctx).Result(); err != nil || after != before {
		t.Errorf("read-only Open of a missing prefix: %d keys, then %d (%v): it wrote", before, after, err)
	}

	// An identity key that does not hold an Epochal identity is no
	// namespace either (the list of those found left it out already).
	b, err = redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "notours", ReadOnly: true})
	if b != nil || !errors.As(err, &nn) || nn.Prefix != "notours" || !slices.Equal(nn.Found, []string{"ro-a", "ro-b"}) {
		t.Errorf("read-only Open of a prefix whose identity key is not Epochal's: %v, %#v; want a NoNamespaceError", b, err)
	}

	ro, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro-a", ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open of an existing prefix: %v", err)
	}
	defer ro.Close()
	if ro.ID() != a.ID() {
		t.Errorf("read-only Open: id %q, want the writers' %q", ro.ID(), a.ID())
	}
}

// seedReadOnly writes, as a process that writes would, a prefix that gives
// housekeeping work: ref a with a history, ref b keeping none (a read at
// an older point faults), a committed general-path record, an expired
// record whose id is still indexed ({P}:recs), and dead entries (of a
// session whose lease ran out) beside live ones in a lock's and a group's
// dirs, and alone in another lock's dir. It returns the writer, still
// open, and a read point from before b's newest version.
func seedReadOnly(t *testing.T, srv *testserver.Redis, prefix string) (*redis.Backend, *stm.STM, clock.Point) {
	t.Helper()
	ctx := t.Context()
	w := open(t, srv, prefix)
	s := openSTM(t, w, stm.WithSweepInterval(0))
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
	if _, err := w.AbortRecord(ctx, "expired"); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRecord(ctx, "expired", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, sess := range []struct {
		id    string
		lease time.Duration
		dirs  []string
	}{
		{"live", time.Hour, []string{"lock/jobs", "group/workers"}},
		{"dead", time.Hour, []string{"lock/jobs", "group/workers", "lock/gone"}},
	} {
		if _, err := w.OpenSession(ctx, sess.id, sess.lease, "test"); err != nil {
			t.Fatal(err)
		}
		for _, d := range sess.dirs {
			if _, err := w.AddEntry(ctx, backend.AddEntryRequest{Session: sess.id, Dir: d, Name: sess.id, Sequential: strings.HasPrefix(d, "lock/"), Time: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The dead session's lease runs out: its key expires, as Redis
	// expires it (a short lease could run out before its entries were
	// added, on a loaded machine). The expired record's keep (1ms) runs
	// out on its own: wait for its key to go.
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: srv.User, Password: srv.Password, TLSConfig: srv.ClientTLS()})
	defer c.Close()
	p := "{" + prefix + "}:"
	if err := c.Del(ctx, p+"ss:dead").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := c.Exists(ctx, p+"t:expired").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond) // polling for the expiry, not timing it
	}
	return w, s, old
}

// readAll does every read the CLI's inspecting commands do (and WaitEntries
// and a Read that faults), reporting failures with t.Errorf.
func readAll(t *testing.T, ro *redis.Backend, old clock.Point) {
	t.Helper()
	ctx := t.Context()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("read-only %s: %v", what, err)
		}
	}
	_, err := ro.ReadPoint(ctx)
	check("ReadPoint", err)
	_, err = ro.List(ctx, "")
	check("List", err)
	_, err = ro.Versions(ctx, "a")
	check("Versions", err)
	_, err = ro.VersionsBounded(ctx, "a", 10)
	check("VersionsBounded", err)
	res, err := ro.Read(ctx, backend.ReadRequest{RP: old, Names: []string{"b"}})
	check("Read", err)
	if err == nil && res.Items[0].Result != history.Fault {
		t.Errorf("Read of b at %d: %v, want a read fault (the test shows nothing)", old, res.Items[0].Result)
	}
	recs, err := ro.ListRecords(ctx)
	check("ListRecords", err)
	if err == nil && (len(recs) != 1 || recs[0].ID != "general") {
		t.Errorf("ListRecords: %+v, want the general record alone", recs)
	}
	_, err = ro.Records(ctx, []string{"general", "expired", "nosuch"})
	check("Records", err)
	dirs, err := ro.Dirs(ctx, "")
	check("Dirs", err)
	if err == nil && strings.Join(dirs, " ") != "group/workers lock/jobs" {
		t.Errorf("Dirs: %v, want the dirs with live entries", dirs)
	}
	for _, d := range []string{"lock/jobs", "group/workers", "lock/gone"} {
		es, err := ro.Entries(ctx, d, true)
		check("Entries "+d, err)
		if err == nil && (len(es) != 1) != (d == "lock/gone") {
			t.Errorf("Entries %s: %+v, want the live entry alone", d, es)
		}
		_, err = ro.ReadDir(ctx, backend.DirRequest{Dir: d, Details: true, Adds: true})
		check("ReadDir "+d, err)
		check("WaitEntries "+d, ro.WaitEntries(ctx, d, "", 300*time.Millisecond))
		check("WaitEntries "+d+" dead", ro.WaitEntries(ctx, d, "dead", 300*time.Millisecond))
	}
	sub, err := ro.Subscribe(ctx, "a")
	check("Subscribe", err)
	if err == nil {
		time.Sleep(300 * time.Millisecond)
		_ = sub.Close()
	}
}

// TestReadOnlyWritesNothing: a read-only backend on a prefix with data
// does every read the CLI's inspecting commands do: every key is as it
// was (type, value, whether it expires), as a user allowed to write and
// as a user that may not (ACL -@write: nothing refused, the ACL log
// empty). Before, Dirs, Entries and ReadDir (and WaitEntries) dropped the
// dead entries (ZREM, HDEL, SREM, INCR), ListRecords dropped the expired
// id (SREM), a read fault grew the history (HINCRBY), Subscribe set the
// watch mark (SET): NOPERM for the read-only user.
func TestReadOnlyWritesNothing(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{Args: []string{`user reader on >reader-pw ~* &* +@all -@write`}})
	ctx := t.Context()
	const prefix = "ro-quiet"
	_, _, old := seedReadOnly(t, srv, prefix)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	before := snapshot.Redis(t, c, "{"+prefix+"}:*")

	for _, user := range []struct{ name, password string }{{"reader", "reader-pw"}, {"", ""}} {
		t.Run("user="+user.name, func(t *testing.T) {
			if err := c.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
				t.Fatal(err)
			}
			ro, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, Username: user.name, Password: user.password, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, ro, old)
			_ = ro.Close()
			if d := snapshot.Diff(before, snapshot.Redis(t, c, "{"+prefix+"}:*"), nil); len(d) > 0 {
				t.Errorf("a read-only backend wrote:\n%s", strings.Join(d, "\n"))
			}
			if log, err := c.Do(ctx, "ACL", "LOG").Slice(); err != nil || len(log) > 0 {
				t.Errorf("ACL LOG: %v, %v; want nothing refused", log, err)
			}
		})
	}
}

// TestReadOnlyWatch: a read-only backend's subscription sets no watch
// mark ({P}:w:<ref> never exists), says so (backend.Unmarked), and hints
// at the changes another backend commits meanwhile. Before, it set the
// mark.
func TestReadOnlyWatch(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	const prefix = "ro-watch"
	_, s, _ := seedReadOnly(t, srv, prefix)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	ro, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: prefix, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	sub, err := ro.Subscribe(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if u, ok := sub.(backend.Unmarked); !ok || !u.Unmarked() {
		t.Errorf("a read-only subscription does not say it is unmarked (%T)", sub)
	}
	if _, ok := sub.(backend.Feed); ok {
		t.Errorf("a read-only subscription is a Feed: nothing is published for an unmarked ref")
	}
	a, err := refs.New(ctx, s, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	mark := "{" + prefix + "}:w:a"
	for i := 10; i < 13; i++ {
		// A hint left from Subscribe's first look.
		select {
		case <-sub.C():
		default:
		}
		if err := s.Dosync(ctx, func(tx *txn.Tx) error { a.Set(tx, i); return nil }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.C():
		case <-time.After(5 * time.Second):
			t.Fatalf("no hint within 5s of commit %d", i)
		}
		if n, err := c.Exists(ctx, mark).Result(); err != nil || n != 0 {
			t.Errorf("watch mark %s: exists %d, %v; want none", mark, n, err)
		}
	}
}

// TestReadOnlyWaitSeesSessionEnd: a read-only backend's WaitEntries on a
// dir returns when a member's session ends, though it drops no entry (so
// no change counter moves): the dead entries it counts changed. The
// session ends (its key expires, as Redis expires it) once the wait has
// taken its first look: before, the first look would already count it
// dead, and nothing would change after.
func TestReadOnlyWaitSeesSessionEnd(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := t.Context()
	w := open(t, srv, "ro-wait")
	if _, err := w.OpenSession(ctx, "short", time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddEntry(ctx, backend.AddEntryRequest{Session: "short", Dir: "group/g", Name: "m"}); err != nil {
		t.Fatal(err)
	}
	ro, err := redis.Open(ctx, redis.Config{Addr: srv.Addr, Prefix: "ro-wait", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	// Scripts run so far: the wait's first look is one more.
	scripts := func() int64 {
		t.Helper()
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
					v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest+",", ',')], 10, 64)
					n += v
				}
			}
		}
		return n
	}
	before := scripts()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- ro.WaitEntries(ctx, "group/g", "", time.Minute) }()
	for scripts() == before {
		time.Sleep(time.Millisecond) // polling for the first look, not timing it
	}
	if err := c.Del(ctx, "{ro-wait}:ss:short").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("WaitEntries returned after %v, want soon after the session's end, not at its one-minute bound", d)
	}
	if es, err := ro.Entries(ctx, "group/g", false); err != nil || len(es) != 0 {
		t.Errorf("Entries after the session ended: %+v, %v; want none", es, err)
	}
}
