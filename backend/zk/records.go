package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

// Records live in two directories: {root}/t holds the general path's
// records (pending, committed, aborted), {root}/o the one-phase commits'.
// An aborted tombstone, written when AbortRecord finds no record, goes in
// both, so that neither a late PutRecord nor a late one-phase Multi (each
// creates its node) can succeed after it.

func (b *Backend) recPath(id string) string { return b.recsP + "/" + escape(id) }
func (b *Backend) onePath(id string) string { return b.oneP + "/" + escape(id) }

// tombstoneKeep is how long an aborted tombstone is kept, and how long,
// by the server's clock, a record with an Expires stays after its last
// write (a variable for tests).
var tombstoneKeep = time.Minute

// lookup reads a record from both directories (one round trip).
func (b *Backend) lookup(ctx context.Context, id string) (rec *recNode, version int32, one bool, err error) {
	paths := []string{b.recPath(id), b.onePath(id)}
	data, stats, err := b.get(ctx, paths)
	if err != nil {
		return nil, 0, false, err
	}
	for i := range paths {
		if stats[i] != nil {
			r, err := decodeRec(id, paths[i], data[i], stats[i])
			return r, stats[i].Version, i == 1, err
		}
	}
	return nil, 0, false, nil
}

// PutRecord creates a pending record if none exists.
func (b *Backend) PutRecord(ctx context.Context, r backend.Record) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	n := &recNode{Status: int(backend.Pending), RP: uint64(r.RP), Prio: uint64(r.Priority),
		Lease: r.Lease.UnixMilli(), Created: r.Created.UnixMilli(), Refs: r.Refs}
	_, err := b.multi(ctx, []any{&gozk.CreateRequest{Path: b.recPath(r.ID), Data: n.encode(), Acl: b.acl}})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, gozk.ErrNodeExists) {
		return false, fmt.Errorf("zk: put record %s: %w", r.ID, err)
	}
	old, _, _, err := b.lookup(ctx, r.ID)
	if err != nil {
		return false, fmt.Errorf("zk: put record %s: %w", r.ID, err)
	}
	// The same request again (its first reply was lost): created.
	same := old != nil && old.Status == int(backend.Pending) && old.RP == n.RP && old.Prio == n.Prio
	return same, nil
}

// CommitRecord marks a pending record committed, touching the clock in the
// same Multi: the commit point is that Multi's zxid.
func (b *Backend) CommitRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	for {
		r, v, _, err := b.lookup(ctx, id)
		if err != nil {
			return backend.Record{}, fmt.Errorf("zk: commit record %s: %w", id, err)
		}
		if r == nil {
			return backend.Record{ID: id, Status: backend.Missing}, nil
		}
		if r.Status != int(backend.Pending) {
			return r.record(id), nil
		}
		c := *r
		c.Status, c.CP = int(backend.Committed), self
		res, err := b.multi(ctx, []any{&gozk.SetDataRequest{Path: b.recPath(id), Data: c.encode(), Version: v}, b.clockOp()})
		if errors.Is(err, gozk.ErrBadVersion) {
			continue
		}
		if err != nil {
			return backend.Record{}, fmt.Errorf("zk: commit record %s: %w", id, err)
		}
		c.CP = uint64(res[0].Stat.Mzxid)
		return c.record(id), nil
	}
}

// AbortRecord aborts a pending record or writes an aborted tombstone.
func (b *Backend) AbortRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	for {
		r, v, one, err := b.lookup(ctx, id)
		if err != nil {
			return backend.Record{}, fmt.Errorf("zk: abort record %s: %w", id, err)
		}
		var ops []any
		switch {
		case r == nil:
			now := time.Now()
			t := &recNode{Status: int(backend.Aborted), Lease: now.UnixMilli(), Created: now.UnixMilli(), Expires: now.Add(tombstoneKeep).UnixMilli()}
			ops = []any{
				&gozk.CreateRequest{Path: b.recPath(id), Data: t.encode(), Acl: b.acl},
				&gozk.CreateRequest{Path: b.onePath(id), Data: t.encode(), Acl: b.acl},
			}
			r = t
		case r.Status == int(backend.Pending) && !one:
			c := *r
			c.Status = int(backend.Aborted)
			ops = []any{&gozk.SetDataRequest{Path: b.recPath(id), Data: c.encode(), Version: v}}
			r = &c
		default:
			return r.record(id), nil
		}
		_, err = b.multi(ctx, ops)
		if errors.Is(err, gozk.ErrBadVersion) || errors.Is(err, gozk.ErrNodeExists) {
			continue
		}
		if err != nil {
			return backend.Record{}, fmt.Errorf("zk: abort record %s: %w", id, err)
		}
		return r.record(id), nil
	}
}

// Records looks records up, concurrently.
func (b *Backend) Records(ctx context.Context, ids []string) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	out := make([]backend.Record, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, _, err := b.lookup(ctx, id)
			switch {
			case err != nil:
				errs[i] = err
			case r == nil:
				out[i] = backend.Record{ID: id, Status: backend.Missing}
			default:
				out[i] = r.record(id)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("zk: records: %w", err)
	}
	return out, nil
}

// ListRecords returns the general path's records and the tombstones,
// sorted by id, deleting those whose time is up. Now and then it also
// sweeps the one-phase records that their clients left behind. Read-only
// (Config.ReadOnly), it deletes and sweeps nothing, and lists every record
// stored, those whose time is up included (until a writing backend
// deletes them).
func (b *Backend) ListRecords(ctx context.Context) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	recs, err := b.scan(ctx, b.recsP)
	if err != nil {
		return nil, fmt.Errorf("zk: list records: %w", err)
	}
	if err := b.sweepOnePhase(ctx); err != nil {
		return nil, err
	}
	return recs, nil
}

// sweepOnePhase deletes the one-phase records older than OnePhaseKeep
// (those of clients that died, or never learned their outcome), at most
// every half OnePhaseKeep in this process. gcLoop calls it, so every open
// backend sweeps, with or without an STM's recovery sweeper; ListRecords
// too. A read-only backend (Config.ReadOnly) never sweeps.
func (b *Backend) sweepOnePhase(ctx context.Context) error {
	if b.cfg.ReadOnly {
		return nil
	}
	b.gcMu.Lock()
	due := time.Since(b.lastScan) > b.cfg.OnePhaseKeep/2
	if due {
		b.lastScan = time.Now()
	}
	b.gcMu.Unlock()
	if !due {
		return nil
	}
	if _, err := b.scan(ctx, b.oneP); err != nil {
		return fmt.Errorf("zk: sweep one-phase records: %w", err)
	}
	return nil
}

// scan reads every record under dir and deletes the expired ones: those
// with an Expires in the past that nobody wrote for tombstoneKeep, and
// one-phase commit records older than OnePhaseKeep. Read-only
// (Config.ReadOnly) it writes nothing: it neither learns the server's
// time (a write) nor deletes, and returns every record.
//
// Ages are judged by the server's clock (a node's Ctime and Mtime against
// the Mtime of a write to dir made for the purpose), never by comparing
// another process's clock with this one's: a process whose clock runs
// ahead must not delete a tombstone another wrote a moment ago, which a
// delayed request of the aborted transaction would then not meet (I7).
// Expires, written by the writer's clock, may only make a record live
// longer.
func (b *Backend) scan(ctx context.Context, dir string) ([]backend.Record, error) {
	var kids []string
	if err := b.wait(ctx, func() (err error) { kids, _, err = b.conn.Children(dir); return err }); err != nil {
		return nil, err
	}
	sort.Strings(kids)
	wall := time.Now
	if b.wall != nil {
		wall = b.wall
	}
	local := wall().UnixMilli()
	var now int64 // the server's clock
	if !b.cfg.ReadOnly {
		if err := b.wait(ctx, func() error {
			st, err := b.conn.Set(dir, nil, -1)
			if err == nil {
				now = st.Mtime
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	var out []backend.Record
	for i := 0; i < len(kids); i += 64 {
		chunk := kids[i:min(i+64, len(kids))]
		paths := make([]string, len(chunk))
		for j, k := range chunk {
			paths[j] = dir + "/" + k
		}
		data, stats, err := b.get(ctx, paths)
		if err != nil {
			return nil, err
		}
		for j, k := range chunk {
			if stats[j] == nil {
				continue
			}
			id, ok := unescape(k)
			if !ok {
				continue
			}
			r, err := decodeRec(id, paths[j], data[j], stats[j])
			if err != nil && dir == b.oneP {
				// Not ours to judge: it must not stop the sweep.
				if _, warned := b.undecodable.LoadOrStore(paths[j], true); !warned {
					b.logger().Warn("epochal: a one-phase record that cannot be decoded is left in place (said once per record)", "root", b.root, "path", paths[j], "err", err)
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			expired := !b.cfg.ReadOnly && (r.Expires > 0 && r.Expires < local && stats[j].Mtime+tombstoneKeep.Milliseconds() < now ||
				dir == b.oneP && r.Status == int(backend.Committed) && stats[j].Ctime+b.cfg.OnePhaseKeep.Milliseconds() < now)
			if expired {
				if err := b.wait(ctx, func() error { return b.conn.Delete(paths[j], stats[j].Version) }); err != nil && !gone(err) {
					b.logger().Debug("epochal: could not delete an expired record; a later sweep tries again", "root", b.root, "path", paths[j], "err", err)
				}
				continue
			}
			if dir == b.recsP {
				out = append(out, r.record(id))
			}
		}
	}
	return out, nil
}

// DeleteRecord removes a record now (keep 0), or marks it to be deleted
// after keep, never later than a time already set.
func (b *Backend) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	paths := []string{b.recPath(id), b.onePath(id)}
	for {
		data, stats, err := b.get(ctx, paths)
		if err != nil {
			return fmt.Errorf("zk: delete record %s: %w", id, err)
		}
		var ops []any
		for i, p := range paths {
			if stats[i] == nil {
				continue
			}
			if keep <= 0 {
				ops = append(ops, &gozk.DeleteRequest{Path: p, Version: stats[i].Version})
				continue
			}
			r, err := decodeRec(id, p, data[i], stats[i])
			if err != nil {
				return err
			}
			exp := time.Now().Add(keep).UnixMilli()
			if r.Expires != 0 && r.Expires <= exp {
				continue
			}
			r.Expires = exp
			ops = append(ops, &gozk.SetDataRequest{Path: p, Data: r.encode(), Version: stats[i].Version})
		}
		if len(ops) == 0 {
			return nil
		}
		_, err = b.multi(ctx, ops)
		if errors.Is(err, gozk.ErrBadVersion) || errors.Is(err, gozk.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("zk: delete record %s: %w", id, err)
		}
		return nil
	}
}

// forget queues the record of a one-phase commit whose outcome its client
// knows, for deletion by gcLoop after knownKeep (long enough for a repeated
// request to find it; nobody else can ask for it), or at Close.
func (b *Backend) forget(id string) {
	b.gcMu.Lock()
	b.gcQueue = append(b.gcQueue, gcItem{path: b.onePath(id), at: time.Now().Add(knownKeep)})
	b.gcMu.Unlock()
}

// knownKeep is how long a one-phase record whose outcome its client knows
// is kept.
const knownKeep = 5 * time.Second

// closeFlush bounds how long Close spends deleting the queued records.
const closeFlush = 5 * time.Second

type gcItem struct {
	path string
	at   time.Time
}

const gcBatch = 256

// gcLoop deletes queued one-phase records when their time comes, in
// batches: one Multi of deletes per gcBatch records; and sweeps the
// records others left behind (sweepOnePhase), the first time right after
// Open (not read-only: a read-only backend deletes only the records of
// commits it made itself). When the backend closes it deletes every
// record still queued: this process will not repeat those requests, and a
// process that exits cleanly leaves no one-phase record behind.
func (b *Backend) gcLoop() {
	defer b.wg.Done()
	t := time.NewTicker(gcTick)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.done
		cancel() // a sweep in progress ends: Close does not wait for it
	}()
	for {
		select {
		case <-b.done:
			b.flushGC(min(b.cfg.SessionTimeout, closeFlush), true)
			return
		case <-t.C:
		}
		b.flushGC(b.cfg.SessionTimeout, false)
		sctx, scancel := context.WithTimeout(ctx, b.cfg.SessionTimeout)
		if err := b.sweepOnePhase(sctx); err != nil && ctx.Err() == nil {
			// Tried again on a later tick, or by another process.
			b.logger().Warn("epochal: ZooKeeper backend's sweep of one-phase records failed; the next tick tries again", "root", b.root, "err", err)
		}
		scancel()
	}
}

// gcTick is how often gcLoop looks at its queue.
const gcTick = 500 * time.Millisecond

// flushGC deletes the queued records whose time has come (all of them
// with all), within limit.
func (b *Backend) flushGC(limit time.Duration, all bool) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	now := time.Now()
	for ctx.Err() == nil {
		b.gcMu.Lock()
		n := 0
		for n < len(b.gcQueue) && n < gcBatch && (all || b.gcQueue[n].at.Before(now)) {
			n++
		}
		batch := append([]gcItem(nil), b.gcQueue[:n]...)
		b.gcQueue = b.gcQueue[n:]
		b.gcMu.Unlock()
		if n == 0 {
			return
		}
		ops := make([]any, len(batch))
		for i, it := range batch {
			ops[i] = &gozk.DeleteRequest{Path: it.path, Version: -1}
		}
		if _, err := b.multi(ctx, ops); err != nil {
			// One is gone already (or the connection failed): one by one.
			for _, it := range batch {
				if err := b.wait(ctx, func() error { return b.conn.Delete(it.path, -1) }); err != nil && !gone(err) {
					b.logger().Debug("epochal: could not delete a one-phase record at Close; a sweep deletes it later", "root", b.root, "path", it.path, "err", err)
				}
			}
		}
	}
}

// gone reports whether a delete failed because the node was already
// deleted or changed (by another sweeper): nothing to log.
func gone(err error) bool {
	return errors.Is(err, gozk.ErrNoNode) || errors.Is(err, gozk.ErrBadVersion)
}
