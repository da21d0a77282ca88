package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/history"
)

// Config configures Open and New.
type Config struct {
	// Addr is the server's host:port (Open only).
	Addr string
	// Username and Password authenticate (Redis ACL user; Username empty
	// for the default user). Open only.
	Username, Password string
	// TLS, if set, connects with TLS (Open only).
	TLS *tls.Config
	// DB is the database number (Open only; Cluster has only 0).
	DB int
	// Prefix names this STM's keys: every key is under "{Prefix}:".
	// Letters, digits and ._:- only, 1 to 64 bytes. Default "epochal".
	Prefix string
	// DialTimeout bounds connecting (Open only). Default 5s.
	DialTimeout time.Duration
	// OnePhaseKeep is how long a one-phase commit's record is kept, so
	// that a retried script, or the engine looking up an unknown
	// outcome, finds it. Default 1 minute.
	OnePhaseKeep time.Duration
	// WatchKeep is how many older versions a ref keeps while this process
	// watches it: a watcher whose change feed falls further behind than
	// that is told of a gap (refs.OnGap) instead of each change. Each
	// subscription's mark in Redis carries the number, and commits keep
	// what the mark renewed last asks. Default backend.WatchKeep (256);
	// at least 1.
	WatchKeep int
}

// ErrConfig reports a bad Config.
var ErrConfig = errors.New("redis: bad config")

func (c *Config) validate(needAddr bool) error {
	if c.Prefix == "" {
		c.Prefix = "epochal"
	}
	if len(c.Prefix) > 64 {
		return fmt.Errorf("%w: Prefix is %d bytes, more than 64", ErrConfig, len(c.Prefix))
	}
	for _, r := range c.Prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)) {
			return fmt.Errorf("%w: Prefix %q contains %q (letters, digits and ._:- only)", ErrConfig, c.Prefix, r)
		}
	}
	if needAddr && c.Addr == "" {
		return fmt.Errorf("%w: Addr is empty", ErrConfig)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.OnePhaseKeep <= 0 {
		c.OnePhaseKeep = time.Minute
	}
	switch {
	case c.WatchKeep == 0:
		c.WatchKeep = backend.WatchKeep
	case c.WatchKeep < 0:
		return fmt.Errorf("%w: WatchKeep is %d, want at least 1 (0: the default, %d)", ErrConfig, c.WatchKeep, backend.WatchKeep)
	}
	return nil
}

// Backend is the Redis backend.
type Backend struct {
	c      goredis.UniversalClient
	own    bool // Close closes c
	cfg    Config
	p      string // "{Prefix}:"
	clockK string
	id     string

	hub *hub // WaitEntries' Pub/Sub connection

	// seen is the newest point of the clock this client has seen; lost,
	// once set, is why every later call fails (backend.ErrDataLost).
	seen atomic.Uint64
	lost atomic.Pointer[error]

	mu     sync.Mutex
	closed bool
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
	_ backend.OnePhase        = (*Backend)(nil)
	_ backend.BoundedVersions = (*Backend)(nil)
)

// Open connects to the server cfg names and checks that it answers (and
// that the credentials work) within ctx.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	c := goredis.NewClient(&goredis.Options{
		Addr:        cfg.Addr,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DB:          cfg.DB,
		TLSConfig:   cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		// Commands and scripts that are retried are idempotent (by
		// transaction id): see the package doc.
		MaxRetries: 3,
	})
	b, err := open(ctx, c, cfg)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	b.own = true
	return b, nil
}

// UniversalClient is go-redis's client interface: a single-node client,
// a Sentinel failover client or a Cluster client.
type UniversalClient = goredis.UniversalClient

// New uses a client the caller already has (any go-redis UniversalClient:
// single node, Sentinel failover, Cluster). It reads the backend's identity
// from the server, within cfg.DialTimeout. Close does not close the client.
//
// A Cluster client that routes reads to replicas (ClusterOptions ReadOnly,
// RouteByLatency or RouteRandomly, which Sentinel's
// NewFailoverClusterClient sets from ReplicaOnly, RouteByLatency and
// RouteRandomly) is refused with ErrConfig: a replica lags behind its
// master, so a read there could miss a commit a transaction must see (a
// version at or before its read point, a transaction record). Use one that
// reads from masters.
func New(c UniversalClient, cfg Config) (*Backend, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		if o := cc.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, fmt.Errorf("%w: the Cluster client routes reads to replicas (ReadOnly %v, RouteByLatency %v, RouteRandomly %v), which may lag behind their masters and miss commits: use one that reads from masters",
				ErrConfig, o.ReadOnly, o.RouteByLatency, o.RouteRandomly)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	return open(ctx, c, cfg)
}

func open(ctx context.Context, c UniversalClient, cfg Config) (*Backend, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrConfig)
	}
	p := "{" + cfg.Prefix + "}:"
	b := &Backend{c: c, cfg: cfg, p: p, clockK: p + "clock", hub: newHub(c)}
	// The backend's identity is stored with its data, so every process
	// using this prefix on this server (whatever address it dials) agrees.
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	id, err := call(ctx, func(ctx context.Context) (string, error) {
		if err := c.SetNX(ctx, p+"id", "redis:"+hex.EncodeToString(raw[:])+"/"+cfg.Prefix, 0).Err(); err != nil {
			return "", err
		}
		return c.Get(ctx, p+"id").Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: open %s: %w", cfg.Addr, err)
	}
	b.id = id
	return b, nil
}

// ID names this backend: stored under the prefix, the same for every client.
func (b *Backend) ID() string { return b.id }

// Close closes WaitEntries' Pub/Sub connection (the waiters return
// backend.ErrClosed), and the client if Open made it. Later calls fail
// with backend.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.hub.close()
	if b.own {
		return b.c.Close()
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
		return fmt.Errorf("redis: %w (%w)", err, backend.ErrNotApplied)
	}
	if err := b.lost.Load(); err != nil {
		return *err
	}
	return nil
}

// call runs f, go-redis calls on behalf of one of the Backend's methods,
// so that the method returns by the time ctx ends, whatever the client's
// options. go-redis bounds a command by its ctx's deadline only with
// ContextTimeoutEnabled (Open sets it; a client given to New may not), and
// never by a ctx canceled without a deadline: it then waits out its own
// ReadTimeout and retries up to MaxRetries times. So when ctx can end, f
// runs on a goroutine of its own, and the caller returns when ctx ends
// with an error wrapping ctx's; f finishes in the background, bounded by
// the client's own timeouts, and a change it asked for may still apply
// (the error does not wrap backend.ErrNotApplied: the outcome is
// unknown). f hands its results back only through its return values.
func call[T any](ctx context.Context, f func(ctx context.Context) (T, error)) (T, error) {
	if ctx.Done() == nil {
		v, err := f(ctx)
		return v, closedErr(err)
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		select {
		case r = <-ch: // it has just returned
		default:
			var zero T
			return zero, fmt.Errorf("%w (no reply from the server in time)", ctx.Err())
		}
	}
	return r.v, closedErr(ctxErr(ctx, r.err))
}

// closedErr makes go-redis's "client is closed" (a command the client
// never sent) wrap backend.ErrClosed: Close closed the client while the
// call was on its way (or the caller did, for a client given to New).
func closedErr(err error) error {
	if err != nil && errors.Is(err, goredis.ErrClosed) && !errors.Is(err, backend.ErrClosed) {
		return fmt.Errorf("%w (%w)", backend.ErrClosed, err)
	}
	return err
}

// do is call for f without a result.
func do(ctx context.Context, f func(ctx context.Context) error) error {
	_, err := call(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// ctxErr makes an error that came as ctx ended wrap ctx's error: go-redis
// reports a deadline it honoured as a network timeout, and a command cut
// short by it as a retry's backoff that ctx ended.
func ctxErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, goredis.Nil) {
		return err
	}
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded // the socket's deadline fired first
	}
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%w)", cerr, err)
}

// run runs a script with the prefix, the backend's identity and the newest
// point seen as ARGV[1] (see epochLib).
func (b *Backend) run(ctx context.Context, s *goredis.Script, args ...any) (any, error) {
	head := b.p + "\x00" + b.id + "\x00" + strconv.FormatUint(b.seen.Load(), 10)
	res, err := call(ctx, func(ctx context.Context) (any, error) {
		return s.Run(ctx, b.c, []string{b.clockK}, append([]any{head}, args...)...).Result()
	})
	if err != nil && strings.Contains(err.Error(), "EPOCHAL_LOST") {
		return nil, b.fail(strings.TrimPrefix(err.Error(), "EPOCHAL_LOST "))
	}
	return res, err
}

// fail records that the server lost this backend's data (why says how it
// showed) and returns the error every call now returns.
func (b *Backend) fail(why string) error {
	err := fmt.Errorf("redis: prefix %q on %s: %s: %w; reopen the backend once the data is restored or deliberately recreated",
		b.cfg.Prefix, b.cfg.Addr, why, backend.ErrDataLost)
	if b.lost.CompareAndSwap(nil, &err) {
		slog.Error("epochal: Redis lost this backend's data; every later call fails", "prefix", b.cfg.Prefix, "addr", b.cfg.Addr, "why", why)
	}
	return *b.lost.Load()
}

// observe records a point of the clock the server showed.
func (b *Backend) observe(p clock.Point) {
	for {
		cur := b.seen.Load()
		if uint64(p) <= cur || b.seen.CompareAndSwap(cur, uint64(p)) {
			return
		}
	}
}

// verify checks what a read returned of the identity key and the clock
// against what this client knew when it sent the read (seen: b.seen then;
// concurrent reads may have seen newer points since), as epochLib does,
// and records the clock.
func (b *Backend) verify(seen uint64, id *goredis.StringCmd, clk *goredis.StringCmd) error {
	if got, err := id.Result(); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	} else if got != b.id {
		return b.fail(fmt.Sprintf("the identity key %sid no longer holds %s: the data was emptied or replaced", b.p, b.id))
	}
	if clk == nil {
		return nil
	}
	n, err := clk.Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	if n < seen {
		return b.fail(fmt.Sprintf("the clock %sclock is at %d, behind point %d, which this client saw: the data went back in time", b.p, n, seen))
	}
	b.observe(clock.Point(n))
	return nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// ReadPoint returns the clock.
func (b *Backend) ReadPoint(ctx context.Context) (clock.Point, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	var idCmd, clk *goredis.StringCmd
	seen := b.seen.Load()
	err := do(ctx, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, clk = p.Get(ctx, b.p+"id"), p.Get(ctx, b.clockK)
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, fmt.Errorf("redis: read point: %w", err)
	}
	if err := b.verify(seen, idCmd, clk); err != nil {
		return 0, fmt.Errorf("redis: read point: %w", err)
	}
	n, _ := clk.Uint64()
	return clock.Point(n), nil
}

// Create creates a ref if absent.
func (b *Backend) Create(ctx context.Context, req backend.CreateRequest) (backend.CreateResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.CreateResult{}, err
	}
	res, err := b.run(ctx, scriptCreate, req.Name, string(req.Kind), req.Value, req.MinHistory, req.MaxHistory, ms(time.Now()))
	if msg, ok := strings.CutPrefix(fmt.Sprint(err), "EPOCHAL_CORRUPT "); ok && err != nil {
		msg, _, _ = strings.Cut(msg, " script: ")
		return backend.CreateResult{}, fmt.Errorf("redis: create %q: %s: %w", req.Name, msg, backend.ErrCorrupt)
	}
	if err != nil {
		return backend.CreateResult{}, fmt.Errorf("redis: create %q: %w", req.Name, err)
	}
	if k, _ := res.(string); k != "" {
		return backend.CreateResult{Kind: backend.Kind(k)}, nil
	}
	return backend.CreateResult{Created: true, Kind: req.Kind}, nil
}

// parseVersion decodes point "\0" ms "\0" txn "\0" value. An entry that
// does not parse is backend.ErrCorrupt.
func parseVersion(s string) (backend.Version, error) { return parseListed(s, false) }

// parseListed is parseVersion of an entry scriptVersions sent (bounded):
// it also reads the form it gives a value it left out, "!" size "\0"
// point "\0" ms "\0" txn "\0".
func parseListed(s string, bounded bool) (backend.Version, error) {
	omitted := 0
	if bounded && strings.HasPrefix(s, "!") {
		size, rest, ok := strings.Cut(s[1:], "\x00")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n <= 0 {
			return backend.Version{}, fmt.Errorf("%w: malformed omitted version entry", backend.ErrCorrupt)
		}
		omitted, s = n, rest
	}
	parts := strings.SplitN(s, "\x00", 4)
	if len(parts) != 4 {
		return backend.Version{}, fmt.Errorf("%w: malformed version entry (%d fields, want 4)", backend.ErrCorrupt, len(parts))
	}
	p, err1 := strconv.ParseUint(parts[0], 10, 64)
	t, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return backend.Version{}, fmt.Errorf("%w: malformed version entry %q", backend.ErrCorrupt, parts[0]+" "+parts[1])
	}
	v := backend.Version{Point: clock.Point(p), Time: time.UnixMilli(t), Txn: parts[2], Value: []byte(parts[3]), Omitted: omitted}
	if omitted > 0 {
		v.Value = nil
	}
	return v, nil
}

// parseIntent decodes txn "\0" coord "\0" flags "\0" value, the flags
// being letters and the Lock round's digits.
func parseIntent(s string) (*backend.Intent, error) {
	parts := strings.SplitN(s, "\x00", 4)
	if len(parts) != 4 {
		return nil, fmt.Errorf("%w: malformed intent (%d fields, want 4)", backend.ErrCorrupt, len(parts))
	}
	f := parts[2]
	var round uint64
	if digits := strings.TrimFunc(f, func(r rune) bool { return r < '0' || r > '9' }); digits != "" {
		var err error
		if round, err = strconv.ParseUint(digits, 10, 32); err != nil {
			return nil, fmt.Errorf("%w: malformed intent flags %q", backend.ErrCorrupt, f)
		}
	}
	return &backend.Intent{
		Txn: parts[0], Coord: parts[1],
		Write: strings.Contains(f, "W"), Staged: strings.Contains(f, "S"), Ensure: strings.Contains(f, "E"),
		Value: []byte(parts[3]), Round: uint32(round),
	}, nil
}

// refState is one ref as read in one MULTI/EXEC. err, when set, says why
// the ref's keys are not what a driver writes (it wraps
// backend.ErrCorrupt and names the ref); the other fields are then unset.
type refState struct {
	found    bool
	kind     backend.Kind
	intent   *backend.Intent
	versions []backend.Version
	trimmed  clock.Point
	ensured  clock.Point
	keep     int
	min, max int
	err      error
}

// unbounded asks readRefs for every value whole (LRANGE).
const unbounded = -1

// readRefs reads refs (and, if withClock, the clock) atomically in one
// round trip. With maxValue >= 0 the version lists are read by
// scriptVersions, which leaves out values larger than maxValue (the
// server does not send them); with unbounded, by LRANGE.
//
// A ref whose keys are malformed (a key of another type, a hash without
// its fields, a version entry that does not parse) gets its own refState
// err: the other refs are read as usual. Only a failure of the read
// itself is the error.
func (b *Backend) readRefs(ctx context.Context, names []string, withClock bool, maxValue int) ([]refState, clock.Point, error) {
	for loaded := false; ; loaded = true {
		sts, rp, noScript, err := b.readRefsOnce(ctx, names, withClock, maxValue)
		if !noScript || loaded {
			return sts, rp, err
		}
		// The server does not have scriptVersions (first use, a restart,
		// SCRIPT FLUSH): EVALSHA inside MULTI cannot fall back on EVAL.
		if err := scriptVersions.Load(ctx, b.c).Err(); err != nil {
			return nil, 0, err
		}
	}
}

func (b *Backend) readRefsOnce(ctx context.Context, names []string, withClock bool, maxValue int) ([]refState, clock.Point, bool, error) {
	var idCmd, clockCmd *goredis.StringCmd
	hs := make([]*goredis.Cmd, len(names))
	ls := make([]listCmd, len(names))
	seen := b.seen.Load()
	err := do(ctx, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, clockCmd = p.Get(ctx, b.p+"id"), p.Get(ctx, b.clockK)
			for i, n := range names {
				args := make([]any, 2, 2+len(refFields))
				args[0], args[1] = "hmget", b.p+"r:"+n
				hs[i] = p.Do(ctx, append(args, refFields...)...)
				if maxValue == unbounded {
					ls[i] = lrangeCmd{p.LRange(ctx, b.p+"v:"+n, 0, -1)}
				} else {
					ls[i] = evalCmd{p.EvalSha(ctx, scriptVersions.Hash(), []string{b.p + "v:" + n}, maxValue)}
				}
			}
			return nil
		})
		return err
	})
	// A command that failed on its own (WRONGTYPE, a missing script) fails
	// only its ref; anything else fails the identity or clock read too. (A
	// call cut short by ctx left the commands to its goroutine: not read.)
	if err != nil && !errors.Is(err, goredis.Nil) && ctx.Err() == nil && idCmd.Err() == nil {
		err = nil
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, false, err
	}
	if err := b.verify(seen, idCmd, clockCmd); err != nil {
		return nil, 0, false, err
	}
	var rp clock.Point
	if withClock {
		n, _ := clockCmd.Uint64()
		rp = clock.Point(n)
	}
	out := make([]refState, len(names))
	for i, n := range names {
		if err := ls[i].Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, 0, true, err
		}
		st, err := b.refState(n, hs[i], ls[i])
		if err != nil && !errors.Is(err, backend.ErrCorrupt) {
			return nil, 0, false, err
		}
		out[i] = st
	}
	return out, rp, false, nil
}

// listCmd is a ref's version list as read: LRANGE's reply, or
// scriptVersions'.
type listCmd interface {
	Err() error
	StringSlice() ([]string, error)
}

type evalCmd struct{ *goredis.Cmd }

func (c evalCmd) StringSlice() ([]string, error) { return c.Cmd.StringSlice() }

type lrangeCmd struct{ *goredis.StringSliceCmd }

func (c lrangeCmd) StringSlice() ([]string, error) { return c.StringSliceCmd.Result() }

// refState decodes one ref's hash and version list. An error wrapping
// backend.ErrCorrupt is also set as the state's err; any other is a
// failed read.
// refFields are the ref hash's fields a read asks for (HMGET), boxed once.
var refFields = []any{"kind", "intent", "trimmed", "ensured", "keep", "min", "max"}

func (b *Backend) refState(name string, hc *goredis.Cmd, lc listCmd) (refState, error) {
	corrupt := func(format string, args ...any) (refState, error) {
		err := fmt.Errorf("redis: ref %q: "+format+": %w", append(append([]any{name}, args...), backend.ErrCorrupt)...)
		return refState{err: err}, err
	}
	h, err := hc.Slice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return corrupt("%sr:%s is not a hash", b.p, name)
	case !errors.Is(err, goredis.Nil):
		return refState{}, err
	}
	present := 0
	for _, f := range h {
		if f != nil {
			present++
		}
	}
	if present == 0 {
		return refState{}, nil // no such ref
	}
	for i, f := range []string{"kind", "", "", "", "keep", "min", "max"} {
		if f != "" && (len(h) <= i || h[i] == nil) {
			return corrupt("its hash %sr:%s has no %q field", b.p, name, f)
		}
	}
	st := refState{found: true, kind: backend.Kind(h[0].(string))}
	if s, ok := h[1].(string); ok {
		in, err := parseIntent(s)
		if err != nil {
			return corrupt("intent: %v", err)
		}
		st.intent = in
	}
	st.trimmed = clock.Point(atoi(h[2]))
	st.ensured = clock.Point(atoi(h[3]))
	st.keep, st.min, st.max = int(atoi(h[4])), int(atoi(h[5])), int(atoi(h[6]))
	vs, err := lc.StringSlice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return corrupt("%sv:%s is not a list", b.p, name)
	case !errors.Is(err, goredis.Nil):
		return refState{}, err
	}
	st.versions = make([]backend.Version, 0, len(vs))
	_, bounded := lc.(evalCmd)
	for _, s := range vs {
		v, err := parseListed(s, bounded)
		if err != nil {
			return corrupt("version list %sv:%s: %v", b.p, name, err)
		}
		st.versions = append(st.versions, v)
	}
	if len(st.versions) == 0 {
		return corrupt("no versions (%sv:%s is empty or missing)", b.p, name)
	}
	return st, nil
}

func atoi(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Read reads refs at a point, each with its intent, in one MULTI/EXEC.
// A malformed ref fails the whole read (backend.ErrCorrupt, naming it).
func (b *Backend) Read(ctx context.Context, req backend.ReadRequest) (backend.ReadResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.ReadResult{}, err
	}
	sts, rp, err := b.readRefs(ctx, req.Names, req.Current, unbounded)
	if err == nil {
		err = firstErr(sts)
	}
	if err != nil {
		return backend.ReadResult{}, fmt.Errorf("redis: read %v: %w", req.Names, err)
	}
	if !req.Current {
		rp = req.RP
	}
	res := backend.ReadResult{RP: rp, Items: make([]backend.ReadItem, len(req.Names))}
	for i, st := range sts {
		if !st.found {
			continue
		}
		it := backend.ReadItem{Found: true, Kind: st.kind, Newest: st.versions[0], Intent: st.intent}
		it.Version, it.Result = history.Pick(st.versions, rp)
		if it.Result == history.Fault {
			// A read fault: history grows by one (a heuristic: it need
			// not be atomic with the read).
			if _, err := b.run(ctx, scriptGrow, req.Names[i]); err != nil {
				return backend.ReadResult{}, fmt.Errorf("redis: grow history of %q: %w", req.Names[i], err)
			}
		}
		res.Items[i] = it
	}
	return res, nil
}

// firstErr is the error of the first malformed ref.
func firstErr(sts []refState) error {
	for _, st := range sts {
		if st.err != nil {
			return st.err
		}
	}
	return nil
}

// Versions returns a ref's kept history.
func (b *Backend) Versions(ctx context.Context, name string) (backend.VersionsResult, error) {
	return b.versions(ctx, name, unbounded)
}

// VersionsBounded is Versions without the values larger than maxValue
// bytes (backend.BoundedVersions): a script reads the list on the server
// and sends such a value's size in its place.
func (b *Backend) VersionsBounded(ctx context.Context, name string, maxValue int) (backend.VersionsResult, error) {
	return b.versions(ctx, name, max(maxValue, 0))
}

func (b *Backend) versions(ctx context.Context, name string, maxValue int) (backend.VersionsResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.VersionsResult{}, err
	}
	sts, _, err := b.readRefs(ctx, []string{name}, false, maxValue)
	if err == nil {
		err = sts[0].err
	}
	if err != nil {
		return backend.VersionsResult{}, fmt.Errorf("redis: versions of %q: %w", name, err)
	}
	st := sts[0]
	if !st.found {
		return backend.VersionsResult{}, fmt.Errorf("redis: versions of %q: %w", name, backend.ErrNotFound)
	}
	return backend.VersionsResult{Kind: st.kind, Versions: st.versions, Trimmed: st.trimmed, Ensured: st.ensured,
		Keep: st.keep, Min: st.min, Max: st.max, Intent: st.intent}, nil
}

// List returns the refs whose names start with prefix, sorted by name.
// The values stay on the server (scriptVersions sends their sizes). A
// malformed ref, or a name the index {P}:refs holds without a ref hash, is
// listed with its Err set.
func (b *Backend) List(ctx context.Context, prefix string) ([]backend.RefInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	max := "+"
	if prefix != "" {
		max = "[" + prefix + "\xff"
	}
	min := "-"
	if prefix != "" {
		min = "[" + prefix
	}
	names, err := call(ctx, func(ctx context.Context) ([]string, error) {
		return b.c.ZRangeByLex(ctx, b.p+"refs", &goredis.ZRangeBy{Min: min, Max: max}).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: list %q: %w", prefix, err)
	}
	out := make([]backend.RefInfo, 0, len(names))
	for i := 0; i < len(names); i += 256 {
		chunk := names[i:min2(i+256, len(names))]
		sts, _, err := b.readRefs(ctx, chunk, false, 0)
		if err != nil {
			return nil, fmt.Errorf("redis: list %q: %w", prefix, err)
		}
		for j, st := range sts {
			name := chunk[j]
			if !strings.HasPrefix(name, prefix) {
				continue
			}
			switch {
			case st.err != nil:
				out = append(out, backend.RefInfo{Name: name, Err: st.err})
			case !st.found:
				// Create indexes a ref in the script that makes its hash,
				// and nothing deletes refs.
				out = append(out, backend.RefInfo{Name: name, Err: fmt.Errorf("redis: ref %q: listed in %srefs but %sr:%s is missing: %w",
					name, b.p, b.p, name, backend.ErrCorrupt)})
			default:
				v := st.versions[0]
				out = append(out, backend.RefInfo{Name: name, Kind: st.kind, Newest: v.Point,
					Versions: len(st.versions), Size: len(v.Value) + v.Omitted})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func min2(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// conflicts decodes the scripts' conflict lists: {name, reason, point,
// intent, newest}.
func conflicts(v any) ([]backend.Conflict, error) {
	list, _ := v.([]any)
	out := make([]backend.Conflict, 0, len(list))
	for _, e := range list {
		f, _ := e.([]any)
		if len(f) < 4 {
			return nil, fmt.Errorf("redis: malformed conflict %v", e)
		}
		c := backend.Conflict{Name: f[0].(string)}
		switch f[1].(int64) {
		case 0:
			c.Reason, c.Point = backend.Newer, clock.Point(f[2].(int64))
		case 1:
			c.Reason = backend.Locked
			in, err := parseIntent(f[3].(string))
			if err != nil {
				return nil, err
			}
			c.Intent = in
		case 2:
			c.Reason = backend.Stale
			v, err := parseVersion(f[4].(string))
			if err != nil {
				return nil, err
			}
			c.Newest = v
		default:
			c.Reason = backend.Gone
		}
		out = append(out, c)
	}
	return out, nil
}

// Lock takes intents on every item, or none, in one script.
func (b *Backend) Lock(ctx context.Context, req backend.LockRequest) (backend.LockResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.LockResult{}, err
	}
	args := []any{req.Txn, req.Coord, uint64(req.RP), req.Round}
	for _, it := range req.Items {
		args = append(args, it.Name, int(it.Mode), it.Value)
	}
	res, err := b.run(ctx, scriptLock, args...)
	if err != nil {
		return backend.LockResult{}, fmt.Errorf("redis: lock: %w", err)
	}
	r := res.([]any)
	if r[0].(int64) == 0 {
		cs, err := conflicts(r[1])
		return backend.LockResult{Conflicts: cs}, err
	}
	var out backend.LockResult
	for _, e := range r[1].([]any) {
		v, err := parseVersion(e.(string))
		if err != nil {
			return backend.LockResult{}, err
		}
		out.Newest = append(out.Newest, v)
	}
	return out, nil
}

// Stage stores values into intents txn holds.
func (b *Backend) Stage(ctx context.Context, txn string, items []backend.StageItem) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	args := []any{txn}
	for _, it := range items {
		args = append(args, it.Name, it.Value)
	}
	res, err := b.run(ctx, scriptStage, args...)
	if err != nil {
		return false, fmt.Errorf("redis: stage: %w", err)
	}
	return res.(int64) == 1, nil
}

// Resolve rolls txn's intents forward or back.
func (b *Backend) Resolve(ctx context.Context, req backend.ResolveRequest) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	commit := 0
	if req.Commit {
		commit = 1
	}
	args := []any{req.Txn, commit, uint64(req.CP), ms(req.Time), req.Round}
	for _, n := range req.Names {
		args = append(args, n)
	}
	if _, err := b.run(ctx, scriptResolve, args...); err != nil {
		return fmt.Errorf("redis: resolve %s: %w", req.Txn, err)
	}
	return nil
}

// CommitOnePhase commits a transaction whose refs all live here, in one
// script, idempotent by transaction id.
func (b *Backend) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (backend.OnePhaseResult, error) {
	if err := b.check(ctx); err != nil {
		return backend.OnePhaseResult{}, err
	}
	args := make([]any, 0, 4+4*len(req.Items))
	args = append(args, req.Txn, uint64(req.RP), ms(req.Time), b.cfg.OnePhaseKeep.Milliseconds())
	for _, it := range req.Items {
		args = append(args, it.Name, int(it.Mode), it.Value, uint64(it.Base))
	}
	res, err := b.run(ctx, scriptOnePhase, args...)
	if err != nil {
		return backend.OnePhaseResult{}, fmt.Errorf("redis: commit %s: %w", req.Txn, err)
	}
	r := res.([]any)
	switch r[0].(int64) {
	case 2:
		cp := clock.Point(r[1].(int64))
		b.observe(cp)
		return backend.OnePhaseResult{Status: backend.Committed, CP: cp}, nil
	case 3:
		return backend.OnePhaseResult{Status: backend.Aborted}, nil
	}
	cs, err := conflicts(r[1])
	return backend.OnePhaseResult{Conflicts: cs}, err
}

// record decodes HGETALL output.
func record(id string, kv map[string]string) (backend.Record, error) {
	if len(kv) == 0 {
		return backend.Record{ID: id, Status: backend.Missing}, nil
	}
	r := backend.Record{ID: id}
	switch kv["status"] {
	case "pending":
		r.Status = backend.Pending
	case "committed":
		r.Status = backend.Committed
	case "aborted":
		r.Status = backend.Aborted
	default:
		return r, fmt.Errorf("redis: record %s has status %q", id, kv["status"])
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(kv[k], 10, 64); return n }
	r.RP, r.Priority, r.CP = clock.Point(num("rp")), clock.Point(num("prio")), clock.Point(num("cp"))
	r.Lease, r.Created = time.UnixMilli(num("lease")), time.UnixMilli(num("created"))
	if s := kv["refs"]; s != "" {
		if err := msgpack.Unmarshal([]byte(s), &r.Refs); err != nil {
			return r, fmt.Errorf("redis: record %s: refs: %w", id, err)
		}
	}
	return r, nil
}

// onePhaseRecord is a one-phase commit's record, cp "\0" created (unix
// ms), in the form of a record hash.
func onePhaseRecord(s string) map[string]string {
	cp, created, _ := strings.Cut(s, "\x00")
	return map[string]string{"status": "committed", "cp": cp, "created": created}
}

func flat(v any) map[string]string {
	l, _ := v.([]any)
	m := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		s, _ := l[i+1].(string)
		m[k] = s
	}
	return m
}

// PutRecord creates a pending record if none exists.
func (b *Backend) PutRecord(ctx context.Context, r backend.Record) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	refs, err := msgpack.Marshal(r.Refs)
	if err != nil {
		return false, fmt.Errorf("redis: put record %s: %w", r.ID, err)
	}
	res, err := b.run(ctx, scriptPutRecord, r.ID, uint64(r.RP), uint64(r.Priority), ms(r.Lease), ms(r.Created), refs)
	if err != nil {
		return false, fmt.Errorf("redis: put record %s: %w", r.ID, err)
	}
	return res.(int64) == 1, nil
}

// CommitRecord draws a commit point and marks a pending record committed.
func (b *Backend) CommitRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	res, err := b.run(ctx, scriptCommitRecord, id)
	if err != nil {
		return backend.Record{}, fmt.Errorf("redis: commit record %s: %w", id, err)
	}
	r, err := record(id, flat(res))
	b.observe(r.CP)
	return r, err
}

// AbortRecord aborts a pending record or writes an aborted tombstone.
func (b *Backend) AbortRecord(ctx context.Context, id string) (backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return backend.Record{}, err
	}
	res, err := b.run(ctx, scriptAbortRecord, id, ms(time.Now()), tombstoneKeep.Milliseconds())
	if err != nil {
		return backend.Record{}, fmt.Errorf("redis: abort record %s: %w", id, err)
	}
	return record(id, flat(res))
}

// tombstoneKeep is how long an aborted tombstone lives.
const tombstoneKeep = time.Minute

// Records looks records up, in one round trip: the hash {P}:t:id, or a
// one-phase commit's record {P}:o:id.
func (b *Backend) Records(ctx context.Context, ids []string) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.MapStringStringCmd, len(ids))
	ones := make([]*goredis.StringCmd, len(ids))
	var idCmd *goredis.StringCmd
	err := do(ctx, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd = p.Get(ctx, b.p+"id")
			for i, id := range ids {
				cmds[i] = p.HGetAll(ctx, b.p+"t:"+id)
				ones[i] = p.Get(ctx, b.p+"o:"+id)
			}
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: records: %w", err)
	}
	if err := b.verify(0, idCmd, nil); err != nil {
		return nil, fmt.Errorf("redis: records: %w", err)
	}
	out := make([]backend.Record, len(ids))
	for i, id := range ids {
		kv := cmds[i].Val()
		if o, err := ones[i].Result(); len(kv) == 0 && err == nil {
			kv = onePhaseRecord(o)
		}
		r, err := record(id, kv)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// ListRecords returns the records of the general path and the tombstones,
// sorted by id; one-phase commit records are left out.
func (b *Backend) ListRecords(ctx context.Context) ([]backend.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	ids, err := call(ctx, func(ctx context.Context) ([]string, error) { return b.c.SMembers(ctx, b.p+"recs").Result() })
	if err != nil {
		return nil, fmt.Errorf("redis: list records: %w", err)
	}
	recs, err := b.Records(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []backend.Record
	var gone []any
	for _, r := range recs {
		if r.Status == backend.Missing {
			gone = append(gone, r.ID) // expired: drop it from the index
			continue
		}
		out = append(out, r)
	}
	if len(gone) > 0 {
		_ = do(ctx, func(ctx context.Context) error { return b.c.SRem(ctx, b.p+"recs", gone...).Err() })
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteRecord removes a record now, or lets it expire after keep.
func (b *Backend) DeleteRecord(ctx context.Context, id string, keep time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if _, err := b.run(ctx, scriptDeleteRecord, id, keep.Milliseconds()); err != nil {
		return fmt.Errorf("redis: delete record %s: %w", id, err)
	}
	return nil
}

// Meta returns a ref's meta and its version.
func (b *Backend) Meta(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := b.check(ctx); err != nil {
		return nil, 0, err
	}
	var idCmd *goredis.StringCmd
	var hCmd *goredis.SliceCmd
	err := do(ctx, func(ctx context.Context) error {
		_, err := b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			idCmd, hCmd = p.Get(ctx, b.p+"id"), p.HMGet(ctx, b.p+"r:"+name, "metaver", "meta")
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, err)
	}
	if err := b.verify(0, idCmd, nil); err != nil {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, err)
	}
	h := hCmd.Val()
	if h[0] == nil {
		return nil, 0, fmt.Errorf("redis: meta of %q: %w", name, backend.ErrNotFound)
	}
	var meta []byte
	if s, ok := h[1].(string); ok {
		meta = []byte(s)
	}
	return meta, uint64(atoi(h[0])), nil
}

// SetMeta replaces meta if its version is still expect.
func (b *Backend) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	res, err := b.run(ctx, scriptSetMeta, name, expect, meta)
	if err != nil {
		return false, fmt.Errorf("redis: set meta of %q: %w", name, err)
	}
	switch res.(int64) {
	case -1:
		return false, fmt.Errorf("redis: set meta of %q: %w", name, backend.ErrNotFound)
	case 1:
		return true, nil
	}
	return false, nil
}
