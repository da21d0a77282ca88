package txn

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Local turns: in-process contention management (docs/design.md,
// "Local turns").
//
// Transactions of one process that write the same ref take turns: an
// attempt claims the ref's turn before it reads it for a write (Alter),
// writes it (Set) or commutes it, and holds it until the attempt ends
// (End, after its commit or its retry). A claim that finds the turn held
// by another transaction of the process waits for it, and the waiter then
// reads the value the holder committed, instead of both meeting on the
// server, one failing and backing off blindly. Turns are only a local
// schedule: the protocol below them (the commit's checks, intents) is
// unchanged, so other processes still conflict with them as before, and
// what is committed does not depend on them.
//
// Deadlock freedom (wound-wait): every Dosync has a local age, drawn from
// a counter at its first attempt and kept across its retries. Any claimer
// waits for the holder; one older than the holder also wounds it first. A
// wounded attempt never starts a wait while it holds a turn: it retries
// at once instead (without backoff: it only gave way, and its next
// attempt claims the turns it had before reading anything), and one
// that is waiting when wounded is woken to do so. So a wait of an older
// transaction is always for one that will not wait in turn, and waits of
// younger ones for older ones cannot form a cycle. An attempt waits only
// in its function (its claims) and in Begin (holding nothing, or giving
// back what it holds when wounded), never in its commit: a one-phase
// commit waits only for server intents, as before, and the general path
// gives its turns back before it takes intents (from there on intents
// hold the others off, with the protocol's own rules: older wins,
// leases). A Dosync nested in a transaction's function on the same
// goroutine (one that does not join it) never waits for a turn at all:
// its outer transaction cannot go on, nor release anything, before it
// returns. Turns are handed over oldest first, so a waiter eventually
// becomes the oldest and is served.
//
// Every wait ends with the waiter's ctx; a holder releases its turns when
// its attempt ends, however it ends (commit, retry, error, panic).
//
// Turns live in a fixed table of slots (a ref's slot is a hash of its
// name): claiming a free slot is one uncontended mutex, and refs that share
// a slot only take turns they did not need to.
type Turns struct {
	slots [turnSlots]turnSlot
	gor   [64]gorBucket // the transactions holding turns, by goroutine id
	seq   atomic.Uint64 // Dosync ages
}

const turnSlots = 1024 // a power of two

// turn states of an attempt (Tx.tstate)
const (
	turnWaiting uint32 = 1 << iota
	turnWounded
)

type gorBucket struct {
	mu  sync.Mutex
	txs []*Tx
	_   [64 - 8 - 24]byte
}

type turnSlot struct {
	mu     sync.Mutex
	holder *Tx
	queue  []*Tx
	// last is the newest commit point of an attempt that held the slot:
	// a value read ahead (prefetched) at an older read point is stale.
	last atomic.Uint64
	_    [64 - 8 - 8 - 24 - 8]byte
}

// NewTurns returns an empty turn table, to be shared by an Env's
// transactions.
func NewTurns() *Turns { return &Turns{} }

func slotOf(name string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return h & (turnSlots - 1)
}

// errWounded is the retry of an attempt that an older one wounded while
// it would have waited: it gives way at once.
func errWounded() error {
	r := retryf("an older transaction of this process waits for a ref this one claimed")
	r.atOnce = true
	return r
}

// Claim takes the local turn of the ref for the attempt (see Turns): it
// waits while another transaction of this process holds it, and holds it
// until the attempt ends. refs' Alter calls it before reading the ref;
// Write and Commute call it themselves. A claim never changes what the
// attempt may commit: it only spares it a collision with this process's
// other transactions.
func (tx *Tx) Claim(k Key) {
	t := tx.env.Turns
	if t == nil {
		return
	}
	e, i, need := tx.claimStart(k)
	if !need {
		return
	}
	held, err := t.claim(tx, i)
	tx.claimEnd(e, i, held, err)
}

func (tx *Tx) claimStart(k Key) (*entry, uint32, bool) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.live()
	e := tx.entry(k)
	if e.turn {
		return e, 0, false
	}
	i := slotOf(k.Name)
	if slices.Contains(tx.held, i) {
		e.turn, e.slot = true, i
		return e, i, false
	}
	return e, i, true
}

func (tx *Tx) claimEnd(e *entry, i uint32, held bool, err error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if held {
		t := tx.env.Turns
		if !tx.registered {
			t.register(tx)
			tx.registered = true
		}
		if tx.held == nil {
			tx.held = tx.heldBuf[:0]
		}
		tx.held = append(tx.held, i)
		e.turn, e.slot = true, i
		if e.loaded && !e.seen && !e.written && !e.commuted && tx.rpSet && clock.Point(t.slots[i].last.Load()) > tx.rp {
			// Read ahead before another transaction of this process
			// committed to it: read it again when the function asks.
			e.loaded, e.fault = false, false
		}
	}
	if err != nil {
		if r, ok := err.(*RetryError); ok && r.atOnce {
			tx.env.Stats.Wounds.Add(1)
		}
		tx.unwind(err)
	}
	tx.live()
}

// claimAll claims the turns of keys before the attempt reads anything
// (Begin, for the refs the previous attempt claimed), in slot order. A
// wound while it waits releases what it holds and starts again: an
// attempt that holds nothing can wait for anyone.
func (tx *Tx) claimAll(keys []Key) error {
	t := tx.env.Turns
	var idx []uint32
	for _, k := range keys {
		if k.Claim {
			idx = append(idx, slotOf(k.Name))
		}
	}
	if len(idx) == 0 {
		return nil
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for {
		var err error
		for _, i := range idx {
			var held bool
			if held, err = t.claim(tx, i); err != nil {
				break
			}
			if held {
				if !tx.registered {
					t.register(tx)
					tx.registered = true
				}
				if tx.held == nil {
					tx.held = tx.heldBuf[:0]
				}
				tx.held = append(tx.held, i)
			}
		}
		if err == nil {
			return nil
		}
		t.release(tx)
		if !IsRetry(err) {
			return err
		}
		// An older one took a turn from us: holding nothing now, start
		// again (and wait for it).
		tx.tstate.Store(0)
	}
}

// claim takes slot i for tx, waiting as the rules of Turns say. It
// reports whether tx holds the slot: not when its holder runs on tx's
// goroutine, nor when tx is nested in another transaction of its
// goroutine (see Turns). It fails with the ctx's error, or errWounded.
func (t *Turns) claim(tx *Tx, i uint32) (bool, error) {
	s := &t.slots[i]
	s.mu.Lock()
	h := s.holder
	switch {
	case h == nil:
		s.holder = tx
		s.mu.Unlock()
		return true, nil
	case h == tx:
		s.mu.Unlock()
		return true, nil
	case h.gid == tx.gid || t.nested(tx):
		s.mu.Unlock()
		return false, nil
	}
	if tx.age.Load() < h.age.Load() {
		wound(h)
	}
	if tx.wake == nil {
		tx.wake = make(chan struct{}, 1)
	}
	for {
		st := tx.tstate.Load()
		if st&turnWounded != 0 && len(tx.held) > 0 {
			s.mu.Unlock()
			return false, errWounded()
		}
		// Holding nothing, nobody waits for tx: it may wait.
		if tx.tstate.CompareAndSwap(st, turnWaiting) {
			break
		}
	}
	s.queue = append(s.queue, tx)
	s.mu.Unlock()
	tx.env.Stats.TurnWaits.Add(1)
	done := tx.ctx.Done()
	for {
		select {
		case <-tx.wake:
		case <-done:
		}
		s.mu.Lock()
		if s.holder == tx {
			s.mu.Unlock()
			tx.tstate.And(^turnWaiting)
			return true, nil
		}
		err := tx.ctx.Err()
		if err == nil && tx.tstate.Load()&turnWounded != 0 && len(tx.held) > 0 {
			err = errWounded()
		}
		if err != nil {
			s.queue = slices.DeleteFunc(s.queue, func(w *Tx) bool { return w == tx })
			s.mu.Unlock()
			tx.tstate.And(^turnWaiting)
			return false, err
		}
		s.mu.Unlock()
	}
}

// wound marks h, a younger holder an older transaction waits for, so that
// h gives way (retries) rather than wait for a turn while it holds one,
// and wakes h if it waits now.
func wound(h *Tx) {
	for {
		st := h.tstate.Load()
		if st&turnWounded != 0 {
			return
		}
		if h.tstate.CompareAndSwap(st, st|turnWounded) {
			if st&turnWaiting != 0 {
				select {
				case h.wake <- struct{}{}:
				default:
				}
			}
			return
		}
	}
}

// register records tx, which now holds a turn, as a transaction of its
// goroutine; unregister forgets it.
func (t *Turns) register(tx *Tx) {
	g := &t.gor[tx.gid%uint64(len(t.gor))]
	g.mu.Lock()
	g.txs = append(g.txs, tx)
	g.mu.Unlock()
}

func (t *Turns) unregister(tx *Tx) {
	g := &t.gor[tx.gid%uint64(len(t.gor))]
	g.mu.Lock()
	g.txs = slices.DeleteFunc(g.txs, func(o *Tx) bool { return o == tx })
	g.mu.Unlock()
}

// nested reports whether another transaction of tx's goroutine holds
// turns: tx runs inside its function (a Dosync that does not join it),
// which waits for tx, so tx must never wait for a turn.
func (t *Turns) nested(tx *Tx) bool {
	g := &t.gor[tx.gid%uint64(len(t.gor))]
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, o := range g.txs {
		if o != tx && o.gid == tx.gid {
			return true
		}
	}
	return false
}

// release gives back every turn tx holds, each to its oldest waiter, and
// records tx's commit point (if it committed) as the slots' last.
func (t *Turns) release(tx *Tx) {
	for _, i := range tx.held {
		s := &t.slots[i]
		s.mu.Lock()
		if tx.cp != 0 {
			raise(&s.last, tx.cp)
		}
		if s.holder == tx {
			s.holder = nil
			if len(s.queue) > 0 {
				k := 0
				for j, w := range s.queue {
					if w.age.Load() < s.queue[k].age.Load() {
						k = j
					}
				}
				w := s.queue[k]
				s.queue = slices.Delete(s.queue, k, k+1)
				s.holder = w
				select {
				case w.wake <- struct{}{}:
				default:
				}
			}
		}
		s.mu.Unlock()
	}
	tx.held = tx.held[:0]
	if tx.registered {
		t.unregister(tx)
		tx.registered = false
	}
}

// extension results
const (
	extNo     = iota // not extended: use the read at the old point
	extDone          // extended: e is loaded at the new point
	extReload        // extended, but e needs a full read at the new point
)

// extend moves the attempt's read point forward instead of letting it
// fail: e, whose turn the attempt holds, has a version newer than the read
// point (another transaction of this process committed it while this one
// waited for its turn). It reads every ref the function has seen, with a
// new read point, in one round trip; if none of them has a newer version
// than the one seen, the function's view is a snapshot at the new point
// too (I2), and the attempt goes on there. Refs read ahead but not seen
// yet are refreshed. Not when the function asked for the read point
// (ReadPoint), when a ref it saw lives in another backend, or with Faults.
// The caller holds tx.mu.
func (tx *Tx) extend(e *entry) int {
	if tx.rpShown || tx.env.Faults != (Faults{}) {
		return extNo
	}
	coord := tx.env.Coord.ID()
	var names []string
	var ents []*entry
	for _, o := range tx.order {
		switch {
		case o == e:
		case o.seen:
			if o.drv.ID() != coord {
				return extNo
			}
		case o.loaded && !o.written && !o.commuted:
			if o.drv.ID() != coord {
				continue
			}
		default:
			continue
		}
		names = append(names, o.name)
		ents = append(ents, o)
	}
	res, err := tx.env.Coord.Read(tx.ctx, backend.ReadRequest{Current: true, Names: names})
	if err != nil {
		tx.unwind(fmt.Errorf("txn: read %v: %w", names, err))
	}
	if res.RP <= tx.rp {
		return extNo
	}
	plain := func(it backend.ReadItem) bool {
		return it.Found && it.Intent == nil && it.Result == history.Found
	}
	for k, o := range ents {
		if o.seen && o != e && (!plain(res.Items[k]) || res.Items[k].Version.Point != o.at) {
			return extNo
		}
	}
	tx.setRP(res.RP)
	tx.env.Stats.Extended.Add(1)
	out := extReload
	for k, o := range ents {
		it := res.Items[k]
		switch {
		case o.seen && o != e:
			o.newest = it.Newest
		case plain(it):
			o.loaded, o.fault, o.val, o.at, o.newest = true, false, it.Version.Value, it.Version.Point, it.Newest
			if o == e {
				out = extDone
			}
		default:
			o.loaded, o.fault = false, false
		}
	}
	return out
}

// committedSince reports whether a transaction of this process that
// held the turn of the slot committed after point p.
func (t *Turns) committedSince(slot uint32, p clock.Point) bool {
	return clock.Point(t.slots[slot].last.Load()) > p
}

// turnsDone releases the attempt's turns (End).
func (tx *Tx) turnsDone() {
	if t := tx.env.Turns; t != nil && len(tx.held) > 0 {
		t.release(tx)
	}
}
