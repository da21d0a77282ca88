package zk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

// sub turns ZooKeeper watches on a ref's znode into hints. A watch fires
// once: the loop re-arms it at once, and after an error, a reconnect or a
// new session (go-zookeeper drops every watch when a session expires) it
// re-arms it and hints if the node changed meanwhile (its Mzxid moved). A
// client sees a watch event before any read that shows the change, so a
// watcher that reads the history after a hint sees the change. The history
// stays the truth: hints may merge, never leave a change unseen.
//
// A subscription also marks the ref as watched: an EPHEMERAL child znode of
// the ref's (named w.<random>), which a commit sees in the ref's NumChildren
// and then keeps backend.WatchKeep older versions. The mark dies with the
// ZooKeeper session of a process that died (within the session timeout),
// is created again after a new session, and is deleted on Close. A
// read-only backend's subscription (Config.ReadOnly) creates no mark: it
// only hints (backend.Unmarked).
type sub struct {
	c      chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	b      *Backend
	mark   string // the mark's path; "" when unmarked (read-only)
}

var _ backend.Unmarked = (*sub)(nil)

// Unmarked reports whether the subscription leaves the ref unmarked: a
// read-only backend's does.
func (s *sub) Unmarked() bool { return s.mark == "" }

// Subscribe returns hints of changes to a ref. Read-only
// (Config.ReadOnly), it marks nothing: commits keep only the ref's own Keep
// older versions for it, and the watcher must read each change before it
// is trimmed (the hints come at once, as they do with a mark), or it
// announces a gap.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	path := b.refPath(name)
	var st *gozk.Stat
	var ch <-chan gozk.Event
	if err := b.wait(ctx, func() (err error) { _, st, ch, err = b.conn.ExistsW(path); return err }); err != nil {
		return nil, err
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	lctx, cancel := context.WithCancel(context.Background())
	s := &sub{c: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}), b: b}
	if !b.cfg.ReadOnly {
		s.mark = path + "/w." + hex.EncodeToString(raw[:])
	}
	// Marked before the watcher's first read of the history: a commit
	// decided on a read from before the mark can only drop versions
	// older than what that first read shows (it applies only if the
	// data it read is still current).
	if err := s.setMark(ctx); err != nil {
		cancel()
		return nil, err
	}
	var last int64
	if st != nil {
		last = st.Mzxid
	}
	go s.loop(lctx, b, path, last, ch)
	return s, nil
}

// setMark creates the subscription's mark unless it exists (or the ref
// does not, or the subscription is unmarked).
func (s *sub) setMark(ctx context.Context) error {
	if s.mark == "" {
		return nil
	}
	err := s.b.wait(ctx, func() error {
		_, err := s.b.conn.Create(s.mark, nil, gozk.FlagEphemeral, s.b.acl)
		return err
	})
	if errors.Is(err, gozk.ErrNodeExists) || errors.Is(err, gozk.ErrNoNode) {
		return nil
	}
	return err
}

func (s *sub) hint() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (s *sub) loop(ctx context.Context, b *Backend, path string, last int64, ch <-chan gozk.Event) {
	defer close(s.done)
	backoff := 50 * time.Millisecond
	marked := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.done:
			return
		case ev := <-ch:
			if ev.Type != gozk.EventNotWatching {
				s.hint()
			}
			marked = ev.Type != gozk.EventNotWatching && ev.State != gozk.StateExpired
		}
		for {
			var st *gozk.Stat
			err := s.b.wait(ctx, func() (err error) { _, st, ch, err = b.conn.ExistsW(path); return err })
			if err == nil && !marked {
				// After an error the session may be a new one, without
				// the mark: set it again.
				if err = s.setMark(ctx); err == nil {
					marked = true
				}
			}
			if err == nil {
				var m int64
				if st != nil {
					m = st.Mzxid
				}
				if m != last {
					last = m
					s.hint()
				}
				backoff = 50 * time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			marked = false
			s.hint() // changes may have been missed while it failed
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-b.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

func (s *sub) C() <-chan struct{} { return s.c }

func (s *sub) Close() error {
	s.cancel()
	<-s.done
	if s.mark == "" {
		return nil
	}
	// Best effort: the mark dies with the session anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.b.wait(ctx, func() error { return s.b.conn.Delete(s.mark, -1) }); err != nil && !gone(err) {
		s.b.logger().Debug("epochal: could not delete a watch mark; it goes with the ZooKeeper session", "root", s.b.root, "mark", s.mark, "err", err)
	}
	return nil
}
