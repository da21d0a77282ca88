package mem

import (
	"context"
	"time"
)

// WaitEntries waits for a change of dir (any change: the mem backend has
// no finer hints) or for the next session to expire.
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
	s := b.sess()
	s.lock()
	ch := s.changed
	var next time.Time
	for _, ss := range s.live {
		if next.IsZero() || ss.deadline.Before(next) {
			next = ss.deadline
		}
	}
	if d := s.dirs[dir]; name != "" && (d == nil || d.entries[name] == nil) {
		s.mu.Unlock()
		return nil // already gone
	}
	s.mu.Unlock()
	wait := max
	if !next.IsZero() {
		if until := time.Until(next) + time.Millisecond; wait <= 0 || until < wait {
			wait = until
		}
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
