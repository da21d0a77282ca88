package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
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
	// ReadOnly opens only a prefix that already holds Epochal data, and
	// writes nothing of its own accord. Open and New write nothing (the
	// identity key is read, not created): a prefix whose identity key is
	// missing, or does not hold an Epochal identity ("redis:..."), is a
	// *NoNamespaceError, which wraps backend.ErrNotFound and names the
	// prefixes the server holds. The reads (ReadPoint, Read, Versions,
	// List, Records, ListRecords, Entries, ReadDir, Dirs, WaitEntries)
	// write nothing either: no dead entry of a lock or group is dropped
	// (they are only left out), no expired record id is dropped from
	// the index, no history grown after a read fault. Subscribe sets no
	// watch mark ({P}:w:<name>; the subscription is backend.Unmarked):
	// commits neither publish their versions for it nor keep extra
	// history, and the subscription hints when it sees the ref's newest
	// point move (it looks every 250 ms); a watcher that reads a change
	// too late announces a gap. The commands it sends are reads (and
	// EVALSHA of scripts that then only read): an ACL user without
	// @write may use it. What a caller asks to change (a commit,
	// PutRecord, OpenSession, ...) is still written. For tools that
	// inspect (the CLI's inspecting commands), so that a mistyped prefix
	// leaves no key behind and an existing one is left as it was.
	ReadOnly bool
	// Logger receives what the backend cannot return to a caller (the
	// server lost this backend's data). Default (nil): slog.Default().
	Logger *slog.Logger

	// Waiting for replicas (see replicas.go and the package doc).
	//
	// WaitReplicas, if > 0, makes every step whose acknowledgement a
	// caller relies on (a one-phase commit, CommitRecord, AbortRecord)
	// wait until that many replicas have the write (WAIT numreplicas
	// timeout, on the connection that wrote, in the same round trip).
	// A WAIT that falls short returns an error wrapping ErrNotReplicated
	// (not backend.ErrNotApplied: the write applied on the master); a
	// step refused (a conflict: nothing written) returns as it would
	// without waiting.
	// Not with a Cluster client. Open and New fail if the server refuses
	// this client WAIT (an ACL user needs +wait). WaitTimeout bounds each
	// WAIT: default 1s; keep it below the client's ReadTimeout (go-redis's
	// default 3s).
	WaitReplicas int
	WaitTimeout  time.Duration
}

// NoNamespaceError is Open's (or New's) error, with Config.ReadOnly, for a
// prefix that holds no Epochal data. It wraps backend.ErrNotFound.
type NoNamespaceError struct {
	Prefix string
	// Found are the prefixes the server holds Epochal data under, sorted
	// (those of the database the client uses; on a Cluster, of every
	// master).
	Found []string
}

func (e *NoNamespaceError) Error() string {
	return fmt.Sprintf("redis: no Epochal data under prefix %q", e.Prefix)
}

func (e *NoNamespaceError) Unwrap() error { return backend.ErrNotFound }

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
	return c.validateWait()
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

	trips atomic.Uint64 // round trips (RoundTrips)

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
	_ backend.OnePhase         = (*Backend)(nil)
	_ backend.BoundedVersions  = (*Backend)(nil)
	_ backend.Sessions         = (*Backend)(nil)
	_ backend.SessionStore     = (*Backend)(nil)
	_ backend.EntryLister      = (*Backend)(nil)
	_ backend.RoundTripCounter = (*Backend)(nil)
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
		// A command's socket deadline is its ctx's (the package doc and
		// design.md's "Deadlines" say so; a review found it unset).
		ContextTimeoutEnabled: true,
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
	return NewContext(context.Background(), c, cfg)
}

// NewContext is New within ctx as well as cfg.DialTimeout: it returns
// when ctx ends (a caller interrupted) with an error wrapping ctx's.
func NewContext(ctx context.Context, c UniversalClient, cfg Config) (*Backend, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		if o := cc.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, fmt.Errorf("%w: the Cluster client routes reads to replicas (ReadOnly %v, RouteByLatency %v, RouteRandomly %v), which may lag behind their masters and miss commits: use one that reads from masters",
				ErrConfig, o.ReadOnly, o.RouteByLatency, o.RouteRandomly)
		}
	}
	if _, ok := c.(*goredis.ClusterClient); ok && cfg.WaitReplicas > 0 {
		return nil, fmt.Errorf("%w: WaitReplicas with a Cluster client (WAIT must follow the write on its connection)", ErrConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	return open(ctx, c, cfg)
}

func open(ctx context.Context, c UniversalClient, cfg Config) (*Backend, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrConfig)
	}
	p := "{" + cfg.Prefix + "}:"
	b := &Backend{c: c, cfg: cfg, p: p, clockK: p + "clock"}
	b.hub = newHub(c, b.logger)
	// The backend's identity is stored with its data, so every process
	// using this prefix on this server (whatever address it dials) agrees.
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	id, err := call(ctx, b, func(ctx context.Context) (string, error) {
		if !cfg.ReadOnly {
			if err := c.SetNX(ctx, p+"id", "redis:"+hex.EncodeToString(raw[:])+"/"+cfg.Prefix, 0).Err(); err != nil {
				return "", err
			}
		}
		return c.Get(ctx, p+"id").Result()
	})
	if cfg.ReadOnly && err == nil && !strings.HasPrefix(id, "redis:") {
		// Not Epochal's (namespaces, which lists the prefixes, skips
		// it too): a read-only open refuses it as it refuses a prefix
		// without the key.
		err = goredis.Nil
	}
	if cfg.ReadOnly && errors.Is(err, goredis.Nil) {
		found, ferr := call(ctx, b, func(ctx context.Context) ([]string, error) { return namespaces(ctx, c) })
		if ferr != nil {
			return nil, fmt.Errorf("redis: open %s: no Epochal data under prefix %q; listing the prefixes there: %w", cfg.Addr, cfg.Prefix, ferr)
		}
		return nil, &NoNamespaceError{Prefix: cfg.Prefix, Found: found}
	}
	if err != nil {
		return nil, fmt.Errorf("redis: open %s: %w", cfg.Addr, err)
	}
	b.id = id
	if err := b.probeWait(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// namespaces lists the prefixes with an identity key ("{prefix}:id"
// holding "redis:..."), by SCAN: of every master on a Cluster.
func namespaces(ctx context.Context, c UniversalClient) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	scan := func(ctx context.Context, c goredis.UniversalClient) error {
		iter := c.Scan(ctx, 0, "{*}:id", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			prefix := strings.TrimSuffix(strings.TrimPrefix(key, "{"), "}:id")
			if prefix == key || strings.ContainsAny(prefix, "{}") {
				continue
			}
			v, err := c.Get(ctx, key).Result()
			if errors.Is(err, goredis.Nil) {
				continue
			}
			if err != nil {
				return err
			}
			if strings.HasPrefix(v, "redis:") {
				mu.Lock()
				seen[prefix] = true
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
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

// roArg is what the scripts that read a dir (entries, dirs, waitcheck)
// take for their ro argument: "1" for a read-only backend, whose calls
// drop no dead entry.
func (b *Backend) roArg() string {
	if b.cfg.ReadOnly {
		return "1"
	}
	return "0"
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
