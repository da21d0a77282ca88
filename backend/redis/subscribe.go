package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
)

// sub is one Pub/Sub subscription to a ref's channel. Messages carry the
// version committed; a reconnect (after which go-redis subscribes again,
// having missed whatever was published meanwhile) or an error marks the
// feed incomplete, and the watcher falls back on the history.
type sub struct {
	*backend.FeedBuffer
	ps     *goredis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
}

var _ backend.Feed = (*sub)(nil)

// Subscribe returns hints, and a feed, of changes to a ref.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	// No channel yet: no I/O, so the connection's wait is the one below,
	// which ctx bounds (closing ps ends a Receive left behind).
	ps := b.c.Subscribe(ctx)
	// The first reply confirms the subscription: from here on nothing
	// published is missed without the feed saying so.
	err := do(ctx, func(ctx context.Context) error {
		if err := ps.Subscribe(ctx, b.p+"c:"+name); err != nil {
			return err
		}
		_, err := ps.Receive(ctx)
		return err
	})
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redis: subscribe to %q: %w", name, err)
	}
	// While subscribed, commits keep Config.WatchKeep older versions
	// ({P}:w:name holds the number, see the scripts' append): set now, before the watcher
	// reads the history, and kept alive every third of watchRetain. A
	// process that dies stops renewing it: the retention ends within
	// watchRetain.
	wk := b.p + "w:" + name
	if err := do(ctx, func(ctx context.Context) error { return b.c.Set(ctx, wk, b.cfg.WatchKeep, watchRetain).Err() }); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redis: subscribe to %q: %w", name, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &sub{FeedBuffer: backend.NewFeedBuffer(), ps: ps, cancel: cancel, done: make(chan struct{})}
	go s.loop(lctx)
	go s.retain(lctx, b, wk)
	return s, nil
}

// watchRetain is how long the mark of a subscription to a ref lasts
// without renewal.
const watchRetain = 30 * time.Second

// retain renews the ref's watch mark while the subscription is open.
// Failures are retried sooner; the mark outlives a few of them.
func (s *sub) retain(ctx context.Context, b *Backend, key string) {
	period := watchRetain / 3
	for {
		t := time.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, period)
		err := b.c.Set(rctx, key, b.cfg.WatchKeep, watchRetain).Err()
		cancel()
		period = watchRetain / 3
		if err != nil {
			period = time.Second
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
			// go-redis reconnects on the next Receive; whatever was
			// published meanwhile is lost to this feed.
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
			v, err := parseVersion(m.Payload)
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
