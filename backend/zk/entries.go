package zk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
)

func (b *Backend) dirPath(dir string) string { return b.sdP + "/" + escape(dir) }

// readLog reads dir's log, its self record resolved; a missing log node
// is an empty log with a nil stat.
func (b *Backend) readLog(ctx context.Context, dir string) (logNode, *gozk.Stat, error) {
	var lg logNode
	data, stats, err := b.get(ctx, []string{b.logPath(dir)})
	if err != nil || stats[0] == nil {
		return lg, nil, err
	}
	if len(data[0]) > 0 {
		if err := msgpack.Unmarshal(data[0], &lg); err != nil {
			return lg, nil, fmt.Errorf("%w: log node of %s: %v", ErrMalformed, dir, err)
		}
	}
	if n := len(lg.Recs); n > 0 && lg.Recs[n-1].Zxid == 0 {
		lg.Recs[n-1].Zxid = stats[0].Mzxid
	}
	return lg, stats[0], nil
}

func (b *Backend) logPath(dir string) string { return b.slP + "/" + escape(dir) }

// mklog creates a dir's log node (for dirs made before logs existed).
func (b *Backend) mklog(ctx context.Context, dir string) error {
	p := b.logPath(dir)
	err := b.wait(ctx, func() error { _, err := b.conn.Create(p, nil, 0, b.acl); return err })
	if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		return fmt.Errorf("zk: create log %s: %w", p, err)
	}
	return nil
}

// foundEntry is an entry's znode path and the zxid that created it (its
// Seq, for a sequential one, is seqOf(czxid)).
type foundEntry struct {
	path  string
	czxid int64
}

// findEntries lists the znodes of dir holding entry name of a session
// (and learns the Seqs of sequential ones).
func (b *Backend) findEntries(ctx context.Context, session, dir, name string) ([]foundEntry, error) {
	nodes, err := b.findNodes(ctx, dir, name)
	if err != nil || len(nodes) == 0 {
		return nil, err
	}
	dirP := b.dirPath(dir)
	paths := make([]string, len(nodes))
	for i, n := range nodes {
		paths[i] = dirP + "/" + n
	}
	data, stats, err := b.get(ctx, paths)
	if err != nil {
		return nil, err
	}
	var out []foundEntry
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	for i := range paths {
		if stats[i] == nil {
			continue
		}
		if _, sequential, _ := parseNode(nodes[i]); sequential {
			b.sess.learnSeq(paths[i], seqOf(stats[i].Czxid))
		}
		if e, err := decodeEntry(paths[i], data[i]); err == nil && e.Session == session {
			out = append(out, foundEntry{paths[i], stats[i].Czxid})
		}
	}
	return out, nil
}

// findNodes lists the znodes of dir named for entry name (any session).
func (b *Backend) findNodes(ctx context.Context, dir, name string) ([]string, error) {
	kids, _, err := b.children(ctx, b.dirPath(dir))
	if err != nil {
		return nil, err
	}
	esc := escape(name)
	var out []string
	for _, k := range kids {
		if k == esc || strings.HasPrefix(k, esc+seqMark) {
			if n, _, ok := parseNode(k); ok && n == name {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// children lists a node's children; a missing node has none (nil stat).
func (b *Backend) children(ctx context.Context, p string) ([]string, *gozk.Stat, error) {
	var kids []string
	var st *gozk.Stat
	err := b.consistent(ctx, func() error {
		return b.wait(ctx, func() (err error) { kids, st, err = b.conn.Children(p); return err })
	})
	if errors.Is(err, gozk.ErrNoNode) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("zk: list %s: %w", p, err)
	}
	b.observe(st)
	return kids, st, nil
}

// mkdir creates a dir's node (never deleted: it keeps the dir's Seq
// counter).
func (b *Backend) mkdir(ctx context.Context, dir string) error {
	p := b.dirPath(dir)
	err := b.wait(ctx, func() error { _, err := b.conn.Create(p, nil, 0, b.acl); return err })
	if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		return fmt.Errorf("zk: create dir %s: %w", p, err)
	}
	return nil
}

// AddEntry creates the entry's ephemeral znode in a Multi that also
// writes the session's node: it applies only while the session lives.
func (b *Backend) AddEntry(ctx context.Context, req backend.AddEntryRequest) (backend.Entry, error) {
	if err := b.check(ctx); err != nil {
		return backend.Entry{}, err
	}
	if err := checkNames("session id", req.Session, "dir", req.Dir, "entry name", req.Name); err != nil {
		return backend.Entry{}, err
	}
	s, err := b.session(req.Session)
	if err != nil {
		return backend.Entry{}, err
	}
	key := [2]string{req.Dir, req.Name}
	b.sess.mu.Lock()
	known, repeat := s.entries[key], s.unsure[key] > 0
	s.unsure[key]++
	b.sess.mu.Unlock()
	settled := false // the outcome is known: key is no longer unsure
	defer func() {
		if settled {
			b.sess.mu.Lock()
			if s.unsure[key]--; s.unsure[key] <= 0 {
				delete(s.unsure, key)
			}
			b.sess.mu.Unlock()
		}
	}()
	what := fmt.Sprintf("zk: add entry %s to %s", req.Name, req.Dir)
	if req.Sequential {
		e, err := b.addSequential(ctx, s, req, known != "" || repeat)
		settled = err == nil || !errors.Is(err, errUnknown)
		if err != nil {
			return backend.Entry{}, fmt.Errorf("%s: %w", what, err)
		}
		return e, nil
	}
	e, err := b.addNamed(ctx, s, req)
	settled = err == nil || !errors.Is(err, errUnknown)
	if err != nil {
		return backend.Entry{}, fmt.Errorf("%s: %w", what, err)
	}
	return e, nil
}

// errUnknown marks an add whose outcome is unknown.
var errUnknown = errors.New("outcome unknown")

// track records an entry the session added; czxid, for a sequential
// entry, is the zxid of the request that created it (its Seq comes from
// it, never from the bounded cache of learned Seqs, which another call may
// empty at any time).
func (b *Backend) track(s *zkSession, req backend.AddEntryRequest, p string, czxid int64) backend.Entry {
	node := path.Base(p)
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	s.entries[[2]string{req.Dir, req.Name}] = p
	b.sess.hint(req.Dir, req.Name, node)
	var seq uint64
	if req.Sequential {
		seq = seqOf(czxid)
		b.sess.learnSeq(p, seq)
	}
	return backend.Entry{Dir: req.Dir, Name: req.Name, Seq: seq}
}

func (b *Backend) sessData(s *zkSession) []byte {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	return s.data
}

func (b *Backend) addSequential(ctx context.Context, s *zkSession, req backend.AddEntryRequest, repeat bool) (backend.Entry, error) {
	en := &entryNode{Session: req.Session, Data: req.Data}
	if !req.Time.IsZero() {
		en.Created = req.Time.UnixNano()
	}
	data := en.encode()
	prefix := b.dirPath(req.Dir) + "/" + escape(req.Name) + seqMark
	var last error
	for range 5 {
		if repeat {
			// A repeat, or an earlier attempt's outcome is unknown: the
			// entry may be there already.
			found, err := b.findEntries(ctx, req.Session, req.Dir, req.Name)
			if err != nil {
				return backend.Entry{}, fmt.Errorf("%w (%w)", err, errUnknown)
			}
			if len(found) > 0 {
				// Its Seq from the zxid that created it, never from the
				// bounded cache, which may have been emptied since.
				return b.track(s, req, found[0].path, found[0].czxid), nil
			}
		}
		ops := []any{
			&gozk.SetDataRequest{Path: b.sessPath(s.id), Data: b.sessData(s), Version: -1},
			&gozk.CreateRequest{Path: prefix, Data: data, Acl: b.acl, Flags: gozk.FlagEphemeral | gozk.FlagSequence},
		}
		if requestSize(ops) > b.cfg.MaxRequest {
			return backend.Entry{}, fmt.Errorf("%d bytes of data: %w", len(req.Data), ErrTooLarge)
		}
		res, err := b.multi(ctx, ops)
		var me *multiError
		switch {
		case err == nil:
			// The session node's Mzxid is the Multi's zxid, the entry's Czxid.
			return b.track(s, req, res[1].String, res[0].Stat.Mzxid), nil
		case failedOp(err, 0, gozk.ErrNoNode):
			b.end(s)
			return backend.Entry{}, goneErr(s.id)
		case failedOp(err, 1, gozk.ErrNoNode):
			if err := b.mkdir(ctx, req.Dir); err != nil {
				return backend.Entry{}, err
			}
		case errors.As(err, &me):
			return backend.Entry{}, err
		default:
			if ctx.Err() != nil || pause(ctx, b.done) != nil {
				return backend.Entry{}, fmt.Errorf("%w (%w)", err, errUnknown)
			}
			repeat = true
		}
		last = err
	}
	return backend.Entry{}, fmt.Errorf("gave up: %w (%w)", last, errUnknown)
}

func (b *Backend) addNamed(ctx context.Context, s *zkSession, req backend.AddEntryRequest) (backend.Entry, error) {
	en := &entryNode{Session: req.Session, Data: req.Data}
	if !req.Time.IsZero() {
		en.Created = req.Time.UnixNano()
	}
	dirP := b.dirPath(req.Dir)
	p := dirP + "/" + escape(req.Name)
	var last error
	unknown := false
	for tries := 0; tries < 5; tries++ {
		// The addition goes into the dir's log in the same Multi.
		lg, lst, err := b.readLog(ctx, req.Dir)
		if err != nil {
			return backend.Entry{}, err
		}
		if lst == nil {
			if err := b.mklog(ctx, req.Dir); err != nil {
				return backend.Entry{}, err
			}
			continue
		}
		ops := []any{
			&gozk.SetDataRequest{Path: b.sessPath(s.id), Data: b.sessData(s), Version: -1},
			&gozk.CreateRequest{Path: p, Data: en.encode(), Acl: b.acl, Flags: gozk.FlagEphemeral},
			&gozk.SetDataRequest{Path: b.logPath(req.Dir), Data: lg.appended(req.Name), Version: lst.Version},
		}
		if requestSize(ops) > b.cfg.MaxRequest {
			return backend.Entry{}, fmt.Errorf("%d bytes of data: %w", len(req.Data), ErrTooLarge)
		}
		_, err = b.multi(ctx, ops)
		var me *multiError
		switch {
		case err == nil:
			return b.track(s, req, p, 0), nil
		case failedOp(err, 0, gozk.ErrNoNode):
			b.end(s)
			return backend.Entry{}, goneErr(s.id)
		case failedOp(err, 1, gozk.ErrNoNode):
			if err := b.mkdir(ctx, req.Dir); err != nil {
				return backend.Entry{}, err
			}
		case failedOp(err, 2, gozk.ErrBadVersion):
			// Another addition to the dir came first: it made progress,
			// so this does not count as a try.
			tries--
			if err := ctx.Err(); err != nil {
				return backend.Entry{}, err
			}
			continue
		case failedOp(err, 2, gozk.ErrNoNode):
			if err := b.mklog(ctx, req.Dir); err != nil {
				return backend.Entry{}, err
			}
			continue
		case failedOp(err, 1, gozk.ErrNodeExists):
			// Held: by this session (a repeat: replace the data) or not.
			data, stats, err := b.get(ctx, []string{p})
			if err != nil {
				return backend.Entry{}, err
			}
			if stats[0] == nil {
				continue // removed meanwhile
			}
			old, err := decodeEntry(p, data[0])
			if err != nil {
				return backend.Entry{}, err
			}
			if old.Session != s.id || stats[0].EphemeralOwner != s.owner {
				return backend.Entry{}, fmt.Errorf("held by session %s: %w", old.Session, backend.ErrEntryExists)
			}
			old.Data = req.Data
			_, err = b.multi(ctx, []any{
				&gozk.SetDataRequest{Path: b.sessPath(s.id), Data: b.sessData(s), Version: -1},
				&gozk.SetDataRequest{Path: p, Data: old.encode(), Version: stats[0].Version},
				&gozk.SetDataRequest{Path: dirP, Version: -1}, // wakes dir watchers
			})
			switch {
			case err == nil:
				return b.track(s, req, p, 0), nil
			case failedOp(err, 0, gozk.ErrNoNode):
				b.end(s)
				return backend.Entry{}, goneErr(s.id)
			case failedOp(err, 1, gozk.ErrNoNode), failedOp(err, 1, gozk.ErrBadVersion):
			case errors.As(err, &me):
				return backend.Entry{}, err
			default:
				if ctx.Err() != nil || pause(ctx, b.done) != nil {
					return backend.Entry{}, fmt.Errorf("%w (%w)", err, errUnknown)
				}
				unknown = true
			}
		case errors.As(err, &me):
			return backend.Entry{}, err
		default:
			if ctx.Err() != nil || pause(ctx, b.done) != nil {
				return backend.Entry{}, fmt.Errorf("%w (%w)", err, errUnknown)
			}
			unknown = true
		}
		last = err
	}
	if unknown {
		return backend.Entry{}, fmt.Errorf("gave up: %w (%w)", last, errUnknown)
	}
	return backend.Entry{}, fmt.Errorf("gave up: %w", last)
}

// entryOf finds the session's entry: its znode path, data and stat; ""
// if it has none.
func (b *Backend) entryOf(ctx context.Context, s *zkSession, dir, name string) (string, *entryNode, *gozk.Stat, error) {
	key := [2]string{dir, name}
	b.sess.mu.Lock()
	p := s.entries[key]
	b.sess.mu.Unlock()
	if p == "" {
		found, err := b.findEntries(ctx, s.id, dir, name)
		if err != nil || len(found) == 0 {
			return "", nil, nil, err
		}
		p = found[0].path
	}
	data, stats, err := b.get(ctx, []string{p})
	if err != nil {
		return "", nil, nil, err
	}
	if stats[0] == nil {
		b.untrack(s, key, p)
		return "", nil, nil, nil
	}
	e, err := decodeEntry(p, data[0])
	if err != nil {
		return "", nil, nil, err
	}
	if e.Session != s.id || stats[0].EphemeralOwner != s.owner {
		return "", nil, nil, nil
	}
	return p, e, stats[0], nil
}

func entryGone(what string, session error) error {
	if session != nil {
		return fmt.Errorf("%s: %w (%w)", what, backend.ErrEntryGone, session)
	}
	return fmt.Errorf("%s: %w", what, backend.ErrEntryGone)
}

// entrySession checks a call on one of a session's entries (SetEntry,
// RemoveEntry) and returns the live session; what prefixes its errors.
func (b *Backend) entrySession(ctx context.Context, what, session, dir, name string) (*zkSession, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if err := checkNames("session id", session, "dir", dir, "entry name", name); err != nil {
		return nil, err
	}
	s, err := b.session(session)
	if err != nil {
		return nil, entryGone(what, err)
	}
	return s, nil
}

// SetEntry replaces the data of the session's entry and touches the dir's
// node (dir watchers wake).
func (b *Backend) SetEntry(ctx context.Context, session, dir, name string, data []byte) error {
	what := fmt.Sprintf("zk: set entry %s in %s", name, dir)
	s, err := b.entrySession(ctx, what, session, dir, name)
	if err != nil {
		return err
	}
	var last error
	for range 5 {
		p, e, st, err := b.entryOf(ctx, s, dir, name)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if p == "" {
			return entryGone(what, nil)
		}
		e.Data = data
		ops := []any{
			&gozk.CheckVersionRequest{Path: b.sessPath(session), Version: -1},
			&gozk.SetDataRequest{Path: p, Data: e.encode(), Version: st.Version},
			&gozk.SetDataRequest{Path: b.dirPath(dir), Version: -1},
		}
		if requestSize(ops) > b.cfg.MaxRequest {
			return fmt.Errorf("%s: %d bytes of data: %w", what, len(data), ErrTooLarge)
		}
		_, err = b.multi(ctx, ops)
		switch {
		case err == nil:
			return nil
		case failedOp(err, 0, gozk.ErrNoNode):
			b.end(s)
			return entryGone(what, goneErr(session))
		case failedOp(err, 1, gozk.ErrNoNode):
			return entryGone(what, nil)
		case failedOp(err, 1, gozk.ErrBadVersion):
		default:
			return fmt.Errorf("%s: %w", what, err)
		}
		last = err
	}
	return fmt.Errorf("%s: gave up: %w", what, last)
}

// RemoveEntry deletes the session's entry.
func (b *Backend) RemoveEntry(ctx context.Context, session, dir, name string) error {
	what := fmt.Sprintf("zk: remove entry %s from %s", name, dir)
	s, err := b.entrySession(ctx, what, session, dir, name)
	if err != nil {
		return err
	}
	key := [2]string{dir, name}
	// A znode this backend created for the session needs no look-up: while
	// the session's node stands (checked in the same Multi) the entry's
	// znode can only be the one it created, so any version will do.
	b.sess.mu.Lock()
	tracked := s.entries[key]
	b.sess.mu.Unlock()
	var last error
	unknown := false
	for range 5 {
		p, version := tracked, int32(-1)
		if p == "" || unknown {
			var st *gozk.Stat
			var err error
			p, _, st, err = b.entryOf(ctx, s, dir, name)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if p == "" {
				if unknown {
					return nil // the earlier attempt removed it
				}
				return entryGone(what, nil)
			}
			version = st.Version
		}
		_, err := b.multi(ctx, []any{
			&gozk.CheckVersionRequest{Path: b.sessPath(session), Version: -1},
			&gozk.DeleteRequest{Path: p, Version: version},
		})
		var me *multiError
		switch {
		case err == nil:
			b.untrack(s, key, p)
			return nil
		case failedOp(err, 0, gozk.ErrNoNode):
			b.end(s)
			return entryGone(what, goneErr(session))
		case failedOp(err, 1, gozk.ErrNoNode):
			b.untrack(s, key, p)
			if unknown {
				return nil
			}
			return entryGone(what, nil)
		case failedOp(err, 1, gozk.ErrBadVersion):
		case errors.As(err, &me):
			return fmt.Errorf("%s: %w", what, err)
		default:
			if ctx.Err() != nil || pause(ctx, b.done) != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			unknown = true
		}
		last = err
	}
	return fmt.Errorf("%s: gave up: %w", what, last)
}

// Entries lists dir's children; details reads each entry and its
// session's node (one pipelined round trip each).
func (b *Backend) Entries(ctx context.Context, dir string, details bool) ([]backend.Entry, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if err := checkNames("dir", dir); err != nil {
		return nil, err
	}
	es, _, err := b.list(ctx, dir, details)
	return es, err
}

// list lists dir's entries, and returns the dir node's stat (nil if it
// has none).
func (b *Backend) list(ctx context.Context, dir string, details bool) ([]backend.Entry, *gozk.Stat, error) {
	dirP := b.dirPath(dir)
	kids, st, err := b.children(ctx, dirP)
	if err != nil {
		return nil, nil, fmt.Errorf("zk: entries of %s: %w", dir, err)
	}
	b.sess.mu.Lock()
	b.sess.init()
	if st != nil {
		if len(b.sess.seen) >= hintLimit {
			b.sess.seen = make(map[string][2]int32)
		}
		b.sess.seen[dir] = [2]int32{st.Cversion, st.Version}
	}
	out := make([]backend.Entry, 0, len(kids))
	var nodes []string
	var unknown []int // sequential entries whose Seq is not yet known
	for _, k := range kids {
		name, sequential, ok := parseNode(k)
		if !ok {
			continue // not Epochal's
		}
		b.sess.hint(dir, name, k)
		e := backend.Entry{Dir: dir, Name: name}
		if sequential {
			if e.Seq = b.sess.seqs[dirP+"/"+k]; e.Seq == 0 {
				unknown = append(unknown, len(out))
			}
		}
		out = append(out, e)
		nodes = append(nodes, k)
	}
	b.sess.mu.Unlock()
	if len(unknown) > 0 {
		if out, nodes, err = b.learnSeqs(ctx, dirP, out, nodes, unknown); err != nil {
			return nil, nil, fmt.Errorf("zk: entries of %s: %w", dir, err)
		}
	}
	if details && len(out) > 0 {
		if out, err = b.details(ctx, dirP, out, nodes); err != nil {
			return nil, nil, fmt.Errorf("zk: entries of %s: %w", dir, err)
		}
	}
	slices.SortFunc(out, func(a, b backend.Entry) int {
		if a.Seq != b.Seq {
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, st, nil
}

// ReadDir lists dir's entries with the dir node's Pzxid (the zxid of the
// last child created or deleted, a session's expiry included) as the
// revision, and then reads the dir's log of named additions, keeping
// those after req.Since and up to that revision (later ones show in the
// next read).
func (b *Backend) ReadDir(ctx context.Context, req backend.DirRequest) (backend.DirState, error) {
	if err := b.check(ctx); err != nil {
		return backend.DirState{}, err
	}
	if err := checkNames("dir", req.Dir); err != nil {
		return backend.DirState{}, err
	}
	es, st, err := b.list(ctx, req.Dir, req.Details)
	if err != nil {
		return backend.DirState{}, err
	}
	out := backend.DirState{Entries: es}
	if st != nil {
		out.Rev = uint64(st.Pzxid)
	}
	if !req.Adds {
		return out, nil
	}
	// After the listing: every addition up to its revision is in the log.
	lg, _, err := b.readLog(ctx, req.Dir)
	if err != nil {
		return backend.DirState{}, fmt.Errorf("zk: read dir %s: %w", req.Dir, err)
	}
	out.Truncated = int64(req.Since) < lg.Floor
	for _, r := range lg.Recs {
		if z := uint64(r.Zxid); z > req.Since && z <= out.Rev {
			out.Adds = append(out.Adds, backend.Added{Name: r.Name, Rev: z})
		}
	}
	return out, nil
}

// learnSeqs reads the Czxid of the entries at the indices unknown (one
// pipelined round trip) to fill in their Seqs; entries removed meanwhile
// are dropped.
func (b *Backend) learnSeqs(ctx context.Context, dirP string, es []backend.Entry, nodes []string, unknown []int) ([]backend.Entry, []string, error) {
	paths := make([]string, len(unknown))
	for i, j := range unknown {
		paths[i] = dirP + "/" + nodes[j]
	}
	stats := make([]*gozk.Stat, len(paths))
	one := func(i int) error {
		_, st, err := b.conn.Exists(paths[i])
		if err != nil {
			return fmt.Errorf("zk: read %s: %w", paths[i], err)
		}
		stats[i] = st
		b.observe(st)
		return nil
	}
	err := b.consistent(ctx, func() error { return b.wait(ctx, func() error { return b.getAll(paths, one) }) })
	if err != nil {
		return nil, nil, err
	}
	gone := make(map[int]bool)
	b.sess.mu.Lock()
	for i, j := range unknown {
		if stats[i] == nil {
			gone[j] = true
			continue
		}
		es[j].Seq = seqOf(stats[i].Czxid)
		b.sess.learnSeq(paths[i], es[j].Seq)
	}
	b.sess.mu.Unlock()
	if len(gone) == 0 {
		return es, nodes, nil
	}
	keepE, keepN := es[:0], nodes[:0]
	for j := range es {
		if !gone[j] {
			keepE, keepN = append(keepE, es[j]), append(keepN, nodes[j])
		}
	}
	return keepE, keepN, nil
}

func (b *Backend) details(ctx context.Context, dirP string, es []backend.Entry, nodes []string) ([]backend.Entry, error) {
	paths := make([]string, len(nodes))
	for i, n := range nodes {
		paths[i] = dirP + "/" + n
	}
	data, stats, err := b.get(ctx, paths)
	if err != nil {
		return nil, err
	}
	var ids []string
	keep := es[:0]
	for i, e := range es {
		if stats[i] == nil {
			continue // removed meanwhile
		}
		en, err := decodeEntry(paths[i], data[i])
		if err != nil {
			return nil, err
		}
		e.Data, e.Created, e.Session.ID = en.Data, unixNano(en.Created), en.Session
		if !slices.Contains(ids, en.Session) {
			ids = append(ids, en.Session)
		}
		keep = append(keep, e)
	}
	es = keep
	sp := make([]string, len(ids))
	for i, id := range ids {
		sp[i] = b.sessPath(id)
	}
	sdata, sstats, err := b.get(ctx, sp)
	if err != nil {
		return nil, err
	}
	infos := make(map[string]backend.SessionInfo)
	for i, id := range ids {
		if sstats[i] == nil {
			continue // ended meanwhile: so have its entries
		}
		var n sessNode
		if err := msgpack.Unmarshal(sdata[i], &n); err != nil {
			return nil, fmt.Errorf("%w: session node %s: %v", ErrMalformed, sp[i], err)
		}
		infos[id] = backend.SessionInfo{ID: id, Holder: n.Holder, Lease: time.Duration(n.Lease) * time.Millisecond, Heartbeat: unixNano(n.Heartbeat)}
	}
	keep = es[:0]
	for _, e := range es {
		if info, ok := infos[e.Session.ID]; ok {
			e.Session = info
			keep = append(keep, e)
		}
	}
	return keep, nil
}

// Dirs lists the dirs under prefix that have children ("": every dir).
func (b *Backend) Dirs(ctx context.Context, prefix string) ([]string, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if prefix != "" {
		if err := checkNames("dir prefix", prefix); err != nil {
			return nil, err
		}
	}
	kids, _, err := b.children(ctx, b.sdP)
	if err != nil {
		return nil, fmt.Errorf("zk: dirs: %w", err)
	}
	var dirs, paths []string
	for _, k := range kids {
		if d, ok := unescape(k); ok && strings.HasPrefix(d, prefix) {
			dirs, paths = append(dirs, d), append(paths, b.sdP+"/"+k)
		}
	}
	if len(paths) == 0 {
		return nil, nil
	}
	stats := make([]*gozk.Stat, len(paths))
	one := func(i int) error {
		_, st, err := b.conn.Exists(paths[i])
		if err != nil {
			return fmt.Errorf("zk: read %s: %w", paths[i], err)
		}
		stats[i] = st
		return nil
	}
	err = b.consistent(ctx, func() error { return b.wait(ctx, func() error { return b.getAll(paths, one) }) })
	if err != nil {
		return nil, fmt.Errorf("zk: dirs: %w", err)
	}
	var out []string
	for i, d := range dirs {
		if stats[i] != nil && stats[i].NumChildren > 0 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}
