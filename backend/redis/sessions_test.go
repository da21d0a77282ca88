package redis_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
)

var sessIDs = newPrefix // distinct ids per run

func openSession(t *testing.T, b *redis.Backend, lease time.Duration) string {
	t.Helper()
	id := sessIDs("sess-")
	got, err := b.OpenSession(context.Background(), id, lease, "test "+t.Name())
	if err != nil {
		t.Fatalf("OpenSession(%s): %v", id, err)
	}
	if got < lease {
		t.Fatalf("effective lease %v < %v", got, lease)
	}
	return id
}

func add(t *testing.T, b *redis.Backend, sess, dir, name string, seq bool, data string) backend.Entry {
	t.Helper()
	e, err := b.AddEntry(context.Background(), backend.AddEntryRequest{Session: sess, Dir: dir, Name: name, Sequential: seq, Data: []byte(data), Time: time.Now()})
	if err != nil {
		t.Fatalf("AddEntry(%s, %s, %s): %v", sess, dir, name, err)
	}
	return e
}

func names(t *testing.T, b *redis.Backend, dir string) string {
	t.Helper()
	es, err := b.Entries(context.Background(), dir, false)
	if err != nil {
		t.Fatalf("Entries(%s): %v", dir, err)
	}
	var s []string
	for _, e := range es {
		s = append(s, fmt.Sprintf("%s:%d", e.Name, e.Seq))
	}
	return strings.Join(s, " ")
}

// eventually polls cond until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rawClient(t *testing.T, srv *testserver.Redis) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSessionOpenRenewClose: the life of a session, its details, and what
// an ended id does.
func TestSessionOpenRenewClose(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	b := open(t, srv, newPrefix("sess"))
	id := openSession(t, b, 5*time.Second)
	// A repeat (a retried open) of a live session is fine.
	if _, err := b.OpenSession(ctx, id, 5*time.Second, "test "+t.Name()); err != nil {
		t.Fatalf("re-open of a live session: %v", err)
	}
	hb := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	if err := b.RenewSession(ctx, id, hb); err != nil {
		t.Fatal(err)
	}
	created := time.UnixMilli(time.Now().UnixMilli())
	if _, err := b.AddEntry(ctx, backend.AddEntryRequest{Session: id, Dir: "d", Name: "n", Data: []byte("x"), Time: created}); err != nil {
		t.Fatal(err)
	}
	es, err := b.Entries(ctx, "d", true)
	if err != nil || len(es) != 1 {
		t.Fatalf("Entries: %v, %v", es, err)
	}
	e := es[0]
	if e.Dir != "d" || e.Name != "n" || e.Seq != 0 || string(e.Data) != "x" || !e.Created.Equal(created) ||
		e.Session.ID != id || e.Session.Holder != "test "+t.Name() || e.Session.Lease != 5*time.Second || !e.Session.Heartbeat.Equal(hb) {
		t.Fatalf("entry with details: %+v", e)
	}
	if err := b.CloseSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if s := names(t, b, "d"); s != "" {
		t.Fatalf("entries after close: %s", s)
	}
	if err := b.RenewSession(ctx, id, time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("renew after close: %v", err)
	}
	if _, err := b.OpenSession(ctx, id, time.Second, "again"); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("re-open after close: %v", err)
	}
	if err := b.CloseSession(ctx, id); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := b.CloseSession(ctx, "never-opened"); err != nil {
		t.Fatalf("close of an unknown session: %v", err)
	}
	if _, err := b.OpenSession(ctx, "x", 0, ""); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("zero lease: %v", err)
	}
	if got, err := b.OpenSession(ctx, sessIDs("s"), 1500*time.Microsecond, ""); err != nil || got != 2*time.Millisecond {
		t.Fatalf("lease 1.5ms: %v, %v (want 2ms)", got, err)
	}
}

// TestSessionExpiry: a renewed session outlives its lease many times; once
// renewals stop Redis ends it, and its entries are gone and purged.
func TestSessionExpiry(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	p := newPrefix("exp")
	a, other := open(t, srv, p), open(t, srv, p)
	const lease = 800 * time.Millisecond
	id := openSession(t, a, lease)
	add(t, a, id, "dir/x", "named", false, "v")
	add(t, a, id, "dir/x", "q1", true, "")
	stay := openSession(t, other, time.Minute)
	add(t, other, stay, "dir/x", "stays", false, "")

	// Renewed every 100ms for four leases: it stays.
	tick := time.NewTicker(100 * time.Millisecond)
	for end := time.Now().Add(4 * lease); time.Now().Before(end); <-tick.C {
		if err := a.RenewSession(ctx, id, time.Now()); err != nil {
			t.Fatalf("renewal of a live session: %v", err)
		}
	}
	tick.Stop()
	if s := names(t, other, "dir/x"); s != "named:0 stays:0 q1:1" {
		t.Fatalf("entries of a renewed session: %q", s)
	}
	// No more renewals.
	eventually(t, 10*time.Second, "the session's entries disappear", func() bool {
		return names(t, other, "dir/x") == "stays:0"
	})
	if err := a.RenewSession(ctx, id, time.Now()); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("renewal after the lease: %v", err)
	}
	if err := a.SetEntry(ctx, id, "dir/x", "named", nil); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("SetEntry of an expired session: %v", err)
	}
	if _, err := a.AddEntry(ctx, backend.AddEntryRequest{Session: id, Dir: "dir/x", Name: "z"}); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("AddEntry of an expired session: %v", err)
	}
	c := rawClient(t, srv)
	if n := c.HLen(ctx, "{"+p+"}:dh:dir/x").Val(); n != 1 {
		t.Fatalf("hash holds %d entries after the purge, want 1", n)
	}
	if n := c.ZCard(ctx, "{"+p+"}:dz:dir/x").Val(); n != 1 {
		t.Fatalf("zset holds %d entries after the purge, want 1", n)
	}
	// The last live entry goes with CloseSession: the dir is no longer listed.
	if err := other.CloseSession(ctx, stay); err != nil {
		t.Fatal(err)
	}
	if d, err := other.Dirs(ctx, ""); err != nil || len(d) != 0 {
		t.Fatalf("Dirs after all sessions ended: %v, %v", d, err)
	}
}

// retry runs f until it succeeds (the server may be coming back).
func retry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// TestSessionSequence: Seq is strictly increasing across sessions, across
// removing every entry, and across a server restart (AOF).
func TestSessionSequence(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	p := newPrefix("seq")
	a, b := open(t, srv, p), open(t, srv, p)
	sa, sb := openSession(t, a, time.Minute), openSession(t, b, time.Minute)
	var last uint64
	next := func(e backend.Entry) {
		t.Helper()
		if e.Seq <= last {
			t.Fatalf("seq %d after %d", e.Seq, last)
		}
		last = e.Seq
	}
	for i := 0; i < 5; i++ {
		next(add(t, a, sa, "q", fmt.Sprintf("a%d", i), true, ""))
		next(add(t, b, sb, "q", fmt.Sprintf("b%d", i), true, ""))
	}
	// Another dir has its own counter.
	if e := add(t, a, sa, "q2", "x", true, ""); e.Seq != 1 {
		t.Fatalf("first seq of another dir: %d", e.Seq)
	}
	for i := 0; i < 5; i++ {
		if err := a.RemoveEntry(ctx, sa, "q", fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CloseSession(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if s := names(t, a, "q"); s != "" {
		t.Fatalf("entries left: %s", s)
	}
	next(add(t, a, sa, "q", "after-empty", true, ""))

	srv.Kill(t)
	srv.Restart(t)
	var e backend.Entry
	retry(t, "add after restart", func(ctx context.Context) error {
		var err error
		e, err = a.AddEntry(ctx, backend.AddEntryRequest{Session: sa, Dir: "q", Name: "after-restart", Sequential: true})
		return err
	})
	next(e)
	if s := names(t, a, "q"); s != fmt.Sprintf("after-empty:%d after-restart:%d", last-1, last) {
		t.Fatalf("entries after restart: %s (last %d)", s, last)
	}
}

// TestSessionAddEntryRules: idempotent repeats, named entries held by one
// live session at a time, and entries only their session may change.
func TestSessionAddEntryRules(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	p := newPrefix("rules")
	a, b := open(t, srv, p), open(t, srv, p)
	sa, sb := openSession(t, a, time.Minute), openSession(t, b, time.Minute)

	e1 := add(t, a, sa, "d", "s", true, "one")
	e2 := add(t, a, sa, "d", "s", true, "one")
	if e1.Seq == 0 || e2.Seq != e1.Seq {
		t.Fatalf("repeated sequential add: seq %d then %d", e1.Seq, e2.Seq)
	}
	add(t, a, sa, "d", "lock", false, "v1")
	if e := add(t, a, sa, "d", "lock", false, "v2"); e.Seq != 0 {
		t.Fatalf("named entry seq %d", e.Seq)
	}
	es, _ := b.Entries(ctx, "d", true)
	if len(es) != 2 || es[0].Name != "lock" || string(es[0].Data) != "v2" {
		t.Fatalf("entries after a repeat: %+v", es)
	}
	if _, err := b.AddEntry(ctx, backend.AddEntryRequest{Session: sb, Dir: "d", Name: "lock"}); !errors.Is(err, backend.ErrEntryExists) {
		t.Fatalf("taking a held name: %v", err)
	}
	for _, err := range []error{
		b.SetEntry(ctx, sb, "d", "lock", []byte("mine")),
		b.RemoveEntry(ctx, sb, "d", "lock"),
		a.SetEntry(ctx, sa, "d", "nope", nil),
		a.RemoveEntry(ctx, sa, "d", "nope"),
		a.RemoveEntry(ctx, sa, "other", "lock"),
	} {
		if !errors.Is(err, backend.ErrEntryGone) {
			t.Fatalf("change of an entry not the session's: %v", err)
		}
	}
	if err := a.SetEntry(ctx, sa, "d", "lock", []byte("v3")); err != nil {
		t.Fatal(err)
	}
	if es, _ := b.Entries(ctx, "d", true); string(es[0].Data) != "v3" || es[0].Session.ID != sa {
		t.Fatalf("after SetEntry: %+v", es[0])
	}
	// A dead holder's name is free: its entry is purged and the name taken.
	short := openSession(t, a, 200*time.Millisecond)
	add(t, a, short, "d2", "lock", false, "dead")
	c := rawClient(t, srv)
	eventually(t, 10*time.Second, "the short session expires", func() bool {
		return c.Exists(ctx, "{"+p+"}:ss:"+short).Val() == 0
	})
	if e := add(t, b, sb, "d2", "lock", false, "alive"); e.Seq != 0 {
		t.Fatalf("took a dead holder's name: %+v", e)
	}
	if es, _ := a.Entries(ctx, "d2", true); len(es) != 1 || es[0].Session.ID != sb || string(es[0].Data) != "alive" {
		t.Fatalf("after taking over: %+v", es)
	}
	// A closed session's name is free too; a removed one can be re-added.
	if err := a.CloseSession(ctx, sa); err != nil {
		t.Fatal(err)
	}
	add(t, b, sb, "d", "lock", false, "b")
	if _, err := a.AddEntry(ctx, backend.AddEntryRequest{Session: sa, Dir: "d", Name: "x"}); !errors.Is(err, backend.ErrSessionGone) {
		t.Fatalf("add by a closed session: %v", err)
	}
	if err := b.RemoveEntry(ctx, sb, "d", "lock"); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveEntry(ctx, sb, "d", "lock"); !errors.Is(err, backend.ErrEntryGone) {
		t.Fatalf("second removal: %v", err)
	}
	add(t, b, sb, "d", "lock", false, "again")
}

// TestSessionWaitEntries: a waiter wakes on a change by another client, on
// a session that expires silently, at max, and at the end of its ctx.
func TestSessionWaitEntries(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	p := newPrefix("wait")
	a, w := open(t, srv, p), open(t, srv, p)
	sa := openSession(t, a, time.Minute)
	c := rawClient(t, srv)
	// subscribed waits until n waiters listen to d's hints.
	subscribed := func(n int64) {
		t.Helper()
		ch := "{" + p + "}:dc:d"
		eventually(t, 10*time.Second, "waiters subscribed", func() bool {
			return c.PubSubNumSub(ctx, ch).Val()[ch] == n
		})
	}
	add(t, a, sa, "d", "held", false, "")

	wait := func(name string, max time.Duration, wctx context.Context) (chan error, time.Time) {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- w.WaitEntries(wctx, "d", name, max) }()
		return done, start
	}
	within := func(done chan error, d time.Duration, what string) (error, time.Duration) {
		t.Helper()
		start := time.Now()
		select {
		case err := <-done:
			return err, time.Since(start)
		case <-time.After(d):
			t.Fatalf("%s: WaitEntries still waiting after %v", what, d)
			return nil, 0
		}
	}

	t.Run("Removal", func(t *testing.T) {
		done, _ := wait("held", 0, ctx)
		subscribed(1)
		// It has not returned on its own (the entry is there), polls
		// included.
		select {
		case err := <-done:
			t.Fatalf("returned while the entry is held: %v", err)
		case <-time.After(600 * time.Millisecond):
		}
		if err := a.RemoveEntry(ctx, sa, "d", "held"); err != nil {
			t.Fatal(err)
		}
		if err, _ := within(done, 2*time.Second, "removal"); err != nil {
			t.Fatal(err)
		}
		subscribed(0)
		// The entry is gone already: no wait.
		done, _ = wait("held", 0, ctx)
		if err, _ := within(done, 2*time.Second, "gone entry"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("AnyChange", func(t *testing.T) {
		// A change before the waiter subscribes may go unnoticed until
		// the next one (name == ""): let it subscribe first.
		done, _ := wait("", 0, ctx)
		subscribed(1)
		add(t, a, sa, "d", "new", true, "")
		if err, _ := within(done, 2*time.Second, "an addition"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SilentExpiry", func(t *testing.T) {
		short := openSession(t, a, 500*time.Millisecond)
		add(t, a, short, "d", "ephemeral", false, "")
		done, start := wait("ephemeral", 30*time.Second, ctx)
		if err, _ := within(done, 10*time.Second, "expiry"); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("returned after %v, a lease of 500ms", time.Since(start))
		}
		if strings.Contains(names(t, w, "d"), "ephemeral") {
			t.Fatal("the expired entry is still listed")
		}
	})
	t.Run("Max", func(t *testing.T) {
		add(t, a, sa, "d", "held2", false, "")
		done, start := wait("held2", 700*time.Millisecond, ctx)
		if err, _ := within(done, 10*time.Second, "max"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 700*time.Millisecond {
			t.Fatalf("returned after %v < max while nothing changed", d)
		}
	})
	t.Run("Ctx", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done, _ := wait("held2", 0, cctx)
		cancel()
		if err, _ := within(done, 5*time.Second, "cancel"); !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
	})
}

// TestSessionDirs: Dirs lists dirs with live entries by prefix; dirs whose
// names share prefixes or hold ':' and '/' do not mix.
func TestSessionDirs(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	b := open(t, srv, newPrefix("dirs"))
	s := openSession(t, b, time.Minute)
	for _, d := range []string{"a/b", "a", "a:b", "a/b:dz:c", "b", "été/ü"} {
		add(t, b, s, d, "n-"+d, true, "")
	}
	for _, d := range []string{"a/b", "a", "a:b", "a/b:dz:c", "b", "été/ü"} {
		if got := names(t, b, d); got != "n-"+d+":1" {
			t.Fatalf("dir %q holds %q", d, got)
		}
	}
	got, err := b.Dirs(ctx, "a/")
	if err != nil || strings.Join(got, " ") != "a/b a/b:dz:c" {
		t.Fatalf("Dirs(a/) = %q, %v", got, err)
	}
	got, err = b.Dirs(ctx, "")
	if err != nil || strings.Join(got, " ") != "a a/b a/b:dz:c a:b b été/ü" {
		t.Fatalf("Dirs() = %q, %v", got, err)
	}
	if err := b.RemoveEntry(ctx, s, "a/b", "n-a/b"); err != nil {
		t.Fatal(err)
	}
	got, _ = b.Dirs(ctx, "a")
	if strings.Join(got, " ") != "a a/b:dz:c a:b" {
		t.Fatalf("Dirs(a) after a removal = %q", got)
	}
	if err := b.CloseSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, _ = b.Dirs(ctx, ""); len(got) != 0 {
		t.Fatalf("Dirs after close = %q", got)
	}
}

// TestSessionBadNames: bad ids, dirs and names are ErrBadName (and
// ErrNotApplied) from every method.
func TestSessionBadNames(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	b := open(t, srv, newPrefix("bad"))
	s := openSession(t, b, time.Minute)
	for _, bad := range []string{"", strings.Repeat("x", 513), "a\x00b", "a\nb", "\x7f", "\xff"} {
		calls := map[string]error{}
		_, calls["OpenSession"] = b.OpenSession(ctx, bad, time.Second, "")
		calls["RenewSession"] = b.RenewSession(ctx, bad, time.Now())
		calls["CloseSession"] = b.CloseSession(ctx, bad)
		_, calls["AddEntry id"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: bad, Dir: "d", Name: "n"})
		_, calls["AddEntry dir"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: s, Dir: bad, Name: "n"})
		_, calls["AddEntry name"] = b.AddEntry(ctx, backend.AddEntryRequest{Session: s, Dir: "d", Name: bad})
		calls["SetEntry"] = b.SetEntry(ctx, s, bad, "n", nil)
		calls["RemoveEntry"] = b.RemoveEntry(ctx, s, "d", bad)
		_, calls["Entries"] = b.Entries(ctx, bad, false)
		calls["WaitEntries dir"] = b.WaitEntries(ctx, bad, "", time.Second)
		if bad != "" {
			calls["WaitEntries name"] = b.WaitEntries(ctx, "d", bad, time.Second)
			_, calls["Dirs"] = b.Dirs(ctx, bad)
		}
		for call, err := range calls {
			if !errors.Is(err, backend.ErrBadName) || !errors.Is(err, backend.ErrNotApplied) || !strings.HasPrefix(err.Error(), "redis: ") {
				t.Errorf("%s(%q): %v", call, bad, err)
			}
		}
	}
	// 512 bytes is fine.
	add(t, b, s, strings.Repeat("d", 512), strings.Repeat("n", 512), true, "")
}

// waitGone waits on entry name of dir until it is gone (WaitEntries may
// return early: it is called again while the entry is there).
func waitGone(ctx context.Context, b *redis.Backend, dir, name string) error {
	for {
		if err := b.WaitEntries(ctx, dir, name, 0); err != nil {
			return err
		}
		es, err := b.Entries(ctx, dir, false)
		if err != nil {
			return err
		}
		there := false
		for _, e := range es {
			there = there || e.Name == name
		}
		if !there {
			return nil
		}
	}
}

// hubIdle waits until b's hub holds no channel and the server knows no
// subscriber to a dir channel of prefix p.
func hubIdle(t *testing.T, b *redis.Backend, c *goredis.Client, p string) {
	t.Helper()
	eventually(t, 10*time.Second, "the hub drops every channel", func() bool {
		chs, err := c.PubSubChannels(context.Background(), "{"+p+"}:dc:*").Result()
		return redis.HubChannels(b) == 0 && err == nil && len(chs) == 0
	})
}

// pubsubClients counts the server's Pub/Sub connections.
func pubsubClients(t *testing.T, c *goredis.Client) int {
	t.Helper()
	s, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, " sub=") && !strings.Contains(l, " sub=0 ") {
			n++
		}
	}
	return n
}

func connectedClients(t *testing.T, c *goredis.Client) int {
	t.Helper()
	s, err := c.Info(context.Background(), "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "connected_clients:"); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("connected_clients %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no connected_clients in %q", s)
	return 0
}

// TestSessionWaitHubConnections: N waits at once on N dirs share one
// Pub/Sub connection (the server's client count grows by the hub's
// connection and the command pool's, not by N), and leave no channel.
func TestSessionWaitHubConnections(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	raw := rawClient(t, srv)
	// A pool of 2: the waits' looks do not open a connection each.
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, PoolSize: 2})
	t.Cleanup(func() { _ = c.Close() })
	p := newPrefix("hubconn")
	b, err := redis.New(c, redis.Config{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sess := openSession(t, b, time.Minute)
	const n = 20
	for i := 0; i < n; i++ {
		add(t, b, sess, fmt.Sprintf("c/%d", i), "held", false, "")
	}
	before := connectedClients(t, raw)
	dones := make([]chan error, n)
	for i := range dones {
		dones[i] = make(chan error, 1)
		go func() { dones[i] <- b.WaitEntries(ctx, fmt.Sprintf("c/%d", i), "held", 0) }()
	}
	eventually(t, 10*time.Second, "every wait subscribed", func() bool {
		for i := 0; i < n; i++ {
			ch := fmt.Sprintf("{%s}:dc:c/%d", p, i)
			if !redis.HubConfirmed(b, fmt.Sprintf("c/%d", i)) || raw.PubSubNumSub(ctx, ch).Val()[ch] != 1 {
				return false
			}
		}
		return true
	})
	during := connectedClients(t, raw)
	if during-before > 2 {
		t.Fatalf("%d waits at once: connected_clients went from %d to %d (want at most +2)", n, before, during)
	}
	if ps := pubsubClients(t, raw); ps != 1 {
		t.Fatalf("%d waits at once: %d Pub/Sub connections, want 1", n, ps)
	}
	t.Logf("%d waits at once: connected_clients %d -> %d", n, before, during)
	for i := 0; i < n; i++ {
		if err := b.RemoveEntry(ctx, sess, fmt.Sprintf("c/%d", i), "held"); err != nil {
			t.Fatal(err)
		}
	}
	for i, done := range dones {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wait %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("wait %d still waiting 10s after the removal", i)
		}
	}
	hubIdle(t, b, raw, p)
}

// TestSessionWaitHubNoLeak: many waits on many dirs (an entry gone, max,
// a cancelled ctx, any change) leave the hub, and the server, with no
// subscription.
func TestSessionWaitHubNoLeak(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	raw := rawClient(t, srv)
	p := newPrefix("hubleak")
	b := open(t, srv, p)
	sess := openSession(t, b, time.Minute)
	const dirs = 40
	for i := 0; i < dirs; i++ {
		add(t, b, sess, fmt.Sprintf("l/%d", i), "held", false, "")
	}
	errs := make(chan error, 4*dirs*3)
	for round := 0; round < 3; round++ {
		for i := 0; i < dirs; i++ {
			dir := fmt.Sprintf("l/%d", i)
			cctx, cancel := context.WithCancel(ctx)
			go func() { errs <- b.WaitEntries(ctx, dir, "absent", 0) }()
			go func() { errs <- b.WaitEntries(ctx, dir, "held", 5*time.Millisecond) }()
			go func() { errs <- b.WaitEntries(ctx, dir, "", 20*time.Millisecond) }()
			go func() {
				if err := b.WaitEntries(cctx, dir, "held", 0); !errors.Is(err, context.Canceled) {
					errs <- fmt.Errorf("cancelled wait: %v", err)
					return
				}
				errs <- nil
			}()
			cancel()
		}
		for j := 0; j < 4*dirs; j++ {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: %d waits of %d still waiting after 10s", round, 4*dirs-j, 4*dirs)
			}
		}
	}
	hubIdle(t, b, raw, p)
	if e := redis.HubEpoch(b); e != 0 {
		t.Fatalf("the hub lost its connection %d times", e)
	}
}

// TestSessionWaitHubChurn: many short waits on one dir, from several
// goroutines, each ended by its entry's removal, subscribe, unsubscribe
// and subscribe again to the dir's channel over and over. With a poll of
// an hour every removal must wake its wait by the hint alone (a
// subscription confirmed too early would lose one: the wait then hangs);
// with the default poll none is noticed later than a poll (and slack).
func TestSessionWaitHubChurn(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll time.Duration
		max  time.Duration // removal to return
	}{
		{"HintsOnly", time.Hour, 10 * time.Second},
		{"Poll", 0, 250*time.Millisecond + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testserver.StartRedis(t, testserver.RedisOptions{})
			ctx := context.Background()
			raw := rawClient(t, srv)
			p := newPrefix("churn")
			a, w := open(t, srv, p), open(t, srv, p)
			if tc.poll > 0 {
				redis.SetWaitPoll(w, tc.poll)
			}
			sess := openSession(t, a, time.Minute)
			const workers, rounds = 4, 60
			type result struct {
				lat time.Duration
				err error
			}
			results := make(chan result, workers)
			for g := 0; g < workers; g++ {
				go func() {
					worst := time.Duration(0)
					for i := 0; i < rounds; i++ {
						name := fmt.Sprintf("e%d.%d", g, i)
						if _, err := a.AddEntry(ctx, backend.AddEntryRequest{Session: sess, Dir: "churn", Name: name}); err != nil {
							results <- result{err: err}
							return
						}
						done := make(chan error, 1)
						go func() { done <- waitGone(ctx, w, "churn", name) }()
						// The removal lands before, during or after the
						// wait's subscription and first look.
						switch i % 3 {
						case 1:
							runtime.Gosched()
						case 2:
							if _, err := a.Entries(ctx, "other", false); err != nil {
								results <- result{err: err}
								return
							}
						}
						removed := time.Now()
						if err := a.RemoveEntry(ctx, sess, "churn", name); err != nil {
							results <- result{err: err}
							return
						}
						select {
						case err := <-done:
							if err != nil {
								results <- result{err: fmt.Errorf("wait on %s: %w", name, err)}
								return
							}
							if d := time.Since(removed); d > worst {
								worst = d
							}
						case <-time.After(tc.max):
							results <- result{err: fmt.Errorf("the removal of %s went unnoticed for %v", name, tc.max)}
							return
						}
					}
					results <- result{lat: worst}
				}()
			}
			worst := time.Duration(0)
			for g := 0; g < workers; g++ {
				r := <-results
				if r.err != nil {
					t.Fatal(r.err)
				}
				worst = max(worst, r.lat)
			}
			t.Logf("%d waits: the slowest noticed its removal after %v", workers*rounds, worst)
			if worst > tc.max {
				t.Fatalf("a removal noticed after %v > %v", worst, tc.max)
			}
			hubIdle(t, w, raw, p)
		})
	}
}

// TestSessionWaitHubReconnect: when the hub's connection is killed, it
// makes another and subscribes again; a wait that was on keeps waiting and
// wakes on a hint sent after the new subscription (no poll helps here).
func TestSessionWaitHubReconnect(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	raw := rawClient(t, srv)
	p := newPrefix("hubre")
	a, w := open(t, srv, p), open(t, srv, p)
	redis.SetWaitPoll(w, time.Hour)
	sess := openSession(t, a, time.Minute)
	add(t, a, sess, "r", "held", false, "")
	done := make(chan error, 1)
	go func() { done <- waitGone(ctx, w, "r", "held") }()
	eventually(t, 10*time.Second, "the wait subscribed", func() bool { return redis.HubConfirmed(w, "r") })
	epoch := redis.HubEpoch(w)
	if n, err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v, %v", n, err)
	}
	eventually(t, 10*time.Second, "subscribed again", func() bool {
		return redis.HubEpoch(w) > epoch && redis.HubConfirmed(w, "r")
	})
	select {
	case err := <-done:
		t.Fatalf("the wait returned on the lost connection: %v", err)
	default:
	}
	removeAndWake(t, a, sess, "r", "held", done, "the wait missed the removal after the reconnect")
	// A new wait on the new connection (waitGone: the addition's own
	// hint may wake it early).
	add(t, a, sess, "r", "held2", false, "")
	go func() { done <- waitGone(ctx, w, "r", "held2") }()
	eventually(t, 10*time.Second, "the second wait subscribed", func() bool { return redis.HubConfirmed(w, "r") })
	removeAndWake(t, a, sess, "r", "held2", done, "the second wait missed the removal")
	hubIdle(t, w, raw, p)
}

// removeAndWake removes an entry and fails with missed unless the wait
// reporting on done returns (without error) within 10 s.
func removeAndWake(t *testing.T, a *redis.Backend, sess, dir, name string, done <-chan error, missed string) {
	t.Helper()
	if err := a.RemoveEntry(context.Background(), sess, dir, name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(missed)
	}
}

// TestSessionWaitHubClose: Close wakes every wait (backend.ErrClosed),
// closes the hub's connection, and later waits fail at once.
func TestSessionWaitHubClose(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ctx := context.Background()
	raw := rawClient(t, srv)
	p := newPrefix("hubclose")
	a, w := open(t, srv, p), open(t, srv, p)
	sess := openSession(t, a, time.Minute)
	const n = 5
	dones := make(chan error, n)
	for i := 0; i < n; i++ {
		dir := fmt.Sprintf("x/%d", i)
		add(t, a, sess, dir, "held", false, "")
		go func() { dones <- w.WaitEntries(ctx, dir, "held", 0) }()
	}
	eventually(t, 10*time.Second, "every wait subscribed", func() bool {
		for i := 0; i < n; i++ {
			if !redis.HubConfirmed(w, fmt.Sprintf("x/%d", i)) {
				return false
			}
		}
		return true
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-dones:
			if !errors.Is(err, backend.ErrClosed) {
				t.Fatalf("a wait at Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a wait still waiting 5s after Close")
		}
	}
	if err := w.WaitEntries(ctx, "x/0", "held", 0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("a wait after Close: %v, want ErrClosed", err)
	}
	if redis.HubChannels(w) != 0 {
		t.Fatalf("the closed hub holds %d channels", redis.HubChannels(w))
	}
	eventually(t, 10*time.Second, "the hub's connection closed", func() bool { return pubsubClients(t, raw) == 0 })
}
