package zk

import (
	"context"
	"errors"
	"fmt"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

// WaitEntries watches the named entry's znode (a data watch fires when it
// is deleted), or, for name "", the dir's children and the dir node's
// data (touched when an entry's data changes). go-zookeeper re-arms
// watches after a reconnect and ends them with an event when the session
// expires, so no change goes unnoticed.
func (b *Backend) WaitEntries(ctx context.Context, dir, name string, max time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("dir", dir); err != nil {
		return err
	}
	if name != "" {
		if err := checkNames("entry name", name); err != nil {
			return err
		}
	}
	var timeout <-chan time.Time
	if max > 0 {
		t := time.NewTimer(max)
		defer t.Stop()
		timeout = t.C
	}
	dirP := b.dirPath(dir)
	var ch1, ch2 <-chan gozk.Event
	if name != "" {
		b.sess.mu.Lock()
		b.sess.init()
		node := b.sess.nodes[[2]string{dir, name}]
		b.sess.mu.Unlock()
		if node == "" {
			nodes, err := b.findNodes(ctx, dir, name)
			if err != nil {
				return fmt.Errorf("zk: wait for %s in %s: %w", name, dir, err)
			}
			if len(nodes) == 0 {
				return nil // gone
			}
			node = nodes[0]
		}
		err := b.wait(ctx, func() (err error) { _, _, ch1, err = b.conn.GetW(dirP + "/" + node); return err })
		if errors.Is(err, gozk.ErrNoNode) {
			b.sess.mu.Lock()
			if b.sess.nodes[[2]string{dir, name}] == node {
				delete(b.sess.nodes, [2]string{dir, name})
			}
			b.sess.mu.Unlock()
			return nil
		}
		if err != nil {
			return fmt.Errorf("zk: wait for %s in %s: %w", name, dir, err)
		}
	} else {
		b.sess.mu.Lock()
		b.sess.init()
		seen, ok := b.sess.seen[dir]
		b.sess.mu.Unlock()
		var st *gozk.Stat
		err := b.wait(ctx, func() (err error) { _, st, ch1, err = b.conn.ExistsW(dirP); return err })
		if err != nil {
			return fmt.Errorf("zk: wait for %s: %w", dir, err)
		}
		if st != nil {
			if ok && (st.Cversion != seen[0] || st.Version != seen[1]) {
				return nil // changed since the last Entries
			}
			var cst *gozk.Stat
			err := b.wait(ctx, func() (err error) { _, cst, ch2, err = b.conn.ChildrenW(dirP); return err })
			if errors.Is(err, gozk.ErrNoNode) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("zk: wait for %s: %w", dir, err)
			}
			if cst.Cversion != st.Cversion || cst.Version != st.Version {
				return nil // changed between the two watches
			}
		}
	}
	select {
	case <-ch1:
	case <-ch2:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return backend.ErrClosed
	}
	return nil
}
