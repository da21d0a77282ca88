package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// Workloads names the workloads, in the order help lists them.
var Workloads = []string{"bank", "list-append", "register", "counter", "atom-register", "lock", "mixed", "watch"}

// workload is what clients run: it makes operations, applies them through
// an STM, and names the checkers for its history.
type workload interface {
	Name() string
	// Setup creates the refs a client uses (creating joins what exists).
	Setup(ctx context.Context, s *stm.STM) error
	// Next draws the next operation: its f and invoke value.
	Next(r *rand.Rand) (f string, v any)
	// Apply runs an operation and returns its completion value.
	Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error)
	// ReadOnly reports whether f changes nothing (a failed read is a
	// fail, never an info).
	ReadOnly(f string) bool
	// Final lists the reads that end a run, after every fault healed.
	Final(ctx context.Context, s *stm.STM) ([]invocation, error)
	// Checkers check a history of this workload.
	Checkers() []check.Checker
	// Linearizable reports whether the checkers demand linearizable
	// operations (real-time order across processes), beyond snapshot
	// isolation: the backend is then opened for linearizable reads.
	Linearizable() bool
}

// invocation is an operation to run.
type invocation struct {
	F     string
	Value any
}

// newWorkload returns the workload named name; worker numbers the
// process that runs it (so that appended values are unique).
func newWorkload(name string, worker int) (workload, error) {
	switch name {
	case "bank":
		return &bankWorkload{accounts: 5, initial: 100, prefix: "bank/"}, nil
	case "list-append":
		return &listAppend{worker: worker, keys: 8, perKey: 128, prefix: "la/"}, nil
	case "register":
		return &register{keys: 4}, nil
	case "counter":
		return &counter{keys: 2}, nil
	case "atom-register":
		return &atomRegister{keys: 4}, nil
	case "lock":
		return &lockWorkload{worker: worker, keys: 2, lease: check.DefaultLockLease}, nil
	case "mixed":
		return newMixed(worker), nil
	case "watch":
		return newWatchWorkload(worker), nil
	}
	return nil, fmt.Errorf("jepsen: unknown workload %q (want one of %s)", name, strings.Join(Workloads, ", "))
}

// errDeclined ends a transaction that decided not to write (an overdraft,
// a compare-and-set that did not match): a fail, certainly not applied.
var errDeclined = errors.New("declined")

// classify maps an operation's error to its completion type: ok, fail
// (certainly not applied) or info (maybe applied, now or later).
func classify(err error, readOnly bool) check.Type {
	switch {
	case err == nil:
		return check.OK
	case readOnly, errors.Is(err, errDeclined), errors.Is(err, stm.ErrRetryLimit),
		errors.Is(err, backend.ErrNotApplied), errors.Is(err, refs.ErrValidation):
		return check.Fail
	}
	return check.Info
}

// refCache keeps handles by name.
type refCache[T any] struct {
	mu sync.Mutex
	m  map[string]*refs.Ref[T]
}

func (c *refCache[T]) get(ctx context.Context, s *stm.STM, name string, initial T, opts ...refs.Option) (*refs.Ref[T], error) {
	c.mu.Lock()
	r := c.m[name]
	c.mu.Unlock()
	if r != nil {
		return r, nil
	}
	r, err := refs.New(ctx, s, name, initial, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*refs.Ref[T]{}
	}
	c.m[name] = r
	return r, nil
}

// --- bank ---

type bankWorkload struct {
	accounts, initial int
	prefix            string         // of the accounts' names
	second            backend.Driver // if set, odd accounts live there (refs.On)
	rs                []*refs.Ref[int]
}

func (b *bankWorkload) Linearizable() bool { return false }

func (b *bankWorkload) Name() string { return "bank" }

func (b *bankWorkload) Setup(ctx context.Context, s *stm.STM) error {
	b.rs = make([]*refs.Ref[int], b.accounts)
	for i := range b.rs {
		r, err := refs.New(ctx, s, b.prefix+strconv.Itoa(i), b.initial, onSecond(b.second, i)...)
		if err != nil {
			return err
		}
		b.rs[i] = r
	}
	return nil
}

func (b *bankWorkload) Next(r *rand.Rand) (string, any) {
	if r.IntN(2) == 0 {
		return "read", check.BankValue{}
	}
	return "transfer", b.transfer(r)
}

// transfer draws a transfer between two accounts.
func (b *bankWorkload) transfer(r *rand.Rand) check.BankValue {
	from := r.IntN(b.accounts)
	to := (from + 1 + r.IntN(b.accounts-1)) % b.accounts
	return check.BankValue{From: from, To: to, Amount: 1 + r.IntN(5)}
}

func (b *bankWorkload) ReadOnly(f string) bool { return f == "read" }

func (b *bankWorkload) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	if f == "read" {
		var out check.BankValue
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			out.Balances = make(map[int]int, len(b.rs))
			for i, r := range b.rs {
				out.Balances[i] = r.Get(tx)
			}
			return nil
		})
		return out, err
	}
	t := v.(check.BankValue)
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		if b.rs[t.From].Get(tx) < t.Amount {
			return errDeclined
		}
		b.rs[t.From].Alter(tx, func(x int) int { return x - t.Amount })
		b.rs[t.To].Commute(tx, func(x int) int { return x + t.Amount })
		return nil
	})
	return t, err
}

func (b *bankWorkload) Final(context.Context, *stm.STM) ([]invocation, error) {
	return []invocation{{F: "read", Value: check.BankValue{}}}, nil
}

func (b *bankWorkload) Checkers() []check.Checker {
	accts := make([]int, b.accounts)
	for i := range accts {
		accts[i] = i
	}
	return []check.Checker{check.NewBankChecker(accts, b.accounts*b.initial)}
}

// onSecond places ref number i: odd ones on second when it is set
// (refs.On), the rest on the coordinator.
func onSecond(second backend.Driver, i int) []refs.Option {
	if second != nil && i%2 == 1 {
		return []refs.Option{refs.On(second)}
	}
	return nil
}

// --- list-append ---

// listAppend: transactions of 1 to 4 micro-ops, each an append of a
// unique value to a key or a read of a key, over a window of 8 keys that
// moves on every perKey transactions of a process, so lists stay short.
type listAppend struct {
	worker, keys, perKey int
	client               int            // > 0: values are unique to this client of the worker (its own generator)
	prefix               string         // of the keys' names
	second               backend.Driver // if set, odd keys live there (refs.On)
	mu                   sync.Mutex
	n                    int // transactions drawn
	next                 int // next value
	cache                refCache[[]int]
}

func (l *listAppend) Linearizable() bool { return false }

func (l *listAppend) Name() string { return "list-append" }

func (l *listAppend) Setup(context.Context, *stm.STM) error { return nil }

func (l *listAppend) Next(r *rand.Rand) (string, any) { return l.draw(r, false) }

// draw draws a transaction; readOnly: of reads only.
func (l *listAppend) draw(r *rand.Rand, readOnly bool) (string, any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	base := l.n / l.perKey
	l.n++
	mops := make([]check.Mop, 1+r.IntN(4))
	for i := range mops {
		k := base + r.IntN(l.keys)
		if !readOnly && r.IntN(2) == 0 {
			l.next++
			mops[i] = check.Mop{F: "append", K: k, V: l.worker*1_000_000_000 + l.client*10_000_000 + l.next}
		} else {
			mops[i] = check.Mop{F: "r", K: k}
		}
	}
	return "txn", mops
}

func (l *listAppend) ReadOnly(string) bool { return false }

func (l *listAppend) name(k int) string { return l.prefix + strconv.Itoa(k) }

func (l *listAppend) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.([]check.Mop)
	rs := make([]*refs.Ref[[]int], len(in))
	for i, m := range in {
		r, err := l.cache.get(ctx, s, l.name(m.K), []int{}, onSecond(l.second, m.K)...)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errDeclined, err)
		}
		rs[i] = r
	}
	out := make([]check.Mop, len(in))
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		for i, m := range in {
			out[i] = m
			if m.F == "append" {
				rs[i].Alter(tx, func(l []int) []int { return append(slices.Clone(l), m.V) })
				continue
			}
			out[i].R = slices.Clone(rs[i].Get(tx))
			if out[i].R == nil {
				out[i].R = []int{}
			}
		}
		return nil
	})
	return out, err
}

func (l *listAppend) Final(ctx context.Context, s *stm.STM) ([]invocation, error) {
	ks, err := listNumbered(ctx, l.prefix, s.Coordinator(), l.second)
	if err != nil {
		return nil, err
	}
	var out []invocation
	for i := 0; i < len(ks); i += 4 {
		var mops []check.Mop
		for _, k := range ks[i:min(i+4, len(ks))] {
			mops = append(mops, check.Mop{F: "r", K: k})
		}
		out = append(out, invocation{F: "txn", Value: mops})
	}
	return out, nil
}

func (l *listAppend) Checkers() []check.Checker { return []check.Checker{check.NewListAppendChecker()} }

// listNumbered lists the numbers n of the refs named prefix+n in the
// backends (nil ones skipped), sorted.
func listNumbered(ctx context.Context, prefix string, bs ...backend.Driver) ([]int, error) {
	var ks []int
	for _, b := range bs {
		if b == nil {
			continue
		}
		infos, err := b.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		for _, in := range infos {
			if k, err := strconv.Atoi(strings.TrimPrefix(in.Name, prefix)); err == nil {
				ks = append(ks, k)
			}
		}
	}
	sort.Ints(ks)
	return slices.Compact(ks), nil
}

// --- register ---

// register: single-ref reads, writes and compare-and-sets through Dosync,
// on 4 registers that start absent (a nil pointer).
type register struct {
	keys  int
	cache refCache[*int]
}

// Linearizable: the register checker is porcupine's.
func (g *register) Linearizable() bool { return true }

func (g *register) Name() string { return "register" }

func (g *register) Setup(ctx context.Context, s *stm.STM) error {
	for k := range g.keys {
		if _, err := g.cache.get(ctx, s, "reg/"+strconv.Itoa(k), nil); err != nil {
			return err
		}
	}
	return nil
}

func (g *register) Next(r *rand.Rand) (string, any) { return nextRegisterOp(r, g.keys) }

// nextRegisterOp draws a register operation (read, write or cas of a
// value in 0..4) on one of keys registers: the register and atom-register
// workloads' mix.
func nextRegisterOp(r *rand.Rand, keys int) (string, any) {
	k := r.IntN(keys)
	switch r.IntN(3) {
	case 0:
		return "read", check.RegisterValue{K: k}
	case 1:
		return "write", check.RegisterValue{K: k, V: r.IntN(5)}
	}
	return "cas", check.RegisterValue{K: k, Old: r.IntN(5), New: r.IntN(5)}
}

func (g *register) ReadOnly(f string) bool { return f == "read" }

func (g *register) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.(check.RegisterValue)
	r, err := g.cache.get(ctx, s, "reg/"+strconv.Itoa(in.K), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDeclined, err)
	}
	out := in
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		switch f {
		case "read":
			out = check.RegisterValue{K: in.K}
			if p := r.Get(tx); p != nil {
				out.V, out.Found = *p, true
			}
		case "write":
			w := in.V
			r.Set(tx, &w)
		case "cas":
			if p := r.Get(tx); p == nil || *p != in.Old {
				return errDeclined
			}
			w := in.New
			r.Set(tx, &w)
		}
		return nil
	})
	return out, err
}

func (g *register) Final(context.Context, *stm.STM) ([]invocation, error) {
	var out []invocation
	for k := range g.keys {
		out = append(out, invocation{F: "read", Value: check.RegisterValue{K: k}})
	}
	return out, nil
}

func (g *register) Checkers() []check.Checker { return []check.Checker{check.NewLinearChecker()} }

// --- counter ---

// counter: increments by Commute and reads, on 2 counters.
type counter struct {
	keys int
	rs   []*refs.Ref[int]
}

// Linearizable: the counter checker bounds each read by the adds that
// completed before it began, in any process: a real-time order.
func (c *counter) Linearizable() bool { return true }

func (c *counter) Name() string { return "counter" }

func (c *counter) Setup(ctx context.Context, s *stm.STM) error {
	c.rs = make([]*refs.Ref[int], c.keys)
	for k := range c.rs {
		r, err := refs.New(ctx, s, "ctr/"+strconv.Itoa(k), 0)
		if err != nil {
			return err
		}
		c.rs[k] = r
	}
	return nil
}

func (c *counter) Next(r *rand.Rand) (string, any) {
	k := r.IntN(c.keys)
	if r.IntN(3) == 0 {
		return "read", check.CounterValue{K: k}
	}
	return "add", check.CounterValue{K: k, Delta: 1 + r.IntN(5)}
}

func (c *counter) ReadOnly(f string) bool { return f == "read" }

func (c *counter) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.(check.CounterValue)
	out := in
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		if f == "read" {
			out.V = c.rs[in.K].Get(tx)
			return nil
		}
		c.rs[in.K].Commute(tx, func(x int) int { return x + in.Delta })
		return nil
	})
	return out, err
}

func (c *counter) Final(context.Context, *stm.STM) ([]invocation, error) {
	var out []invocation
	for k := range c.keys {
		out = append(out, invocation{F: "read", Value: check.CounterValue{K: k}})
	}
	return out, nil
}

func (c *counter) Checkers() []check.Checker { return []check.Checker{check.NewCounterChecker()} }

// --- atom-register ---

// atomRegister: reads (Deref), writes (Reset) and compare-and-sets
// (CompareAndSet; false is a fail) on 4 refs.Atom[int] that start at 0:
// each change is one compare-and-set on the backend, outside any
// transaction.
type atomRegister struct {
	keys int
	mu   sync.Mutex
	as   map[int]*refs.Atom[int]
}

// Linearizable: the register checker is porcupine's.
func (g *atomRegister) Linearizable() bool { return true }

func (g *atomRegister) Name() string { return "atom-register" }

func (g *atomRegister) atom(ctx context.Context, s *stm.STM, k int) (*refs.Atom[int], error) {
	g.mu.Lock()
	a := g.as[k]
	g.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := refs.NewAtom(ctx, s, "areg/"+strconv.Itoa(k), 0)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.as == nil {
		g.as = map[int]*refs.Atom[int]{}
	}
	if old := g.as[k]; old != nil {
		return old, nil
	}
	g.as[k] = a
	return a, nil
}

func (g *atomRegister) Setup(ctx context.Context, s *stm.STM) error {
	for k := range g.keys {
		if _, err := g.atom(ctx, s, k); err != nil {
			return err
		}
	}
	return nil
}

func (g *atomRegister) Next(r *rand.Rand) (string, any) { return nextRegisterOp(r, g.keys) }

func (g *atomRegister) ReadOnly(f string) bool { return f == "read" }

func (g *atomRegister) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.(check.RegisterValue)
	a, err := g.atom(ctx, s, in.K)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDeclined, err)
	}
	out := in
	switch f {
	case "read":
		x, err := a.Deref(ctx)
		if err != nil {
			return nil, err
		}
		return check.RegisterValue{K: in.K, V: x, Found: true}, nil
	case "write":
		err = a.Reset(ctx, in.V)
	case "cas":
		var ok bool
		ok, err = a.CompareAndSet(ctx, in.Old, in.New)
		if err == nil && !ok {
			err = errDeclined
		}
	}
	return out, err
}

func (g *atomRegister) Final(context.Context, *stm.STM) ([]invocation, error) {
	var out []invocation
	for k := range g.keys {
		out = append(out, invocation{F: "read", Value: check.RegisterValue{K: k}})
	}
	return out, nil
}

func (g *atomRegister) Checkers() []check.Checker {
	return []check.Checker{check.NewLinearCheckerFrom(0)}
}
