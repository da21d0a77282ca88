package testserver

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
	"testing"
	"time"
)

// zkReadyTimeout bounds each wait for ZooKeeper: start-up, restart, and a
// leader after a fault.
const zkReadyTimeout = 20 * time.Second

// Debian's ZooKeeper. The jar's manifest Class-Path names its dependencies
// (netty, jackson, slf4j-api, ...), so it runs alone; slf4j-simple is added
// as the one logging binding, so the server logs to stderr (into zk.log).
// The classpath "/usr/share/java/*" would work too but finds six slf4j
// bindings, picks the no-op one (no log at all) and starts slower.
var (
	zkJar       = "/usr/share/java/zookeeper.jar"
	zkLoggerJar = "/usr/share/java/slf4j-simple.jar"
)

// ZooKeeper settings: a small tickTime makes elections, syncs and session
// limits fast (sessions may last 2*tickTime to 20*tickTime: 1 s to 10 s).
const (
	zkTickTime  = 500
	zkInitLimit = 10 // ticks
	zkSyncLimit = 5  // ticks
)

// RequireZK skips the test when ZooKeeper (/usr/share/java/zookeeper.jar) or
// java is missing, or fails it when the environment variable CI is "true".
// StartZK and StartZKEnsemble call it.
func RequireZK(t testing.TB) {
	t.Helper()
	requireServer(t, zkMissing())
}

// zkMissing says what is missing to run ZooKeeper, or "".
func zkMissing() string {
	if _, err := os.Stat(zkJar); err != nil {
		return "ZooKeeper is not installed (" + zkJar + " missing; Debian package zookeeper)"
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

// ZK is a ZooKeeper server or ensemble started by StartZK or
// StartZKEnsemble. Nodes are numbered from 0 (their myid is index+1).
type ZK struct {
	// Servers holds host:port of each node's client port, in node order.
	// Node i listens on base+3i for clients and on base+3i+1 and base+3i+2
	// for the quorum and leader election.
	Servers []string
	// Dir holds one directory per node, node0, node1, ...: zoo.cfg, data/
	// (with myid) and zk.log (stdout and stderr of every run). It is removed
	// when the test ends.
	Dir string

	t         testing.TB
	ports     *ports
	nodes     []*proc
	tailShown bool // a failure message already showed the logs' tails
}

// StartZK starts a standalone ZooKeeper on a free 127.0.0.1 port with a fresh
// data directory, waits (up to 20 s) until it serves, and stops it when the
// test ends. It skips or fails the test like RequireZK when ZooKeeper is
// missing, and fails it if the server does not come up.
func StartZK(t testing.TB) *ZK {
	t.Helper()
	return startZK(t, 1)
}

// StartZKEnsemble starts an ensemble of n ZooKeeper nodes on 127.0.0.1, on
// 3n consecutive free ports, waits (up to 20 s) until every node serves, as
// leader or follower, with one leader, and stops them when the test ends. An
// ensemble of 1 is a standalone server.
func StartZKEnsemble(t testing.TB, n int) *ZK {
	t.Helper()
	if n < 1 {
		t.Fatalf("testserver: StartZKEnsemble(%d): need at least one node", n)
	}
	return startZK(t, n)
}

func startZK(t testing.TB, n int) *ZK {
	t.Helper()
	if !requireServer(t, zkMissing()) {
		return nil
	}
	java, err := javaPath()
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	z := &ZK{Dir: t.TempDir(), t: t}
	t.Cleanup(z.cleanup)
	const attempts = 5
	for attempt := 1; ; attempt++ {
		ps, err := reservePorts(3 * n)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		z.ports = ps
		z.Servers = make([]string, n)
		z.nodes = make([]*proc, n)
		for i := range n {
			z.Servers[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.base+3*i))
			p, err := z.prepareNode(java, i, n, ps.base)
			if err != nil {
				t.Fatalf("testserver: %v", err)
			}
			z.nodes[i] = p
		}
		for _, p := range z.nodes {
			if err := p.start(); err != nil {
				t.Fatalf("testserver: %v", err)
			}
		}
		err = z.waitAllServing()
		if err == nil {
			return z
		}
		bind := false
		for _, p := range z.nodes {
			bind = bind || bindFailure(p)
		}
		stopErr := z.killAll()
		if bind && attempt < attempts && stopErr == nil {
			t.Logf("testserver: a ZooKeeper node could not bind its port, trying other ports")
			ps.release()
			continue
		}
		z.tailShown = true
		t.Fatalf("testserver: ZooKeeper (%d nodes) did not serve within %v: %v (kill: %v)\n%s",
			n, zkReadyTimeout, err, stopErr, z.tails(30))
	}
}

// prepareNode writes node i's directory and returns its process.
func (z *ZK) prepareNode(java string, i, n, base int) (*proc, error) {
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
	if n > 1 {
		for j := range n {
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", j+1, base+3*j+1, base+3*j+2)
		}
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cp := zkJar
	if _, err := os.Stat(zkLoggerJar); err == nil {
		cp += ":" + zkLoggerJar
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
		modes := z.modes()
		leaders := 0
		for i, m := range modes {
			switch m {
			case "leader", "standalone":
				leaders++
			case "follower":
			default:
				return false, fmt.Errorf("node %d not serving yet (modes %q)", i, modes)
			}
		}
		return leaders == 1, fmt.Errorf("%d leaders (modes %q)", leaders, modes)
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

// tails returns the tail of every node's log.
func (z *ZK) tails(lines int) string {
	var b strings.Builder
	for _, p := range z.nodes {
		fmt.Fprintf(&b, "--- tail of %s:\n%s\n", p.logPath, p.logTail(lines))
	}
	return b.String()
}

// cleanup stops every node at the end of the test (all at once) and releases
// the ports.
func (z *ZK) cleanup() {
	t := z.t
	errs := make([]error, len(z.nodes))
	var wg sync.WaitGroup
	for i, p := range z.nodes {
		if why := p.exitedOnItsOwn(); why != "" {
			t.Logf("testserver: %s had exited by itself before the end of the test: %s", p.name, why)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.op.Lock()
			defer p.op.Unlock()
			errs[i] = p.stop(stopGrace)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("testserver: stopping %s: %v", z.nodes[i].name, err)
		}
	}
	if t.Failed() && !z.tailShown && len(z.nodes) > 0 {
		t.Logf("testserver: ZooKeeper logs:\n%s", z.tails(30))
	}
	if z.ports != nil {
		z.ports.release()
	}
}

// node returns node i's process, failing the test for a bad index.
func (z *ZK) node(t testing.TB, i int) *proc {
	t.Helper()
	if i < 0 || i >= len(z.nodes) {
		t.Fatalf("testserver: no ZooKeeper node %d (ensemble of %d)", i, len(z.nodes))
	}
	return z.nodes[i]
}

// PID returns the PID of node i (also its process group id), or 0 when it is
// not running or there is no node i.
func (z *ZK) PID(i int) int {
	if i < 0 || i >= len(z.nodes) {
		return 0
	}
	return z.nodes[i].pid()
}

// Kill sends SIGKILL to node i's process group and waits until it has
// exited. It does nothing when the node is not running.
func (z *ZK) Kill(t testing.TB, i int) {
	t.Helper()
	z.node(t, i).locked(t, (*proc).kill)
}

// Stop sends SIGTERM to node i's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a
// few seconds. It does nothing when the node is not running.
func (z *ZK) Stop(t testing.TB, i int) {
	t.Helper()
	z.node(t, i).locked(t, (*proc).stopGracefully)
}

// Pause sends SIGSTOP to node i's process group and returns once it is
// stopped. Its peers notice only through timeouts (syncLimit*tickTime, 2.5 s).
func (z *ZK) Pause(t testing.TB, i int) {
	t.Helper()
	z.node(t, i).locked(t, (*proc).pause)
}

// Resume sends SIGCONT to node i's process group.
func (z *ZK) Resume(t testing.TB, i int) {
	t.Helper()
	z.node(t, i).locked(t, (*proc).resume)
}

// Restart starts node i again with the same ports, configuration and data
// directory (a node that is still running is stopped first with SIGTERM). It
// waits (up to 20 s) until the node answers ruok and, when enough nodes run
// unpaused to form a quorum, until it serves as leader, follower or
// standalone.
func (z *ZK) Restart(t testing.TB, i int) {
	t.Helper()
	p := z.node(t, i)
	p.op.Lock()
	defer p.op.Unlock()
	err := p.restart(func(p *proc) error { return z.waitNodeServing(i, p) })
	var nr *notReady
	switch {
	case errors.As(err, &nr):
		z.tailShown = true
		t.Fatalf("testserver: restarted %s did not serve within %v: %v\n--- tail of %s:\n%s",
			p.name, zkReadyTimeout, nr, p.logPath, p.logTail(40))
	case err != nil:
		t.Fatalf("testserver: %v", err)
	}
}

// waitNodeServing waits until node i answers ruok and, if a quorum can form,
// serves.
func (z *ZK) waitNodeServing(i int, p *proc) error {
	gone := func() bool { return p.current() == nil }
	ok, err := waitUntil(zkReadyTimeout, gone, func() (bool, error) {
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
	if ok {
		return nil
	}
	if why := p.exitedOnItsOwn(); why != "" {
		return fmt.Errorf("exited (%s); last check: %v", why, err)
	}
	if err == nil {
		err = errors.New("timed out")
	}
	return err
}

// FourLetter sends a four-letter word (ruok, srvr, stat, mntr, ...) to node
// i and returns the whole answer, all within timeout.
func (z *ZK) FourLetter(i int, cmd string, timeout time.Duration) (string, error) {
	if i < 0 || i >= len(z.Servers) {
		return "", fmt.Errorf("no ZooKeeper node %d", i)
	}
	c, err := net.DialTimeout("tcp", z.Servers[i], timeout)
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
	s, err := z.FourLetter(i, "srvr", time.Second)
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
func (z *ZK) modes() []string {
	modes := make([]string, len(z.nodes))
	var wg sync.WaitGroup
	for i := range z.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			modes[i] = z.Mode(i)
		}()
	}
	wg.Wait()
	return modes
}

// Leader waits (up to 20 s) until exactly one node reports that it leads
// (standalone counts) and a quorum of nodes serves, and returns the leader's
// index. It fails the test at once when too few nodes run unpaused to form a
// quorum, and after the wait otherwise.
func (z *ZK) Leader(t testing.TB) int {
	t.Helper()
	if live, q := z.live(), z.quorum(); live < q {
		t.Fatalf("testserver: no ZooKeeper leader possible: %d of %d nodes run unpaused, quorum is %d", live, len(z.nodes), q)
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
		z.tailShown = true
		t.Fatalf("testserver: no ZooKeeper leader with a quorum within %v (modes %q)\n%s", zkReadyTimeout, modes, z.tails(30))
	}
	return leader
}

// ConnectString returns the servers as a ZooKeeper client connect string,
// "127.0.0.1:a,127.0.0.1:b,...".
func (z *ZK) ConnectString() string { return strings.Join(z.Servers, ",") }
