package backendtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// testWatches: watches deliver every committed change, once, in order, or
// announce a gap; and they start where AddWatch returned.
func testWatches(t *testing.T, newDriver NewDriver) {
	t.Run("KeepsUpWithSequentialCommits", func(t *testing.T) { testWatchKeepsUp(t, newDriver(t)) })
	t.Run("HoleAfterIncompleteFeed", func(t *testing.T) { testWatchHole(t, newDriver(t), engine.Faults{}) })
	t.Run("HoleAfterIncompleteFeed/SeededBugIsCaught", func(t *testing.T) {
		testWatchHole(t, newDriver(t), engine.Faults{WatchGapFirstOnly: true})
	})
	t.Run("HoleBetweenDrains", func(t *testing.T) { testWatchHoleBetweenDrains(t, newDriver(t)) })
	t.Run("AddWatchRaces", func(t *testing.T) { testAddWatchRaces(t, newDriver(t)) })
}

// watchLog records what a watcher was told, in order: a delivery as
// "old>new", a gap notice as "gap".
type watchLog struct {
	mu     sync.Mutex
	events []string
	last   atomic.Int64 // the newest value delivered
	gaps   atomic.Int64
}

func (l *watchLog) fn(_ string, _ *refs.Ref[int], old, new int) {
	l.mu.Lock()
	l.events = append(l.events, fmt.Sprintf("%d>%d", old, new))
	l.mu.Unlock()
	l.last.Store(int64(new))
}

func (l *watchLog) gap(string, clock.Point, clock.Point) {
	l.mu.Lock()
	l.events = append(l.events, "gap")
	l.mu.Unlock()
	l.gaps.Add(1)
}

// check reports every change of a counter that went 0, 1, ..., n that the
// watcher neither delivered (in order, once) nor announced with a gap
// notice before the delivery that skipped it.
func (l *watchLog) check(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	prev, gap := 0, false
	for _, e := range l.events {
		if e == "gap" {
			gap = true
			continue
		}
		var old, new int
		fmt.Sscanf(e, "%d>%d", &old, &new)
		switch {
		case new <= prev:
			bad = append(bad, fmt.Sprintf("%s delivered after %d (twice or out of order)", e, prev))
		case new > prev+1 && !gap:
			bad = append(bad, fmt.Sprintf("%d..%d neither delivered nor announced (next delivery %s)", prev+1, new-1, e))
		}
		prev, gap = new, false
	}
	if prev != n {
		bad = append(bad, fmt.Sprintf("last delivered %d, want %d", prev, n))
	}
	return bad
}

// waitFor waits until the watcher delivered value n (failing after the
// suite's bound).
func (l *watchLog) waitFor(t *testing.T, n int) {
	t.Helper()
	eventually(t, func() bool { return l.last.Load() >= int64(n) }, func() string {
		return fmt.Sprintf("the watcher delivering %d (it is at %d)", n, l.last.Load())
	})
}

// eventually polls cond until it holds, failing the test after the suite's
// bound with what describes what was waited for.
func eventually(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("still waiting for %s after %v", what(), wait)
		}
	}
}

// testWatchKeepsUp: a ref with the default history (only the newest
// version kept) changed 200 times in a row by two handles; a watcher on a
// third gets every change, in order, with no gap notice, on every backend
// (with or without a change feed): while a ref is subscribed to, commits
// keep backend.WatchKeep older versions, more than the 200 commits. The
// watcher is held in its first callback until every commit is done, so
// the result cannot depend on how fast it runs. (On ZooKeeper, which has
// no feed, a watcher once lost a change of the 200 and announced a gap.)
func testWatchKeepsUp(t *testing.T, drv backend.Driver) {
	const n = 200
	if n >= backend.WatchKeep {
		t.Fatalf("the test needs fewer commits (%d) than backend.WatchKeep (%d)", n, backend.WatchKeep)
	}
	s := open(t, drv)
	name := uniq("watched")
	a, b, w := newRef(t, s, name, 0), newRef(t, s, name, 0), newRef(t, s, name, 0)
	var log watchLog
	release := make(chan struct{})
	var once sync.Once
	w.AddWatch("k", func(k string, r *refs.Ref[int], old, new int) {
		log.fn(k, r, old, new)
		once.Do(func() { <-release })
	}, refs.OnGap(log.gap))
	defer w.RemoveWatch("k")
	defer once.Do(func() {}) // never hold a callback past the test
	for i := 0; i < n; i++ {
		h := a
		if i%2 == 1 {
			h = b
		}
		if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { h.Alter(tx, func(v int) int { return v + 1 }); return nil }); err != nil {
			close(release)
			t.Fatal(err)
		}
	}
	close(release)
	log.waitFor(t, n)
	if bad := log.check(n); len(bad) > 0 || log.gaps.Load() > 0 {
		t.Fatalf("a watcher of %d sequential commits: %d gap notices; %s", n, log.gaps.Load(), strings.Join(bad, "; "))
	}
}

// testWatchHole: a change feed that lost versions (a Redis Pub/Sub
// reconnect) and lags behind the history leaves a hole between the last
// version it gave and the oldest the history still keeps. The watcher must
// announce a gap there, not only before the first version of a round (a
// review found it checked only there, and skipped the hole silently). The
// feed is scripted by a wrapper; a driver without a feed (ZooKeeper) has
// no such hole.
func testWatchHole(t *testing.T, raw backend.Driver, faults engine.Faults) {
	fs, log, set, release, ok := feedWatcher(t, raw, faults)
	if !ok {
		t.Logf("%s's subscriptions carry no feed: no hole between a feed and the history", raw.ID())
		return
	}
	fs.lose()
	for v := 2; v <= 20; v++ {
		set(v)
	}
	fs.holdAfter(waitFeed(t, fs, 20))
	const n = backend.WatchKeep + 50 // more than the history keeps while watched
	for v := 21; v <= n; v++ {
		set(v)
	}
	close(release)
	log.waitFor(t, n)
	fs.holdAfter(0) // the rest of the feed arrives late
	bad := log.check(n)
	if faults.WatchGapFirstOnly {
		if len(bad) == 0 {
			t.Fatalf("with WatchGapFirstOnly the watcher announced every hole: the construction no longer reaches the bug")
		}
		return
	}
	if len(bad) > 0 {
		t.Fatalf("a watcher behind an incomplete, lagging feed: %s", strings.Join(bad, "; "))
	}
}

// testWatchHoleBetweenDrains: a watcher waiting for a lagging feed keeps
// what it drained; when a later drain comes after a loss, the two drains
// do not follow one another, and the hole between them (trimmed from the
// history, lost from the feed) must be announced.
func testWatchHoleBetweenDrains(t *testing.T, raw backend.Driver) {
	fs, log, set, release, ok := feedWatcher(t, raw, engine.Faults{})
	if !ok {
		t.Logf("%s's subscriptions carry no feed: no hole between two drains", raw.ID())
		return
	}
	const n = backend.WatchKeep + 50 // more than the history keeps while watched
	for v := 2; v <= n; v++ {
		set(v)
	}
	// The feed lags: it hands out 2..10 while the history already starts
	// past 10, so the watcher waits for it, keeping 2..10.
	fs.holdAfter(waitFeed(t, fs, 10))
	close(release)
	eventually(t, func() bool { return fs.handedOut(mustEncode(t, 10)) }, func() string { return "the watcher draining 2..10" })
	// Then it loses 11..29 and hands out 30..40, and the rest late.
	fs.dropThrough(waitFeed(t, fs, 29))
	fs.holdAfter(waitFeed(t, fs, 40))
	log.waitFor(t, n)
	fs.holdAfter(0)
	if bad := log.check(n); len(bad) > 0 {
		t.Fatalf("a watcher whose lagging feed lost versions between two drains: %s", strings.Join(bad, "; "))
	}
}

// feedWatcher sets up the watch-hole tests: an STM over raw whose change
// feed a feedScript scripts, a ref x set to 1 by set(1), and a watcher
// held inside its first callback (so it falls behind) until release is
// closed, logging into log. ok is false, and nothing is set up past the
// check, when raw's subscriptions carry no feed. The watch is removed
// when the test ends.
func feedWatcher(t *testing.T, raw backend.Driver, faults engine.Faults) (fs *feedScript, log *watchLog, set func(int), release chan struct{}, ok bool) {
	fs = &feedScript{Wrapped: faulty.Wrap(raw)}
	s := open(t, fs.driver(), engine.WithFaults(faults))
	x := newRef(t, s, uniq("x"), 0)
	sub, err := raw.Subscribe(tctx(t), x.Name())
	if err != nil {
		t.Fatal(err)
	}
	_, ok = sub.(backend.Feed)
	_ = sub.Close()
	if !ok {
		return nil, nil, nil, nil, false
	}
	log = &watchLog{}
	blocked := make(chan struct{})
	release = make(chan struct{})
	var once sync.Once
	x.AddWatch("k", func(k string, r *refs.Ref[int], old, new int) {
		log.fn(k, r, old, new)
		once.Do(func() { close(blocked); <-release })
	}, refs.OnGap(log.gap))
	t.Cleanup(func() { x.RemoveWatch("k") })
	set = func(v int) {
		if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { x.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set(1)
	<-blocked // the watcher is inside its first callback: it falls behind
	return fs, log, set, release, true
}

// waitFeed waits until the scripted feed has buffered value v's version
// and returns its point.
func waitFeed(t *testing.T, fs *feedScript, v int) clock.Point {
	t.Helper()
	want := mustEncode(t, v)
	var p clock.Point
	eventually(t, func() bool {
		var ok bool
		p, ok = fs.pointOf(want)
		return ok
	}, func() string { return fmt.Sprintf("value %d on the feed", v) })
	return p
}

// feedScript wraps a driver whose subscriptions carry a feed, and lets a
// test script what the feed hands the watcher: lose marks versions lost (a
// reconnect), holdAfter keeps versions after a point back (a feed that
// lags behind the history). What it hands out keeps the Feed contract:
// after a loss, the versions follow one another.
type feedScript struct {
	faulty.Wrapped

	mu    sync.Mutex
	subs  []*scriptedSub
	hold  clock.Point // 0: hand out everything
	seen  []backend.Version
	losts int
}

// driver returns the wrapper as a driver (with the inner one-phase commit).
func (fs *feedScript) driver() backend.Driver {
	if one, ok := fs.Wrapped.(backend.OnePhase); ok {
		return struct {
			*feedScript
			backend.OnePhase
		}{fs, one}
	}
	return fs
}

func (fs *feedScript) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	inner, err := fs.Wrapped.Subscribe(ctx, name)
	if err != nil {
		return nil, err
	}
	feed, ok := inner.(backend.Feed)
	if !ok {
		return inner, nil
	}
	s := &scriptedSub{Subscription: inner, fs: fs, feed: feed}
	fs.mu.Lock()
	fs.subs = append(fs.subs, s)
	fs.mu.Unlock()
	return s, nil
}

func (fs *feedScript) lose() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, s := range fs.subs {
		s.lost = true
		s.buf = nil
	}
}

// dropThrough loses the buffered versions up to point p (a reconnect that
// missed what was published meanwhile): the next drain is incomplete.
func (fs *feedScript) dropThrough(p clock.Point) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, s := range fs.subs {
		s.pull()
		n := 0
		for n < len(s.buf) && s.buf[n].Point <= p {
			n++
		}
		s.buf, s.lost = s.buf[n:], true
	}
}

// handedOut reports whether a subscription has handed out a version with
// value data.
func (fs *feedScript) handedOut(data []byte) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, s := range fs.subs {
		for _, v := range s.out {
			if string(v.Value) == string(data) {
				return true
			}
		}
	}
	return false
}

func (fs *feedScript) holdAfter(p clock.Point) {
	fs.mu.Lock()
	fs.hold = p
	fs.mu.Unlock()
}

// pointOf reports the point of a version with value data a subscription
// has received (handed out or not).
func (fs *feedScript) pointOf(data []byte) (clock.Point, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, s := range fs.subs {
		s.pull()
		for _, v := range append(s.out, s.buf...) {
			if string(v.Value) == string(data) {
				return v.Point, true
			}
		}
	}
	return 0, false
}

type scriptedSub struct {
	backend.Subscription
	fs   *feedScript
	feed backend.Feed
	buf  []backend.Version // received, not handed out
	out  []backend.Version // handed out (for pointOf)
	lost bool
}

// pull moves what the inner feed has into buf. The caller holds fs.mu.
func (s *scriptedSub) pull() {
	vs, complete := s.feed.Drain()
	if !complete {
		s.lost, s.buf = true, nil
	}
	s.buf = append(s.buf, vs...)
}

// Drain hands out the buffered versions up to the hold point.
func (s *scriptedSub) Drain() ([]backend.Version, bool) {
	s.fs.mu.Lock()
	defer s.fs.mu.Unlock()
	s.pull()
	n := len(s.buf)
	if h := s.fs.hold; h != 0 {
		n = 0
		for n < len(s.buf) && s.buf[n].Point <= h {
			n++
		}
	}
	vs := s.buf[:n:n]
	s.buf = s.buf[n:]
	s.out = append(s.out, vs...)
	complete := !s.lost
	s.lost = false
	return vs, complete
}

// testAddWatchRaces: AddWatch fixes the watcher's start point before it
// returns, whatever else happens meanwhile (a review found two races while
// the first AddWatch of a handle waited for the first read of the
// history): a RemoveWatch of another key must not take the watcher away
// from under a watch being added, and a second AddWatch must not return
// before the start point is fixed, or changes committed after it returned
// are lost.
func testAddWatchRaces(t *testing.T, raw backend.Driver) {
	removeAnother := func(t *testing.T, s *stm.STM, x *refs.Ref[int]) (*watchLog, <-chan struct{}) {
		x.RemoveWatch("other")
		return nil, nil
	}
	secondAdd := func(t *testing.T, s *stm.STM, x *refs.Ref[int]) (*watchLog, <-chan struct{}) {
		var c watchLog
		committed := make(chan struct{})
		go func() {
			defer close(committed)
			x.AddWatch("c", c.fn)
			if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { x.Set(tx, 1); return nil }); err != nil {
				t.Error(err)
			}
		}()
		// With the race, the second AddWatch returns at once and its
		// commit lands before the first read: give it the chance.
		select {
		case <-committed:
		case <-time.After(100 * time.Millisecond):
		}
		return &c, committed
	}
	t.Run("RemoveAnotherKey", func(t *testing.T) {
		if bad := addWatchRace(t, raw, engine.Faults{}, removeAnother); len(bad) > 0 {
			t.Fatal(strings.Join(bad, "; "))
		}
	})
	t.Run("SecondAddWatch", func(t *testing.T) {
		if bad := addWatchRace(t, raw, engine.Faults{}, secondAdd); len(bad) > 0 {
			t.Fatal(strings.Join(bad, "; "))
		}
	})
	t.Run("SeededBugIsCaught", func(t *testing.T) {
		if bad := addWatchRace(t, raw, engine.Faults{WatchStartRace: true}, secondAdd); len(bad) == 0 {
			t.Fatal("with WatchStartRace every watch got every change: the construction no longer reaches the bug")
		}
	})
}

// addWatchRace adds watch "a" to a ref whose watcher's first read of the
// history waits, runs meanwhile (which may add a watch of its own and
// commit 1), then lets the read go on and commits up to 2: every watch must
// deliver 1 and 2.
func addWatchRace(t *testing.T, raw backend.Driver, faults engine.Faults, meanwhile func(*testing.T, *stm.STM, *refs.Ref[int]) (*watchLog, <-chan struct{})) []string {
	w := faulty.Wrap(raw)
	s := open(t, w, engine.WithFaults(faults))
	x := newRef(t, s, uniq("x"), 0)
	var arm atomic.Bool
	reading, release := make(chan struct{}), make(chan struct{})
	w.SetHook(func(c faulty.Call) faulty.Fault {
		if c.Op == faulty.OpVersions && arm.CompareAndSwap(true, false) {
			close(reading)
			<-release
		}
		return faulty.Pass
	})
	defer w.SetHook(nil)
	arm.Store(true)
	var a watchLog
	added := make(chan struct{})
	go func() { x.AddWatch("a", a.fn); close(added) }()
	<-reading
	other, committed := meanwhile(t, s, x)
	close(release)
	recv(t, added, "the first AddWatch")
	for v := 1; v <= 2; v++ {
		if v == 1 && committed != nil {
			recv(t, committed, "the commit of 1 after the second AddWatch")
			continue
		}
		if err := s.Dosync(tctx(t), func(tx *txn.Tx) error { x.Set(tx, v); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	logs := map[string]*watchLog{"a": &a}
	if other != nil {
		logs["c"] = other
	}
	var bad []string
	for key, l := range logs {
		l.waitFor(t, 2)
		for _, b := range l.check(2) {
			bad = append(bad, fmt.Sprintf("watch %q: %s", key, b))
		}
		x.RemoveWatch(key)
	}
	return bad
}
