package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
)

func (b *Backend) sessPath(id string) string { return b.ssP + "/" + escape(id) }

// sessState is the driver's memory of the logical sessions it opened: a
// session is bound to the Backend (the ZooKeeper session) that opened it.
type sessState struct {
	mu    sync.Mutex
	live  map[string]*zkSession
	ended endedIDs             // ids of sessions ended here, for EndedKeep
	nodes map[[2]string]string // (dir, name) -> znode name, a hint for WaitEntries
	seen  map[string][2]int32  // dir -> its cversion and version at the last Entries
	seqs  map[string]uint64    // a sequential entry's znode path -> its Seq
}

type zkSession struct {
	id    string
	owner int64 // the ZooKeeper session its node belongs to
	lease time.Duration
	data  []byte // the session node's data as last written

	// Guarded by sessState.mu.
	deadline time.Time // the driver's own lease check (watchdog)
	timer    *time.Timer
	closing  bool
	entries  map[[2]string]string // (dir, name) -> znode path, added
	unsure   map[[2]string]int    // adds in flight or of unknown outcome
}

const hintLimit = 4096

// EndedKeep is how long the backend remembers the id of a session that
// ended here, so that OpenSession of it (a retry delayed past the end) is
// ErrSessionGone rather than a new session under an old id. Ids are drawn
// at random, so only such retries reuse one, and they come within their
// caller's ctx; forgetting ids after EndedKeep keeps a long-lived
// process's memory bounded by the sessions ended in the last EndedKeep.
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

// init makes the maps on first use and forgets old ended ids. The caller
// holds mu.
func (st *sessState) init() {
	defer st.ended.forget()
	if st.live == nil {
		st.live = make(map[string]*zkSession)
		st.ended = endedIDs{at: make(map[string]time.Time), keep: EndedKeep, now: time.Now}
		st.nodes = make(map[[2]string]string)
		st.seen = make(map[string][2]int32)
		st.seqs = make(map[string]uint64)
	}
}

// learnSeq records the Seq of a sequential entry's znode. The caller
// holds mu.
func (st *sessState) learnSeq(p string, seq uint64) {
	if len(st.seqs) >= hintLimit {
		st.seqs = make(map[string]uint64)
	}
	st.seqs[p] = seq
}

func (st *sessState) hint(dir, name, node string) {
	if len(st.nodes) >= hintLimit {
		st.nodes = make(map[[2]string]string)
	}
	st.nodes[[2]string{dir, name}] = node
}

// lease is the effective lease of sessions: the ZooKeeper session timeout.
func (b *Backend) lease() time.Duration {
	if b.negotiated != nil {
		if ms := b.negotiated.ms.Load(); ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return b.cfg.SessionTimeout
}

func checkNames(pairs ...string) error {
	if err := backend.CheckSessionNames(pairs...); err != nil {
		return fmt.Errorf("zk: %w", err)
	}
	return nil
}

func goneErr(id string) error { return fmt.Errorf("zk: session %s: %w", id, backend.ErrSessionGone) }

// session returns a live session opened here, or ErrSessionGone.
func (b *Backend) session(id string) (*zkSession, error) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	b.sess.init()
	s := b.sess.live[id]
	if s == nil || s.closing {
		return nil, goneErr(id)
	}
	if sid := b.conn.SessionID(); sid != 0 && sid != s.owner {
		// The ZooKeeper session expired: its ephemeral nodes are gone.
		b.endLocked(s)
		return nil, goneErr(id)
	}
	return s, nil
}

// end forgets a session that has ended.
func (b *Backend) end(s *zkSession) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	b.endLocked(s)
}

func (b *Backend) endLocked(s *zkSession) {
	if b.sess.live[s.id] == s {
		delete(b.sess.live, s.id)
		b.sess.ended.add(s.id)
	}
	s.closing = true
	if s.timer != nil {
		s.timer.Stop()
	}
}

// Sessions returns b: a driver is a backend.SessionStore, so locks and
// groups can be built over it.
func (b *Backend) Sessions() backend.Sessions { return b }

// OpenSession creates the session's ephemeral node. The lease asked for is
// not used: the session lives as long as the driver's ZooKeeper session,
// and its lease is that session's timeout, which the server negotiated.
func (b *Backend) OpenSession(ctx context.Context, id string, lease time.Duration, holder string) (time.Duration, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if err := checkNames("session id", id); err != nil {
		return 0, err
	}
	if lease <= 0 {
		return 0, fmt.Errorf("zk: open session %s: lease %v is not positive (%w)", id, lease, backend.ErrNotApplied)
	}
	b.sess.mu.Lock()
	b.sess.init()
	if b.sess.ended.has(id) {
		b.sess.mu.Unlock()
		return 0, goneErr(id)
	}
	if s := b.sess.live[id]; s != nil {
		b.sess.mu.Unlock()
		if _, err := b.session(id); err != nil {
			return 0, err
		}
		return s.lease, nil
	}
	b.sess.mu.Unlock()

	eff := b.lease()
	now := time.Now()
	data := (&sessNode{Holder: holder, Lease: eff.Milliseconds(), Heartbeat: now.UnixNano()}).encode()
	p := b.sessPath(id)
	err := b.wait(ctx, func() error { _, err := b.conn.Create(p, data, gozk.FlagEphemeral, b.acl); return err })
	if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		return 0, fmt.Errorf("zk: open session %s: create %s: %w", id, p, err)
	}
	// Whose is it? A repeat after an unknown outcome finds its own node.
	var st *gozk.Stat
	err = b.consistent(ctx, func() error {
		return b.wait(ctx, func() (err error) { _, st, err = b.conn.Get(p); return err })
	})
	if errors.Is(err, gozk.ErrNoNode) {
		return 0, fmt.Errorf("zk: open session %s: its node vanished (the ZooKeeper session ended meanwhile): try again", id)
	}
	if err != nil {
		return 0, fmt.Errorf("zk: open session %s: read %s: %w", id, p, err)
	}
	b.observe(st)
	if st.EphemeralOwner != b.conn.SessionID() {
		return 0, fmt.Errorf("zk: open session %s: already open in another ZooKeeper session (%#x)", id, st.EphemeralOwner)
	}
	s := &zkSession{id: id, owner: st.EphemeralOwner, lease: eff, data: data, deadline: now.Add(eff),
		entries: make(map[[2]string]string), unsure: make(map[[2]string]int)}
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	if old := b.sess.live[id]; old != nil { // opened concurrently
		return old.lease, nil
	}
	b.sess.live[id] = s
	s.timer = time.AfterFunc(eff, func() { b.watchdog(s) })
	return eff, nil
}

// watchdog ends a session that was not renewed within its lease, as a
// server enforcing leases would: the ZooKeeper session alone keeps nodes
// alive as long as the process pings, renewals or not.
func (b *Backend) watchdog(s *zkSession) {
	b.sess.mu.Lock()
	if b.sess.live[s.id] != s {
		b.sess.mu.Unlock()
		return
	}
	if d := time.Until(s.deadline); !s.closing && d > 0 {
		s.timer.Reset(d)
		b.sess.mu.Unlock()
		return
	}
	s.closing = true
	b.sess.mu.Unlock()
	select {
	case <-b.done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.lease)
	defer cancel()
	if err := b.closeNodes(ctx, s); err != nil {
		b.sess.mu.Lock()
		if b.sess.live[s.id] == s {
			s.timer.Reset(time.Second) // try again
		}
		b.sess.mu.Unlock()
	}
}

// RenewSession writes the heartbeat into the session's node: a write, so
// its success proves the ZooKeeper session alive at the server.
func (b *Backend) RenewSession(ctx context.Context, id string, now time.Time) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", id); err != nil {
		return err
	}
	s, err := b.session(id)
	if err != nil {
		return err
	}
	var n sessNode
	if err := msgpack.Unmarshal(s.data, &n); err != nil {
		// This backend wrote s.data: rewriting it with only the heartbeat
		// would drop the holder and lease, so nothing is written.
		return fmt.Errorf("zk: renew session %s: its node's data: %v: %w", id, err, ErrMalformed)
	}
	n.Heartbeat = now.UnixNano()
	data := n.encode()
	start := time.Now()
	var st *gozk.Stat
	err = b.wait(ctx, func() (err error) { st, err = b.conn.Set(b.sessPath(id), data, -1); return err })
	if errors.Is(err, gozk.ErrNoNode) {
		b.end(s)
		return goneErr(id)
	}
	if err != nil {
		return fmt.Errorf("zk: renew session %s: %w", id, err)
	}
	b.observe(st)
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	if st.EphemeralOwner != s.owner {
		b.endLocked(s)
		return goneErr(id)
	}
	if b.sess.live[id] != s || s.closing {
		return goneErr(id)
	}
	s.data = data
	if d := start.Add(s.lease); d.After(s.deadline) {
		s.deadline = d
	}
	return nil
}

// CloseSession deletes the session's entries and node in one Multi.
func (b *Backend) CloseSession(ctx context.Context, id string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := checkNames("session id", id); err != nil {
		return err
	}
	b.sess.mu.Lock()
	b.sess.init()
	s := b.sess.live[id]
	if s != nil {
		s.closing = true
	}
	b.sess.mu.Unlock()
	if s != nil {
		return b.closeNodes(ctx, s)
	}
	// Unknown here: a node of this connection's left by an OpenSession
	// whose outcome its caller did not learn has no entries.
	p := b.sessPath(id)
	var st *gozk.Stat
	err := b.wait(ctx, func() (err error) { _, st, err = b.conn.Get(p); return err })
	if errors.Is(err, gozk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("zk: close session %s: %w", id, err)
	}
	if st.EphemeralOwner == b.conn.SessionID() {
		err := b.wait(ctx, func() error { return b.conn.Delete(p, st.Version) })
		if err != nil && !errors.Is(err, gozk.ErrNoNode) {
			return fmt.Errorf("zk: close session %s: %w", id, err)
		}
	}
	return nil
}

// closeNodes deletes a closing session's entries and node.
func (b *Backend) closeNodes(ctx context.Context, s *zkSession) error {
	p := b.sessPath(s.id)
	var last error
	for range 20 {
		var st *gozk.Stat
		err := b.consistent(ctx, func() error {
			return b.wait(ctx, func() (err error) { _, st, err = b.conn.Get(p); return err })
		})
		if errors.Is(err, gozk.ErrNoNode) {
			b.end(s) // gone with its entries
			return nil
		}
		if err != nil {
			return fmt.Errorf("zk: close session %s: %w", s.id, err)
		}
		if st.EphemeralOwner != s.owner {
			b.end(s)
			return nil
		}
		// The entries: those added, and those whose adding may have
		// happened unseen (found by name).
		b.sess.mu.Lock()
		var keys [][2]string
		var paths []string
		for k, ep := range s.entries {
			keys, paths = append(keys, k), append(paths, ep)
		}
		var unsure [][2]string
		for k := range s.unsure {
			unsure = append(unsure, k)
		}
		b.sess.mu.Unlock()
		for _, k := range unsure {
			found, err := b.findEntries(ctx, s.id, k[0], k[1])
			if err != nil {
				return fmt.Errorf("zk: close session %s: %w", s.id, err)
			}
			for _, f := range found {
				if !slices.Contains(paths, f.path) {
					keys, paths = append(keys, k), append(paths, f.path)
				}
			}
		}
		var ops []any
		for _, ep := range paths {
			ops = append(ops, &gozk.DeleteRequest{Path: ep, Version: -1})
		}
		ops = append(ops, &gozk.DeleteRequest{Path: p, Version: st.Version})
		if requestSize(ops) > b.cfg.MaxRequest {
			// Too many for one request: the entries go first, one by one.
			for i, ep := range paths {
				err := b.wait(ctx, func() error { return b.conn.Delete(ep, -1) })
				if err != nil && !errors.Is(err, gozk.ErrNoNode) {
					return fmt.Errorf("zk: close session %s: delete %s: %w", s.id, ep, err)
				}
				b.untrack(s, keys[i], ep)
			}
			continue
		}
		_, err = b.multi(ctx, ops)
		var me *multiError
		switch {
		case err == nil:
			b.end(s)
			return nil
		case errors.As(err, &me) && me.Op == len(ops)-1 && errors.Is(me.Err, gozk.ErrNoNode):
			b.end(s)
			return nil
		case errors.As(err, &me) && me.Op == len(ops)-1 && errors.Is(me.Err, gozk.ErrBadVersion):
			// Renewed, or an entry was added: look again.
		case errors.As(err, &me) && me.Op >= 0 && me.Op < len(paths) && errors.Is(me.Err, gozk.ErrNoNode):
			b.untrack(s, keys[me.Op], paths[me.Op])
		case errors.As(err, &me):
			return fmt.Errorf("zk: close session %s: %w", s.id, err)
		default:
			if ctx.Err() != nil || pause(ctx, b.done) != nil {
				return fmt.Errorf("zk: close session %s: %w", s.id, err)
			}
		}
		last = err
	}
	return fmt.Errorf("zk: close session %s: gave up: %v", s.id, last)
}

// closeSessions, at Close, ends the sessions opened here. When Open made
// the connection, closing it ends them all at the server.
func (b *Backend) closeSessions() {
	b.sess.mu.Lock()
	var live []*zkSession
	for _, s := range b.sess.live {
		if s.timer != nil {
			s.timer.Stop()
		}
		s.closing = true
		live = append(live, s)
	}
	b.sess.mu.Unlock()
	if b.own {
		return
	}
	for _, s := range live {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.DialTimeout)
		if err := b.closeNodes(ctx, s); err != nil {
			// The connection is the caller's (New) and stays open: the
			// nodes stay until its ZooKeeper session ends.
			b.logger().Warn("epochal: Close could not delete a session's nodes; they go when the connection's ZooKeeper session ends",
				"root", b.root, "session", s.id, "err", err)
		}
		cancel()
	}
}

func (b *Backend) untrack(s *zkSession, k [2]string, p string) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	if s.entries[k] == p {
		delete(s.entries, k)
	}
}
