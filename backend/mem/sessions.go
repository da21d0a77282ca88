package mem

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
)

// sessions is the mem backend's ephemeral state. A session's lease is
// judged by this process's monotonic clock: it ends when its lease has
// passed since the last renewal, as a server would end it.
type sessions struct {
	mu      sync.Mutex
	live    map[string]*memSession
	ended   endedIDs
	dirs    map[string]*memDir
	changed chan struct{} // closed and replaced on every change
}

// EndedKeep is how long an ended session's id is remembered, so that
// OpenSession of it (a retry delayed past the end) is ErrSessionGone
// rather than a new session under an old id. Ids are drawn at random, so
// only such retries reuse one, and they come within their caller's ctx;
// forgetting ids after EndedKeep keeps a long-lived process's memory
// bounded by the sessions ended in the last EndedKeep.
const EndedKeep = 10 * time.Minute

// endedIDs remembers ended session ids for keep, by the clock now.
type endedIDs struct {
	at    map[string]time.Time
	order []endedID // in the order they ended, for forgetting
	keep  time.Duration
	now   func() time.Time
}

type endedID struct {
	id string
	at time.Time
}

func (e *endedIDs) add(id string) {
	t := e.now()
	e.at[id] = t
	e.order = append(e.order, endedID{id, t})
}

func (e *endedIDs) has(id string) bool { _, ok := e.at[id]; return ok }

// forget drops the ids that ended keep ago or earlier.
func (e *endedIDs) forget() {
	cut := e.now().Add(-e.keep)
	i := 0
	for i < len(e.order) && !e.order[i].at.After(cut) {
		if e.at[e.order[i].id] == e.order[i].at {
			delete(e.at, e.order[i].id)
		}
		i++
	}
	if i > 0 {
		e.order = append(e.order[:0:0], e.order[i:]...)
	}
}

type memSession struct {
	info     backend.SessionInfo
	deadline time.Time
	entries  map[[2]string]struct{} // dir, name
}

func (b *Backend) sess() *sessions {
	b.sessOnce.Do(func() {
		b.sessions = &sessions{
			live:    make(map[string]*memSession),
			ended:   endedIDs{at: make(map[string]time.Time), keep: EndedKeep, now: time.Now},
			dirs:    make(map[string]*memDir),
			changed: make(chan struct{}),
		}
	})
	return b.sessions
}

// reap ends the sessions whose lease has passed; it reports whether any
// did. The caller holds mu.
func (s *sessions) reap(now time.Time) bool {
	any := false
	for id, ss := range s.live {
		if !now.Before(ss.deadline) {
			s.end(id, ss)
			any = true
		}
	}
	return any
}

// end removes a session and its entries. The caller holds mu and
// broadcasts.
func (s *sessions) end(id string, ss *memSession) {
	for k := range ss.entries {
		if d := s.dirs[k[0]]; d != nil {
			delete(d.entries, k[1])
			d.changed()
		}
	}
	delete(s.live, id)
	s.ended.add(id)
}

func (s *sessions) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// lock takes mu, ends expired sessions and forgets old ended ids.
func (s *sessions) lock() {
	s.mu.Lock()
	if s.reap(time.Now()) {
		s.broadcast()
	}
	s.ended.forget()
}

func checkNames(pairs ...string) error {
	if err := backend.CheckSessionNames(pairs...); err != nil {
		return fmt.Errorf("mem: %w", err)
	}
	return nil
}

// Sessions returns b: a driver is a backend.SessionStore, so locks and
// groups can be built over it.
func (b *Backend) Sessions() backend.Sessions { return b }

// OpenSession starts a session; the lease is enforced by this process's
// clock. An id whose session ended less than EndedKeep ago is
// ErrSessionGone.
func (b *Backend) OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if err := checkNames("session id", id); err != nil {
		return 0, err
	}
	if lease <= 0 {
		return 0, fmt.Errorf("mem: lease %v is not positive (%w)", lease, backend.ErrNotApplied)
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	if s.ended.has(id) {
		return 0, fmt.Errorf("mem: session %s: %w", id, backend.ErrSessionGone)
	}
	now := time.Now()
	if ss, ok := s.live[id]; ok {
		return ss.info.Lease, nil
	}
	s.live[id] = &memSession{
		info:     backend.SessionInfo{ID: id, Holder: holder, Lease: lease, Heartbeat: now},
		deadline: now.Add(lease),
		entries:  make(map[[2]string]struct{}),
	}
	return lease, nil
}

// RenewSession restarts the session's lease.
func (b *Backend) RenewSession(ctx context.Context, id string, now time.Time) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", id); err != nil {
		return err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	ss, ok := s.live[id]
	if !ok {
		return fmt.Errorf("mem: session %s: %w", id, backend.ErrSessionGone)
	}
	ss.deadline = time.Now().Add(ss.info.Lease)
	ss.info.Heartbeat = now
	return nil
}

// CloseSession ends a session and deletes its entries.
func (b *Backend) CloseSession(ctx context.Context, id string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", id); err != nil {
		return err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	if ss, ok := s.live[id]; ok {
		s.end(id, ss)
		s.broadcast()
	}
	return nil
}
