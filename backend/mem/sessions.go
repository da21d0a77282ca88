package mem

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
)

var _ backend.Sessions = (*Backend)(nil)

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

type memDir struct {
	seq     uint64 // never goes back, even when the dir empties
	entries map[string]*memEntry
	rev     uint64          // the dir's revision: every change counts
	adds    []backend.Added // the newest additions of named entries, oldest first
	floor   uint64          // the revision of the newest addition dropped from adds
}

// changed counts a change of the dir.
func (d *memDir) changed() { d.rev++ }

// added counts the addition of a named entry and logs it.
func (d *memDir) added(name string) {
	d.rev++
	if len(d.adds) >= backend.MinAddLog {
		d.floor = d.adds[0].Rev
		d.adds = append(d.adds[:0:0], d.adds[1:]...)
	}
	d.adds = append(d.adds, backend.Added{Name: name, Rev: d.rev})
}

type memEntry struct {
	session string
	seq     uint64
	data    []byte
	created time.Time
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

// AddEntry adds an entry owned by a live session.
func (b *Backend) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	if err := b.check(ctx); err != nil {
		return backend.Entry{}, err
	}
	if err := checkNames("session id", req.Session, "dir", req.Dir, "entry name", req.Name); err != nil {
		return backend.Entry{}, err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	ss, ok := s.live[req.Session]
	if !ok {
		return backend.Entry{}, fmt.Errorf("mem: session %s: %w", req.Session, backend.ErrSessionGone)
	}
	d := s.dirs[req.Dir]
	if d == nil {
		d = &memDir{entries: make(map[string]*memEntry)}
		s.dirs[req.Dir] = d
	}
	if e, ok := d.entries[req.Name]; ok {
		if e.session != req.Session {
			return backend.Entry{}, fmt.Errorf("mem: %s in %s: %w", req.Name, req.Dir, backend.ErrEntryExists)
		}
		if !req.Sequential {
			e.data = slices.Clone(req.Data)
			d.changed()
			s.broadcast()
		}
		return backend.Entry{Dir: req.Dir, Name: req.Name, Seq: e.seq}, nil
	}
	e := &memEntry{session: req.Session, data: slices.Clone(req.Data), created: req.Time}
	if req.Sequential {
		d.seq++
		e.seq = d.seq
		d.changed()
	} else {
		d.added(req.Name)
	}
	d.entries[req.Name] = e
	ss.entries[[2]string{req.Dir, req.Name}] = struct{}{}
	s.broadcast()
	return backend.Entry{Dir: req.Dir, Name: req.Name, Seq: e.seq}, nil
}

// owned returns the session's entry, or ErrEntryGone. The caller holds mu.
func (s *sessions) owned(session, dir, name string) (*memEntry, error) {
	if d := s.dirs[dir]; d != nil {
		if e, ok := d.entries[name]; ok && e.session == session {
			return e, nil
		}
	}
	return nil, fmt.Errorf("mem: %s in %s: %w", name, dir, backend.ErrEntryGone)
}

// SetEntry replaces the data of the session's entry.
func (b *Backend) SetEntry(ctx context.Context, session, dir, name string, data []byte) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", session, "dir", dir, "entry name", name); err != nil {
		return err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	e, err := s.owned(session, dir, name)
	if err != nil {
		return err
	}
	e.data = slices.Clone(data)
	s.dirs[dir].changed()
	s.broadcast()
	return nil
}

// RemoveEntry removes the session's entry.
func (b *Backend) RemoveEntry(ctx context.Context, session, dir, name string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", session, "dir", dir, "entry name", name); err != nil {
		return err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	if _, err := s.owned(session, dir, name); err != nil {
		return err
	}
	delete(s.dirs[dir].entries, name)
	s.dirs[dir].changed()
	delete(s.live[session].entries, [2]string{dir, name})
	s.broadcast()
	return nil
}

// Entries lists the live entries of dir.
func (b *Backend) Entries(ctx context.Context, dir string, details bool) ([]backend.Entry, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if err := checkNames("dir", dir); err != nil {
		return nil, err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	return s.list(dir, details), nil
}

// ReadDir lists dir's live entries at its revision (a count of its
// changes) and the logged additions after req.Since, in one look.
func (b *Backend) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	if err := b.check(ctx); err != nil {
		return backend.DirState{}, err
	}
	if err := checkNames("dir", req.Dir); err != nil {
		return backend.DirState{}, err
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	st := backend.DirState{Entries: s.list(req.Dir, req.Details)}
	d := s.dirs[req.Dir]
	if d == nil {
		return st, nil
	}
	st.Rev = d.rev
	if req.Adds {
		st.Truncated = req.Since < d.floor
		for _, a := range d.adds {
			if a.Rev > req.Since {
				st.Adds = append(st.Adds, a)
			}
		}
	}
	return st, nil
}

// list lists dir's live entries. The caller holds mu.
func (s *sessions) list(dir string, details bool) []backend.Entry {
	d := s.dirs[dir]
	if d == nil {
		return nil
	}
	out := make([]backend.Entry, 0, len(d.entries))
	for name, e := range d.entries {
		en := backend.Entry{Dir: dir, Name: name, Seq: e.seq}
		if details {
			en.Data = slices.Clone(e.data)
			en.Created = e.created
			en.Session = s.live[e.session].info
		}
		out = append(out, en)
	}
	sortEntries(out)
	return out
}

func sortEntries(es []backend.Entry) {
	slices.SortFunc(es, func(a, b backend.Entry) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

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

// Dirs lists the dirs under prefix that hold live entries ("": every
// dir).
func (b *Backend) Dirs(ctx context.Context, prefix string) ([]string, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if prefix != "" {
		if err := checkNames("dir prefix", prefix); err != nil {
			return nil, err
		}
	}
	s := b.sess()
	s.lock()
	defer s.mu.Unlock()
	var out []string
	for name, d := range s.dirs {
		if strings.HasPrefix(name, prefix) && len(d.entries) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}
