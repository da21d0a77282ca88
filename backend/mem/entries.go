package mem

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/epochal/epochal/backend"
)

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
