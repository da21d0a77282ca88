package zk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
)

// Config configures Open and New.
type Config struct {
	// Servers are the ensemble's host:port addresses (Open only).
	Servers []string
	// Root is the znode under which everything lives, like a chroot: an
	// absolute path such as "/app1" (default "/epochal"). Missing
	// ancestors are created.
	Root string
	// SessionTimeout is the ZooKeeper session timeout (Open only; the
	// server clamps it to 2 to 20 tick times). Default 10s. Open learns
	// the timeout the server granted, the lease OpenSession returns; New
	// cannot, and reports SessionTimeout itself: set it to the timeout
	// the connection was made with.
	SessionTimeout time.Duration
	// Auth, "user:password", authenticates with the digest scheme; every
	// node Epochal creates then carries an ACL giving that identity all
	// permissions and nobody else any. Empty: no authentication, nodes
	// open to all (world:anyone).
	Auth string
	// DialTimeout bounds New's wait for a session (Open waits as long as
	// its ctx allows). Default 10s.
	DialTimeout time.Duration
	// OnePhaseKeep is how long the record of a one-phase commit whose
	// outcome its client did not learn (or whose client died) is kept:
	// every open backend on the root deletes such records once they are
	// older than this, looking every half OnePhaseKeep. A client that
	// learned the outcome deletes its record about 5 s after the commit,
	// or when it closes. Default 1 minute.
	OnePhaseKeep time.Duration
	// MaxRequest is the largest request, in bytes, the servers accept:
	// their jute.maxbuffer (default 1 MiB) less headroom. Default
	// 1,000,000. A value may take up to half of it (see MaxValueSize).
	MaxRequest int
	// SyncReads makes every read point linearizable: the connected
	// server catches up with the leader (a sync) before the point is
	// drawn, so a transaction sees every commit acknowledged, in any
	// process, before it began. It costs a round trip through the leader
	// per read point. Without it a transaction's snapshot is consistent
	// and includes everything its own process committed, but a lagging
	// server may show another process's newest commits a little late.
	SyncReads bool
	// Logger receives what the backend cannot return to a caller (the
	// root deleted under it, a failed background sweep), and
	// go-zookeeper's own lines at Debug level. Default (nil):
	// slog.Default().
	Logger *slog.Logger
	// ReadOnly opens only a root that already holds Epochal data, and
	// writes nothing of its own accord. Open and New create no znode (not
	// the root, its ancestors, its layout or its epoch node): a root with
	// no data is a *NoNamespaceError, which wraps backend.ErrNotFound and
	// names the roots under / there are, and a root whose identity is
	// there without its epoch node is damaged (backend.ErrDataLost). The
	// reads (ReadPoint, Read, Versions, List, Records, ListRecords,
	// Entries, ReadDir, Dirs, WaitEntries) write nothing either: no
	// record is deleted (ListRecords lists the expired ones too, until a
	// writing backend deletes them), no one-phase record swept, no
	// history grown after a read fault. Subscribe marks nothing (no
	// ephemeral child of the ref's znode; the subscription is
	// backend.Unmarked): commits keep no extra history for it, and a
	// watcher depends on the hints and its polls to read each change in
	// time, or announces a gap. (Its ZooKeeper session comes and goes
	// like any client's: no znode.) What a caller asks to change (a commit,
	// PutRecord, OpenSession, ...) is still written. For tools that
	// inspect (the CLI's inspecting commands), so that a mistyped root
	// leaves no znode behind and an existing one is left as it was.
	ReadOnly bool
}

// NoNamespaceError is Open's (or New's) error, with Config.ReadOnly, for a
// root that holds no Epochal data. It wraps backend.ErrNotFound.
type NoNamespaceError struct {
	Root string
	// Found are the Epochal roots there are ("/app1", "/apps/shop"),
	// sorted: nested ones included, at most 4 levels below / and among
	// the first 512 znodes looked at (breadth first).
	Found []string
	// Partial: the search stopped at those bounds with znodes left to look
	// at; there may be other roots.
	Partial bool
}

func (e *NoNamespaceError) Error() string {
	return fmt.Sprintf("zk: no Epochal data under root %q", e.Root)
}

func (e *NoNamespaceError) Unwrap() error { return backend.ErrNotFound }

// ErrConfig reports a bad Config.
var ErrConfig = errors.New("zk: bad config")

// ErrTooLarge: a transaction's writes to this backend do not fit in one
// ZooKeeper request (Config.MaxRequest). Nothing was sent. It wraps
// backend.ErrTooLarge.
var ErrTooLarge = fmt.Errorf("zk: request too large for one Multi (%w)", backend.ErrTooLarge)

// ErrMalformed: a znode under the root does not hold what Epochal wrote
// there (another program changed it). A mutation that meets one sends
// nothing. It wraps backend.ErrCorrupt.
var ErrMalformed = fmt.Errorf("zk: malformed node data (%w, %w)", backend.ErrCorrupt, backend.ErrNotApplied)

func (c *Config) validate(needServers bool) error {
	if c.Root == "" {
		c.Root = "/epochal"
	}
	if err := checkPath(c.Root); err != nil {
		return fmt.Errorf("%w: Root %q: %v", ErrConfig, c.Root, err)
	}
	if needServers && len(c.Servers) == 0 {
		return fmt.Errorf("%w: Servers is empty", ErrConfig)
	}
	for _, s := range c.Servers {
		if s == "" || strings.ContainsAny(s, " ,/") {
			return fmt.Errorf("%w: server %q (want host:port)", ErrConfig, s)
		}
	}
	if c.Auth != "" && !strings.Contains(c.Auth, ":") {
		return fmt.Errorf("%w: Auth must be \"user:password\"", ErrConfig)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.OnePhaseKeep <= 0 {
		c.OnePhaseKeep = time.Minute
	}
	if c.MaxRequest == 0 {
		c.MaxRequest = 1_000_000
	}
	if c.MaxRequest < 4096 {
		return fmt.Errorf("%w: MaxRequest %d is below 4096", ErrConfig, c.MaxRequest)
	}
	return nil
}

// checkPath accepts an absolute znode path other than "/" and "/zookeeper".
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("must start with /")
	}
	if p == "/" || strings.HasSuffix(p, "/") {
		return errors.New("must name a node below / with no trailing /")
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "":
			return errors.New("has an empty segment")
		case seg == "." || seg == "..":
			return errors.New("has a \".\" or \"..\" segment")
		}
		for _, r := range seg {
			if r < 0x20 || r == 0x7f || (r >= 0xd800 && r <= 0xf8ff) || r >= 0xfff0 && r <= 0xffff {
				return fmt.Errorf("contains character %U", r)
			}
		}
	}
	if p == "/zookeeper" || strings.HasPrefix(p, "/zookeeper/") {
		return errors.New("/zookeeper is reserved")
	}
	return nil
}

// Backend is the ZooKeeper backend.
type Backend struct {
	conn *gozk.Conn
	own  bool // Close closes conn
	cfg  Config
	acl  []gozk.ACL
	id   string

	// Paths under the root.
	root, clockP, refsP, metaP, recsP, oneP string
	ssP, sdP, slP                           string // sessions, session dirs, their logs
	// epochP is the root's epoch node, named after its identity: every
	// Multi checks that it exists, and every read batch looks at it, so
	// nothing is done on a root that was deleted (and perhaps recreated,
	// with another identity) under this backend. lost, once set, is why
	// every later call fails (backend.ErrDataLost).
	epochP string
	lost   atomic.Pointer[error]

	// negotiated learns the session timeout the server granted (Open's
	// connections only; nil for New).
	negotiated *negotiated
	sess       sessState // logical sessions opened here (sessions.go)

	// synced is the session whose view is known to include every point
	// this backend handed out (see consistent).
	synced atomic.Int64
	// seen is the largest zxid this backend has seen in a reply: every
	// request sent after it was seen is served from a state that holds
	// every write up to it (see observe).
	seen atomic.Int64
	// trips counts round trips (RoundTrips).
	trips atomic.Uint64
	// undecodable holds the one-phase records a sweep could not decode
	// and logged (once each).
	undecodable sync.Map

	cache cache // ref nodes as last read or written
	gate  gate  // one-phase commits of one ref take turns

	gcMu     sync.Mutex
	gcQueue  []gcItem // one-phase records to delete, in time order
	lastScan time.Time
	// wall is this process's clock as scan reads it (tests skew it).
	wall func() time.Time

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

var (
	// backend.Driver, and each of its roles.
	_ backend.Driver       = (*Backend)(nil)
	_ backend.Coordinator  = (*Backend)(nil)
	_ backend.RefStore     = (*Backend)(nil)
	_ backend.Participant  = (*Backend)(nil)
	_ backend.MetaStore    = (*Backend)(nil)
	_ backend.ChangeStream = (*Backend)(nil)
	// Optional capabilities.
	_ backend.OnePhase         = (*Backend)(nil)
	_ backend.ValueLimit       = (*Backend)(nil)
	_ backend.Sessions         = (*Backend)(nil)
	_ backend.SessionStore     = (*Backend)(nil)
	_ backend.RoundTripCounter = (*Backend)(nil)
)

// logger returns the backend's logger (Config.Logger or slog.Default()).
func (b *Backend) logger() *slog.Logger {
	if b.cfg.Logger != nil {
		return b.cfg.Logger
	}
	return slog.Default()
}

// zkLog passes go-zookeeper's lines to a logger at Debug level.
type zkLog struct{ l *slog.Logger }

func (z zkLog) Printf(format string, args ...any) {
	l := z.l
	if l == nil {
		l = slog.Default()
	}
	if l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug(fmt.Sprintf(format, args...), "component", "go-zookeeper")
	}
}

// Open connects to the ensemble cfg names, waits for a session within ctx,
// authenticates, and creates Root and its layout if missing (not with
// Config.ReadOnly).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	log := zkLog{cfg.Logger}
	neg := &negotiated{}
	conn, events, err := gozk.Connect(cfg.Servers, cfg.SessionTimeout, gozk.WithLogger(log), gozk.WithLogInfo(false),
		gozk.WithDialer(neg.dial))
	if err != nil {
		return nil, fmt.Errorf("zk: open %v: %w", cfg.Servers, err)
	}
	// The global event channel holds 6 events and drops the rest: it is
	// drained and not relied on (sessions are tracked by SessionID).
	go func() {
		for range events {
		}
	}()
	if err := waitSession(ctx, conn); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("zk: open %v: %w", cfg.Servers, err)
	}
	b, err := open(ctx, conn, cfg)
	if err != nil {
		closeConn(ctx, conn)
		return nil, err
	}
	b.own = true
	b.negotiated = neg
	return b, nil
}

// closeConn closes a connection Open gave up on. go-zookeeper's Close
// waits up to a second for the server to answer its close request: when
// ctx has ended (a server that does not answer, most likely) that wait is
// left to the background, so Open returns by its deadline.
func closeConn(ctx context.Context, conn *gozk.Conn) {
	if ctx.Err() != nil {
		go conn.Close()
		return
	}
	conn.Close()
}

// Conn is go-zookeeper's connection.
type Conn = gozk.Conn

// New uses a connection the caller already has. It waits for its session
// within cfg.DialTimeout; Close does not close the connection. Auth, if
// set, is added to the connection's credentials.
func New(conn *Conn, cfg Config) (*Backend, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrConfig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if err := waitSession(ctx, conn); err != nil {
		return nil, fmt.Errorf("zk: new: %w", err)
	}
	return open(ctx, conn, cfg)
}

func waitSession(ctx context.Context, conn *gozk.Conn) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for conn.State() != gozk.StateHasSession {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no session (state %v): %w", conn.State(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func open(ctx context.Context, conn *gozk.Conn, cfg Config) (*Backend, error) {
	b := &Backend{conn: conn, cfg: cfg, root: cfg.Root, done: make(chan struct{})}
	b.clockP, b.refsP, b.metaP = b.root+"/clock", b.root+"/r", b.root+"/m"
	b.recsP, b.oneP = b.root+"/t", b.root+"/o"
	b.ssP, b.sdP, b.slP = b.root+"/ss", b.root+"/sd", b.root+"/sl"
	b.acl = gozk.WorldACL(gozk.PermAll)
	if cfg.Auth != "" {
		user, pass, _ := strings.Cut(cfg.Auth, ":")
		if err := b.wait(ctx, func() error { return conn.AddAuth("digest", []byte(cfg.Auth)) }); err != nil {
			return nil, fmt.Errorf("zk: authenticate: %w", err)
		}
		b.acl = gozk.DigestACL(gozk.PermAll, user, pass)
	}
	b.synced.Store(conn.SessionID())
	// Ancestors of the root, the root and its layout.
	var paths []string
	for i := 1; i < len(b.root); i++ {
		if b.root[i] == '/' {
			paths = append(paths, b.root[:i])
		}
	}
	paths = append(paths, b.root, b.clockP, b.refsP, b.metaP, b.recsP, b.oneP, b.ssP, b.sdP, b.slP)
	if cfg.ReadOnly {
		paths = nil // the root's id, read below, says whether it is one
	}
	for _, p := range paths {
		err := b.setup(ctx, func() error {
			_, err := conn.Create(p, nil, 0, b.acl)
			return err
		})
		if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			if errors.Is(err, gozk.ErrNoAuth) {
				return nil, fmt.Errorf("zk: create %s: %w (it belongs to another identity: check Config.Auth and Root)", p, err)
			}
			return nil, fmt.Errorf("zk: create %s: %w", p, err)
		}
	}
	// The identity is stored with the data, so every client of this root
	// (whatever server it dials) agrees.
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	var err error
	if !cfg.ReadOnly {
		err = b.setup(ctx, func() error {
			_, err := conn.Create(b.root+"/id", []byte("zk:"+hex.EncodeToString(raw[:])+b.root), 0, b.acl)
			return err
		})
	}
	if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		return nil, fmt.Errorf("zk: create %s/id: %w", b.root, err)
	}
	var id []byte
	if err := b.setup(ctx, func() (err error) { id, _, err = conn.Get(b.root + "/id"); return err }); err != nil {
		if cfg.ReadOnly && errors.Is(err, gozk.ErrNoNode) {
			found, partial, ferr := b.roots(ctx)
			if ferr != nil {
				return nil, fmt.Errorf("zk: no Epochal data under root %q; listing the roots there are: %w", b.root, ferr)
			}
			return nil, &NoNamespaceError{Root: b.root, Found: found, Partial: partial}
		}
		if errors.Is(err, gozk.ErrNoAuth) {
			return nil, fmt.Errorf("zk: read %s/id: %w (the root belongs to another identity: check Config.Auth)", b.root, err)
		}
		return nil, fmt.Errorf("zk: read %s/id: %w", b.root, err)
	}
	if !strings.HasPrefix(string(id), "zk:") {
		return nil, fmt.Errorf("zk: %s/id holds %q: not an Epochal root", b.root, id)
	}
	b.id = string(id)
	hexID, _, _ := strings.Cut(strings.TrimPrefix(b.id, "zk:"), "/")
	b.epochP = b.root + "/e." + hexID
	if cfg.ReadOnly {
		// Not created: a root whose id is there has its epoch node,
		// made right after the id, unless its maker died in between
		// (a writer's Open makes it then) or it was deleted since.
		var there bool
		if err := b.setup(ctx, func() (err error) { there, _, err = conn.Exists(b.epochP); return err }); err != nil {
			return nil, fmt.Errorf("zk: read %s: %w", b.epochP, err)
		}
		if !there {
			return nil, fmt.Errorf("zk: root %s holds its identity (%s/id) but not its epoch node %s: its data was lost or damaged (partly deleted, or the process creating the root died before it was done): %w",
				b.root, b.root, b.epochP, backend.ErrDataLost)
		}
	} else {
		err = b.setup(ctx, func() error {
			_, err := conn.Create(b.epochP, nil, 0, b.acl)
			return err
		})
		if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			return nil, fmt.Errorf("zk: create %s: %w", b.epochP, err)
		}
	}
	if _, err := b.readPoint(ctx); err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go b.gcLoop()
	return b, nil
}

// Bounds of roots' search.
const (
	rootsMaxDepth = 4   // levels below /: /a/b/c/d
	rootsMaxNodes = 512 // znodes looked at
)

// roots lists the Epochal roots there are (a znode whose id child holds
// "zk:..."), nested ones included, breadth first: at most rootsMaxDepth
// levels below / and rootsMaxNodes znodes looked at (one Children request
// each, and a Get of the id of those that have one); partial reports that
// it stopped at those bounds with znodes left to look at. It does not
// look inside a root, nor in /zookeeper, nor in a znode this identity may
// not read.
func (b *Backend) roots(ctx context.Context) (found []string, partial bool, err error) {
	type node struct {
		path  string
		depth int
	}
	queue := []node{{"/", 0}}
	for looked := 0; len(queue) > 0; looked++ {
		if looked == rootsMaxNodes {
			partial = true
			break
		}
		n := queue[0]
		queue = queue[1:]
		var kids []string
		err := b.setup(ctx, func() (err error) { kids, _, err = b.conn.Children(n.path); return err })
		if errors.Is(err, gozk.ErrNoNode) || errors.Is(err, gozk.ErrNoAuth) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if n.path != "/" && slices.Contains(kids, "id") {
			var id []byte
			err := b.setup(ctx, func() (err error) { id, _, err = b.conn.Get(n.path + "/id"); return err })
			if err != nil && !errors.Is(err, gozk.ErrNoNode) && !errors.Is(err, gozk.ErrNoAuth) {
				return nil, false, err
			}
			if err == nil && strings.HasPrefix(string(id), "zk:") {
				found = append(found, n.path)
				continue
			}
		}
		if n.depth == rootsMaxDepth {
			partial = partial || len(kids) > 0
			continue
		}
		slices.Sort(kids)
		for _, k := range kids {
			p := strings.TrimSuffix(n.path, "/") + "/" + k
			if p != "/zookeeper" {
				queue = append(queue, node{p, n.depth + 1})
			}
		}
	}
	slices.Sort(found)
	return found, partial, nil
}

// setup runs one idempotent step of open (a create that tolerates
// ErrNodeExists, a read), trying it again while the connection drops
// under it (a request cut off by a lost connection, on a loaded machine or
// a restarting ensemble) until ctx ends.
func (b *Backend) setup(ctx context.Context, step func() error) error {
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		err := b.wait(ctx, step)
		if !errors.Is(err, gozk.ErrConnectionClosed) && !errors.Is(err, gozk.ErrSessionMoved) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// ID names this backend: stored under the root, the same for every client.
func (b *Backend) ID() string { return b.id }

// MaxValueSize is the largest value a ref here may hold: the newest value
// and a staged one share the ref's node, which must fit in one request.
func (b *Backend) MaxValueSize() int { return b.cfg.MaxRequest/2 - 8192 }

// Close deletes the one-phase records this backend still had queued for
// deletion (waiting at most 5 s, or the session timeout if shorter, for
// the server), stops the backend's goroutines and closes the connection
// if Open made it. Later calls fail with backend.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	b.closeSessions()
	b.wg.Wait()
	if b.own {
		b.conn.Close()
	}
	return nil
}

func (b *Backend) check(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("zk: %w (%w)", err, backend.ErrNotApplied)
	}
	if err := b.lost.Load(); err != nil {
		return *err
	}
	return nil
}

// fail records that the root's data is gone from under this backend (its
// epoch node vanished: the root was deleted, and perhaps recreated) and
// returns the error every call now returns.
func (b *Backend) fail() error {
	err := fmt.Errorf("zk: root %s: its epoch node %s is gone: the root was deleted (and perhaps recreated with another identity) under this backend: %w; reopen the backend once the data is restored or deliberately recreated",
		b.root, b.epochP, backend.ErrDataLost)
	if b.lost.CompareAndSwap(nil, &err) {
		b.logger().Error("epochal: ZooKeeper root deleted under a live backend; every later call fails", "root", b.root, "id", b.id)
	}
	return *b.lost.Load()
}
