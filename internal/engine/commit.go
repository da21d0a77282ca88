package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/detach"
)

// minCleanup is the least time given to cleanup, which goes on after the
// caller's ctx has ended (see settle).
const minCleanup = 5 * time.Second

// item is one ref in the commit.
type item struct {
	e     *entry
	mode  backend.Mode
	value []byte
	base  backend.Version // commutes: the version the value is computed from
}

// group is the items of one backend.
type group struct {
	drv   backend.Driver
	items []*item
	names []string
	round uint32 // the last Lock request sent for the group (its round)
}

// commit publishes the attempt's writes. It returns the commit point (zero
// for a read-only attempt), a *RetryError when the attempt must run again,
// or another error that ends the Dosync. User code run at commit time
// (commute functions, validators) may panic; intents are released first.
func (tx *Tx) commit() (clock.Point, error) {
	tx.mu.Lock()
	doomed := tx.doomed
	tx.committing = true
	tx.mu.Unlock()
	// From here on Tx methods refuse to run, so the sets are ours without
	// the lock, and user code (commute functions, validators) can run
	// without it.
	if doomed != nil {
		return 0, doomed
	}
	if err := tx.ctx.Err(); err != nil {
		return 0, err
	}
	items, err := tx.plan()
	if err != nil || len(items) == 0 {
		if err == nil {
			tx.env.Stats.ReadOnly.Add(1)
			tx.env.Tel.commit(tx.ctx, tx.env.Tel.readOnlyOpts())
		}
		return 0, err
	}
	start := time.Now()
	if err := tx.drawRP(); err != nil { // blind writes read nothing
		return 0, err
	}
	if tx.env.OnePhase != nil && allIn(items, tx.env.Coord.ID()) {
		return tx.commitOnePhase(items, start)
	}
	return tx.commitGeneral(items, start)
}

// plan lists the refs to commit and validates the values known up front.
func (tx *Tx) plan() ([]*item, error) {
	items := tx.planBuf[:0]
	writes := false
	store := tx.itemBuf[:0]
	if len(tx.order) > len(tx.itemBuf) {
		store = make([]item, 0, len(tx.order))
	}
	for _, e := range tx.order {
		store = append(store, item{e: e, base: e.newest})
		it := &store[len(store)-1]
		switch {
		case e.written:
			it.mode, it.value = backend.ModeWrite, e.val
			if err := validate(e, e.val); err != nil {
				return nil, err
			}
		case e.commuted && e.ensured:
			it.mode = backend.ModeEnsureCommute
		case e.commuted:
			it.mode = backend.ModeCommute
		case e.ensured:
			it.mode = backend.ModeEnsure
		default:
			continue
		}
		writes = writes || it.mode.Writes()
		items = append(items, it)
	}
	if !writes {
		return nil, nil // ensures alone protect nothing: a read-only attempt
	}
	return items, nil
}

func validate(e *entry, v []byte) error {
	if e.validate == nil {
		return nil
	}
	return e.validate(v)
}

func allIn(items []*item, id string) bool {
	for _, it := range items {
		if it.e.drv.ID() != id {
			return false
		}
	}
	return true
}

// compute sets a commute item's value from its base version, running the
// transaction's commute functions in order, and validates it.
func (tx *Tx) compute(it *item) error {
	if it.mode != backend.ModeCommute && it.mode != backend.ModeEnsureCommute {
		return nil
	}
	if tx.env.Faults.NoCommuteRecompute {
		it.value = it.e.val
	} else {
		v := it.base.Value
		for _, f := range it.e.commutes {
			var err error
			if v, err = f(v); err != nil {
				return err
			}
		}
		it.value = v
	}
	return validate(it.e, it.value)
}

// settle runs f, the cleanup of a commit (learning its outcome, undoing
// it, rolling it forward), on a ctx of its own that the caller's end does
// not end, bounded by the lease, and waits for it while the caller's ctx
// lasts. It reports whether f returned: if the caller's ctx ended first,
// f goes on in the background and the caller returns at once, so a
// server that stalls never holds a Dosync past its deadline. The
// cleanup's work is done by then or left to others (readers, the
// sweeper), as when it fails.
func (tx *Tx) settle(f func(ctx context.Context)) bool {
	return detach.Run(tx.ctx, max(tx.env.Lease, minCleanup), f)
}

func (tx *Tx) rp4check() clock.Point {
	if tx.env.Faults.SkipReadPointCheck {
		return ^clock.Point(0)
	}
	return tx.rp
}

// commitOnePhase commits with the coordinator's fast path.
func (tx *Tx) commitOnePhase(items []*item, start time.Time) (clock.Point, error) {
	rounds := max(tx.env.CommuteRounds, 1)
	req := backend.OnePhaseRequest{Txn: tx.id, RP: tx.rp4check(), Items: tx.reqBuf[:0]}
	stale := 0
	var wait *Wait
	for {
		req.Time = tx.env.Wall.Now()
		req.Items = req.Items[:0]
		for _, it := range items {
			if err := tx.compute(it); err != nil {
				return 0, err
			}
			oi := backend.OnePhaseItem{Name: it.e.name, Mode: it.mode, Value: it.value, Base: it.base.Point}
			if tx.env.Faults.NoCommuteRecompute && !oi.Mode.Check() {
				oi.Mode = backend.ModeWrite // blind write of the stale value
			}
			req.Items = append(req.Items, oi)
		}
		end := tx.step(SpanOnePhase)
		res, err := tx.env.OnePhase.CommitOnePhase(tx.ctx, req)
		end(err)
		if errors.Is(err, backend.ErrDataLost) {
			return 0, lostUnknown("transaction "+tx.id, err)
		}
		if errors.Is(err, backend.ErrNotApplied) {
			// Certainly not applied (too large, a malformed ref, closed):
			// as on the general path, the error ends the Dosync.
			return 0, fmt.Errorf("txn: commit %s: %w", tx.id, err)
		}
		if err != nil {
			return tx.learn(err, start)
		}
		switch res.Status {
		case backend.Committed:
			tx.env.Stats.OnePhase.Add(1)
			tx.env.Tel.onePhaseDone(tx.ctx, start)
			return tx.committed(res.CP), nil
		case backend.Aborted:
			return 0, retryf("transaction %s was aborted", tx.id)
		}
		recompute := false
		for _, c := range res.Conflicts {
			switch c.Reason {
			case backend.Newer:
				tx.env.Stats.Conflicts.Add(1)
				tx.env.Tel.conflict(tx.ctx, ReasonNewer)
				return 0, retryf("%q has a version at %d, newer than read point %d", c.Name, c.Point, tx.rp)
			case backend.Gone:
				return 0, fmt.Errorf("txn: commit %q: %w", c.Name, backend.ErrNotFound)
			case backend.Stale:
				tx.env.Stats.Recomputes.Add(1)
				recompute = true
				for _, it := range items {
					if it.e.name == c.Name {
						it.base = c.Newest
					}
				}
			case backend.Locked:
				if wait == nil {
					wait = tx.env.Resolver.NewWait(Waiter{Priority: tx.prio})
				}
				if err := tx.clear(wait, tx.env.Coord, c, checked(items, c.Name)); err != nil {
					return 0, err
				}
			}
		}
		if recompute {
			if stale++; stale >= rounds {
				// Others keep committing to the commuted refs between
				// our computing and our commit. Take them with intents
				// instead (the general path), which holds the others
				// off while the values are computed: progress without
				// running the function again (a commute never
				// conflicts, I3). Nothing of this id was applied.
				tx.env.Stats.Escalated.Add(1)
				return tx.commitGeneral(items, start)
			}
		}
	}
}

// checked reports whether the item named name is written or ensured (a
// version committed by another since the read point fails it).
func checked(items []*item, name string) bool {
	for _, it := range items {
		if it.e.name == name {
			return it.mode.Check()
		}
	}
	return false
}

// clear deals with another transaction's intent (see Wait.Clear)
// before the step that met it is repeated, or returns a *RetryError when
// this transaction was aborted by an older one meanwhile.
func (tx *Tx) clear(w *Wait, drv backend.Driver, c backend.Conflict, checked bool) error {
	tx.env.Stats.Waits.Add(1)
	tx.env.Tel.conflict(tx.ctx, ReasonLocked)
	act, err := w.Clear(tx.ctx, drv, c.Name, c.Intent, checked)
	if err != nil {
		return fmt.Errorf("txn: commit %q: %w", c.Name, err)
	}
	if act == Yield {
		tx.env.Stats.Yields.Add(1)
		tx.env.Tel.conflict(tx.ctx, ReasonYield)
		return retryf("transaction %s was aborted by an older transaction while it waited for %q", tx.id, c.Name)
	}
	return nil
}

// learn resolves an unknown outcome of a one-phase commit begun at start
// (I7 in docs/design.md): it aborts the record if the transaction has not
// committed (writing a tombstone if it has none, so a delayed request
// cannot commit it later) and reports what the record says. A committed
// attempt is never run again, and is counted as a one-phase commit.
//
// The lookup goes on when the caller's ctx ends, and the caller does not
// wait for it then: its outcome is unknown to it (ErrOutcomeUnknown,
// wrapping the ctx's error), and the lookup still makes it final.
func (tx *Tx) learn(cause error, start time.Time) (clock.Point, error) {
	tx.env.Stats.Unknown.Add(1)
	rec, err, known := learn(tx.ctx, tx.env.Coord, tx.id, max(tx.env.Lease, minCleanup), func(_ context.Context, _ backend.Record, err error) {
		if err != nil {
			// Logged even when the caller still waits (it gets the error
			// too): once it has gone, nobody else hears of it.
			tx.cleanupFailed("learn the outcome of a failed commit", err)
		}
	})
	if !known || err != nil {
		return 0, outcomeUnknown(tx.ctx, "transaction "+tx.id, cause, known, err)
	}
	if rec.Status == backend.Committed {
		// Counted as the fast path's commit it was (as the general
		// path counts one it had to look up).
		tx.env.Stats.OnePhase.Add(1)
		tx.env.Tel.onePhaseDone(tx.ctx, start)
		return tx.committed(rec.CP), nil
	}
	if err := tx.ctx.Err(); err != nil {
		return 0, err
	}
	return 0, retryf("commit of %s failed and did not apply: %v", tx.id, cause)
}

func (tx *Tx) committed(cp clock.Point) clock.Point {
	tx.env.Stats.Commits.Add(1)
	tx.env.Observe(cp)
	tx.cp = cp
	return cp
}

// commitGeneral commits through a record, intents and roll-forward.
func (tx *Tx) commitGeneral(items []*item, start time.Time) (cp clock.Point, err error) {
	env := tx.env
	// Intents hold the others off from here on, as between processes
	// (older wins, leases): the local turns are given back.
	tx.turnsDone()
	var groups []*group
	byID := map[string]*group{}
	rec := backend.Record{ID: tx.id, RP: tx.rp, Priority: tx.prio.Point, Created: env.Wall.Now()}
	rec.Lease = rec.Created.Add(env.Lease)
	for _, it := range items {
		id := it.e.drv.ID()
		g := byID[id]
		if g == nil {
			g = &group{drv: it.e.drv}
			byID[id] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, it)
		g.names = append(g.names, it.e.name)
		rec.Refs = append(rec.Refs, backend.RefAddr{Backend: id, Name: it.e.name})
	}

	end := tx.step(SpanRecord)
	created, err := env.Coord.PutRecord(tx.ctx, rec)
	end(err)
	if err != nil {
		tx.undo(groups)
		return 0, fmt.Errorf("txn: write record %s: %w", tx.id, err)
	}
	if !created {
		return 0, retryf("record %s exists already", tx.id)
	}
	// From here on every way out that has not committed, a panic in a
	// commute function or validator included, undoes the attempt.
	settled := false
	defer func() {
		if !settled {
			tx.undo(groups)
		}
	}()

	end = tx.step(SpanLock)
	err = tx.lockAll(groups)
	end(err)
	if err != nil {
		return 0, err
	}
	var stage []*group
	for _, g := range groups {
		var commutes bool
		for _, it := range g.items {
			if err := tx.compute(it); err != nil {
				return 0, err
			}
			commutes = commutes || (it.mode.Writes() && it.mode != backend.ModeWrite)
		}
		if commutes {
			stage = append(stage, g)
		}
	}
	if len(stage) > 0 {
		end = tx.step(SpanStage)
		err = each(stage, tx.stage)
		end(err)
		if err != nil {
			return 0, err
		}
	}
	if env.Faults.ReleaseIntentsEarly {
		for _, g := range groups {
			_ = g.drv.Resolve(tx.ctx, backend.ResolveRequest{Txn: tx.id, Names: g.names}) // a deliberate bug for tests: its outcome does not matter
		}
	}

	end = tx.step(SpanCommitRecord)
	final, err := env.Coord.CommitRecord(tx.ctx, tx.id)
	end(err)
	if errors.Is(err, backend.ErrDataLost) {
		// Not undone: the backend refuses every call now, and whether
		// the record committed is unknown (lostUnknown).
		return 0, lostUnknown("transaction "+tx.id, err)
	}
	if errors.Is(err, backend.ErrNotApplied) {
		// Certainly not committed (refused, closed): undo.
		return 0, fmt.Errorf("txn: commit %s: %w", tx.id, err)
	}
	if err != nil {
		env.Stats.Unknown.Add(1)
		cause := err
		// Learn the outcome, then finish or undo the commit, in one go:
		// what the caller no longer waits for is done in the background.
		var aerr error
		var known bool
		final, aerr, known = learn(tx.ctx, env.Coord, tx.id, max(env.Lease, minCleanup), func(ctx context.Context, rec backend.Record, err error) {
			switch {
			case err != nil: // the outcome is unknown: leave it to the lease
				tx.cleanupFailed("learn the outcome of a failed commit", err)
			case rec.Status == backend.Committed:
				tx.finishWith(ctx, groups, rec)
			default:
				tx.undoWith(ctx, groups)
			}
		})
		settled = true
		switch {
		case !known || aerr != nil:
			return 0, outcomeUnknown(tx.ctx, "transaction "+tx.id, cause, known, aerr)
		case final.Status != backend.Committed:
			env.Stats.Yields.Add(1)
			env.Tel.conflict(tx.ctx, ReasonYield)
			return 0, retryf("transaction %s was aborted by another before it committed", tx.id)
		}
		env.Stats.General.Add(1)
		env.Tel.generalDone(tx.ctx, start)
		return tx.committed(final.CP), nil
	}
	if final.Status != backend.Committed {
		env.Stats.Yields.Add(1)
		env.Tel.conflict(tx.ctx, ReasonYield)
		return 0, retryf("transaction %s was aborted by another before it committed", tx.id)
	}
	settled = true
	env.Stats.General.Add(1)
	env.Tel.generalDone(tx.ctx, start)
	end = tx.step(SpanResolve)
	tx.finish(groups, final)
	end(nil)
	return tx.committed(final.CP), nil
}

// lockAll takes intents on every group's refs, or returns why it could
// not. The groups are put in the order of their backends' IDs, and each
// group's Lock is first sent at once, all in parallel, waiting for nobody.
// When some group meets another transaction's intent, the groups after the
// first such one give back what they took, and the rest are locked one
// group at a time, in order, each waiting for the holders it meets (a
// backend's Lock is all or nothing, so nothing is held there meanwhile).
// So a transaction waits only while it holds intents on backends ordered
// before the one it waits on, and no two transactions can wait on each
// other in a cycle: a wait always ends, and a commute can wait for another
// commute instead of running its function again (I3).
func (tx *Tx) lockAll(groups []*group) error {
	slices.SortFunc(groups, func(a, b *group) int { return strings.Compare(a.drv.ID(), b.drv.ID()) })
	locked := make([][]backend.Conflict, len(groups))
	err := each(groups, func(g *group) error {
		var err error
		locked[slices.Index(groups, g)], err = tx.tryLock(g)
		return err
	})
	if err != nil {
		return err
	}
	first := slices.IndexFunc(locked, func(cs []backend.Conflict) bool { return len(cs) > 0 })
	if first < 0 {
		return nil
	}
	var after []*group
	for i := first + 1; i < len(groups); i++ {
		if len(locked[i]) == 0 {
			after = append(after, groups[i])
		}
	}
	// A give-back names the round it undoes, so that a delayed copy of it
	// cannot drop the intents a later round takes again.
	if err := each(after, func(g *group) error {
		req := backend.ResolveRequest{Txn: tx.id, Round: g.round, Names: g.names}
		if tx.env.Faults.GiveBackEveryRound {
			req.Round = 0
		}
		return g.drv.Resolve(tx.ctx, req)
	}); err != nil {
		return fmt.Errorf("txn: give back intents of %s: %w", tx.id, err)
	}
	for i := first; i < len(groups); i++ {
		if err := tx.lockWaiting(groups[i], locked[i]); err != nil {
			return err
		}
	}
	return nil
}

// tryLock sends one Lock for g's refs. It returns nil when every intent is
// taken, the intents of others that blocked it (nothing taken), or an
// error: a *RetryError when a ref has a newer version than the read point.
func (tx *Tx) tryLock(g *group) ([]backend.Conflict, error) {
	g.round++
	req := backend.LockRequest{Txn: tx.id, Coord: tx.env.Coord.ID(), RP: tx.rp4check(), Round: g.round}
	for _, it := range g.items {
		req.Items = append(req.Items, backend.LockItem{Name: it.e.name, Mode: it.mode, Value: it.value})
	}
	res, err := g.drv.Lock(tx.ctx, req)
	if err != nil {
		return nil, fmt.Errorf("txn: lock %v: %w", g.names, err)
	}
	if len(res.Conflicts) == 0 {
		for i, it := range g.items {
			it.base = res.Newest[i]
		}
		return nil, nil
	}
	var locked []backend.Conflict
	for _, c := range res.Conflicts {
		switch c.Reason {
		case backend.Newer:
			tx.env.Stats.Conflicts.Add(1)
			tx.env.Tel.conflict(tx.ctx, ReasonNewer)
			return nil, retryf("%q has a version at %d, newer than read point %d", c.Name, c.Point, tx.rp)
		case backend.Gone:
			return nil, fmt.Errorf("txn: lock %q: %w", c.Name, backend.ErrNotFound)
		case backend.Locked:
			locked = append(locked, c)
		}
	}
	return locked, nil
}

// lockWaiting locks g's refs, waiting for the holders of the intents it
// meets (locked: those met by a Lock already sent, if any). Each round
// waits for holders that then finished, so it goes on for as long as ctx
// allows: others make progress meanwhile, and an intent whose holder died
// is cleared once its lease ends.
func (tx *Tx) lockWaiting(g *group, locked []backend.Conflict) error {
	wait := tx.env.Resolver.NewWait(Waiter{Priority: tx.prio, Record: tx.id})
	for round := 0; ; round++ {
		if round > 0 || locked == nil {
			var err error
			if locked, err = tx.tryLock(g); err != nil || locked == nil {
				return err
			}
		}
		for _, c := range locked {
			if err := tx.clear(wait, g.drv, c, checked(g.items, c.Name)); err != nil {
				return err
			}
		}
	}
}

// stage stores one backend's computed commute values into its intents.
func (tx *Tx) stage(g *group) error {
	var items []backend.StageItem
	for _, it := range g.items {
		if it.mode == backend.ModeCommute || it.mode == backend.ModeEnsureCommute {
			items = append(items, backend.StageItem{Name: it.e.name, Value: it.value})
		}
	}
	ok, err := g.drv.Stage(tx.ctx, tx.id, items)
	if err != nil {
		return fmt.Errorf("txn: stage %v: %w", g.names, err)
	}
	if !ok {
		return retryf("intents of %s were taken away before it committed", tx.id)
	}
	return nil
}

// undo aborts the attempt's record and rolls its intents back. Failures are
// left to the lease: whoever meets an intent after it resolves it. The
// caller waits for it while its ctx lasts (see settle).
func (tx *Tx) undo(groups []*group) {
	tx.settle(func(ctx context.Context) { tx.undoWith(ctx, groups) })
}

func (tx *Tx) undoWith(ctx context.Context, groups []*group) {
	rec, err := tx.env.Coord.AbortRecord(ctx, tx.id)
	if err != nil {
		tx.cleanupFailed("abort the record", err)
		return
	}
	if rec.Status == backend.Committed {
		tx.finishWith(ctx, groups, rec) // only a commit we did not know about
		return
	}
	if err := each(groups, func(g *group) error {
		return g.drv.Resolve(ctx, backend.ResolveRequest{Txn: tx.id, Names: g.names})
	}); err != nil {
		tx.cleanupFailed("roll back the intents", err)
		return
	}
	if err := tx.env.Coord.DeleteRecord(ctx, tx.id, TombstoneKeep); err != nil {
		tx.cleanupFailed("delete the aborted record", err)
	}
}

// cleanupFailed logs a failed step of undo or finish, which nobody waits
// for: what it left is resolved by whoever meets it, or the sweeper.
func (tx *Tx) cleanupFailed(step string, err error) {
	tx.env.Log().Warn("epochal: a commit's cleanup failed; readers and the sweeper finish it", "txn", tx.id, "step", step, "coordinator", tx.env.Coord.ID(), "err", err)
}

// finish rolls a committed transaction's intents forward and deletes its
// record once none is left. Failures are left to helpers and the sweeper:
// readers already see the committed values through the record. The
// caller waits for it while its ctx lasts (see settle).
func (tx *Tx) finish(groups []*group, rec backend.Record) {
	tx.settle(func(ctx context.Context) { tx.finishWith(ctx, groups, rec) })
}

func (tx *Tx) finishWith(ctx context.Context, groups []*group, rec backend.Record) {
	if err := each(groups, func(g *group) error {
		return g.drv.Resolve(ctx, backend.ResolveRequest{Txn: tx.id, Commit: true, CP: rec.CP, Time: rec.Created, Names: g.names})
	}); err != nil {
		tx.cleanupFailed("roll the intents forward", err)
		return
	}
	if err := tx.env.Coord.DeleteRecord(ctx, tx.id, 0); err != nil {
		tx.cleanupFailed("delete the committed record", err)
	}
}

// each runs f on every group, in parallel when there are several, and joins
// their errors.
func each(groups []*group, f func(*group) error) error {
	if len(groups) == 1 {
		return f(groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(g)
		}()
	}
	wg.Wait()
	// A retry wins over other errors only when nothing worse happened.
	var retry error
	var others []error
	for _, err := range errs {
		switch {
		case err == nil:
		case IsRetry(err):
			retry = err
		default:
			others = append(others, err)
		}
	}
	if len(others) > 0 {
		return errors.Join(others...)
	}
	return retry
}
