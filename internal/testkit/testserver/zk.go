package testserver

import (
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/internal/servers"
)

// RequireZK skips the test when ZooKeeper (/usr/share/java/zookeeper.jar) or
// java is missing, or fails it when the environment variable CI is "true".
// StartZK and StartZKEnsemble call it.
func RequireZK(t testing.TB) {
	t.Helper()
	requireServer(t, servers.ZKMissing())
}

// ZK is a ZooKeeper server or ensemble started by StartZK or
// StartZKEnsemble (a [servers.ZK] whose lifetime is the test's). Nodes are
// numbered from 0 (their myid is index+1).
type ZK struct {
	// Servers holds host:port of each node's client port, in node order.
	// Node i listens on base+3i for clients and on base+3i+1 and base+3i+2
	// for the quorum and leader election.
	Servers []string
	// Dir holds one directory per node, node0, node1, ...: zoo.cfg, data/
	// (with myid) and zk.log (stdout and stderr of every run). It is removed
	// when the test ends.
	Dir string

	s *servers.ZK
	t testing.TB
	reporter
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
	if !requireServer(t, servers.ZKMissing()) {
		return nil
	}
	z := &ZK{t: t}
	s, err := servers.StartZK(n, servers.ZKOptions{Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		z.check(t, err)
		return nil
	}
	z.s = s
	z.Servers, z.Dir = append([]string(nil), s.Servers...), s.Dir
	t.Cleanup(z.cleanup)
	return z
}

// cleanup stops every node at the end of the test (all at once) and releases
// the ports.
func (z *ZK) cleanup() {
	t := z.t
	for i := range z.s.Nodes() {
		if why := z.s.ExitedOnItsOwn(i); why != "" {
			t.Logf("testserver: %s had exited by itself before the end of the test: %s", z.s.NodeName(i), why)
		}
	}
	if err := z.s.Close(); err != nil {
		t.Errorf("testserver: %v", err)
	}
	if t.Failed() && !z.tailShown {
		t.Logf("testserver: ZooKeeper logs:\n%s", z.s.LogTails(30))
	}
}

// PID returns the PID of node i (also its process group id), or 0 when it is
// not running or there is no node i.
func (z *ZK) PID(i int) int { return z.s.PID(i) }

// Kill sends SIGKILL to node i's process group and waits until it has
// exited. It does nothing when the node is not running.
func (z *ZK) Kill(t testing.TB, i int) {
	t.Helper()
	z.check(t, z.s.Kill(i))
}

// Stop sends SIGTERM to node i's process group (and SIGCONT, should it be
// paused), waits until it has exited, and kills it if it has not within a
// few seconds. It does nothing when the node is not running.
func (z *ZK) Stop(t testing.TB, i int) {
	t.Helper()
	z.check(t, z.s.Stop(i))
}

// Pause sends SIGSTOP to node i's process group and returns once it is
// stopped. Its peers notice only through timeouts (syncLimit*tickTime, 2.5 s).
func (z *ZK) Pause(t testing.TB, i int) {
	t.Helper()
	z.check(t, z.s.Pause(i))
}

// Resume sends SIGCONT to node i's process group.
func (z *ZK) Resume(t testing.TB, i int) {
	t.Helper()
	z.check(t, z.s.Resume(i))
}

// Restart starts node i again with the same ports, configuration and data
// directory (a node that is still running is stopped first with SIGTERM). It
// waits (up to 20 s) until the node answers ruok and, when enough nodes run
// unpaused to form a quorum, until it serves as leader, follower or
// standalone.
func (z *ZK) Restart(t testing.TB, i int) {
	t.Helper()
	z.check(t, z.s.Restart(i))
}

// FourLetter sends a four-letter word (ruok, srvr, stat, mntr, ...) to node
// i and returns the whole answer, all within timeout.
func (z *ZK) FourLetter(i int, cmd string, timeout time.Duration) (string, error) {
	return z.s.FourLetter(i, cmd, timeout)
}

// Mode returns what node i's srvr reports as its mode: "leader", "follower",
// "observer" or "standalone"; or "" when it does not answer within a second
// or does not serve (e.g. during an election, without quorum, killed or
// paused).
func (z *ZK) Mode(i int) string { return z.s.Mode(i) }

// Leader waits (up to 20 s) until exactly one node reports that it leads
// (standalone counts) and a quorum of nodes serves, and returns the leader's
// index. It fails the test at once when too few nodes run unpaused to form a
// quorum, and after the wait otherwise.
func (z *ZK) Leader(t testing.TB) int {
	t.Helper()
	l, err := z.s.Leader()
	z.check(t, err)
	return l
}

// ConnectString returns the servers as a ZooKeeper client connect string,
// "127.0.0.1:a,127.0.0.1:b,...".
func (z *ZK) ConnectString() string { return strings.Join(z.Servers, ",") }
