package redis

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/epochal/epochal/backend"
)

// AddEntry adds an entry owned by a live session, in one script.
func (b *Backend) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	e, _, err := b.addEntry(ctx, req, false)
	return e, err
}

// AddEntryList adds an entry and lists dir's live entries (names and
// Seqs), in one script: a lock's acquisition in one round trip.
func (b *Backend) AddEntryList(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, []backend.Entry, error) {
	return b.addEntry(ctx, req, true)
}

func (b *Backend) addEntry(ctx context.Context, req backend.AddEntryRequest, list bool) (backend.Entry, []backend.Entry, error) {
	if err := b.check(ctx); err != nil {
		return backend.Entry{}, nil, err
	}
	if err := checkNames(req.Session, req.Dir, req.Name); err != nil {
		return backend.Entry{}, nil, fmt.Errorf("redis: add entry: %w", err)
	}
	seq := 0
	if req.Sequential {
		seq = 1
	}
	created := ""
	if !req.Time.IsZero() {
		created = strconv.FormatInt(ms(req.Time), 10)
	}
	script := scriptAddEntry
	if list {
		script = scriptAddList
	}
	res, err := b.run(ctx, script, req.Session, req.Dir, req.Name, seq, req.Data, created)
	if err != nil {
		return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: %w", req.Name, req.Dir, err)
	}
	r, _ := res.([]any)
	var listed []any
	if list {
		if len(r) != 2 {
			return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: malformed reply %v", req.Name, req.Dir, res)
		}
		listed, _ = r[1].([]any)
		r, _ = r[0].([]any)
	}
	if len(r) != 1 {
		return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: malformed reply %v", req.Name, req.Dir, res)
	}
	n, _ := r[0].(int64)
	switch n {
	case -1:
		return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: session %q: %w", req.Name, req.Dir, req.Session, backend.ErrSessionGone)
	case -2:
		return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: %w", req.Name, req.Dir, backend.ErrEntryExists)
	}
	var es []backend.Entry
	for _, x := range listed {
		f, _ := x.([]any)
		if len(f) != 2 {
			return backend.Entry{}, nil, fmt.Errorf("redis: add entry %q to %q: malformed entry %v", req.Name, req.Dir, x)
		}
		name, _ := f[0].(string)
		seq, _ := f[1].(int64)
		es = append(es, backend.Entry{Dir: req.Dir, Name: name, Seq: uint64(seq)})
	}
	return backend.Entry{Dir: req.Dir, Name: req.Name, Seq: uint64(n)}, es, nil
}

// SetEntry replaces the data of the session's entry.
func (b *Backend) SetEntry(ctx context.Context, session, dir, name string, data []byte) error {
	return b.setEntry(ctx, "set entry", session, dir, name, data, 0)
}

// RemoveEntry removes the session's entry.
func (b *Backend) RemoveEntry(ctx context.Context, session, dir, name string) error {
	return b.setEntry(ctx, "remove entry", session, dir, name, nil, 1)
}

func (b *Backend) setEntry(ctx context.Context, op, session, dir, name string, data []byte, remove int) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames(session, dir, name); err != nil {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	res, err := b.run(ctx, scriptSetEntry, session, dir, name, data, remove)
	if err != nil {
		return fmt.Errorf("redis: %s %q of %q: %w", op, name, dir, err)
	}
	switch res.(int64) {
	case 0:
		return fmt.Errorf("redis: %s %q of %q: session %q: %w", op, name, dir, session, backend.ErrEntryGone)
	case -1:
		// Both: the entry is gone because its session is.
		return fmt.Errorf("redis: %s %q of %q: %w (%w)", op, name, dir, backend.ErrEntryGone, backend.ErrSessionGone)
	}
	return nil
}

// Entries lists dir's live entries, dropping those of ended sessions
// (read-only: leaving them out), in one script (details included).
func (b *Backend) Entries(ctx context.Context, dir string, details bool) ([]backend.Entry, error) {
	st, err := b.readDir(ctx, "entries", backend.DirRequest{Dir: dir, Details: details})
	return st.Entries, err
}

// ReadDir lists dir's live entries (dropping those of ended sessions;
// read-only: leaving them out) at its change counter, and the logged additions after req.Since ({P}:dl:,
// the newest 256, {P}:df: the revision of the newest dropped), in one
// script.
func (b *Backend) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	return b.readDir(ctx, "read dir", req)
}

func (b *Backend) readDir(ctx context.Context, op string, req backend.DirRequest) (backend.DirState, error) {
	dir, details := req.Dir, req.Details
	if err := b.check(ctx); err != nil {
		return backend.DirState{}, err
	}
	if err := backend.CheckSessionName("dir", dir); err != nil {
		return backend.DirState{}, fmt.Errorf("redis: %s: %w", op, err)
	}
	d := 0
	if details {
		d = 1
	}
	since := ""
	if req.Adds {
		since = strconv.FormatUint(req.Since, 10)
	}
	res, err := b.run(ctx, scriptEntries, dir, d, since, b.roArg())
	if err != nil {
		return backend.DirState{}, fmt.Errorf("redis: %s %q: %w", op, dir, err)
	}
	r, _ := res.([]any)
	if len(r) != 4 {
		return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed reply", op, dir)
	}
	var st backend.DirState
	rev, err1 := strconv.ParseUint(fmt.Sprint(r[0]), 10, 64)
	floor, err2 := strconv.ParseUint(fmt.Sprint(r[3]), 10, 64)
	if err1 != nil || err2 != nil {
		return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed revision %v or floor %v", op, dir, r[0], r[3])
	}
	st.Rev = rev
	if req.Adds {
		st.Truncated = req.Since < floor
		adds, _ := r[2].([]any)
		for i := len(adds) - 1; i >= 0; i-- { // newest first: reverse
			a, _ := adds[i].(string)
			rs, name, ok := strings.Cut(a, "\x00")
			n, err := strconv.ParseUint(rs, 10, 64)
			if !ok || err != nil {
				return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed log record %q", op, dir, a)
			}
			st.Adds = append(st.Adds, backend.Added{Name: name, Rev: n})
		}
	}
	list, _ := r[1].([]any)
	out := make([]backend.Entry, 0, len(list))
	for _, x := range list {
		f, _ := x.([]any)
		if len(f) < 2 {
			return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed entry %v", op, dir, x)
		}
		name, _ := f[0].(string)
		seq, _ := f[1].(int64)
		e := backend.Entry{Dir: dir, Name: name, Seq: uint64(seq)}
		if details {
			if len(f) < 4 {
				return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed entry %q", op, dir, name)
			}
			v, _ := f[2].(string)
			parts := strings.SplitN(v, "\x00", 3)
			if len(parts) != 3 {
				return backend.DirState{}, fmt.Errorf("redis: %s %q: malformed entry %q", op, dir, name)
			}
			e.Session.ID = parts[0]
			if parts[1] != "" {
				n, err := strconv.ParseInt(parts[1], 10, 64)
				if err != nil {
					return backend.DirState{}, fmt.Errorf("redis: %s %q: entry %q: created %q", op, dir, name, parts[1])
				}
				e.Created = time.UnixMilli(n)
			}
			e.Data = []byte(parts[2])
			info, _ := f[3].([]any)
			if len(info) == 3 {
				e.Session.Holder, _ = info[0].(string)
				e.Session.Lease = time.Duration(atoi(info[1])) * time.Millisecond
				e.Session.Heartbeat = time.UnixMilli(atoi(info[2]))
			}
		}
		out = append(out, e)
	}
	// The script's order (seq, then name bytewise) is the contract's;
	// sort anyway in case a score was stored as something else.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Name < out[j].Name
	})
	st.Entries = out
	return st, nil
}

// Dirs lists the dirs starting with prefix that hold live entries, dropping
// dead entries on the way (read-only: leaving them) in one script over
// every dir in range.
func (b *Backend) Dirs(ctx context.Context, prefix string) ([]string, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if prefix != "" {
		if err := backend.CheckSessionName("dir prefix", prefix); err != nil {
			return nil, fmt.Errorf("redis: dirs: %w", err)
		}
	}
	lo, hi := "-", "+"
	if prefix != "" {
		// Names are valid UTF-8, which never holds the byte 0xff.
		lo, hi = "["+prefix, "["+prefix+"\xff"
	}
	res, err := b.run(ctx, scriptDirs, lo, hi, b.roArg())
	if err != nil {
		return nil, fmt.Errorf("redis: dirs %q: %w", prefix, err)
	}
	list, _ := res.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if d, _ := x.(string); strings.HasPrefix(d, prefix) {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}
