package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
)

// sub is one Pub/Sub subscription to a ref's channel. Messages carry the
// version committed; a reconnect (after which go-redis subscribes again,
// having missed whatever was published meanwhile), an error, or a watch
// mark's marker that is not this subscription's own (see loop) marks the
// feed incomplete, and the watcher falls back on the history.
type sub struct {
	*backend.FeedBuffer
	ps     *goredis.PubSub
	b      *Backend
	mark   string // {P}:w:name
	ch     string // {P}:c:name
	own    string // the marker Subscribe published, if it created the mark
	cancel context.CancelFunc
	done   chan struct{}
	warned bool // a message that is no version was logged (loop's)
}

var _ backend.Feed = (*sub)(nil)

// markPrefix starts a watch mark's marker (scriptWatchMark): a message
// that is no version (parseVersion refuses it, so a process that does not
// know markers marks its feed incomplete on it too).
const markPrefix = "!mark\x00"

func newMarker() string {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	return markPrefix + hex.EncodeToString(raw[:])
}

// Subscribe returns hints, and a feed, of changes to a ref.
//
// Commits publish a version only while the ref's watch mark {P}:w:name
// exists (the scripts' append), so the feed holds every version committed
// after Subscribe returns: the subscription is confirmed first, then the
// mark set, then Subscribe returns (and the watcher reads the history,
// which fixes its start). A commit that ran before the mark was set did
// not publish, but it is in the history the watcher reads after (or was
// trimmed before that read): it precedes the watcher's start. The mark
// is renewed every third of watchRetain; should it lapse all the same (a
// process stopped for longer, renewals failing), commits meanwhile are not
// published, and whoever creates the mark again publishes a marker on the
// channel, in order with the versions: a subscription that receives a
// marker other than its own first one marks its feed incomplete there.
//
// A read-only backend's subscription (Config.ReadOnly) sets no mark and is
// no feed: see roSub.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if b.cfg.ReadOnly {
		return b.subscribeRO(ctx, name)
	}
	// No channel yet: no I/O, so the connection's wait is the one below,
	// which ctx bounds (closing ps ends a Receive left behind).
	ps := b.c.Subscribe(ctx)
	ch := b.p + "c:" + name
	// The first reply confirms the subscription: from here on nothing
	// published is missed without the feed saying so.
	err := do(ctx, b, func(ctx context.Context) error {
		if err := ps.Subscribe(ctx, ch); err != nil {
			return err
		}
		_, err := ps.Receive(ctx)
		return err
	})
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redis: subscribe to %q: %w", name, err)
	}
	// While marked, commits publish their versions and keep
	// Config.WatchKeep older ones ({P}:w:name holds the number, see the
	// scripts' append): set now, before the watcher reads the history,
	// and kept alive every third of watchRetain. A process that dies
	// stops renewing it: the retention ends within watchRetain.
	s := &sub{FeedBuffer: backend.NewFeedBuffer(), ps: ps, b: b, mark: b.p + "w:" + name, ch: ch, done: make(chan struct{})}
	own := newMarker()
	existed, err := call(ctx, s.b, func(ctx context.Context) (bool, error) { return s.setMark(ctx, own) })
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redis: subscribe to %q: %w", name, err)
	}
	if !existed {
		// Commits before this mark published nothing, and precede the
		// watcher's start: this subscription's own marker is no loss.
		s.own = own
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop(lctx)
	go s.retain(lctx)
	return s, nil
}

// setMark sets the ref's watch mark for watchRetain, publishing marker if
// it creates it; it reports whether the mark was there.
func (s *sub) setMark(ctx context.Context, marker string) (bool, error) {
	n, err := scriptWatchMark.Run(ctx, s.b.c, []string{s.mark}, s.b.cfg.WatchKeep, watchRetain.Milliseconds(), s.ch, marker).Int64()
	return n == 1, err
}

// renew renews the watch mark; a mark it has to create again announces,
// with its marker, that commits may have gone unpublished.
func (s *sub) renew(ctx context.Context) error {
	if err := s.b.check(ctx); err != nil {
		return err // closed: nothing to renew (a client given to New stays open)
	}
	_, err := call(ctx, s.b, func(ctx context.Context) (bool, error) { return s.setMark(ctx, newMarker()) })
	return err
}

// watchRetain is how long the mark of a subscription to a ref lasts
// without renewal.
const watchRetain = 30 * time.Second

// retain renews the ref's watch mark while the subscription is open.
// Failures are retried sooner; the mark outlives a few of them.
func (s *sub) retain(ctx context.Context) {
	period := watchRetain / 3
	var failing time.Time // since when renewals fail (zero: they do not)
	warned := false
	for {
		t := time.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, period)
		err := s.renew(rctx)
		cancel()
		period = watchRetain / 3
		switch {
		case err == nil:
			failing, warned = time.Time{}, false
		case ctx.Err() != nil || errors.Is(err, backend.ErrClosed):
			return // the subscription or the backend closed
		default:
			period = time.Second
			if failing.IsZero() {
				failing = time.Now()
			}
			// The mark lasts watchRetain after its last renewal: once
			// renewals have failed for most of that, it may lapse
			// (commits then stop publishing, and the feed announces
			// the gap when it is back).
			if !warned && time.Since(failing) > watchRetain/2 {
				warned = true
				s.b.logger().Warn("epochal: a ref's watch mark could not be renewed; it may lapse, and the watcher will see a gap",
					"prefix", s.b.cfg.Prefix, "mark", s.mark, "err", err)
			} else {
				s.b.logger().Debug("epochal: a ref's watch mark could not be renewed; trying again", "prefix", s.b.cfg.Prefix, "mark", s.mark, "err", err)
			}
		}
	}
}

func (s *sub) loop(ctx context.Context) {
	defer close(s.done)
	for {
		msg, err := s.ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if s.b.check(context.Background()) != nil || errors.Is(closedErr(err), backend.ErrClosed) {
				// The backend closed (or lost its data) under the
				// subscription: nothing more will come.
				s.Lost()
				return
			}
			// go-redis reconnects on the next Receive; whatever was
			// published meanwhile is lost to this feed (the watcher
			// announces the gap).
			s.b.logger().Debug("epochal: a ref's change feed lost its connection; reconnecting", "prefix", s.b.cfg.Prefix, "channel", s.ch, "err", err)
			s.Lost()
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				s.Lost() // subscribed again after a reconnect
			}
		case *goredis.Message:
			if strings.HasPrefix(m.Payload, markPrefix) {
				// The mark was created again: commits before this
				// point, since the mark lapsed, were not published.
				// Only the marker of this subscription's own first
				// mark (Subscribe) follows no loss.
				if m.Payload != s.own {
					s.Lost()
				}
				continue
			}
			v, err := parseVersion(m.Payload)
			if err != nil && !s.warned {
				s.warned = true
				s.b.logger().Warn("epochal: a ref's change feed carried a message that is no version; the watcher reads the history instead",
					"prefix", s.b.cfg.Prefix, "channel", s.ch, "err", err, "said", "once per subscription")
			}
			if err != nil {
				s.Lost()
				continue
			}
			s.Push(v)
		}
	}
}

func (s *sub) Close() error {
	s.cancel()
	err := s.ps.Close()
	<-s.done
	return err
}

// roSub is a read-only backend's subscription (Config.ReadOnly), which
// writes nothing: it sets no watch mark, so commits publish nothing for it
// (unless another process's subscription marks the ref) and keep only the
// ref's own Keep older versions. It looks at the ref's newest point
// instead (HGET, every roPoll) and hints when it moved; it is no Feed, and
// says it is unmarked (backend.Unmarked): the watcher reads each change
// from the history, or announces a gap where that was trimmed first.
type roSub struct {
	c      chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

var _ backend.Unmarked = (*roSub)(nil)

// roPoll is how often a read-only subscription looks at its ref's newest
// point.
const roPoll = 250 * time.Millisecond

func (b *Backend) subscribeRO(ctx context.Context, name string) (backend.Subscription, error) {
	key := b.p + "r:" + name
	look := func(ctx context.Context) (string, error) {
		if err := b.check(ctx); err != nil {
			return "", err // closed (a client given to New stays open) or lost
		}
		return call(ctx, b, func(ctx context.Context) (string, error) {
			v, err := b.c.HGet(ctx, key, "newest").Result()
			if errors.Is(err, goredis.Nil) {
				return "", nil // no such ref (yet): it may be created
			}
			return v, err
		})
	}
	// The first look, before the watcher's first read of the history:
	// a commit after it moves the newest point, and hints.
	last, err := look(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: subscribe to %q: %w", name, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &roSub{c: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go s.loop(lctx, look, last)
	return s, nil
}

func (s *roSub) loop(ctx context.Context, look func(context.Context) (string, error), last string) {
	defer close(s.done)
	t := time.NewTicker(roPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 4*roPoll)
		v, err := look(lctx)
		cancel()
		if errors.Is(err, backend.ErrClosed) {
			return // the backend closed under the subscription
		}
		// A failed look hints nothing: the watcher's own polls meet the
		// failure, and a later look that succeeds hints if it moved.
		if err == nil && v != last {
			last = v
			select {
			case s.c <- struct{}{}:
			default: // a hint is already waiting: merged
			}
		}
	}
}

func (s *roSub) C() <-chan struct{} { return s.c }

// Unmarked reports true: the subscription sets no watch mark.
func (s *roSub) Unmarked() bool { return true }

func (s *roSub) Close() error {
	s.cancel()
	<-s.done
	return nil
}
