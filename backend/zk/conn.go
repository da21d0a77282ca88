package zk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

// wait runs a blocking go-zookeeper call (see the package function wait)
// once the connection has a session. A call made while go-zookeeper
// reconnects would sit in its queue and go out the moment the connection
// is back, while the connection re-registers its watches: go-zookeeper
// reads the newest zxid it saw for that without synchronising with the
// goroutine that records it from replies (a data race inside the library,
// go-zookeeper#35, which -race reports in the tests that restart servers
// under watchers). Made after the session is back, a call goes after the
// re-registration instead. A call that never went out certainly applied
// nothing: if ctx ends first, the error wraps backend.ErrNotApplied.
// Each call that goes out counts as one round trip (RoundTrips): f sends
// one request, or several together (a batch of reads), and waits for the
// answers.
func (b *Backend) wait(ctx context.Context, f func() error) error {
	if b.conn.State() != gozk.StateHasSession {
		if err := waitSession(ctx, b.conn); err != nil {
			return fmt.Errorf("zk: %w (%w)", err, backend.ErrNotApplied)
		}
	}
	b.trips.Add(1)
	return wait(ctx, f)
}

// RoundTrips returns how many requests (or batches of reads sent
// together) this Backend has sent to its server and waited on
// (backend.RoundTripCounter).
func (b *Backend) RoundTrips() uint64 { return b.trips.Load() }

// wait runs a blocking go-zookeeper call, returning early when ctx ends
// (go-zookeeper's calls take no context and wait for a connection as long
// as it takes). The call then finishes in the background; a mutation's
// outcome is unknown.
func wait(ctx context.Context, f func() error) error {
	if ctx.Done() == nil {
		return f()
	}
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the request may still complete)", ctx.Err())
	}
}

// certain reports whether a failed request certainly applied nothing: the
// server answered with an error.
func certain(err error) bool {
	for _, e := range []error{gozk.ErrNoNode, gozk.ErrBadVersion, gozk.ErrNodeExists, gozk.ErrNoAuth,
		gozk.ErrNotEmpty, gozk.ErrInvalidACL, gozk.ErrBadArguments, gozk.ErrAPIError, gozk.ErrNoChildrenForEphemerals} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// consistent runs a read so that the session serving it has a view that
// includes every point this backend handed out. go-zookeeper forgets the
// last zxid it saw when it opens a new session after an expiry, so a new
// session may be served by a lagging server: the first read on it syncs.
// A read during which the session changed is done again.
func (b *Backend) consistent(ctx context.Context, read func() error) error {
	for {
		sid := b.conn.SessionID()
		if sid == 0 || sid != b.synced.Load() {
			if err := b.sync(ctx); err != nil {
				return err
			}
			if now := b.conn.SessionID(); now != sid || now == 0 {
				continue
			}
			b.synced.Store(sid)
		}
		err := read()
		if b.conn.SessionID() == sid || ctx.Err() != nil {
			return err
		}
	}
}

// sync makes the connected server catch up with the leader.
func (b *Backend) sync(ctx context.Context) error {
	if err := b.wait(ctx, func() error { _, err := b.conn.Sync(b.root); return err }); err != nil {
		return fmt.Errorf("zk: sync: %w", err)
	}
	return nil
}

// get reads nodes concurrently (one round trip), with the epoch node (see
// Backend.epochP). Absent nodes come back with a nil stat.
func (b *Backend) get(ctx context.Context, paths []string) ([][]byte, []*gozk.Stat, error) {
	paths = append(paths[:len(paths):len(paths)], b.epochP)
	data, stats, err := b.getNodes(ctx, paths)
	if err == nil && stats[len(paths)-1] == nil {
		err = b.fail()
	}
	if err != nil {
		return nil, nil, err
	}
	return data[:len(paths)-1], stats[:len(paths)-1], nil
}

// getNodes reads nodes concurrently (one round trip).
func (b *Backend) getNodes(ctx context.Context, paths []string) ([][]byte, []*gozk.Stat, error) {
	data := make([][]byte, len(paths))
	stats := make([]*gozk.Stat, len(paths))
	one := func(i int) error {
		d, st, err := b.conn.Get(paths[i])
		if errors.Is(err, gozk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("zk: read %s: %w", paths[i], err)
		}
		data[i], stats[i] = d, st
		b.observe(st)
		return nil
	}
	err := b.consistent(ctx, func() error {
		return b.wait(ctx, func() error { return b.getAll(paths, one) })
	})
	return data, stats, err
}

// getAll runs one(i) for every path, concurrently: go-zookeeper pipelines
// the requests on its connection.
func (b *Backend) getAll(paths []string, one func(int) error) error {
	if len(paths) == 1 {
		return one(0)
	}
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = one(i) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// multiError is a Multi the server refused: Op is the index of the
// operation that failed (-1 if unknown), Err its error. A Multi is atomic,
// so a refused one certainly applied nothing: it wraps
// backend.ErrNotApplied too (a request the server refused for want of
// permission is not an unknown outcome).
type multiError struct {
	Op  int
	Err error
}

func (e *multiError) Error() string { return fmt.Sprintf("zk: multi op %d: %v", e.Op, e.Err) }

func (e *multiError) Unwrap() []error {
	return []error{e.Err, backend.ErrNotApplied}
}

// multi runs ops as one Multi. A *multiError reports which op the server
// refused (nothing applied); any other error leaves the outcome unknown.
//
// Every Multi starts with a check that the root's epoch node exists
// (Backend.epochP): a root deleted under this backend fails it, with
// nothing applied, and the backend reports the data lost. The check is not
// among the ops or responses the caller sees.
func (b *Backend) multi(ctx context.Context, ops []any) ([]gozk.MultiResponse, error) {
	var res []gozk.MultiResponse
	all := append([]any{&gozk.CheckVersionRequest{Path: b.epochP, Version: -1}}, ops...)
	err := b.wait(ctx, func() (err error) { res, err = b.conn.Multi(all...); return err })
	if err == nil {
		for _, r := range res {
			b.observe(r.Stat)
		}
		return res[1:], nil
	}
	if certain(err) {
		for i, r := range res {
			if r.Error != nil && certain(r.Error) {
				if i == 0 {
					return nil, b.fail()
				}
				return nil, &multiError{Op: i - 1, Err: r.Error}
			}
		}
		return nil, &multiError{Op: -1, Err: err}
	}
	return nil, err
}

// requestSize estimates a Multi's encoded size.
func requestSize(ops []any) int {
	n := 64
	for _, op := range ops {
		switch o := op.(type) {
		case *gozk.SetDataRequest:
			n += 32 + len(o.Path) + len(o.Data)
		case *gozk.CreateRequest:
			n += 64 + len(o.Path) + len(o.Data)
		default:
			n += 32 + 256
		}
	}
	return n
}

// observe records the zxids a reply showed: the session's view has
// reached them.
func (b *Backend) observe(st *gozk.Stat) {
	if st == nil {
		return
	}
	z := max(st.Mzxid, st.Pzxid)
	for {
		old := b.seen.Load()
		if z <= old || b.seen.CompareAndSwap(old, z) {
			return
		}
	}
}

// failedOp reports whether err is a refused Multi whose op i failed with
// want.
func failedOp(err error, i int, want error) bool {
	var me *multiError
	return errors.As(err, &me) && me.Op == i && errors.Is(me.Err, want)
}

// pause waits a little before a request is sent again after a failure
// whose outcome is unknown (the connection is likely down).
func pause(ctx context.Context, done <-chan struct{}) error {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return backend.ErrClosed
	}
}
