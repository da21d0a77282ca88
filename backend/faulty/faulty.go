// Package faulty wraps any backend driver and injects faults into its
// calls, in the way pebble's vfs/errorfs wraps a file system: a call may
// fail before it reaches the store (nothing applied), fail after it was
// applied (an unknown outcome the engine must resolve), or the whole
// process may "crash", after which nothing it sends arrives.
//
// # Usage
//
//	f := faulty.Wrap(mem.New())
//	f.SetHook(func(c faulty.Call) faulty.Fault {
//		if c.Op == faulty.OpCommitRecord { return faulty.FailAfter }
//		return faulty.Pass
//	})
//	s, _ := stm.Open(ctx, f)
package faulty

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// ErrInjected is the error of every injected fault. It does not wrap
// backend.ErrNotApplied: like a timeout, it leaves the outcome unknown to the
// caller.
var ErrInjected = errors.New("faulty: injected fault")

// Op names a driver method.
type Op string

// Driver methods that change state. Reads have names too, so hooks can
// fail them.
const (
	OpPutRecord      Op = "PutRecord"
	OpCommitRecord   Op = "CommitRecord"
	OpAbortRecord    Op = "AbortRecord"
	OpDeleteRecord   Op = "DeleteRecord"
	OpCreate         Op = "Create"
	OpLock           Op = "Lock"
	OpStage          Op = "Stage"
	OpResolve        Op = "Resolve"
	OpSetMeta        Op = "SetMeta"
	OpCommitOnePhase Op = "CommitOnePhase"
	OpRead           Op = "Read"
	OpReadPoint      Op = "ReadPoint"
	OpRecords        Op = "Records"
	OpListRecords    Op = "ListRecords"
	OpVersions       Op = "Versions"
	OpList           Op = "List"
	OpMeta           Op = "Meta"
	OpSubscribe      Op = "Subscribe"
)

// Mutating reports whether op changes state.
func (op Op) Mutating() bool {
	switch op {
	case OpPutRecord, OpCommitRecord, OpAbortRecord, OpDeleteRecord, OpCreate, OpLock, OpStage, OpResolve, OpSetMeta, OpCommitOnePhase:
		return true
	}
	return false
}

// Fault is what happens to one call.
type Fault int

// Faults.
const (
	Pass       Fault = iota // the call goes through
	FailBefore              // error; the store never sees the call
	FailAfter               // the store applies the call; the caller gets an error
	Crash                   // the process dies before the call: it and every later call fail
	CrashAfter              // the call is applied, then the process dies
	// Stale: a lookup is served from a copy that lags behind the store, as
	// a ZooKeeper follower without sync (or a Redis replica) may serve it:
	// Records reports every pending record as missing (its creation not
	// yet applied there). Other calls pass.
	Stale
	// LostAfter: the call is applied, then the caller gets an error
	// wrapping backend.ErrDataLost, as a client library's resend of it
	// meets a server that lost what the first copy applied (a Redis
	// failover to a replica the write had not reached).
	LostAfter
	// Duplicate: the call is applied, and a copy of it is applied once
	// more right after the next mutating call the wrapper passes, as a
	// client's retry whose first copy was held up in the network delivers
	// it late. Only Resolve is duplicated (its copy returns nothing to
	// anyone); other calls pass.
	Duplicate
)

// Call describes a call to the hook.
type Call struct {
	Op Op
	// N counts the wrapper's mutating calls so far, this one included (0
	// for reads).
	N int
}

// Driver is a wrapped driver. Wrap returns it, with CommitOnePhase only if
// the inner driver has one.
type Driver struct {
	inner backend.Driver

	mu      sync.Mutex
	hook    func(Call) Fault
	n       int
	crashed bool
	late    []func() error // Duplicate copies, applied after the next mutating call
}

// OnePhaseDriver is a wrapped driver whose inner driver has the fast path.
type OnePhaseDriver struct {
	*Driver
	op backend.OnePhase
}

// Wrapped is what Wrap returns: *Driver or *OnePhaseDriver.
type Wrapped interface {
	backend.Driver
	SetHook(func(Call) Fault)
	Crashed() bool
	Calls() int
}

var (
	_ Wrapped          = (*Driver)(nil)
	_ backend.OnePhase = (*OnePhaseDriver)(nil)
)

// Wrap returns inner with fault injection; with no hook set every call
// passes.
func Wrap(inner backend.Driver) Wrapped {
	d := &Driver{inner: inner}
	if op, ok := inner.(backend.OnePhase); ok {
		return &OnePhaseDriver{Driver: d, op: op}
	}
	return d
}

// SetHook sets the function that decides each call's fault (nil: pass all)
// and resets the call count. The hook is called concurrently by concurrent
// calls, without the wrapper's lock: it may block to pause a caller.
func (d *Driver) SetHook(h func(Call) Fault) {
	d.mu.Lock()
	d.hook, d.n = h, 0
	d.mu.Unlock()
}

// Crashed reports whether the wrapper has crashed.
func (d *Driver) Crashed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.crashed
}

// Calls returns the number of mutating calls since the hook was set.
func (d *Driver) Calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// do runs one call through the hook.
func (d *Driver) do(op Op, f func() error) error {
	_, err := d.doFault(op, f)
	return err
}

// doFault runs one call through the hook and also returns the fault.
func (d *Driver) doFault(op Op, f func() error) (Fault, error) {
	d.mu.Lock()
	if d.crashed {
		d.mu.Unlock()
		return Crash, fmt.Errorf("%s: process crashed: %w", op, ErrInjected)
	}
	c := Call{Op: op}
	if op.Mutating() {
		d.n++
		c.N = d.n
	}
	hook := d.hook
	d.mu.Unlock()
	// The hook runs without the lock: it may block (to pause a caller
	// mid-commit) while other calls go on.
	fault := Pass
	if hook != nil {
		fault = hook(c)
	}
	if fault == Crash {
		d.mu.Lock()
		d.crashed = true
		d.mu.Unlock()
	}
	switch fault {
	case FailBefore, Crash:
		return fault, fmt.Errorf("%s (call %d): %w", op, c.N, ErrInjected)
	case LostAfter:
		if err := f(); err != nil {
			return fault, err
		}
		return fault, fmt.Errorf("%s (call %d) applied, then its resend: %w", op, c.N, backend.ErrDataLost)
	case FailAfter, CrashAfter:
		if err := f(); err != nil {
			return fault, err
		}
		if fault == CrashAfter {
			d.mu.Lock()
			d.crashed = true
			d.mu.Unlock()
		}
		return fault, fmt.Errorf("%s (call %d) applied, then: %w", op, c.N, ErrInjected)
	}
	err := f()
	if fault == Duplicate && op == OpResolve {
		d.mu.Lock()
		d.late = append(d.late, f)
		d.mu.Unlock()
	} else if op.Mutating() {
		d.mu.Lock()
		late := d.late
		d.late = nil
		d.mu.Unlock()
		for _, f := range late {
			_ = f() // a late copy's outcome reaches nobody
		}
	}
	return fault, err
}

// ID is the inner driver's: the wrapper reaches the same storage.
func (d *Driver) ID() string { return d.inner.ID() }

// Close closes the inner driver.
func (d *Driver) Close() error { return d.inner.Close() }

func (d *Driver) ReadPoint(ctx context.Context) (p clock.Point, err error) {
	err = d.do(OpReadPoint, func() (e error) { p, e = d.inner.ReadPoint(ctx); return })
	return
}

func (d *Driver) PutRecord(ctx context.Context, r backend.Record) (ok bool, err error) {
	err = d.do(OpPutRecord, func() (e error) { ok, e = d.inner.PutRecord(ctx, r); return })
	return
}

func (d *Driver) CommitRecord(ctx context.Context, id string) (r backend.Record, err error) {
	err = d.do(OpCommitRecord, func() (e error) { r, e = d.inner.CommitRecord(ctx, id); return })
	return
}

func (d *Driver) AbortRecord(ctx context.Context, id string) (r backend.Record, err error) {
	err = d.do(OpAbortRecord, func() (e error) { r, e = d.inner.AbortRecord(ctx, id); return })
	return
}

func (d *Driver) Records(ctx context.Context, ids []string) (rs []backend.Record, err error) {
	fault, err := d.doFault(OpRecords, func() (e error) { rs, e = d.inner.Records(ctx, ids); return })
	if fault == Stale && err == nil {
		for i := range rs {
			if rs[i].Status == backend.Pending {
				rs[i] = backend.Record{ID: rs[i].ID, Status: backend.Missing}
			}
		}
	}
	return rs, err
}

func (d *Driver) ListRecords(ctx context.Context) (rs []backend.Record, err error) {
	err = d.do(OpListRecords, func() (e error) { rs, e = d.inner.ListRecords(ctx); return })
	return
}

func (d *Driver) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	return d.do(OpDeleteRecord, func() error { return d.inner.DeleteRecord(ctx, id, keep) })
}

func (d *Driver) Create(ctx context.Context, req backend.CreateRequest) (r backend.CreateResult, err error) {
	err = d.do(OpCreate, func() (e error) { r, e = d.inner.Create(ctx, req); return })
	return
}

func (d *Driver) Read(ctx context.Context, req backend.ReadRequest) (r backend.ReadResult, err error) {
	err = d.do(OpRead, func() (e error) { r, e = d.inner.Read(ctx, req); return })
	return
}

func (d *Driver) Versions(ctx context.Context, name string) (r backend.VersionsResult, err error) {
	err = d.do(OpVersions, func() (e error) { r, e = d.inner.Versions(ctx, name); return })
	return
}

func (d *Driver) List(ctx context.Context, prefix string) (r []backend.RefInfo, err error) {
	err = d.do(OpList, func() (e error) { r, e = d.inner.List(ctx, prefix); return })
	return
}

func (d *Driver) Lock(ctx context.Context, req backend.LockRequest) (r backend.LockResult, err error) {
	err = d.do(OpLock, func() (e error) { r, e = d.inner.Lock(ctx, req); return })
	return
}

func (d *Driver) Stage(ctx context.Context, txn string, items []backend.StageItem) (ok bool, err error) {
	err = d.do(OpStage, func() (e error) { ok, e = d.inner.Stage(ctx, txn, items); return })
	return
}

func (d *Driver) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	return d.do(OpResolve, func() error { return d.inner.Resolve(ctx, req) })
}

func (d *Driver) Meta(ctx context.Context, name string) (m []byte, v uint64, err error) {
	err = d.do(OpMeta, func() (e error) { m, v, e = d.inner.Meta(ctx, name); return })
	return
}

func (d *Driver) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (ok bool, err error) {
	err = d.do(OpSetMeta, func() (e error) { ok, e = d.inner.SetMeta(ctx, name, expect, meta); return })
	return
}

func (d *Driver) Subscribe(ctx context.Context, name string) (s backend.Subscription, err error) {
	err = d.do(OpSubscribe, func() (e error) { s, e = d.inner.Subscribe(ctx, name); return })
	return
}

// CommitOnePhase runs the inner driver's fast path.
func (d *OnePhaseDriver) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (r backend.OnePhaseResult, err error) {
	err = d.do(OpCommitOnePhase, func() (e error) { r, e = d.op.CommitOnePhase(ctx, req); return })
	return
}
