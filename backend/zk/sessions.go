package zk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
)

// Sessions (backend.Sessions) ride on the driver's ZooKeeper session:
//
//	{root}/ss/<id>          EPHEMERAL, one per logical session: holder,
//	                        lease, heartbeat
//	{root}/sd/<dir>         PERSISTENT, one flat node per dir, never deleted
//	{root}/sd/<dir>/<name>  EPHEMERAL named entry
//	{root}/sd/<dir>/<name>#0000000042
//	                        EPHEMERAL|SEQUENTIAL entry, Seq 2^32 + Czxid
//	{root}/sl/<dir>         PERSISTENT, the dir's log of named additions
//	                        (logNode), never deleted
//
// A dir's revision (ReadDir) is its node's Pzxid: the zxid of the last
// child created or deleted, moved by the server's deletions at a session's
// expiry too. A named entry's addition is logged in sl/<dir> by the Multi
// that creates it (version checked), so the log is in step with the dir.
//
// Ids, dirs and names are escaped (escape), so a dir with slashes is one
// znode and dirs never nest; '#' never appears in an escaped name, so it
// marks sequential entries. Entries hold {session, data, created}.
//
// A logical session lives while its node does, and its node lives while
// the ZooKeeper session that created it: when that expires the server
// deletes the node and every entry at once. Every AddEntry is a Multi that
// also writes the session node, so no entry is ever created for a session
// whose node is gone (a new ZooKeeper session cannot bring it back), and
// CloseSession deletes the entries and the session node in one Multi that
// checks the session node's version, so an entry added meanwhile makes it
// start again rather than outlive the session.
//
// A Seq is seqBase plus the zxid of the Multi that created the entry (the
// entry znode's Czxid; the Mzxid of the session node that the same Multi
// sets, so the adder learns it from the reply). Zxids are 64-bit and
// strictly increasing across the ensemble's whole life (leader changes and
// restarts included), and one Multi creates at most one entry, so Seqs
// strictly increase per dir and never wrap. Listing learns the Seqs of
// other entries from their Czxid (an Exists each, pipelined, cached by
// znode: a sequential znode's name is never reused). Entries are queued in
// Seq order, so the lock queue is the creation order too.
//
// Before this scheme a Seq was the server's sequence number (the dir's
// 32-bit child version) plus one, at most 2^32, which wrapped; seqBase is
// 2^32, so every Seq handed out now is above every one handed out before,
// in roots created by either version. The server's sequence suffix is
// still part of a sequential entry's znode name, only for uniqueness.

// seqMark separates a sequential entry's escaped name from its sequence
// number; escape never outputs it.
const seqMark = "#"

func (b *Backend) sessPath(id string) string { return b.ssP + "/" + escape(id) }
func (b *Backend) dirPath(dir string) string { return b.sdP + "/" + escape(dir) }

// sessNode is a session's znode.
type sessNode struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Holder    string
	Lease     int64 // ms
	Heartbeat int64 // unix ns, the renewing client's clock
}

func (n *sessNode) encode() []byte {
	data, err := msgpack.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("zk: encode session node: %v", err))
	}
	return data
}

// entryNode is an entry's znode.
type entryNode struct {
	_msgpack struct{} `msgpack:",as_array"`
	Session  string
	Data     []byte
	Created  int64 // unix ns, 0: none
}

func (n *entryNode) encode() []byte {
	data, err := msgpack.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("zk: encode entry node: %v", err))
	}
	return data
}

// logNode is a dir's log of named additions ({root}/sl/<dir>), written
// in the Multi that creates the entry, version checked. The newest
// record's Zxid is 0 ("self"): the Multi cannot know its own zxid, which
// is the node's Mzxid; the next writer stores it explicitly.
type logNode struct {
	_msgpack struct{} `msgpack:",as_array"`
	Floor    int64    // the zxid of the newest record dropped
	Recs     []logRec // oldest first
}

type logRec struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Zxid     int64
}

// logKeep is how many records a dir's log keeps (backend.MinAddLog).
const logKeep = backend.MinAddLog

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

// appended returns the log with name added as its self record, the
// oldest records dropped past logKeep.
func (lg logNode) appended(name string) []byte {
	lg.Recs = append(slices.Clone(lg.Recs), logRec{Name: name})
	if over := len(lg.Recs) - logKeep; over > 0 {
		lg.Floor = max(lg.Floor, lg.Recs[over-1].Zxid)
		lg.Recs = lg.Recs[over:]
	}
	data, err := msgpack.Marshal(&lg)
	if err != nil {
		panic(fmt.Sprintf("zk: encode log node: %v", err))
	}
	return data
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

func decodeEntry(p string, data []byte) (*entryNode, error) {
	var n entryNode
	if err := msgpack.Unmarshal(data, &n); err != nil || n.Session == "" {
		return nil, fmt.Errorf("%w: entry node %s: %v", ErrMalformed, p, err)
	}
	return &n, nil
}

func unixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// seqBase is added to a zxid to make a Seq: above 2^32, the largest Seq
// of the scheme before (a 32-bit child version plus one).
const seqBase = 1 << 32

// seqOf is the Seq of a sequential entry created by the request with
// zxid z.
func seqOf(z int64) uint64 { return seqBase + uint64(z) }

// parseNode reads an entry's znode name: its entry name, and whether it
// is sequential (its Seq is learned from its Czxid, see seqOf).
func parseNode(node string) (name string, sequential bool, ok bool) {
	esc := node
	if i := strings.Index(node, seqMark); i >= 0 {
		// The server's suffix: an int32 counter printed with %010d
		// (negative past 2^31), there for uniqueness only.
		if _, err := strconv.ParseInt(node[i+1:], 10, 64); err != nil {
			return "", false, false
		}
		esc, sequential = node[:i], true
	}
	name, ok = unescape(esc)
	return name, sequential, ok && name != ""
}

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

// negotiated learns the session timeout the server granted from the
// connect responses of Open's connections (go-zookeeper keeps it to
// itself).
type negotiated struct{ ms atomic.Int64 }

func (n *negotiated) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, n: n}, nil
}

// sniffConn reads along the first packet the server sends on a
// connection, the connect response: int32 length, then int32 protocol
// version, int32 timeout (ms), int64 session id, password...
type sniffConn struct {
	net.Conn
	n    *negotiated
	buf  []byte
	done bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	if !c.done && k > 0 {
		c.buf = append(c.buf, p[:k]...)
		if len(c.buf) >= 4 {
			l := int(binary.BigEndian.Uint32(c.buf))
			switch {
			case l < 16 || l > 4096:
				c.done, c.buf = true, nil
			case len(c.buf) >= 4+l:
				body := c.buf[4:]
				to := int32(binary.BigEndian.Uint32(body[4:]))
				sid := int64(binary.BigEndian.Uint64(body[8:]))
				if sid != 0 && to > 0 {
					c.n.ms.Store(int64(to))
				}
				c.done, c.buf = true, nil
			}
		}
	}
	return k, err
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

// failedOp reports whether err is a refused Multi whose op i failed with
// want.
func failedOp(err error, i int, want error) bool {
	var me *multiError
	return errors.As(err, &me) && me.Op == i && errors.Is(me.Err, want)
}

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
	_ = msgpack.Unmarshal(s.data, &n)
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
		_ = b.closeNodes(ctx, s)
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

// findEntries lists the znodes of dir holding entry name of a session
// (and learns the Seqs of sequential ones).
// foundEntry is an entry's znode path and the zxid that created it (its
// Seq, for a sequential one, is seqOf(czxid)).
type foundEntry struct {
	path  string
	czxid int64
}

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

// pause waits a little before a request is sent again after a failure
// whose outcome is unknown (the connection is likely down).
func pause(ctx context.Context, done <-chan struct{}) error {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return backend.ErrClosed
	}
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
