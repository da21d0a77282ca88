package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/group"
)

// comeBack bounds the wait for a member's watcher to put its entry right
// (it reads the group on every hint and at least every third of its
// lease): generous, for a loaded machine; it only bounds a failure.
const comeBack = time.Minute

// delayedRemove is a driver whose removals of one entry name, once
// armed, get no answer (the caller's try gives up) and reach the store
// only when the test lands them: a removal delayed in the network, or in
// a stopped server's buffers (on Redis go-redis may even retry it on a
// new connection).
type delayedRemove struct {
	sessionsDriver

	mu      sync.Mutex
	name    string
	delayed []func() error
	arrived chan struct{} // closed at the first delayed removal
}

func (d *delayedRemove) arm(name string) {
	d.mu.Lock()
	d.name, d.delayed, d.arrived = name, nil, make(chan struct{})
	d.mu.Unlock()
}

func (d *delayedRemove) RemoveEntry(ctx context.Context, session, dir, name string) error {
	d.mu.Lock()
	if d.name == "" || name != d.name {
		d.mu.Unlock()
		return d.sessionsDriver.RemoveEntry(ctx, session, dir, name)
	}
	if d.delayed == nil {
		close(d.arrived)
	}
	d.delayed = append(d.delayed, func() error {
		return d.sessionsDriver.RemoveEntry(context.Background(), session, dir, name)
	})
	d.mu.Unlock()
	return fmt.Errorf("backendtest: remove entry %q: no answer: %w", name, context.DeadlineExceeded)
}

// land disarms and lets the delayed removals reach the store, in the
// order they were sent; it returns how many removed the entry.
func (d *delayedRemove) land(t *testing.T) int {
	t.Helper()
	d.mu.Lock()
	delayed := d.delayed
	d.name, d.delayed = "", nil
	d.mu.Unlock()
	n := 0
	for _, rm := range delayed {
		switch err := rm(); {
		case err == nil:
			n++
		case !errors.Is(err, backend.ErrEntryGone):
			t.Fatalf("a delayed removal: %v", err)
		}
	}
	return n
}

// awaitEntry waits until dir's entry name is held by a session that
// ok accepts, and returns it.
func awaitEntry(t *testing.T, ss backend.Sessions, dir, name, what string, ok func(backend.Entry) bool) backend.Entry {
	t.Helper()
	ctx := tctx(t)
	deadline := time.Now().Add(comeBack)
	for {
		es := entries(t, ss, dir, true)
		for _, e := range es {
			if e.Name == name && ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so %v later: entries %+v", what, comeBack, es)
		}
		if err := ss.WaitEntries(ctx, dir, "", time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// groupDelayedLeaveRemoval: a member's Leave whose removal gets no answer
// in time; the name joins again through the same pooled session (its add,
// idempotent for the session, returns the entry still there); then the
// delayed removal lands and deletes it. Before, the member stayed missing
// for as long as its session lived: its watcher rejoined only when the
// session was lost. Now the watcher adds the entry again.
func groupDelayedLeaveRemoval(t *testing.T, raw backend.Driver) {
	ss := raw.(backend.Sessions)
	d := &delayedRemove{sessionsDriver: raw.(sessionsDriver)}
	name := uniq("delayed")
	dir := group.DirPrefix + name
	join(t, d, name, "keep") // keeps the pooled session through the Leave
	g := join(t, d, name, "a")
	sess := holderSession(t, raw, dir)
	d.arm("a")
	if err := g.Leave(tctx(t)); err == nil {
		t.Fatal("Leave whose removal got no answer returned nil")
	}
	recv(t, d.arrived, "the Leave's removal")
	join(t, d, name, "a")
	if n := d.land(t); n == 0 {
		t.Fatal("the delayed removal deleted nothing: the construction no longer reaches the bug")
	}
	e := awaitEntry(t, ss, dir, "a", "a's entry, deleted by the delayed removal of the member that left, back", func(backend.Entry) bool { return true })
	if e.Session.ID != sess {
		t.Fatalf("a is back with session %s, want the pooled session %s (it was never lost)", e.Session.ID, sess)
	}
}

// groupTakenNameAfterDelayedRemoval: as groupDelayedLeaveRemoval, but
// another session takes the name before the member's watcher looks
// again. The member stays out while the name is taken (Update says
// ErrRejoining) and is back in its own session, with its newest data,
// once the name is free.
func groupTakenNameAfterDelayedRemoval(t *testing.T, raw backend.Driver) {
	ctx := tctx(t)
	ss := raw.(backend.Sessions)
	fd := newFrozen(raw)
	d := &delayedRemove{sessionsDriver: fd}
	name := uniq("taken")
	dir := group.DirPrefix + name
	join(t, d, name, "keep")
	g := join(t, d, name, "a")
	sess := holderSession(t, raw, dir)
	d.arm("a")
	if err := g.Leave(ctx); err == nil {
		t.Fatal("Leave whose removal got no answer returned nil")
	}
	recv(t, d.arrived, "the Leave's removal")
	again := join(t, d, name, "a", group.WithData("mine"))
	fd.freeze() // the watchers take no look until thaw
	if n := d.land(t); n == 0 {
		t.Fatal("the delayed removal deleted nothing: the construction no longer reaches the bug")
	}
	other, _ := openSession(t, ss, time.Minute)
	add(t, ss, other, dir, "a", false, "theirs")
	fd.thaw()
	if err := again.Update(ctx, "newer"); !errors.Is(err, group.ErrRejoining) {
		t.Fatalf("Update while another session holds the name: %v, want ErrRejoining", err)
	}
	if err := ss.RemoveEntry(ctx, other, dir, "a"); err != nil {
		t.Fatal(err)
	}
	e := awaitEntry(t, ss, dir, "a", "a back in its session once the name was free", func(e backend.Entry) bool { return e.Session.ID == sess })
	ms, err := group.Members(ctx, sessionStore(raw), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name != "a" {
			continue
		}
		var s string
		if err := m.Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s != "newer" {
			t.Fatalf("a is back (%+v) with data %q, want the Update's \"newer\"", e, s)
		}
	}
}

// heldAdd is a driver that, once armed, holds the next add of one entry
// name by a session other than a given one until the test releases it.
type heldAdd struct {
	sessionsDriver

	mu      sync.Mutex
	name    string
	not     string // the session whose adds pass
	armed   bool
	arrived chan struct{}
	release chan struct{}
}

func (d *heldAdd) arm(name, not string) {
	d.mu.Lock()
	d.name, d.not, d.armed = name, not, true
	d.arrived, d.release = make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
}

func (d *heldAdd) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	d.mu.Lock()
	hold := d.armed && req.Name == d.name && req.Session != d.not
	if hold {
		d.armed = false
	}
	arrived, release := d.arrived, d.release
	d.mu.Unlock()
	if hold {
		close(arrived)
		select {
		case <-release:
		case <-ctx.Done():
			return backend.Entry{}, ctx.Err()
		}
	}
	return d.sessionsDriver.AddEntry(ctx, req)
}

// groupUpdateDuringRejoin: a member whose session ended rejoins on a new
// one; its add, carrying the data it read, is held while Update stores new
// data and says ErrRejoining ("the new data goes with it"). Before, the
// member came back with the old data and nothing sent the new. Now the
// watcher sends the newest data once the add is in.
func groupUpdateDuringRejoin(t *testing.T, raw backend.Driver) {
	ctx := tctx(t)
	ss := raw.(backend.Sessions)
	d := &heldAdd{sessionsDriver: raw.(sessionsDriver)}
	name := uniq("upd")
	dir := group.DirPrefix + name
	g := join(t, d, name, "a", group.WithData("old"))
	old := holderSession(t, raw, dir)
	d.arm("a", old)
	if err := ss.CloseSession(ctx, old); err != nil { // the server ends it
		t.Fatal(err)
	}
	recv(t, d.arrived, "the rejoin's add")
	uerr := g.Update(ctx, "new")
	if !errors.Is(uerr, group.ErrRejoining) {
		t.Fatalf("Update during the rejoin: %v, want ErrRejoining", uerr)
	}
	close(d.release)
	awaitEntry(t, ss, dir, "a", "a rejoined with the data of the Update made during the rejoin", func(e backend.Entry) bool {
		var s string
		return e.Session.ID != old && (group.Member{Name: e.Name, Data: e.Data}).Decode(&s) == nil && s == "new"
	})
}

// groupRefusedUpdate: data the store refuses for good (larger than a
// ZooKeeper request may be: backend.ErrTooLarge) leaves the member with
// the data it had: an Update says so, and one made while the member
// rejoins (ErrRejoining: "the new data goes with it") does not keep the
// member out: the rejoin falls back to the data last accepted. Before,
// the rejoin sent the refused data again and again, and the member never
// came back. Stores that take data of any size accept it.
func groupRefusedUpdate(t *testing.T, raw backend.Driver) {
	ctx := tctx(t)
	ss := raw.(backend.Sessions)
	d := &heldAdd{sessionsDriver: raw.(sessionsDriver)}
	name := uniq("big")
	dir := group.DirPrefix + name
	g := join(t, d, name, "a", group.WithData("old"))
	huge := strings.Repeat("x", 4<<20)
	holds := func(want string) func(backend.Entry) bool {
		return func(e backend.Entry) bool {
			var s string
			return (group.Member{Name: e.Name, Data: e.Data}).Decode(&s) == nil && s == want
		}
	}
	uerr := g.Update(ctx, huge)
	if uerr == nil {
		t.Logf("the store took %d bytes of data", len(huge))
		awaitEntry(t, ss, dir, "a", "a with its huge data", holds(huge))
		return
	}
	if !errors.Is(uerr, backend.ErrTooLarge) {
		t.Fatalf("Update of %d bytes: %v", len(huge), uerr)
	}
	awaitEntry(t, ss, dir, "a", "a with its old data after a refused Update", holds("old"))
	old := holderSession(t, raw, dir)
	d.arm("a", old)
	if err := ss.CloseSession(ctx, old); err != nil { // the server ends it
		t.Fatal(err)
	}
	recv(t, d.arrived, "the rejoin's add")
	if err := g.Update(ctx, huge); !errors.Is(err, group.ErrRejoining) {
		t.Fatalf("Update during the rejoin: %v, want ErrRejoining", err)
	}
	close(d.release)
	awaitEntry(t, ss, dir, "a", "a rejoined with its old data after the store refused the new", func(e backend.Entry) bool {
		return e.Session.ID != old && holds("old")(e)
	})
	if err := g.Update(ctx, "small"); err != nil {
		t.Fatalf("Update after: %v", err)
	}
	awaitEntry(t, ss, dir, "a", "a with the data of an Update after", holds("small"))
}
