package redis

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
)

// feedLimit bounds how many versions a subscription buffers for a reader
// that does not drain them; past it the feed says it is incomplete.
const feedLimit = 4096

// sub is one Pub/Sub subscription to a ref's channel. Messages carry the
// version committed; a reconnect (after which go-redis subscribes again,
// having missed whatever was published meanwhile) or an error marks the
// feed incomplete, and the watcher falls back on the history.
type sub struct {
	ps     *goredis.PubSub
	ch     chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	versions []backend.Version
	lost     bool
}

var _ backend.Feed = (*sub)(nil)

// Subscribe returns hints, and a feed, of changes to a ref.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	ps := b.c.Subscribe(ctx, b.p+"c:"+name)
	// The first reply confirms the subscription: from here on nothing
	// published is missed without the feed saying so.
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &sub{ps: ps, ch: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go s.loop(lctx)
	return s, nil
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
			s.markLost()
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
				s.markLost() // subscribed again after a reconnect
			}
		case *goredis.Message:
			v, err := parseVersion(m.Payload)
			if err != nil {
				s.markLost()
				continue
			}
			s.push(v)
		}
	}
}

func (s *sub) push(v backend.Version) {
	s.mu.Lock()
	if len(s.versions) < feedLimit {
		s.versions = append(s.versions, v)
	} else {
		s.versions, s.lost = nil, true
	}
	s.mu.Unlock()
	s.hint()
}

func (s *sub) markLost() {
	s.mu.Lock()
	s.versions, s.lost = nil, true
	s.mu.Unlock()
	s.hint()
}

func (s *sub) hint() {
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// Drain returns the versions received since the last Drain.
func (s *sub) Drain() ([]backend.Version, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, complete := s.versions, !s.lost
	s.versions, s.lost = nil, false
	return vs, complete
}

func (s *sub) C() <-chan struct{} { return s.ch }

func (s *sub) Close() error {
	s.cancel()
	err := s.ps.Close()
	<-s.done
	return err
}
