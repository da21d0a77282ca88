package servers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of a SentinelSet monitor their
// master under (what clients pass as the master name).
const SentinelMaster = "epochal"

// Sentinel timings: how soon the sentinels take an unanswering master for
// down (down-after-milliseconds), and how long a failover may take before
// another is tried (failover-timeout). Short, so a test fails over within
// a couple of seconds.
const (
	sentinelDownAfter = 1000 * time.Millisecond
	sentinelFailover  = 5000 * time.Millisecond
)

// sentinelSettle bounds how long StartSentinelSet and Failover wait for
// the sentinels and servers to agree.
const sentinelSettle = 30 * time.Second

// StartReplica starts a redis-server that replicates master (replicaof),
// configured as opts says (with master's credentials to replicate), and
// waits until it has finished its first sync (master_link_status:up).
func StartReplica(master *Redis, opts RedisOptions) (*Redis, error) {
	host, port, err := net.SplitHostPort(master.Addr)
	if err != nil {
		return nil, err
	}
	o := opts
	o.Args = append([]string{"replicaof " + host + " " + port}, opts.Args...)
	if master.Password != "" {
		o.Args = append(o.Args, "masterauth "+confQuote(master.Password))
	}
	if master.User != "" {
		o.Args = append(o.Args, "masteruser "+confQuote(master.User))
	}
	r, err := StartRedis(o)
	if err != nil {
		return nil, err
	}
	if err := waitFor(sentinelSettle, func() error { return r.linkUp() }); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("%s did not sync with %s: %w", r, master, err)
	}
	return r, nil
}

// Info returns the fields of INFO section (e.g. "replication") as a map.
func (r *Redis) Info(section string, timeout time.Duration) (map[string]string, error) {
	c := r.Client(timeout)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(v, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			m[k] = val
		}
	}
	return m, nil
}

// Role returns "master" or "slave" (INFO replication's role).
func (r *Redis) Role(timeout time.Duration) (string, error) {
	m, err := r.Info("replication", timeout)
	if err != nil {
		return "", err
	}
	return m["role"], nil
}

// linkUp checks that r is a replica whose link to its master is up.
func (r *Redis) linkUp() error {
	m, err := r.Info("replication", time.Second)
	if err != nil {
		return err
	}
	if m["role"] != "slave" || m["master_link_status"] != "up" {
		return fmt.Errorf("role %q, master_link_status %q", m["role"], m["master_link_status"])
	}
	return nil
}

// waitFor polls check every pollPause until it returns nil or timeout
// passes (its last error then).
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(pollPause)
	}
}

// Sentinel is a redis-server --sentinel started by StartSentinelSet.
type Sentinel struct {
	// Addr is the sentinel's host:port.
	Addr   string
	Dir    string
	p      *proc
	ps     *ports
	ownDir bool
}

// String names the sentinel: "redis-sentinel 127.0.0.1:port".
func (s *Sentinel) String() string { return s.p.name }

// PID returns the sentinel's PID, or 0 when it is not running.
func (s *Sentinel) PID() int { return s.p.pid() }

// Do sends one command to the sentinel and returns its reply as text: an
// array's items (flattened) one per line.
func (s *Sentinel) Do(timeout time.Duration, args ...string) (string, error) {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, Protocol: 2, DialTimeout: timeout, ReadTimeout: timeout,
		WriteTimeout: timeout, ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := make([]any, len(args))
	for i, a := range args {
		argv[i] = a
	}
	v, err := c.Do(ctx, argv...).Result()
	if err != nil {
		return "", err
	}
	return replyText(v), nil
}

// replyText is a reply as text: an array's items, flattened, one per line.
func replyText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case []any:
		items := make([]string, len(v))
		for i, it := range v {
			items[i] = replyText(it)
		}
		return strings.Join(items, "\n")
	}
	return fmt.Sprint(v)
}

// SentinelOptions configures StartSentinelSet.
type SentinelOptions struct {
	// Dir holds a directory per process (master, replica, sentinel-0..2),
	// created if needed and kept by Close. When empty, each is temporary.
	Dir string
	// Args are extra redis.conf lines of both data servers (e.g.
	// "appendonly no").
	Args []string
	// Logf, if not nil, is told about start attempts that are retried.
	Logf func(format string, args ...any)
}

// SentinelSet is a master, a replica of it, and three sentinels that
// monitor the master under SentinelMaster with a quorum of 2, all on
// 127.0.0.1. Which of Nodes is the master changes with failovers: ask
// Master. Plain servers (no TLS, no authentication).
type SentinelSet struct {
	// Nodes are the data servers: Nodes[0] started as the master, Nodes[1]
	// as its replica.
	Nodes []*Redis
	// Sentinels are the three sentinels.
	Sentinels []*Sentinel

	mu     sync.Mutex
	closed bool
}

// StartSentinelSet starts a master, a replica and three sentinels, and
// returns once the replica has synced and every sentinel knows the master
// and the replica. The caller must Close it.
func StartSentinelSet(opts SentinelOptions) (*SentinelSet, error) {
	path, err := redisServer()
	if err != nil {
		return nil, err
	}
	sub := func(name string) string {
		if opts.Dir == "" {
			return ""
		}
		return filepath.Join(opts.Dir, name)
	}
	set := &SentinelSet{}
	m, err := StartRedis(RedisOptions{Dir: sub("master"), Args: opts.Args, Logf: opts.Logf})
	if err != nil {
		return nil, err
	}
	set.Nodes = append(set.Nodes, m)
	r, err := StartReplica(m, RedisOptions{Dir: sub("replica"), Args: opts.Args, Logf: opts.Logf})
	if err != nil {
		_ = set.Close()
		return nil, err
	}
	set.Nodes = append(set.Nodes, r)
	for i := range 3 {
		s, err := startSentinel(path, sub("sentinel-"+strconv.Itoa(i)), m.Addr)
		if err != nil {
			_ = set.Close()
			return nil, err
		}
		set.Sentinels = append(set.Sentinels, s)
	}
	err = waitFor(sentinelSettle, func() error {
		for _, s := range set.Sentinels {
			v, err := s.Do(time.Second, "SENTINEL", "REPLICAS", SentinelMaster)
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			if !strings.Contains(v, r.Addr[strings.LastIndexByte(r.Addr, ':')+1:]) {
				return fmt.Errorf("%s does not know the replica %s yet", s, r.Addr)
			}
			v, err = s.Do(time.Second, "SENTINEL", "SENTINELS", SentinelMaster)
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			if n := countLines(v, "name"); n < 2 {
				return fmt.Errorf("%s knows %d other sentinels, want 2", s, n)
			}
		}
		return nil
	})
	if err != nil {
		_ = set.Close()
		return nil, fmt.Errorf("sentinels did not settle: %w", err)
	}
	return set, nil
}

// countLines counts the lines of v that are exactly line.
func countLines(v, line string) int {
	n := 0
	for _, l := range strings.Split(v, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

// startSentinel starts one sentinel monitoring master.
func startSentinel(path, dir, master string) (*Sentinel, error) {
	dir, own, err := serverDir(dir, "epochal-sentinel-")
	if err != nil {
		return nil, err
	}
	host, mport, err := net.SplitHostPort(master)
	if err != nil {
		return nil, err
	}
	ps, err := reservePorts(1)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.base))
	conf := filepath.Join(dir, "sentinel.conf")
	var b strings.Builder
	for _, l := range []string{
		"bind 127.0.0.1",
		"port " + strconv.Itoa(ps.base),
		"daemonize no",
		`logfile ""`,
		"dir " + confQuote(dir),
		"sentinel announce-ip 127.0.0.1",
		"sentinel monitor " + SentinelMaster + " " + host + " " + mport + " 2",
		"sentinel down-after-milliseconds " + SentinelMaster + " " + strconv.Itoa(int(sentinelDownAfter.Milliseconds())),
		"sentinel failover-timeout " + SentinelMaster + " " + strconv.Itoa(int(sentinelFailover.Milliseconds())),
		"sentinel parallel-syncs " + SentinelMaster + " 1",
	} {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		ps.release()
		return nil, err
	}
	s := &Sentinel{Addr: addr, Dir: dir, ownDir: own, ps: ps, p: &proc{
		name:    "redis-sentinel " + addr,
		path:    path,
		args:    []string{conf, "--sentinel"},
		dir:     dir,
		logPath: filepath.Join(dir, "sentinel.log"),
	}}
	if err := s.p.start(); err != nil {
		ps.release()
		return nil, err
	}
	err = s.p.awaitReady(redisReadyTimeout, func() (bool, error) {
		v, err := s.Do(time.Second, "PING")
		return err == nil && v == "PONG", err
	})
	if err != nil {
		_ = s.p.close(stopGrace)
		ps.release()
		return nil, &NotServingError{
			Err:  fmt.Errorf("%s did not answer PING: %w", s, err),
			Logs: fmt.Sprintf("--- tail of %s:\n%s", s.p.logPath, s.p.logTail(40)),
		}
	}
	return s, nil
}

// SentinelAddrs returns the sentinels' addresses, for a client's
// SentinelAddrs.
func (set *SentinelSet) SentinelAddrs() []string {
	var out []string
	for _, s := range set.Sentinels {
		out = append(out, s.Addr)
	}
	return out
}

// MasterAddr asks the sentinels (the first that answers) for the master's
// address.
func (set *SentinelSet) MasterAddr(timeout time.Duration) (string, error) {
	var errs []error
	for _, s := range set.Sentinels {
		v, err := s.Do(timeout, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		host, port, ok := strings.Cut(v, "\n")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unexpected reply %q", s, v))
			continue
		}
		return net.JoinHostPort(host, port), nil
	}
	return "", errors.Join(errs...)
}

// Node returns the data server at addr, or nil.
func (set *SentinelSet) Node(addr string) *Redis {
	for _, n := range set.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER, which does
// not wait for the master to be down) and returns the old and new
// masters once every sentinel names the new one and it says it is a
// master. The old master is still running; Settled says when it has
// rejoined as a replica.
func (set *SentinelSet) Failover() (old, cur *Redis, err error) {
	old, oldAddr, err := set.master()
	if err != nil {
		return nil, nil, err
	}
	// The sentinels may abort a failover: a replica that has not taken
	// its promotion within the failover timeout (a loaded machine) is
	// given up (-failover-abort-slave-timeout) and the master stays. So
	// a failover not done within twice that timeout is asked for again,
	// until sentinelSettle twice over.
	deadline := time.Now().Add(2 * sentinelSettle)
	for {
		// A sentinel refuses while a failover is in progress or no
		// replica is yet good enough (INPROG, NOGOODSLAVE): retry,
		// unless the master changed meanwhile (the failover asked for
		// before ended after all): never a second failover.
		err = waitFor(sentinelSettle, func() error {
			if addr, err := set.MasterAddr(time.Second); err == nil && addr != oldAddr {
				return nil
			}
			_, err := set.Sentinels[0].Do(time.Second, "SENTINEL", "FAILOVER", SentinelMaster)
			return err
		})
		if err != nil {
			return old, nil, fmt.Errorf("SENTINEL FAILOVER: %w", err)
		}
		cur, err = set.waitPromoted(oldAddr, 2*sentinelFailover)
		if err == nil || time.Now().After(deadline) {
			return old, cur, err
		}
	}
}

// master returns the node the sentinels name as the master, and its
// address; an error if they name none, or a node the set does not hold.
func (set *SentinelSet) master() (*Redis, string, error) {
	addr, err := set.MasterAddr(time.Second)
	if err != nil {
		return nil, "", err
	}
	n := set.Node(addr)
	if n == nil {
		return nil, "", fmt.Errorf("the sentinels name an unknown master %s", addr)
	}
	return n, addr, nil
}

// PauseMaster pauses the master (SIGSTOP) and returns it and the node the
// sentinels promote once it is down (after down-after-milliseconds and
// their vote). The caller resumes the old master (Resume); the sentinels
// then make it a replica. A master that is not replaced within 30 s is
// resumed and the error returned.
func (set *SentinelSet) PauseMaster() (old, cur *Redis, err error) {
	old, oldAddr, err := set.master()
	if err != nil {
		return nil, nil, err
	}
	if err := old.Pause(); err != nil {
		return old, nil, err
	}
	cur, err = set.WaitPromoted(oldAddr)
	if err != nil {
		return old, cur, errors.Join(err, old.Resume())
	}
	return old, cur, nil
}

// WaitPromoted waits until every sentinel names a master other than
// oldAddr and that node says it is a master, and returns it.
func (set *SentinelSet) WaitPromoted(oldAddr string) (cur *Redis, err error) {
	return set.waitPromoted(oldAddr, sentinelSettle)
}

// waitPromoted is WaitPromoted waiting up to timeout.
func (set *SentinelSet) waitPromoted(oldAddr string, timeout time.Duration) (cur *Redis, err error) {
	err = waitFor(timeout, func() error {
		for _, s := range set.Sentinels {
			v, err := s.Do(time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			if err != nil {
				return err
			}
			host, port, _ := strings.Cut(v, "\n")
			a := net.JoinHostPort(host, port)
			if a == oldAddr {
				return fmt.Errorf("%s still names %s", s, a)
			}
			cur = set.Node(a)
		}
		if cur == nil {
			return errors.New("the sentinels name an unknown master")
		}
		role, err := cur.Role(time.Second)
		if err != nil {
			return err
		}
		if role != "master" {
			return fmt.Errorf("%s says it is a %s", cur, role)
		}
		return nil
	})
	if err != nil {
		return cur, fmt.Errorf("failover from %s: %w", oldAddr, err)
	}
	return cur, nil
}

// Settled checks once that the set is whole: the sentinels all name one
// master, which says it is a master, and every other node is its replica
// with the link up.
func (set *SentinelSet) Settled() error {
	var master string
	for _, s := range set.Sentinels {
		v, err := s.Do(time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		host, port, _ := strings.Cut(v, "\n")
		a := net.JoinHostPort(host, port)
		if master != "" && a != master {
			return fmt.Errorf("sentinels disagree: %s and %s", master, a)
		}
		master = a
	}
	m := set.Node(master)
	if m == nil {
		return fmt.Errorf("the sentinels name an unknown master %s", master)
	}
	if role, err := m.Role(time.Second); err != nil || role != "master" {
		return fmt.Errorf("%s: role %q (%v)", m, role, err)
	}
	for _, n := range set.Nodes {
		if n == m {
			continue
		}
		if err := n.linkUp(); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		info, err := n.Info("replication", time.Second)
		if err != nil {
			return err
		}
		if info["master_port"] != master[strings.LastIndexByte(master, ':')+1:] {
			return fmt.Errorf("%s replicates port %s, not the master %s", n, info["master_port"], master)
		}
	}
	return nil
}

// WaitSettled polls Settled until it holds or timeout passes.
func (set *SentinelSet) WaitSettled(timeout time.Duration) error {
	return waitFor(timeout, set.Settled)
}

// ExitedOnItsOwn describes a process of the set that exited by itself, or
// returns "".
func (set *SentinelSet) ExitedOnItsOwn() string {
	for _, n := range set.Nodes {
		if why := n.ExitedOnItsOwn(); why != "" {
			return fmt.Sprintf("%s: %s", n, why)
		}
	}
	for _, s := range set.Sentinels {
		if why := s.p.exitedOnItsOwn(); why != "" {
			return fmt.Sprintf("%s: %s", s, why)
		}
	}
	return ""
}

// Close stops every process of the set (sentinels first, so they start no
// failover while the servers stop) and releases their ports. Closing again
// does nothing.
func (set *SentinelSet) Close() error {
	set.mu.Lock()
	if set.closed {
		set.mu.Unlock()
		return nil
	}
	set.closed = true
	set.mu.Unlock()
	var errs []error
	for _, s := range set.Sentinels {
		errs = append(errs, s.p.close(stopGrace))
		s.ps.release()
		if s.ownDir {
			errs = append(errs, os.RemoveAll(s.Dir))
		}
	}
	for _, n := range set.Nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}
