package servers

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// zkReadyTimeout bounds each wait for ZooKeeper: start-up, restart, and a
// leader after a fault.
const zkReadyTimeout = 20 * time.Second

// ZKJar and ZKLoggerJar are where ZooKeeper is looked for: Debian's. The
// jar's manifest Class-Path names its dependencies (netty, jackson,
// slf4j-api, ...), so it runs alone; slf4j-simple is added as the one logging
// binding, so the server logs to stderr (into zk.log). The classpath
// "/usr/share/java/*" would work too but finds six slf4j bindings, picks the
// no-op one (no log at all) and starts slower. Set them, if at all, before
// starting anything.
var (
	ZKJar       = "/usr/share/java/zookeeper.jar"
	ZKLoggerJar = "/usr/share/java/slf4j-simple.jar"
)

// ZooKeeper settings: a small tickTime makes elections, syncs and session
// limits fast (sessions may last 2*tickTime to 20*tickTime: 1 s to 10 s).
const (
	zkTickTime  = 500
	zkInitLimit = 10 // ticks
	zkSyncLimit = 5  // ticks
)

// ZKMissing says what is missing to run ZooKeeper (ZKJar or java), or "".
func ZKMissing() string {
	if _, err := os.Stat(ZKJar); err != nil {
		return "ZooKeeper is not installed (" + ZKJar + " missing; Debian package zookeeper)"
	}
	if _, err := javaPath(); err != nil {
		return "java is not installed (not found in PATH or /usr/bin/java; Debian package default-jre-headless, which zookeeper depends on)"
	}
	return ""
}

func javaPath() (string, error) {
	p, err := exec.LookPath("java")
	if err == nil {
		return p, nil
	}
	if st, err2 := os.Stat("/usr/bin/java"); err2 == nil && !st.IsDir() {
		return "/usr/bin/java", nil
	}
	return "", err
}

// ZKOptions configures StartZK. The zero value puts the nodes in a
// temporary directory.
type ZKOptions struct {
	// Dir holds the nodes' directories, created if needed and kept by
	// Close. When empty, StartZK creates a temporary one, which Close
	// removes.
	Dir string

	// Logf, if not nil, is told about start attempts that are retried.
	Logf func(format string, args ...any)

	// PeerAddr, if not nil, chooses the address at which node from (in
	// an ensemble) reaches the quorum port of node to, which listens at
	// quorum (127.0.0.1:port): for example a proxy in front of it, so
	// that the traffic between two nodes can be delayed. It must return
	// a 127.0.0.1 address (the config gives one host for a node's quorum
	// and election ports; elections stay direct). It is called while the
	// nodes' configurations are written, again for new ports when a
	// start is retried. Nil: every node dials the others directly.
	PeerAddr func(from, to int, quorum string) (string, error)

	// Args are extra zoo.cfg lines, appended after the package's own,
	// e.g. "forceSync=no" (acknowledge writes before the log is synced).
	Args []string
}

// ZK is a ZooKeeper server or ensemble started by StartZK. Nodes are
// numbered from 0 (their myid is index+1). Its methods are safe for
// concurrent use; lifecycle operations on one node are serialised.
type ZK struct {
	// Servers holds host:port of each node's client port, in node order.
	// Node i listens on base+3i for clients and on base+3i+1 and base+3i+2
	// for the quorum and leader election.
	Servers []string
	// Dir holds one directory per node, node0, node1, ...: zoo.cfg, data/
	// (with myid) and zk.log (stdout and stderr of every run).
	Dir string

	ownDir bool     // Dir was created by StartZK: Close removes it
	args   []string // ZKOptions.Args
	ports  *ports
	nodes  []*proc

	mu     sync.Mutex
	closed bool
}

// StartZK starts n ZooKeeper nodes on 127.0.0.1, on 3n consecutive free
// ports, waits (up to 20 s) until every node serves, as leader or follower,
// with one leader, and returns them; the caller must Close them. One node is
// a standalone server. An ensemble that does not come up is killed and its
// error is a *NotServingError holding the tails of the nodes' logs.
func StartZK(n int, opts ZKOptions) (*ZK, error) {
	if n < 1 {
		return nil, fmt.Errorf("StartZK(%d): need at least one node", n)
	}
	if missing := ZKMissing(); missing != "" {
		return nil, errors.New(missing)
	}
	java, err := javaPath()
	if err != nil {
		return nil, err
	}
	dir, own, err := serverDir(opts.Dir, "epochal-zk-")
	if err != nil {
		return nil, err
	}
	z := &ZK{Dir: dir, ownDir: own, args: opts.Args}
	if err := z.start(java, n, opts); err != nil {
		_ = z.Close()
		return nil, err
	}
	return z, nil
}

// start starts the nodes, on other ports when a port is taken.
func (z *ZK) start(java string, n int, opts ZKOptions) error {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		ps, err := reservePorts(3 * n)
		if err != nil {
			return err
		}
		z.ports = ps
		z.Servers = make([]string, n)
		z.nodes = make([]*proc, n)
		for i := range n {
			z.Servers[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.base+3*i))
			p, err := z.prepareNode(java, i, n, ps.base, opts.PeerAddr)
			if err != nil {
				return err
			}
			z.nodes[i] = p
		}
		for _, p := range z.nodes {
			if err := p.start(); err != nil {
				return err
			}
		}
		err = z.waitAllServing()
		if err == nil {
			return nil
		}
		bind := false
		for _, p := range z.nodes {
			bind = bind || bindFailure(p)
		}
		stopErr := z.killAll()
		if bind && attempt < attempts && stopErr == nil {
			if opts.Logf != nil {
				opts.Logf("servers: a ZooKeeper node could not bind its port, trying other ports")
			}
			ps.release()
			continue
		}
		return &NotServingError{
			Err:  fmt.Errorf("ZooKeeper (%d nodes) did not serve within %v: %v (kill: %v)", n, zkReadyTimeout, err, stopErr),
			Logs: z.LogTails(30),
		}
	}
}

// prepareNode writes node i's directory and returns its process.
func (z *ZK) prepareNode(java string, i, n, base int, peerAddr func(from, to int, quorum string) (string, error)) (*proc, error) {
	dir := filepath.Join(z.Dir, fmt.Sprintf("node%d", i))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(i+1)+"\n"), 0o644); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tickTime=%d\ninitLimit=%d\nsyncLimit=%d\n", zkTickTime, zkInitLimit, zkSyncLimit)
	fmt.Fprintf(&b, "dataDir=%s\n", data)
	fmt.Fprintf(&b, "clientPort=%d\nclientPortAddress=127.0.0.1\n", base+3*i)
	b.WriteString("admin.enableServer=false\n")
	b.WriteString("4lw.commands.whitelist=*\n")
	b.WriteString("maxClientCnxns=0\n")  // no limit per client IP (all tests come from 127.0.0.1)
	b.WriteString("preAllocSize=4096\n") // KiB of transaction log preallocated, not 64 MiB
	for _, a := range z.args {
		b.WriteString(a + "\n")
	}
	if n > 1 {
		for j := range n {
			quorum := base + 3*j + 1
			if peerAddr != nil && j != i {
				addr, err := peerAddr(i, j, net.JoinHostPort("127.0.0.1", strconv.Itoa(quorum)))
				if err != nil {
					return nil, fmt.Errorf("node %d's address of node %d: %w", i, j, err)
				}
				host, port, err := net.SplitHostPort(addr)
				if err != nil || host != "127.0.0.1" {
					return nil, fmt.Errorf("node %d's address of node %d: %q is not 127.0.0.1:port", i, j, addr)
				}
				if quorum, err = strconv.Atoi(port); err != nil {
					return nil, fmt.Errorf("node %d's address of node %d: %q: %w", i, j, addr, err)
				}
			}
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", j+1, quorum, base+3*j+2)
		}
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cp := ZKJar
	if _, err := os.Stat(ZKLoggerJar); err == nil {
		cp += ":" + ZKLoggerJar
	}
	args := []string{
		"-Xmx256m", "-Xms32m",
		"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-XX:-UsePerfData", // no /tmp/hsperfdata_* file left behind by a SIGKILL
		"-Djava.net.preferIPv4Stack=true",
		"-Djava.io.tmpdir=" + dir,
		"-Dzookeeper.cnxTimeout=1000", // election connect timeout, ms
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
		"-cp", cp,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg,
	}
	return &proc{
		name:    fmt.Sprintf("ZooKeeper node %d (127.0.0.1:%d)", i, base+3*i),
		path:    java,
		args:    args,
		dir:     dir,
		logPath: filepath.Join(dir, "zk.log"),
	}, nil
}

// quorum is the number of serving nodes an ensemble needs.
func (z *ZK) quorum() int { return len(z.nodes)/2 + 1 }

// live is the number of nodes running and not paused.
func (z *ZK) live() int {
	n := 0
	for _, p := range z.nodes {
		if p.runningUnpaused() {
			n++
		}
	}
	return n
}

// waitAllServing waits until every node answers ruok and serves, with one
// leader.
func (z *ZK) waitAllServing() error {
	gone := func() bool {
		for _, p := range z.nodes {
			if p.current() == nil {
				return true
			}
		}
		return false
	}
	ok, err := waitUntil(zkReadyTimeout, gone, func() (bool, error) {
		for i := range z.nodes {
			if s, err := z.FourLetter(i, "ruok", time.Second); err != nil || s != "imok" {
				return false, fmt.Errorf("node %d: ruok: %q, %v", i, s, err)
			}
		}
		err := CheckModes(z.modes())
		return err == nil, err
	})
	if ok {
		return nil
	}
	for _, p := range z.nodes {
		if why := p.exitedOnItsOwn(); why != "" {
			return fmt.Errorf("%s exited (%s); last check: %v", p.name, why, err)
		}
	}
	if err == nil {
		err = errors.New("timed out")
	}
	return err
}

// killAll kills every node.
func (z *ZK) killAll() error {
	var errs []error
	for _, p := range z.nodes {
		errs = append(errs, p.kill())
	}
	return errors.Join(errs...)
}

// LogTails returns the tail of every node's log.
func (z *ZK) LogTails(lines int) string {
	var b strings.Builder
	for _, p := range z.nodes {
		fmt.Fprintf(&b, "--- tail of %s:\n%s\n", p.logPath, p.logTail(lines))
	}
	return b.String()
}

// Close stops every node (all at once; SIGTERM, SIGKILL after a few
// seconds), makes sure no process of their groups is left, releases the
// ports and, if StartZK created the directory, removes it. The nodes cannot
// be restarted afterwards. Closing again does nothing.
func (z *ZK) Close() error {
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		return nil
	}
	z.closed = true
	z.mu.Unlock()
	errs := make([]error, len(z.nodes)+1)
	var wg sync.WaitGroup
	for i, p := range z.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.close(stopGrace)
		}()
	}
	wg.Wait()
	if z.ports != nil {
		z.ports.release()
	}
	if z.ownDir {
		errs[len(z.nodes)] = os.RemoveAll(z.Dir)
	}
	return errors.Join(errs...)
}

// node returns node i's process.
func (z *ZK) node(i int) (*proc, error) {
	if i < 0 || i >= len(z.nodes) {
		return nil, fmt.Errorf("no ZooKeeper node %d (ensemble of %d)", i, len(z.nodes))
	}
	return z.nodes[i], nil
}

// Nodes returns the number of nodes.
func (z *ZK) Nodes() int { return len(z.nodes) }

// NodeName names node i: "ZooKeeper node i (127.0.0.1:port)".
func (z *ZK) NodeName(i int) string {
	p, err := z.node(i)
	if err != nil {
		return err.Error()
	}
	return p.name
}

// ExitedOnItsOwn describes how node i exited if it did without being
// signalled by this package (a crash), or returns "".
func (z *ZK) ExitedOnItsOwn(i int) string {
	p, err := z.node(i)
	if err != nil {
		return ""
	}
	return p.exitedOnItsOwn()
}

// LogPath is node i's log file (stdout and stderr of every run), or "".
func (z *ZK) LogPath(i int) string {
	p, err := z.node(i)
	if err != nil {
		return ""
	}
	return p.logPath
}

// PID returns the PID of node i (also its process group id), or 0 when it is
// not running or there is no node i.
func (z *ZK) PID(i int) int {
	if i < 0 || i >= len(z.nodes) {
		return 0
	}
	return z.nodes[i].pid()
}

// lifecycle runs one lifecycle operation on node i.
func (z *ZK) lifecycle(i int, op func(*proc) error) error {
	p, err := z.node(i)
	if err != nil {
		return err
	}
	return p.locked(op)
}

// Kill sends SIGKILL to node i's process group and waits until it has
// exited. It does nothing when the node is not running.
func (z *ZK) Kill(i int) error { return z.lifecycle(i, (*proc).kill) }

// Stop sends SIGTERM to node i's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a
// few seconds. It does nothing when the node is not running.
func (z *ZK) Stop(i int) error { return z.lifecycle(i, (*proc).stopGracefully) }

// Pause sends SIGSTOP to node i's process group and returns once it is
// stopped. Its peers notice only through timeouts (syncLimit*tickTime, 2.5 s).
func (z *ZK) Pause(i int) error { return z.lifecycle(i, (*proc).pause) }

// Resume sends SIGCONT to node i's process group.
func (z *ZK) Resume(i int) error { return z.lifecycle(i, (*proc).resume) }

// Restart starts node i again with the same ports, configuration and data
// directory (a node that is still running is stopped first with SIGTERM). It
// waits (up to 20 s) until the node answers ruok and, when enough nodes run
// unpaused to form a quorum, until it serves as leader, follower or
// standalone. A node that does not serve is killed and the error is a
// *NotServingError.
func (z *ZK) Restart(i int) error {
	p, err := z.node(i)
	if err != nil {
		return err
	}
	p.op.Lock()
	defer p.op.Unlock()
	err = p.restart(func(p *proc) error { return z.waitNodeServing(i, p) })
	var nr *notReady
	if errors.As(err, &nr) {
		return &NotServingError{
			Err:  fmt.Errorf("restarted %s did not serve within %v: %v", p.name, zkReadyTimeout, nr),
			Logs: fmt.Sprintf("--- tail of %s:\n%s", p.logPath, p.logTail(40)),
		}
	}
	return err
}

// waitNodeServing waits until node i answers ruok and, if a quorum can form,
// serves.
func (z *ZK) waitNodeServing(i int, p *proc) error {
	return p.awaitReady(zkReadyTimeout, func() (bool, error) {
		s, err := z.FourLetter(i, "ruok", time.Second)
		if err != nil || s != "imok" {
			return false, fmt.Errorf("ruok: %q, %v", s, err)
		}
		if z.live() < z.quorum() {
			return true, nil
		}
		switch m := z.Mode(i); m {
		case "leader", "follower", "standalone":
			return true, nil
		default:
			return false, fmt.Errorf("not serving yet (mode %q)", m)
		}
	})
}

// FourLetter sends a four-letter word (ruok, srvr, stat, mntr, ...) to node
// i and returns the whole answer, all within timeout.
func (z *ZK) FourLetter(i int, cmd string, timeout time.Duration) (string, error) {
	if i < 0 || i >= len(z.Servers) {
		return "", fmt.Errorf("no ZooKeeper node %d", i)
	}
	return FourLetterAt(z.Servers[i], cmd, timeout)
}

// FourLetterAt sends a four-letter word to the ZooKeeper server at addr
// (or a proxy leading to one) and returns the whole answer, all within
// timeout.
func FourLetterAt(addr, cmd string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// Mode returns what node i's srvr reports as its mode: "leader", "follower",
// "observer" or "standalone"; or "" when it does not answer within a second
// or does not serve (e.g. during an election, without quorum, killed or
// paused).
func (z *ZK) Mode(i int) string {
	if i < 0 || i >= len(z.Servers) {
		return ""
	}
	return ModeAt(z.Servers[i])
}

// ModeAt is Mode of the ZooKeeper server at addr (or behind a proxy there).
func ModeAt(addr string) string {
	s, err := FourLetterAt(addr, "srvr", time.Second)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "Mode:"); ok {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// modes returns every node's Mode, asking them all at once.
func (z *ZK) modes() []string { return ModesAt(z.Servers) }

// ModesAt returns the mode (see ModeAt) of the server at each address,
// asking them all at once.
func ModesAt(addrs []string) []string {
	modes := make([]string, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			modes[i] = ModeAt(a)
		}()
	}
	wg.Wait()
	return modes
}

// CheckModes returns nil if the modes, one a node, are those of an ensemble
// where every node serves (as leader, follower or standalone) with one
// leader, and an error saying why not otherwise.
func CheckModes(modes []string) error {
	leaders := 0
	for i, m := range modes {
		switch m {
		case "leader", "standalone":
			leaders++
		case "follower":
		default:
			return fmt.Errorf("node %d not serving yet (modes %q)", i, modes)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d leaders (modes %q)", leaders, modes)
	}
	return nil
}

// Leader waits (up to 20 s) until exactly one node reports that it leads
// (standalone counts) and a quorum of nodes serves, and returns the leader's
// index. It fails at once when too few nodes run unpaused to form a quorum;
// after the wait, with a *NotServingError.
func (z *ZK) Leader() (int, error) {
	if live, q := z.live(), z.quorum(); live < q {
		return -1, fmt.Errorf("no ZooKeeper leader possible: %d of %d nodes run unpaused, quorum is %d", live, len(z.nodes), q)
	}
	leader := -1
	var modes []string
	ok, _ := waitUntil(zkReadyTimeout, nil, func() (bool, error) {
		modes = z.modes()
		leaders, serving := 0, 0
		for i, m := range modes {
			switch m {
			case "leader", "standalone":
				leaders++
				serving++
				leader = i
			case "follower":
				serving++
			}
		}
		return leaders == 1 && serving >= z.quorum(), nil
	})
	if !ok {
		return -1, &NotServingError{
			Err:  fmt.Errorf("no ZooKeeper leader with a quorum within %v (modes %q)", zkReadyTimeout, modes),
			Logs: z.LogTails(30),
		}
	}
	return leader, nil
}

// ConnectString returns the servers as a ZooKeeper client connect string,
// "127.0.0.1:a,127.0.0.1:b,...".
func (z *ZK) ConnectString() string { return strings.Join(z.Servers, ",") }
