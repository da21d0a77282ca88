package engine

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
// Deadlock freedom: a claimer waits for the holder, but never so as to
// close a cycle of waits. Every wait begins under one mutex (only waits
// take it), which follows the chain from the holder (the slot it waits
// for, that slot's holder, ...); if the chain leads back to the claimer,
// the youngest transaction of the cycle gives way and retries at once,
// without backoff (its next attempt claims its turns again before it
// reads anything, holding nothing while it waits). Ages are local: drawn
// from a counter at a Dosync's first attempt and kept across its retries,
// so the oldest never gives way and a transaction that keeps giving way
// becomes the oldest. Waits end (the waiter is served, gives way or its
// ctx ends), and slots change hands only to waiters, which then wait for
// nothing, without the mutex: that only breaks chains, so no cycle forms
// unseen. An attempt waits only in its function (its claims) and in
// Begin, never while it commits: a one-phase commit waits only for server
// intents, as before, and the general path gives its turns back before it
// takes intents (from there on intents hold the others off, with the
// protocol's own rules: older wins, leases). A Dosync nested in a
// transaction's function on the same goroutine (one that does not join
// it) never waits for a turn at all: its outer transaction cannot go on,
// nor release anything, before it returns. Turns are handed over oldest
// first.
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
	graph sync.Mutex    // held while a wait begins (breakCycle)
}

const turnSlots = 1024 // a power of two

type gorBucket struct {
	mu  sync.Mutex
	txs []*Tx
	_   [64 - 8 - 24]byte
}

type turnSlot struct {
	mu     sync.Mutex
	holder atomic.Pointer[Tx]
	queue  []*Tx
	// last is the newest commit point of an attempt that held the slot:
	// a value read ahead (prefetched) at an older read point is stale.
	last atomic.Uint64
	// hot counts, up to hotMax, the attempts that read a ref of the slot
	// and then claimed its turn to write it, less those that read one and
	// ended without writing it. While it is above zero a plain read
	// claims the turn first (Read): a read-modify-write such as
	// "Get, check, Alter" then reads the value of the transaction it
	// waited for, where reading first and claiming at the Alter would
	// have seen the old one and retried.
	hot atomic.Int32
	_   [64 - 8 - 8 - 24 - 8 - 4]byte
}

// hotMax bounds turnSlot.hot: as many reads without a write after it
// make plain reads of the slot take no turn again.
const hotMax = 8

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

// errWounded is the retry of an attempt that gives way at once: the
// youngest of a cycle of waits.
func errWounded() error {
	r := retryf("gave way to older transactions of this process in a cycle of waits for local turns")
	r.atOnce = true
	return r
}

// claim takes the local turn of the ref for the attempt (see Turns): it
// waits while another transaction of this process holds it, and holds it
// until the attempt ends. refs' Alter calls it before reading the ref;
// Write and Commute call it themselves. A claim never changes what the
// attempt may commit: it only spares it a collision with this process's
// other transactions.
func (tx *Tx) claim(k Key) {
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
	if e.seen {
		// Read without its turn, now claimed to write: the next plain
		// reads of the slot claim it first (turnSlot.hot).
		s := &tx.env.Turns.slots[i]
		if h := s.hot.Load(); h < hotMax {
			s.hot.CompareAndSwap(h, h+1)
		}
	}
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
		tx.hold(i)
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

// hold records that the attempt holds slot i (released by release).
func (tx *Tx) hold(i uint32) {
	if !tx.registered {
		tx.env.Turns.register(tx)
		tx.registered = true
	}
	if tx.held == nil {
		tx.held = tx.heldBuf[:0]
	}
	tx.held = append(tx.held, i)
}

// claimAll claims the turns of keys before the attempt reads anything
// (Begin, for the refs the previous attempt claimed), in slot order. If
// it must give way while it waits (breakCycle), it releases what it holds
// and starts again: an attempt that holds nothing closes no cycle.
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
				tx.hold(i)
			}
		}
		if err == nil {
			return nil
		}
		t.release(tx)
		if !IsRetry(err) {
			return err
		}
		// Its wait would have closed a cycle: holding nothing now, start
		// again.
	}
}

// claim takes slot i for tx, waiting as the rules of Turns say. It
// reports whether tx holds the slot: not when its holder runs on tx's
// goroutine, nor when tx is nested in another transaction of its
// goroutine (see Turns). It fails with the ctx's error, or errWounded.
func (t *Turns) claim(tx *Tx, i uint32) (bool, error) {
	s := &t.slots[i]
	s.mu.Lock()
	h := s.holder.Load()
	switch {
	case h == nil:
		s.holder.Store(tx)
		s.mu.Unlock()
		return true, nil
	case h == tx:
		s.mu.Unlock()
		return true, nil
	case h.gid == tx.gid || t.nested(tx):
		s.mu.Unlock()
		return false, nil
	}
	if tx.wake == nil {
		tx.wake = make(chan struct{}, 1)
	}
	t.graph.Lock()
	if tx.wounded.Load() || len(tx.held) > 0 && t.breakCycle(tx, s) {
		t.graph.Unlock()
		s.mu.Unlock()
		tx.wounded.Store(false)
		return false, errWounded()
	}
	tx.waitOn.Store(s)
	t.graph.Unlock()
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
		if s.holder.Load() == tx {
			s.mu.Unlock()
			tx.wounded.Store(false) // its wait is over: no cycle through it now
			return true, nil
		}
		err := tx.ctx.Err()
		if err == nil && tx.wounded.Load() {
			tx.wounded.Store(false)
			err = errWounded()
		}
		if err != nil {
			s.queue = slices.DeleteFunc(s.queue, func(w *Tx) bool { return w == tx })
			tx.waitOn.Store(nil)
			s.mu.Unlock()
			return false, err
		}
		s.mu.Unlock()
	}
}

// breakCycle looks whether tx, waiting for slot s, would close a cycle of
// waits (s's holder waits for a slot whose holder waits ... for a slot tx
// holds). If so, the youngest transaction of the cycle gives way: tx
// itself (breakCycle reports true), or another, which waits now and is
// woken to retry. The caller holds t.graph, under which every wait begins;
// waits end, and slots change hands to transactions that wait for
// nothing, without it, which only breaks chains.
func (t *Turns) breakCycle(tx *Tx, s *turnSlot) bool {
	var chain [8]*Tx
	members := chain[:0]
	x := s.holder.Load()
	for x != nil && x != tx {
		if slices.Contains(members, x) {
			return false // a cycle without tx, being broken
		}
		members = append(members, x)
		w := x.waitOn.Load()
		if w == nil {
			return false
		}
		x = w.holder.Load()
	}
	if x == nil {
		return false
	}
	victim := tx
	for _, m := range members {
		if m.age.Load() > victim.age.Load() {
			victim = m
		}
	}
	if victim == tx {
		return true
	}
	victim.wounded.Store(true)
	select {
	case victim.wake <- struct{}{}:
	default:
	}
	return false
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
		if s.holder.Load() == tx {
			s.holder.Store(nil)
			if len(s.queue) > 0 {
				k := 0
				for j, w := range s.queue {
					if w.age.Load() < s.queue[k].age.Load() {
						k = j
					}
				}
				w := s.queue[k]
				s.queue = slices.Delete(s.queue, k, k+1)
				w.waitOn.Store(nil)
				s.holder.Store(w)
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
	others := tx.env.Faults
	others.ExtendUnchecked = false
	if tx.rpShown || others != (Faults{}) {
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
		if o.seen && o != e && !tx.env.Faults.ExtendUnchecked && (!plain(res.Items[k]) || res.Items[k].Version.Point != o.at) {
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

// hot reports whether a plain read of the ref named name should claim
// its turn first (turnSlot.hot).
func (t *Turns) hot(name string) bool { return t.slots[slotOf(name)].hot.Load() > 0 }

// cool lowers the hot count of the slots of the refs the attempt read and
// did not write (turnSlot.hot). End calls it once per attempt.
func (tx *Tx) cool() {
	t := tx.env.Turns
	if t == nil {
		return
	}
	for _, e := range tx.order {
		if e.seen && !e.written && !e.commuted {
			s := &t.slots[slotOf(e.name)]
			if h := s.hot.Load(); h > 0 {
				s.hot.CompareAndSwap(h, h-1)
			}
		}
	}
}

// turnsDone releases the attempt's turns (End).
func (tx *Tx) turnsDone() {
	if t := tx.env.Turns; t != nil && len(tx.held) > 0 {
		t.release(tx)
	}
}
