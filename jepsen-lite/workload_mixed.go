package jepsenlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// mixed: the bank and list-append workloads over refs spread across two
// backends, the coordinator (which holds the records and draws every
// commit point) and a second one (refs.On): even accounts and keys live
// on the coordinator, odd ones on the second backend. So a transaction
// may span both (the general path: a record on the coordinator, intents
// on both), stay on the coordinator (its fast path) or stay on the second
// backend (the general path, every intent away from the record). After
// each transaction a client swaps (+1) a counter atom of its own that
// lives on the second backend, whose commit points come from that
// backend's clock, not the coordinator's. Each client runs an STM of its
// own, over connections of its own (clientSTMs): to the engine and the
// servers it is a process, so one client's reads never queue behind
// another's writes on a shared ZooKeeper session. Client 0 of each
// process only reads (bank snapshots, lists), as a process serving reads
// would: a session that carries no writes reads from its server's state
// at once, however far that lags.
//
// Operations: "transfer" and "read" (bank, BankValue), "txn"
// (list-append, []Mop), "swap" (CounterValue K, Delta 1; V the new value)
// and, among the final reads, "atom-read" (CounterValue K, V). Checkers:
// bank (6 accounts, total 600), list-append (with lost-append against the
// final reads), and atom-counter (each atom's final value between its
// acknowledged swaps and those plus the ones of unknown outcome).
type mixed struct {
	worker int
	bank   *bankWorkload
	la     *listAppend
	second backend.Driver
	open   func(ctx context.Context, client int) (*stm.STM, backend.Driver, func(), error)
	reader bool // a client that only reads (and swaps its atom)

	mu    sync.Mutex
	atoms map[int]*refs.Atom[int]
}

const (
	mixedAccounts   = 6
	mixedInitial    = 100
	mixedAtomPrefix = "mx/atom/"
)

func newMixed(worker int) *mixed {
	return &mixed{worker: worker,
		bank: &bankWorkload{accounts: mixedAccounts, initial: mixedInitial, prefix: "mx/bank/"},
		la:   &listAppend{worker: worker, keys: 8, perKey: 128, prefix: "mx/la/"}}
}

// setSecond implements twoBackends.
func (m *mixed) setSecond(b backend.Driver) {
	m.second, m.bank.second, m.la.second = b, b, b
}

// setOpen implements clientSTMs.
func (m *mixed) setOpen(open func(ctx context.Context, client int) (*stm.STM, backend.Driver, func(), error)) {
	m.open = open
}

func (m *mixed) Name() string { return "mixed" }

// Linearizable: no; the final reads are anyway.
func (m *mixed) Linearizable() bool { return false }

func (m *mixed) Setup(ctx context.Context, s *stm.STM) error {
	if m.second == nil {
		return fmt.Errorf("jepsen: the mixed workload needs a second backend")
	}
	return m.bank.Setup(ctx, s)
}

// Next draws a bank transfer (30%), a bank read (15%) or a list-append
// transaction; a reader draws a bank read or a list-append transaction
// of reads only, half and half.
func (m *mixed) Next(r *rand.Rand) (string, any) {
	if m.reader {
		if r.IntN(2) == 0 {
			return "read", check.BankValue{}
		}
		return m.la.draw(r, true)
	}
	switch n := r.IntN(20); {
	case n < 6:
		return "transfer", m.bank.transfer(r)
	case n < 9:
		return "read", check.BankValue{}
	}
	return m.la.Next(r)
}

func (m *mixed) ReadOnly(f string) bool { return f == "read" || f == "atom-read" }

// atom returns the handle of counter atom k, creating the atom (0) on the
// second backend if it does not exist.
func (m *mixed) atom(ctx context.Context, s *stm.STM, k int) (*refs.Atom[int], error) {
	m.mu.Lock()
	a := m.atoms[k]
	m.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := refs.NewAtom(ctx, s, mixedAtomPrefix+strconv.Itoa(k), 0, refs.On(m.second))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atoms == nil {
		m.atoms = map[int]*refs.Atom[int]{}
	}
	if old := m.atoms[k]; old != nil {
		return old, nil
	}
	m.atoms[k] = a
	return a, nil
}

func (m *mixed) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	switch f {
	case "transfer", "read":
		return m.bank.Apply(ctx, s, f, v)
	case "txn":
		return m.la.Apply(ctx, s, f, v)
	case "swap", "atom-read":
		in := v.(check.CounterValue)
		a, err := m.atom(ctx, s, in.K)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errDeclined, err)
		}
		out := in
		if f == "swap" {
			out.V, err = a.Swap(ctx, func(x int) int { return x + in.Delta })
		} else {
			out.V, err = a.Deref(ctx)
		}
		return out, err
	}
	return nil, fmt.Errorf("jepsen: mixed: no operation %q", f)
}

// Loop implements clientLoop: a transaction, then a swap of the client's
// atom, and again. The atom's number is worker*1000 + client: unique
// across the run, replacement processes included.
func (m *mixed) Loop(ctx context.Context, s *stm.STM, rec *recorder, c int, r *rand.Rand, cfg clientConfig) {
	proc := cfg.ProcessBase + c*1_000_000
	k := m.worker*1000 + c
	s, cw, closeAll := m.client(ctx, s, c)
	if cw == nil {
		return
	}
	defer closeAll()
	next := time.Now()
	for n := 0; ctx.Err() == nil && (cfg.Ops <= 0 || n < cfg.Ops); n++ {
		// Two operations a round: pace the rounds at half the rate.
		if !pace(ctx, r, cfg.Rate/2, &next) {
			return
		}
		f, v := cw.Next(r)
		if invoke1(ctx, s, cw, rec, proc, f, v, cfg.OpTimeout) == check.Info {
			proc++
		}
		if invoke1(ctx, s, cw, rec, proc, "swap", check.CounterValue{K: k, Delta: 1}, cfg.OpTimeout) == check.Info {
			proc++
		}
	}
}

// client opens client c's own STM and a workload over it (or, without
// an opener, returns the process's), retrying until ctx ends (then cw
// is nil).
func (m *mixed) client(ctx context.Context, s *stm.STM, c int) (_ *stm.STM, cw *mixed, closeAll func()) {
	if m.open == nil {
		return s, m, func() {}
	}
	for ctx.Err() == nil {
		cs, d2, closeAll, err := m.open(ctx, c)
		if err == nil {
			cw = newMixed(m.worker)
			cw.la.client = c + 1 // its own values
			cw.reader = c == 0
			cw.setSecond(d2)
			if err = setup(ctx, cs, cw); err == nil {
				return cs, cw, closeAll
			}
			closeAll()
		}
		t := time.NewTimer(100 * time.Millisecond) // a fault is healing: try again
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return nil, nil, nil
}

func (m *mixed) Final(ctx context.Context, s *stm.STM) ([]invocation, error) {
	out := []invocation{{F: "read", Value: check.BankValue{}}}
	las, err := m.la.Final(ctx, s)
	if err != nil {
		return nil, err
	}
	out = append(out, las...)
	ks, err := listNumbered(ctx, mixedAtomPrefix, m.second)
	if err != nil {
		return nil, err
	}
	for _, k := range ks {
		out = append(out, invocation{F: "atom-read", Value: check.CounterValue{K: k}})
	}
	return out, nil
}

func (m *mixed) Checkers() []check.Checker {
	return []check.Checker{m.bank.Checkers()[0], check.NewListAppendChecker(),
		&check.CounterChecker{Label: "atom-counter", Add: "swap", Read: "atom-read"}}
}
