package zk

import (
	"context"
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
type sub struct {
	c      chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Subscribe returns hints of changes to a ref.
func (b *Backend) Subscribe(ctx context.Context, name string) (backend.Subscription, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	path := b.refPath(name)
	var st *gozk.Stat
	var ch <-chan gozk.Event
	if err := wait(ctx, func() (err error) { _, st, ch, err = b.conn.ExistsW(path); return err }); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &sub{c: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	var last int64
	if st != nil {
		last = st.Mzxid
	}
	go s.loop(lctx, b, path, last, ch)
	return s, nil
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
		}
		for {
			var st *gozk.Stat
			err := wait(ctx, func() (err error) { _, st, ch, err = b.conn.ExistsW(path); return err })
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
	return nil
}
