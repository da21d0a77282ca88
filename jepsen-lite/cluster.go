package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/epochal/epochal/internal/servers"
)

// clusterConfig configures startCluster.
type clusterConfig struct {
	// Backend is "mem" (no server), "redis" or "zk".
	Backend string
	// Dir keeps the servers' data and logs (in Dir/redis or Dir/zk), and
	// stays after Close. When empty, they go to temporary directories that
	// Close removes.
	Dir string
	// Nodes is the number of server nodes: 1 for redis, 1 (standalone) or
	// 3 (an ensemble) for zk; 0 means 1. Ignored for mem.
	Nodes int
	// Proxied puts a Proxy in front of every server node: clients dial the
	// proxies, and the faults partition, reset and delay become possible.
	// Ignored for mem.
	Proxied bool
	// QuorumProxied puts a Proxy on each link from a ZooKeeper node to
	// another's quorum port (the link a follower keeps to its leader), so
	// the fault lag becomes possible. Only for a zk ensemble (3 nodes).
	QuorumProxied bool
	// RedisTopology "sentinel" starts a master, a replica and three
	// sentinels (Addrs are the sentinels'; no proxies) instead of one
	// server; "" or "single": one server.
	RedisTopology string
}

// Fault kinds, in the order Faults lists them.
const (
	FaultKill      = "kill"      // SIGKILL a server node; heal restarts it
	FaultPause     = "pause"     // SIGSTOP a server node; heal sends SIGCONT
	FaultLeader    = "leader"    // SIGKILL the ZooKeeper leader; heal restarts it
	FaultPartition = "partition" // the proxy of one node (of all, for one node) drops traffic
	FaultReset     = "reset"     // the proxies reset every connection and refuse new ones
	FaultDelay     = "delay"     // the proxies delay traffic by clusterDelay each way
	// FaultJitter makes the proxies delay each chunk of traffic by a
	// random 0 to clusterJitter, in order within a connection, so one
	// connection's traffic overtakes another's (a Redis client's Pub/Sub
	// messages arrive after the replies to commands it sent later).
	FaultJitter = "jitter"
	// FaultSlow makes the proxies delay about half of their connections
	// (picked at random, new ones included) by clusterSlow each way,
	// while the others pass: a Redis client's Pub/Sub connection may
	// crawl while its commands go through, so its change feed falls
	// behind the history.
	FaultSlow = "slow"
	// FaultLag delays the traffic between the ZooKeeper leader and one
	// follower by clusterLag each way (a proxy on the follower's link to
	// the leader's quorum port): the follower applies every commit late,
	// and its clients read state that lags behind what the leader has
	// acknowledged. The follower picked is one that clients are connected
	// to, while some other node has clients too, when there is one.
	FaultLag = "lag"
)

// clusterLag is how far the fault "lag" delays the traffic between the
// leader and a follower, in each direction: enough for the follower not
// to show what the leader acknowledged a few milliseconds ago (a record
// a transaction just wrote), little enough that its own clients, whose
// writes wait for it to apply them, still get on (at 200 ms they did
// little else but wait). ZooKeeper drops a follower that does not answer
// within syncLimit ticks (2.5 s): this stays far below.
const clusterLag = 20 * time.Millisecond

// clusterJitter bounds what the fault "jitter" adds to each chunk of
// traffic, in each direction.
const clusterJitter = 100 * time.Millisecond

// clusterSlow is what the fault "slow" adds to each chunk of the
// connections it slows, in each direction.
const clusterSlow = 1500 * time.Millisecond

// clusterDelay is what the fault "delay" adds to each chunk of traffic, in
// each direction.
const clusterDelay = 50 * time.Millisecond

// clusterPoll is how often Heal and startCluster check that the cluster
// serves.
const clusterPoll = 50 * time.Millisecond

// cluster is a backend's servers, started by startCluster, with the faults
// that can be injected into them. Its methods are safe for concurrent use.
// One fault is in effect at a time: Inject refuses another until the
// current one is healed.
type cluster struct {
	cfg   clusterConfig
	redis *servers.Redis
	zk    *servers.ZK
	// sentinel is the Sentinel topology's servers (RedisTopology).
	sentinel *servers.SentinelSet
	proxies  []*Proxy // one per node when Proxied
	addrs    []string
	// peers are the quorum proxies (QuorumProxied): peers[[2]int{i, j}]
	// carries node i's link to node j's quorum port.
	peers map[[2]int]*Proxy

	mu     sync.Mutex
	active *clusterFault
	closed bool
}

// startCluster starts the servers of cfg.Backend (and proxies, when
// cfg.Proxied) and returns once clients can use them through Addrs. The
// caller must Close the cluster. Redis runs with appendonly yes and
// appendfsync always, so a kill loses no acknowledged write.
func startCluster(ctx context.Context, cfg clusterConfig) (*cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &cluster{cfg: cfg}
	nodes := cfg.Nodes
	if nodes == 0 {
		nodes = 1
	}
	var upstreams []string
	switch cfg.Backend {
	case "mem":
		return c, nil
	case "redis":
		if nodes != 1 {
			return nil, fmt.Errorf("jepsen: a redis cluster has 1 node, not %d", cfg.Nodes)
		}
		if cfg.RedisTopology == TopologySentinel {
			if err := c.startSentinel(cfg); err != nil {
				return nil, err
			}
			if err := c.waitServing(ctx); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("jepsen: redis with sentinels: %w", err)
			}
			return c, nil
		}
		r, err := servers.StartRedis(servers.RedisOptions{
			Dir:  clusterDir(cfg.Dir, "redis"),
			Args: []string{"appendonly yes", "appendfsync always"},
		})
		if err != nil {
			return nil, fmt.Errorf("jepsen: starting redis: %w", err)
		}
		c.redis = r
		upstreams = []string{r.Addr}
	case "zk":
		if nodes != 1 && nodes != 3 {
			return nil, fmt.Errorf("jepsen: a zk cluster has 1 or 3 nodes, not %d", cfg.Nodes)
		}
		opts := servers.ZKOptions{Dir: clusterDir(cfg.Dir, "zk")}
		if cfg.QuorumProxied {
			if nodes < 3 {
				return nil, fmt.Errorf("jepsen: quorum proxies need a ZooKeeper ensemble (3 nodes), not %d", nodes)
			}
			c.peers = map[[2]int]*Proxy{}
			opts.PeerAddr = c.peerAddr
		}
		z, err := servers.StartZK(nodes, opts)
		if err != nil {
			c.closePeers()
			return nil, fmt.Errorf("jepsen: starting ZooKeeper: %w", err)
		}
		c.zk = z
		upstreams = z.Servers
	default:
		return nil, fmt.Errorf("jepsen: unknown backend %q (mem, redis or zk)", cfg.Backend)
	}
	c.addrs = append([]string(nil), upstreams...)
	if cfg.Proxied {
		for i, up := range upstreams {
			p, err := NewProxy(up)
			if err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("jepsen: proxy for %s: %w", up, err)
			}
			c.proxies = append(c.proxies, p)
			c.addrs[i] = p.Addr()
		}
	}
	if err := c.waitServing(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("jepsen: %s cluster: %w", cfg.Backend, err)
	}
	return c, nil
}

// peerAddr starts (or, for new ports, replaces) the proxy on node from's
// link to node to's quorum port: servers.ZKOptions.PeerAddr.
func (c *cluster) peerAddr(from, to int, quorum string) (string, error) {
	k := [2]int{from, to}
	if p := c.peers[k]; p != nil {
		if p.Upstream() == quorum {
			return p.Addr(), nil
		}
		_ = p.Close()
	}
	p, err := NewProxy(quorum)
	if err != nil {
		return "", err
	}
	c.peers[k] = p
	return p.Addr(), nil
}

func (c *cluster) closePeers() {
	for _, p := range c.peers {
		_ = p.Close()
	}
}

// clusterDir is sub in dir, or "" (a temporary directory) without dir.
func clusterDir(dir, sub string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, sub)
}

// Addrs returns what clients dial, one address a node: the proxies' with
// Proxied, the servers' otherwise; nil for mem. For zk, join them with ","
// for a connect string.
func (c *cluster) Addrs() []string {
	if len(c.addrs) == 0 {
		return nil
	}
	return append([]string(nil), c.addrs...)
}

// PIDs returns the PID of each server node, 0 for a node not running; nil
// for mem.
func (c *cluster) PIDs() []int {
	switch {
	case c.sentinel != nil:
		var pids []int
		for _, n := range c.sentinel.Nodes {
			pids = append(pids, n.PID())
		}
		return pids
	case c.redis != nil:
		return []int{c.redis.PID()}
	case c.zk != nil:
		pids := make([]int, c.zk.Nodes())
		for i := range pids {
			pids[i] = c.zk.PID(i)
		}
		return pids
	}
	return nil
}

// Faults returns the fault kinds this cluster supports: kill and pause with
// servers, leader for a ZooKeeper ensemble, partition, reset and delay with
// proxies; none for mem.
func (c *cluster) Faults() []string {
	if c.sentinel != nil {
		return sentinelFaults()
	}
	var fs []string
	if c.redis != nil || c.zk != nil {
		fs = append(fs, FaultKill, FaultPause)
	}
	if c.zk != nil && c.zk.Nodes() > 1 {
		fs = append(fs, FaultLeader)
	}
	if len(c.proxies) > 0 {
		fs = append(fs, FaultPartition, FaultReset, FaultDelay, FaultJitter, FaultSlow)
	}
	if len(c.peers) > 0 {
		fs = append(fs, FaultLag)
	}
	return fs
}

// fault is a fault in effect, from cluster.Inject.
type fault interface {
	// Heal undoes the fault and returns once the cluster serves again
	// (every node answers through Addrs: Redis PONG, ZooKeeper nodes leader
	// or follower with one leader), or ctx ends. Healing again only waits
	// for the cluster to serve.
	Heal(ctx context.Context) error
	// String describes the fault, e.g. "kill ZooKeeper node 1 (127.0.0.1:23456)".
	String() string
}

// Inject puts a fault of the kind (see Faults) in effect and returns once it
// is. It fails for a kind the cluster does not support, while another fault
// is in effect, and after Close.
func (c *cluster) Inject(ctx context.Context, kind string) (fault, error) {
	supported := c.Faults()
	ok := false
	for _, k := range supported {
		ok = ok || k == kind
	}
	if !ok {
		return nil, c.unsupported(kind, supported)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f := &clusterFault{c: c, kind: kind}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, errors.New("jepsen: cluster closed")
	case c.active != nil:
		active := c.active
		c.mu.Unlock()
		return nil, fmt.Errorf("jepsen: fault %q: %s is still in effect; heal it first", kind, active)
	}
	c.active = f
	c.mu.Unlock()
	if err := c.inject(f); err != nil {
		c.mu.Lock()
		c.active = nil
		c.mu.Unlock()
		return nil, fmt.Errorf("jepsen: injecting %s: %w", kind, err)
	}
	return f, nil
}

// unsupported is the error of Inject for a kind the cluster does not
// support.
func (c *cluster) unsupported(kind string, supported []string) error {
	what := fmt.Sprintf("the %s cluster", c.cfg.Backend)
	if len(supported) == 0 {
		return fmt.Errorf("jepsen: fault %q: %s supports no faults", kind, what)
	}
	hint := ""
	if len(c.proxies) == 0 && (kind == FaultPartition || kind == FaultReset || kind == FaultDelay || kind == FaultJitter || kind == FaultSlow) {
		hint = " (partition, reset, delay, jitter and slow need proxies: ClusterConfig.Proxied)"
	}
	if kind == FaultLeader && c.zk != nil {
		hint = " (leader needs a ZooKeeper ensemble: 3 nodes)"
	}
	if kind == FaultLag && c.zk != nil {
		hint = " (lag needs a ZooKeeper ensemble, 3 nodes, with ClusterConfig.QuorumProxied)"
	}
	return fmt.Errorf("jepsen: fault %q: %s supports %s%s", kind, what, strings.Join(supported, ", "), hint)
}

// inject puts f in effect and sets how to undo it.
func (c *cluster) inject(f *clusterFault) error {
	switch f.kind {
	case FaultKill, FaultLeader:
		i := rand.IntN(len(c.addrs))
		if f.kind == FaultLeader {
			l, err := c.zk.Leader()
			if err != nil {
				return err
			}
			i = l
			f.desc = "kill the leader, " + c.nodeName(i)
		} else {
			f.desc = "kill " + c.nodeName(i)
		}
		if err := c.signal(i, (*servers.Redis).Kill, (*servers.ZK).Kill); err != nil {
			return err
		}
		f.undo = func() error { return c.signal(i, (*servers.Redis).Restart, (*servers.ZK).Restart) }
	case FaultPause:
		i := rand.IntN(len(c.addrs))
		f.desc = "pause " + c.nodeName(i)
		if err := c.signal(i, (*servers.Redis).Pause, (*servers.ZK).Pause); err != nil {
			return err
		}
		f.undo = func() error { return c.signal(i, (*servers.Redis).Resume, (*servers.ZK).Resume) }
	case FaultPartition:
		ps := c.proxies
		if len(ps) > 1 {
			i := rand.IntN(len(ps))
			ps = ps[i : i+1]
			f.desc = "partition " + c.nodeName(i) + " from its clients"
		} else {
			f.desc = "partition " + c.nodeName(0) + " from its clients"
		}
		for _, p := range ps {
			p.Drop()
		}
		f.undo = c.passAll
	case FaultReset:
		f.desc = "reset every connection to " + c.cfg.Backend
		for _, p := range c.proxies {
			p.Reset()
		}
		f.undo = c.passAll
	case FaultDelay:
		f.desc = fmt.Sprintf("delay traffic to %s by %v each way", c.cfg.Backend, clusterDelay)
		for _, p := range c.proxies {
			p.Delay(clusterDelay)
		}
		f.undo = c.passAll
	case FaultJitter:
		f.desc = fmt.Sprintf("jitter traffic to %s by 0 to %v each way", c.cfg.Backend, clusterJitter)
		for _, p := range c.proxies {
			p.Jitter(clusterJitter)
		}
		f.undo = c.passAll
	case FaultSlow:
		f.desc = fmt.Sprintf("slow about half the connections to %s by %v each way", c.cfg.Backend, clusterSlow)
		for _, p := range c.proxies {
			p.Slow(clusterSlow)
		}
		f.undo = c.passAll
	case FaultLag:
		return c.injectLag(f)
	case FaultFailover:
		return c.injectFailover(f)
	case FaultFailoverPause:
		return c.injectFailoverPause(f)
	default:
		return fmt.Errorf("unknown fault %q", f.kind)
	}
	return nil
}

// injectLag delays the links between the leader and a follower that
// clients use (see FaultLag).
func (c *cluster) injectLag(f *clusterFault) error {
	l, err := c.zk.Leader()
	if err != nil {
		return err
	}
	// Clients on the follower read stale state; clients elsewhere write
	// what it has not applied yet. Prefer a follower with clients while
	// another node has clients too, and of those the one with the most.
	conns := make([]int, len(c.proxies))
	total := 0
	for i, p := range c.proxies {
		conns[i] = p.Conns()
		total += conns[i]
	}
	var best []int
	bestScore := -1
	for i := range c.zk.Nodes() {
		if i == l {
			continue
		}
		score := 0
		if len(conns) > i && conns[i] > 0 {
			score = conns[i]
			if total > conns[i] {
				score += 1 << 20
			}
		}
		switch {
		case score > bestScore:
			best, bestScore = []int{i}, score
		case score == bestScore:
			best = append(best, i)
		}
	}
	i := best[rand.IntN(len(best))]
	clients := 0
	if len(conns) > i {
		clients = conns[i]
	}
	f.desc = fmt.Sprintf("lag %s (a follower, %d client connections) behind the leader, %s, by %v each way",
		c.nodeName(i), clients, c.nodeName(l), clusterLag)
	links := []*Proxy{c.peers[[2]int{i, l}], c.peers[[2]int{l, i}]}
	for _, p := range links {
		p.Delay(clusterLag)
	}
	f.undo = func() error {
		for _, p := range links {
			p.Pass()
		}
		return nil
	}
	return nil
}

// signal runs a lifecycle operation on node i: the Redis one or the
// ZooKeeper one.
func (c *cluster) signal(i int, redisOp func(*servers.Redis) error, zkOp func(*servers.ZK, int) error) error {
	if c.redis != nil {
		return redisOp(c.redis)
	}
	return zkOp(c.zk, i)
}

// passAll sets every proxy to pass traffic.
func (c *cluster) passAll() error {
	for _, p := range c.proxies {
		p.Pass()
	}
	return nil
}

// nodeName names node i.
func (c *cluster) nodeName(i int) string {
	if c.redis != nil {
		return c.redis.String()
	}
	return c.zk.NodeName(i)
}

// waitServing polls until every node serves through Addrs, a server has
// crashed, or ctx ends.
func (c *cluster) waitServing(ctx context.Context) error {
	tick := time.NewTicker(clusterPoll)
	defer tick.Stop()
	for {
		err := c.serving()
		if err == nil {
			return nil
		}
		if crash := c.crashed(); crash != "" {
			return fmt.Errorf("%s (last check: %v)", crash, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// serving checks once that every node serves through Addrs.
func (c *cluster) serving() error {
	switch {
	case c.sentinel != nil:
		return c.sentinel.Settled()
	case c.redis != nil:
		for _, a := range c.addrs {
			if err := c.redis.PingVia(a, time.Second); err != nil {
				return fmt.Errorf("PING via %s: %w", a, err)
			}
		}
	case c.zk != nil:
		if err := servers.CheckModes(servers.ModesAt(c.addrs)); err != nil {
			return fmt.Errorf("ZooKeeper via %q: %w", c.addrs, err)
		}
	}
	return nil
}

// crashed describes a server node that exited by itself, or returns "".
func (c *cluster) crashed() string {
	switch {
	case c.sentinel != nil:
		if why := c.sentinel.ExitedOnItsOwn(); why != "" {
			return "exited by itself: " + why
		}
	case c.redis != nil:
		if why := c.redis.ExitedOnItsOwn(); why != "" {
			return fmt.Sprintf("%s exited by itself: %s", c.redis, why)
		}
	case c.zk != nil:
		for i := range c.zk.Nodes() {
			if why := c.zk.ExitedOnItsOwn(i); why != "" {
				return fmt.Sprintf("%s exited by itself: %s", c.zk.NodeName(i), why)
			}
		}
	}
	return ""
}

// Close stops the proxies and the servers, and makes sure no server
// process is left. Closing again does nothing.
func (c *cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, p := range c.proxies {
		errs = append(errs, p.Close())
	}
	for _, p := range c.peers {
		errs = append(errs, p.Close())
	}
	if c.redis != nil {
		errs = append(errs, c.redis.Close())
	}
	if c.sentinel != nil {
		errs = append(errs, c.sentinel.Close())
	}
	if c.zk != nil {
		errs = append(errs, c.zk.Close())
	}
	return errors.Join(errs...)
}

// clusterFault is a Fault of a cluster.
type clusterFault struct {
	c    *cluster
	kind string
	desc string
	undo func() error

	mu     sync.Mutex // serialises Heal
	undone bool
}

func (f *clusterFault) String() string { return f.desc }

func (f *clusterFault) Heal(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.undone {
		if err := f.undo(); err != nil {
			return fmt.Errorf("jepsen: healing %s: %w", f, err)
		}
		f.undone = true
		f.c.mu.Lock()
		if f.c.active == f {
			f.c.active = nil
		}
		f.c.mu.Unlock()
	}
	if err := f.c.waitServing(ctx); err != nil {
		return fmt.Errorf("jepsen: after healing %s: %w", f, err)
	}
	return nil
}
