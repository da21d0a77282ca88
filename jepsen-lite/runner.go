package jepsenlite

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// Nemeses the runner itself provides, beside the cluster's fault kinds.
const (
	NemesisClientKill = "client-kill" // SIGKILL a client process mid-run (a replacement starts)
	NemesisSkew       = "skew"        // client processes' wall clocks skewed by ±(lease+1s)
	// NemesisClientPause SIGSTOPs a client process for an interval (a
	// long GC pause: a lock holder outlives its lease), then SIGCONTs it.
	NemesisClientPause = "client-pause"
)

// Config configures a run.
type Config struct {
	Backend  string // mem, redis or zk
	Workload string

	// Coordinator is the mixed workload's coordinator, redis or zk (the
	// other is its second backend; both are started). Default: Backend
	// if that is redis or zk, else redis. Backend is set to it.
	Coordinator string

	Nemesis []string // fault kinds (cluster kinds, client-kill, skew); empty: none
	Time    time.Duration
	Workers int // client processes (mem: clients run in this process)
	Clients int // clients per process
	Dir     string
	Seed    uint64
	// Interval is the fault schedule's period: healthy for Interval,
	// a fault for Interval, and so on, the kinds in turn; every fault
	// heals before the final reads. Every kind asked for is injected at
	// least once: a Time shorter than one round (2 intervals per kind)
	// is refused, and the clients run past Time, if injecting and
	// healing took longer than planned, until every kind has been
	// injected. Default: Time/6, or less with more than two kinds, so
	// that one round fits in Time with an interval to spare; at least
	// 500ms.
	Interval time.Duration
	Nodes    int // ZooKeeper nodes, 1 or 3 (default 3 when the leader or lag nemesis is asked for, else 1); only 0 or 1 without ZooKeeper
	Bug      string
	General  bool
	Lease    time.Duration
	// CheckTimeout bounds each checker's linearizability search
	// (porcupine's; register, atom-register, lock). A search that runs
	// out of time makes the verdict UNKNOWN. Default
	// check.DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Rate is the run's target operations per second, over every
	// client (0: as fast as they go).
	Rate float64
	// MinOK is how many successful operations (ok, final reads not
	// counted) of each kind that changes state (TestedKinds: a bank's
	// transfers, list-append's appends, a register's writes and
	// compare-and-sets, ...) a run needs to count as having tested
	// something: with fewer of any kind the verdict is UNKNOWN, "too
	// little was tested", never PASS. Default (0) DefaultMinOK.
	MinOK int
	// WatchKeep is how many older versions a Redis ref keeps while it is
	// watched (redis.Config.WatchKeep; 0: the default, 256). Lower, the
	// watch workload's watchers depend on the change feed sooner: a feed
	// that falls that far behind must announce a gap.
	WatchKeep int

	// Redis replicas (failover.go). RedisTopology is "single" (one
	// server, the default) or "sentinel": a master, a replica and three
	// sentinels, clients connecting through Sentinel, and the fault
	// failover. RedisWait is redis.Config.WaitReplicas of the clients
	// (0: no WAIT; sentinel only).
	RedisTopology string
	RedisWait     int

	// WorkerCmd makes the command that runs one client process with the
	// given `epochal jepsen worker` flags. Default: this executable
	// with "jepsen worker" before them. Not data: config.json leaves it
	// (and Progress) out; every other field is written there
	// (Config.MarshalJSON: lower-case keys, durations such as "30s").
	WorkerCmd func(args []string) *exec.Cmd `json:"-"`
	// Progress receives the run's progress (nil: none): on a terminal a
	// bar redrawn in place; otherwise (a file, a pipe) plain lines, one
	// when the clients start (the seed, the run directory), one every
	// Time/10 (2s to 30s apart) and one when they stop.
	Progress io.Writer `json:"-"`
}

// VerdictIncomplete is the verdict of a run cut short (its context was
// cancelled: ^C, SIGINT): it ran for less than its time, without its
// final reads, and was not checked. Not a pass, nor a failure found.
const VerdictIncomplete check.Verdict = "INCOMPLETE"

// Summary is a run's outcome.
type Summary struct {
	Config Config // as run: defaults filled in
	Dir    string
	// Verdict is PASS (every checker checked everything, no failing
	// anomaly, every fault kind asked for injected), FAIL (a failing
	// anomaly) or UNKNOWN (no failing anomaly, but a check was
	// inconclusive or a fault kind never injected: Inconclusive says
	// what). "" until the run has finished.
	Verdict      check.Verdict
	Inconclusive []string
	// Incomplete: the run has not finished with a verdict (it is under
	// way, it failed, or it was cut short).
	Incomplete bool
	// CutShort says why a run was cut short (its context was cancelled:
	// ^C, SIGINT): its Verdict is then VerdictIncomplete; "" otherwise.
	CutShort string
	// CheckCutShort: the run was cut short while its history was being
	// checked, after the clients and their final reads had finished: the
	// history is whole, and Recheck checks it.
	CheckCutShort bool
	Results       []check.Result
	Faults        []FaultWindow
	// Fired counts the faults injected, per kind asked for (0: never
	// injected) and per kind injected.
	Fired map[string]int
	// Tested counts the successful operations (not final reads) of each
	// kind that changes state (TestedKinds), which MinOK bounds below.
	Tested   map[string]int
	Ops      int // completed operations
	OK, Fail int
	Info     int
	Elapsed  time.Duration
}

// Failed reports whether the run must count as a failure: it found a
// failing anomaly, or did not finish. An UNKNOWN run has not failed, nor
// passed.
func (s *Summary) Failed() bool { return s.Incomplete || s.Verdict == check.VerdictFail }

// Passed reports whether the run passed: it finished, checked everything
// and found no failing anomaly.
func (s *Summary) Passed() bool { return !s.Incomplete && s.Verdict == check.VerdictPass }

func (c *Config) check() error {
	w, err := newWorkload(c.Workload, 0)
	if err != nil {
		return err
	}
	if _, ok := w.(twoBackends); ok {
		switch {
		case c.Coordinator == "" && (c.Backend == "redis" || c.Backend == "zk"):
			c.Coordinator = c.Backend
		case c.Coordinator == "":
			c.Coordinator = "redis"
		case c.Coordinator != "redis" && c.Coordinator != "zk":
			return fmt.Errorf("jepsen: --coordinator %q: want redis or zk (the other is the second backend)", c.Coordinator)
		}
		c.Backend = c.Coordinator
	} else if c.Coordinator != "" {
		return fmt.Errorf("jepsen: --coordinator is for the mixed workload, not %s (use --backend)", c.Workload)
	}
	switch c.Backend {
	case "mem", "redis", "zk":
	default:
		return fmt.Errorf("jepsen: unknown backend %q (want mem, redis or zk)", c.Backend)
	}
	if c.MinOK < 0 {
		return fmt.Errorf("jepsen: --min-ok %d: want at least 1 (0: the default, %d)", c.MinOK, DefaultMinOK)
	}
	if c.MinOK == 0 {
		c.MinOK = DefaultMinOK
	}
	if c.WatchKeep < 0 {
		return fmt.Errorf("jepsen: --watch-keep %d: want at least 1 (0: the default)", c.WatchKeep)
	}
	if c.WatchKeep > 0 && c.Backend != "redis" && c.Second() != "redis" {
		return fmt.Errorf("jepsen: --watch-keep is for Redis, and this run uses no Redis backend")
	}
	if c.Bug != "" {
		if _, ok := bugFaults[c.Bug]; !ok {
			return fmt.Errorf("jepsen: unknown bug %q (want one of %s)", c.Bug, strings.Join(BugNames, ", "))
		}
	}
	if c.Time <= 0 {
		return fmt.Errorf("jepsen: --time %v: must be > 0", c.Time)
	}
	if c.Rate < 0 {
		return fmt.Errorf("jepsen: --rate %v: must be >= 0", c.Rate)
	}
	for _, n := range []struct {
		flag string
		v    int64
		s    string
	}{{"--workers", int64(c.Workers), strconv.Itoa(c.Workers)}, {"--clients", int64(c.Clients), strconv.Itoa(c.Clients)},
		{"--interval", int64(c.Interval), c.Interval.String()}, {"--check-timeout", int64(c.CheckTimeout), c.CheckTimeout.String()},
		{"--lease", int64(c.Lease), c.Lease.String()}} {
		if n.v < 0 {
			return fmt.Errorf("jepsen: %s %s: must not be negative (0: the default)", n.flag, n.s)
		}
	}
	if c.Clients == 0 {
		c.Clients = 4
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if _, ok := w.(twoBackends); ok && c.Clients < 2 {
		return fmt.Errorf("jepsen: --clients %d: the mixed workload needs at least 2 clients per process (client 0 of each process only reads: with one, nothing is written)", c.Clients)
	}
	if limit, why := clientLimit(c.Workload); c.Clients > limit {
		return fmt.Errorf("jepsen: --clients %d: at most %d for %s (%s)", c.Clients, limit, c.Workload, why)
	}
	c.Nemesis = dedupe(c.Nemesis)
	kinds := len(c.scheduled())
	if c.Interval <= 0 {
		c.Interval = max(min(c.Time/6, c.Time/time.Duration(2*kinds+1)), minInterval)
	}
	if round := time.Duration(2*kinds) * c.Interval; c.Time < round {
		return fmt.Errorf("jepsen: --time %v is too short for %d fault kinds (%s) at an interval of %v: each kind is injected at least once, after a healthy interval, so one round takes %v; give a --time of at least %v, fewer kinds or a shorter --interval",
			c.Time, kinds, strings.Join(c.scheduled(), ","), c.Interval, round, round)
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Second
		if c.Workload == "lock" {
			c.Lease = check.DefaultLockLease
		}
	}
	usesZK := c.Backend == "zk" || c.Second() == "zk"
	switch {
	case !usesZK && c.Nodes != 0 && c.Nodes != 1:
		return fmt.Errorf("jepsen: --nodes %d is for ZooKeeper, and this run uses no ZooKeeper backend (Redis runs one server)", c.Nodes)
	case usesZK && c.Nodes != 0 && c.Nodes != 1 && c.Nodes != 3:
		return fmt.Errorf("jepsen: --nodes %d: want 1 or 3 ZooKeeper nodes (0: the default)", c.Nodes)
	}
	if c.Nodes == 0 {
		c.Nodes = 1
		if usesZK && (slices.Contains(c.Nemesis, FaultLeader) || slices.Contains(c.Nemesis, FaultLag)) {
			c.Nodes = 3
		}
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	supported := map[string]bool{NemesisClientKill: c.Backend != "mem", NemesisClientPause: c.Backend != "mem", NemesisSkew: true}
	for _, k := range clusterFaults(c.Backend, c.Nodes) {
		supported[k] = true
	}
	for _, k := range clusterFaults(c.Second(), c.Nodes) {
		supported[k] = true
	}
	if err := c.checkRedisTopology(supported); err != nil {
		return err
	}
	for _, n := range c.Nemesis {
		if !supported[n] {
			var names []string
			for k, ok := range supported {
				if ok {
					names = append(names, k)
				}
			}
			sort.Strings(names)
			on := c.Backend
			if c.Second() != "" {
				on += " and " + c.Second()
			}
			return fmt.Errorf("jepsen: nemesis %q is not available on %s with %d node(s) (available: %s)", n, on, c.Nodes, strings.Join(names, ", "))
		}
	}
	return nil
}

// clientLimit is the most clients per process a workload's numbering
// keeps apart, and why. A client's operations are recorded as processes
// worker*1e9 + client*1e6 (+1 after each info), a process's watchers as
// worker*1e9 + watcherBase (9e8) and up: 900 clients reach them. mixed's
// clients append values worker*1e9 + (client+1)*1e7 + n: client 99 (the
// 100th) would append the next worker's values.
func clientLimit(workload string) (int, string) {
	if workload == "mixed" {
		return 99, "its clients' appended values are worker*1e9 + (client+1)*1e7 + n: more would repeat another worker's"
	}
	return watcherBase / 1_000_000, "process numbers are worker*1e9 + client*1e6, a process's watchers from worker*1e9 + 9e8: more would collide"
}

// minInterval is the shortest default fault interval.
const minInterval = 500 * time.Millisecond

// scheduled lists the fault kinds the nemesis injects in turn (every kind
// asked for but skew, which lasts the whole run).
func (c *Config) scheduled() []string {
	var kinds []string
	for _, n := range c.Nemesis {
		if n != NemesisSkew {
			kinds = append(kinds, n)
		}
	}
	return kinds
}

// dedupe drops repeated names, keeping the first of each.
func dedupe(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Second is the second backend of a workload over two (mixed): the
// backend other than Coordinator; "" for other workloads.
func (c *Config) Second() string {
	switch c.Coordinator {
	case "redis":
		return "zk"
	case "zk":
		return "redis"
	}
	return ""
}

// clusterFaults lists the fault kinds a (proxied) cluster of backend with
// the given number of nodes supports.
func clusterFaults(backend string, nodes int) []string {
	switch backend {
	case "redis":
		return []string{FaultKill, FaultPause, FaultPartition, FaultReset, FaultDelay, FaultJitter, FaultSlow}
	case "zk":
		fs := []string{FaultKill, FaultPause, FaultPartition, FaultReset, FaultDelay, FaultJitter, FaultSlow}
		if nodes > 1 {
			fs = append(fs, FaultLeader, FaultLag)
		}
		return fs
	}
	return nil
}

// DefaultMinOK is MinOK's default: at least this many successful
// operations of each kind that changes state.
const DefaultMinOK = 10

// minOK is MinOK or its default.
func (c *Config) minOK() int {
	if c.MinOK > 0 {
		return c.MinOK
	}
	return DefaultMinOK
}

// TestedKinds names the kinds of operation of a workload that change
// state, which a run must have completed ok (not as final reads) at
// least MinOK times each: a bank's transfers; list-append's
// transactions that append; a register's or an atom register's writes
// and compare-and-sets together; a counter's adds; the lock's
// acquisitions and fenced writes; mixed's transfers, appending
// transactions and atom swaps; the watch workload's increments.
func TestedKinds(workload string) []string {
	switch workload {
	case "bank":
		return []string{"transfer"}
	case "list-append":
		return []string{"append"}
	case "register", "atom-register":
		return []string{"write/cas"}
	case "counter":
		return []string{"add"}
	case "lock":
		return []string{"acquire", "write"}
	case "mixed":
		return []string{"transfer", "append", "swap"}
	case "watch":
		return []string{"incr"}
	}
	return nil
}

// testedKind is the kind (of TestedKinds) an ok operation counts as, ""
// for none.
func testedKind(workload string, p check.OpPair) string {
	f := p.Invoke.F
	switch {
	case f == "txn":
		var mops []check.Mop
		if p.Invoke.Decode(&mops) == nil {
			for _, m := range mops {
				if m.F == "append" {
					f = "append"
					break
				}
			}
		}
	case f == "write" || f == "cas":
		if workload == "register" || workload == "atom-register" {
			f = "write/cas"
		}
	}
	if slices.Contains(TestedKinds(workload), f) {
		return f
	}
	return ""
}

// checkTimeout is CheckTimeout or its default.
func (c *Config) checkTimeout() time.Duration {
	if c.CheckTimeout > 0 {
		return c.CheckTimeout
	}
	return check.DefaultCheckTimeout
}

// CheckConfig checks cfg as Run would, filling in defaults on a copy.
func CheckConfig(cfg Config) error { return cfg.check() }

// ClusterError reports servers that could not be started.
type ClusterError struct{ Err error }

func (e *ClusterError) Error() string { return e.Err.Error() }
func (e *ClusterError) Unwrap() error { return e.Err }

// Run runs a workload against a backend while injecting faults, then
// checks the history. The run directory holds config.json, the workers'
// histories, history.jsonl and history.edn (merged), results.json and
// report.html; it holds INCOMPLETE until the run ends with a verdict, so a
// run that died half-way is never taken for a pass. A run whose ctx is
// cancelled before it finishes (^C) is cut short: its clients stop, its
// faults heal, and it returns no error but the verdict VerdictIncomplete,
// unchecked, Summary.CutShort saying when (results.json and report.html
// too); the INCOMPLETE mark stays and Recheck refuses it.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	start := time.Now()
	// Servers run in their own directories: relative paths would not
	// survive that.
	base, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("jepsen: run directory: %w", err)
	}
	dir := filepath.Join(base, fmt.Sprintf("%s-%s-%s", start.Format("20060102-150405.000"), cfg.Backend, cfg.Workload))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("jepsen: run directory: %w", err)
	}
	sum := &Summary{Config: cfg, Dir: dir, Incomplete: true}
	if err := os.WriteFile(filepath.Join(dir, "INCOMPLETE"), []byte("this run has not finished: its results are not a verdict\n"), 0o644); err != nil {
		return nil, fmt.Errorf("jepsen: run directory: %w", err)
	}
	// config.json is the whole configuration as run (defaults filled in,
	// the seed too): what Recheck reads, and what reruns the run.
	written := cfg
	written.CheckTimeout, written.MinOK = cfg.checkTimeout(), cfg.minOK()
	cj, err := json.MarshalIndent(written, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("jepsen: config.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("jepsen: run directory: %w", err)
	}
	r := &run{cfg: cfg, dir: dir, start: start, mono: monoNow(), rng: rand.New(rand.NewPCG(cfg.Seed, 7)), turns: map[string]int{}, ended: make(chan struct{})}
	err = r.execute(ctx)
	sum.Faults = r.faults
	if ctx.Err() != nil {
		return sum, r.cutShort(ctx, sum, err)
	}
	if err != nil {
		return sum, err
	}
	h, err := r.merge()
	if err != nil {
		return sum, err
	}
	if err := r.finish(ctx, h, sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// cutShort ends a run whose context was cancelled (^C, SIGINT) before it
// finished: the verdict is VerdictIncomplete and sum.CutShort says why.
// The histories the clients recorded are merged and written, with
// results.json and report.html saying the run was cut short, but not
// checked: the run lacks the rest of its time and its final reads. The
// INCOMPLETE mark stays. err is what the run returned when it stopped
// (said too, if any).
func (r *run) cutShort(ctx context.Context, sum *Summary, err error) error {
	sum.Elapsed = time.Since(r.start)
	sum.Verdict, sum.Incomplete = VerdictIncomplete, true
	sum.CutShort = fmt.Sprintf("interrupted after %v of --time %v (%v): not checked, not a pass", sum.Elapsed.Round(time.Millisecond), r.cfg.Time, context.Cause(ctx))
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		sum.CutShort += fmt.Sprintf("; the run then stopped with: %v", err)
	}
	h, merr := r.merge()
	if merr != nil {
		sum.CutShort += fmt.Sprintf("; its histories could not be merged: %v", merr)
		h = nil
	}
	sum.fired(r.cfg)
	sum.count(h)
	if err := os.WriteFile(filepath.Join(r.dir, "INCOMPLETE"), []byte("this run was cut short: "+sum.CutShort+"\n"), 0o644); err != nil {
		return fmt.Errorf("jepsen: run directory: %w", err)
	}
	return r.writeResults(h, sum)
}

// finish checks h, fills in sum's verdict and counts, writes the results
// and takes the INCOMPLETE mark away. If ctx ends while the checkers run
// (^C), the run is cut short with its history whole (checkCutShort).
func (r *run) finish(ctx context.Context, h []check.Op, sum *Summary) error {
	cfg := r.cfg
	w, _ := newWorkload(cfg.Workload, 0)
	return r.checkWith(ctx, w.Checkers(), h, sum)
}

// checkWith is finish with the checkers given.
func (r *run) checkWith(ctx context.Context, checkers []check.Checker, h []check.Op, sum *Summary) error {
	cfg := r.cfg
	defer r.progressChecking(len(h))()
	sum.Verdict = check.VerdictPass
	for i, c := range checkers {
		if ts, ok := c.(check.TimeoutSetter); ok && cfg.CheckTimeout > 0 {
			ts.SetTimeout(cfg.CheckTimeout)
		}
		res, err := check.CheckContext(ctx, c, h)
		if err != nil {
			return r.checkCutShort(ctx, h, sum, fmt.Sprintf("checker %s, %d of %d", c.Name(), i+1, len(checkers)))
		}
		sum.Results = append(sum.Results, res)
		switch res.Verdict() {
		case check.VerdictFail:
			sum.Verdict = check.VerdictFail
		case check.VerdictUnknown:
			if sum.Verdict == check.VerdictPass {
				sum.Verdict = check.VerdictUnknown
			}
			n := 0
			for _, a := range res.Anomalies {
				if a.Unknown {
					n++
				}
			}
			sum.Inconclusive = append(sum.Inconclusive, fmt.Sprintf("checker %s: %d part(s) not checked (%s)", res.Checker, n, firstUnknown(res)))
		}
	}
	sum.fired(cfg)
	var unfired []string
	for _, k := range cfg.Nemesis {
		if sum.Fired[k] == 0 {
			unfired = append(unfired, k)
		}
	}
	if len(unfired) > 0 {
		if sum.Verdict == check.VerdictPass {
			sum.Verdict = check.VerdictUnknown
		}
		sum.Inconclusive = append(sum.Inconclusive, fmt.Sprintf("fault kind(s) %s asked for but never injected: the run did not test them", strings.Join(unfired, ", ")))
	}
	// A run that did next to nothing checked next to nothing: every
	// kind of operation that changes state must have succeeded MinOK
	// times.
	sum.Tested = map[string]int{}
	kinds := TestedKinds(cfg.Workload)
	for _, k := range kinds {
		sum.Tested[k] = 0
	}
	for _, p := range check.PairOps(h) {
		if p.Type() == check.OK && !p.Invoke.Final {
			if k := testedKind(cfg.Workload, p); k != "" {
				sum.Tested[k]++
			}
		}
	}
	var few []string
	for _, k := range kinds {
		if sum.Tested[k] < cfg.minOK() {
			few = append(few, fmt.Sprintf("%s %d", k, sum.Tested[k]))
		}
	}
	if len(few) > 0 {
		if sum.Verdict == check.VerdictPass {
			sum.Verdict = check.VerdictUnknown
		}
		sum.Inconclusive = append(sum.Inconclusive, fmt.Sprintf("too little was tested: successful operations (final reads not counted) %s, below --min-ok %d of each kind that changes state; run longer (--time) or faster (--rate)",
			strings.Join(few, ", "), cfg.minOK()))
	}
	sum.count(h)
	if sum.Elapsed == 0 {
		sum.Elapsed = time.Since(r.start)
	}
	if err := r.writeResults(h, sum); err != nil {
		return err
	}
	sum.Incomplete = false
	if err := os.Remove(filepath.Join(r.dir, "INCOMPLETE")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// checkCutShort ends a run whose ctx ended while its history was being
// checked (at is which checker): the clients and their final reads had
// finished, so history.jsonl is written whole, with results.json and
// report.html saying the check was cut short (verdict INCOMPLETE, no
// result); Recheck checks it. The INCOMPLETE mark stays.
func (r *run) checkCutShort(ctx context.Context, h []check.Op, sum *Summary, at string) error {
	if sum.Elapsed == 0 {
		sum.Elapsed = time.Since(r.start)
	}
	sum.CheckCutShort, sum.Inconclusive = true, nil
	sum.fired(r.cfg)
	sum.count(h)
	// The checkers that finished keep their results: an anomaly one
	// found fails the run whatever the others would have said.
	failed := false
	for _, res := range sum.Results {
		failed = failed || res.Verdict() == check.VerdictFail
	}
	if failed {
		sum.Verdict, sum.Incomplete = check.VerdictFail, false
		sum.CutShort = fmt.Sprintf("interrupted while checking the history (%s; %v), after a checker had found an anomaly: the checkers after it did not run; `epochal jepsen check %s` runs them all", at, context.Cause(ctx), r.dir)
	} else {
		sum.Verdict, sum.Incomplete = VerdictIncomplete, true
		sum.CutShort = fmt.Sprintf("interrupted while checking the history (%s; %v): not checked, not a pass; the history is whole: `epochal jepsen check %s` checks it", at, context.Cause(ctx), r.dir)
	}
	if r.recheck {
		return fmt.Errorf("jepsen: check of %s interrupted (%v): results.json and report.html unchanged", r.dir, context.Cause(ctx))
	}
	if err := os.WriteFile(filepath.Join(r.dir, "INCOMPLETE"), []byte("this run's check was cut short: "+sum.CutShort+"\n"), 0o644); err != nil {
		return fmt.Errorf("jepsen: run directory: %w", err)
	}
	if err := r.writeResults(h, sum); err != nil {
		return err
	}
	if failed {
		// A verdict: FAIL. The mark goes, as after a whole check.
		if err := os.Remove(filepath.Join(r.dir, "INCOMPLETE")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// fired counts s's faults per kind, every kind cfg asked for included.
func (s *Summary) fired(cfg Config) {
	s.Fired = map[string]int{}
	for _, k := range cfg.Nemesis {
		s.Fired[k] = 0
	}
	for _, f := range s.Faults {
		s.Fired[f.Kind]++
	}
}

// count sets s's counts of h's completions.
func (s *Summary) count(h []check.Op) {
	s.OK, s.Fail, s.Info = 0, 0, 0
	for _, o := range h {
		switch o.Type {
		case check.OK:
			s.OK++
		case check.Fail:
			s.Fail++
		case check.Info:
			s.Info++
		}
	}
	s.Ops = s.OK + s.Fail + s.Info
}

// firstUnknown is the first Unknown anomaly's explanation, cut short.
func firstUnknown(r check.Result) string {
	for _, a := range r.Anomalies {
		if a.Unknown {
			e := a.Explain
			if len(e) > 200 {
				e = e[:200] + " ..."
			}
			return e
		}
	}
	return ""
}

type run struct {
	cfg Config
	dir string
	// recheck: Recheck's run, which writes nothing if its check is cut
	// short (the results it would replace stay).
	recheck bool
	start   time.Time // for names and elapsed times
	mono    int64     // the start on monoNow's clock: history and fault times count from it
	rng     *rand.Rand

	cluster *cluster
	addrs   []string
	ns      string
	// The second backend of a workload over two (mixed).
	cluster2 *cluster
	addrs2   []string
	ns2      string
	turns    map[string]int // per fault kind: injections so far (which clusters it hits)

	mu      sync.Mutex
	workers []*workerProc
	nextW   int
	faults  []FaultWindow
	current string // the fault in effect, for the progress bar
	prog    progress

	ok, fail, info atomic.Int64 // from the workers' progress lines

	// ended is closed when the run must not wait out its time: a
	// client process failed on its own (not killed by the nemesis, nor
	// stopped at the end), or the nemesis returned an error.
	ended     chan struct{}
	endOnce   sync.Once
	finishing atomic.Bool // the clients are being stopped: their exits are expected
}

// end closes ended.
func (r *run) end() { r.endOnce.Do(func() { close(r.ended) }) }

type workerProc struct {
	n        int
	killed   atomic.Bool // by the nemesis (client-kill): its exit is expected
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	done     chan struct{}
	quiesced chan struct{} // closed when the process says "quiesced"
	err      error
	ok       [3]atomic.Int64
}

// quiesceTimeout bounds the wait for client processes to stop writing.
const quiesceTimeout = 60 * time.Second

// quiesce, for a workload with background work (settler), asks every
// client process to stop writing (tell) and waits until each has said
// "quiesced" or exited: after it, no process writes, and the background
// work can settle on the final state.
func (r *run) quiesce(tell func(*workerProc)) {
	w, _ := newWorkload(r.cfg.Workload, 0)
	if _, ok := w.(settler); !ok {
		return
	}
	r.mu.Lock()
	ws := slices.Clone(r.workers)
	r.mu.Unlock()
	for _, w := range ws {
		tell(w)
	}
	deadline := time.After(quiesceTimeout)
	for _, w := range ws {
		select {
		case <-w.quiesced:
		case <-w.done:
		case <-deadline:
			return
		}
	}
}

func (r *run) now() int64 { return monoNow() - r.mono }

func (r *run) execute(ctx context.Context) error {
	cfg := r.cfg
	defer r.progressDone() // a bar is cleared before any error is printed
	namespace := func(backend string) string {
		ns := fmt.Sprintf("jepsen-%d", r.start.UnixNano())
		if backend == "zk" {
			ns = "/" + ns
		}
		return ns
	}
	r.ns = namespace(cfg.Backend)
	if cfg.Backend == "mem" {
		return r.executeInProcess(ctx)
	}
	c, err := r.startCluster(ctx, cfg.Backend)
	if err != nil {
		return err
	}
	defer c.Close()
	r.cluster, r.addrs = c, c.Addrs()
	if second := cfg.Second(); second != "" {
		c2, err := r.startCluster(ctx, second)
		if err != nil {
			return err
		}
		defer c2.Close()
		r.cluster2, r.addrs2, r.ns2 = c2, c2.Addrs(), namespace(second)
	}
	return r.executeProcesses(ctx)
}

// startCluster starts backend's servers, proxied (and a ZooKeeper
// ensemble's quorum links too, for the fault lag).
func (r *run) startCluster(ctx context.Context, backend string) (*cluster, error) {
	nodes := 1
	if backend == "zk" {
		nodes = r.cfg.Nodes
	}
	c, err := startCluster(ctx, clusterConfig{Backend: backend, Dir: filepath.Join(r.dir, "servers"), Nodes: nodes, Proxied: true,
		QuorumProxied: backend == "zk" && nodes > 1 && slices.Contains(r.cfg.Nemesis, FaultLag),
		RedisTopology: r.cfg.RedisTopology})
	if err != nil {
		return nil, &ClusterError{Err: fmt.Errorf("jepsen: start %s: %w", backend, err)}
	}
	return c, nil
}

// executeInProcess runs mem: every client in this process, one backend.
func (r *run) executeInProcess(ctx context.Context) error {
	cfg := r.cfg
	d, err := openDriver(ctx, "mem", nil, "", true, -1, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	var skews []time.Duration
	if slices.Contains(cfg.Nemesis, NemesisSkew) {
		skews = []time.Duration{cfg.Lease + time.Second, -(cfg.Lease + time.Second)}
		r.faults = append(r.faults, FaultWindow{Kind: NemesisSkew, Target: "clients", Start: 0, End: cfg.Time.Nanoseconds()})
	}
	var wg sync.WaitGroup
	errs := make([]error, cfg.Workers)
	files := make([]*os.File, cfg.Workers)
	stop, quiesce := make(chan struct{}), make(chan struct{})
	for i := range cfg.Workers {
		f, err := os.Create(filepath.Join(r.dir, fmt.Sprintf("history-w%d.jsonl", i)))
		if err != nil {
			return err
		}
		files[i] = f
		defer f.Close()
		wc := workerConfig{Backend: "mem", Workload: cfg.Workload, Worker: i + 1, Clients: cfg.Clients, Seed: cfg.Seed, Rate: cfg.Rate / float64(cfg.Workers),
			Start: r.mono, Lease: cfg.Lease, Bug: cfg.Bug, General: cfg.General, Out: f, Stop: stop, Quiesce: quiesce, Driver: d}
		if len(skews) > 0 {
			wc.Skew = skews[i%len(skews)]
		}
		pr, pw := io.Pipe()
		wc.Progress = pw
		wp := &workerProc{n: i + 1, done: make(chan struct{}), quiesced: make(chan struct{})}
		r.workers = append(r.workers, wp)
		go r.readProgress(wp, pr)
		wg.Go(func() {
			errs[i] = runWorker(ctx, wc)
			pw.Close()
			close(wp.done)
			if errs[i] != nil {
				r.end()
			}
		})
	}
	r.progressStart()
	r.progressUntil(ctx, time.Now().Add(cfg.Time))
	var once sync.Once
	r.quiesce(func(*workerProc) { once.Do(func() { close(quiesce) }) })
	close(stop)
	wg.Wait()
	r.progressDone()
	if ctx.Err() != nil {
		return nil // cut short: no final reads, the run is not checked
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(r.dir, "history-final.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	return runWorker(ctx, workerConfig{Backend: "mem", Workload: cfg.Workload, Worker: 999, Start: r.mono, Lease: cfg.Lease,
		Out: f, Final: true, Driver: d})
}

// executeProcesses runs the clients as separate processes, with the
// nemesis, then the final reads in one more process.
func (r *run) executeProcesses(ctx context.Context) error {
	cfg := r.cfg
	for range cfg.Workers {
		if err := r.spawn(ctx, false); err != nil {
			r.killAll()
			return err
		}
	}
	nctx, stopNemesis := context.WithCancel(ctx)
	nemesisDone := make(chan error, 1)
	overtime, allFired := make(chan struct{}), make(chan struct{})
	go func() {
		err := r.nemesis(nctx, overtime, allFired)
		nemesisDone <- err
		if err != nil {
			r.end()
		}
	}()
	deadline := time.Now().Add(cfg.Time)
	r.progressStart()
	r.progressUntil(ctx, deadline)
	// Every kind asked for is injected at least once: if injecting and
	// healing took longer than the schedule planned, the clients run on
	// until the last kind has had its turn (bounded: a kind that cannot
	// be injected leaves the run UNKNOWN, not hanging).
	close(overtime)
	r.progressWhile(ctx, allFired, deadline.Add(cfg.Time+time.Minute))
	stopNemesis()
	if err := <-nemesisDone; err != nil {
		r.killAll()
		return err
	}
	// Every fault has healed: stop the clients (they finish the
	// operation in flight) and wait for them.
	r.finishing.Store(true)
	r.quiesce(func(w *workerProc) { _, _ = io.WriteString(w.stdin, "quiesce\n") })
	r.mu.Lock()
	ws := slices.Clone(r.workers)
	r.mu.Unlock()
	for _, w := range ws {
		_ = w.stdin.Close()
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.done
		}
	}
	r.progressDone()
	for _, w := range ws {
		if w.err != nil {
			return fmt.Errorf("jepsen: client process %d failed: %w (see worker-%d.log)", w.n, w.err, w.n)
		}
	}
	if ctx.Err() != nil {
		return nil // cut short: no final reads, the run is not checked
	}
	// Final reads.
	fw, err := r.start1(ctx, true)
	if err != nil {
		return err
	}
	_ = fw.stdin.Close()
	<-fw.done
	if fw.err != nil {
		return fmt.Errorf("jepsen: final reads: %w", fw.err)
	}
	return nil
}

// spawn starts a client process and registers it.
func (r *run) spawn(ctx context.Context, final bool) error {
	w, err := r.start1(ctx, final)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.workers = append(r.workers, w)
	r.mu.Unlock()
	return nil
}

func (r *run) start1(ctx context.Context, final bool) (*workerProc, error) {
	cfg := r.cfg
	r.mu.Lock()
	r.nextW++
	n := r.nextW
	r.mu.Unlock()
	name := fmt.Sprintf("history-w%d.jsonl", n)
	if final {
		name = "history-final.jsonl"
	}
	args := []string{"--backend", cfg.Backend, "--addr", strings.Join(r.addrs, ","), "--namespace", r.ns,
		"--workload", cfg.Workload, "--worker", strconv.Itoa(n), "--clients", strconv.Itoa(cfg.Clients),
		"--seed", strconv.FormatUint(cfg.Seed, 10), "--start", strconv.FormatInt(r.mono, 10),
		"--lease", cfg.Lease.String(), "--out", filepath.Join(r.dir, name)}
	if r.cluster2 != nil {
		args = append(args, "--backend2", cfg.Second(), "--addr2", strings.Join(r.addrs2, ","), "--namespace2", r.ns2)
	}
	if cfg.Bug != "" {
		args = append(args, "--bug", cfg.Bug)
	}
	if cfg.General {
		args = append(args, "--general")
	}
	if cfg.WatchKeep > 0 {
		args = append(args, "--watch-keep", strconv.Itoa(cfg.WatchKeep))
	}
	args = append(args, cfg.redisArgs()...)
	if cfg.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(cfg.Rate/float64(cfg.Workers), 'f', -1, 64))
	}
	if final {
		args = append(args, "--final")
	}
	if slices.Contains(cfg.Nemesis, NemesisSkew) && !final {
		skew := cfg.Lease + time.Second
		if n%2 == 0 {
			skew = -skew
		}
		args = append(args, "--skew", skew.String())
		if n == 1 {
			r.mu.Lock()
			r.faults = append(r.faults, FaultWindow{Kind: NemesisSkew, Target: "clients", Start: 0, End: cfg.Time.Nanoseconds()})
			r.mu.Unlock()
		}
	}
	mk := cfg.WorkerCmd
	if mk == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		mk = func(args []string) *exec.Cmd {
			return exec.Command(exe, append([]string{"jepsen", "worker"}, args...)...)
		}
	}
	cmd := mk(args)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errf, err := os.Create(filepath.Join(r.dir, fmt.Sprintf("worker-%d.log", n)))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		errf.Close()
		return nil, fmt.Errorf("jepsen: start client process: %w", err)
	}
	w := &workerProc{n: n, cmd: cmd, stdin: stdin, done: make(chan struct{}), quiesced: make(chan struct{})}
	go r.readProgress(w, stdout)
	go func() {
		w.err = cmd.Wait()
		errf.Close()
		if w.err != nil {
			if b, _ := os.ReadFile(errf.Name()); len(b) > 0 {
				w.err = fmt.Errorf("%w: %s", w.err, strings.TrimSpace(lastLines(string(b), 3)))
			}
		}
		close(w.done)
		// A client process that exits while the run goes on, unasked
		// (neither killed by the nemesis nor stopped at the end), has
		// failed: the run ends now, and reports it.
		if !final && !w.killed.Load() && !r.finishing.Load() {
			if w.err == nil {
				w.err = errors.New("exited on its own before the run ended")
			}
			r.end()
		}
	}()
	return w, nil
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], " | ")
}

// readProgress follows a worker's "progress ok fail info" lines.
func (r *run) readProgress(w *workerProc, rd io.Reader) {
	sc := bufio.NewScanner(rd)
	quiesced := false
	for sc.Scan() {
		if sc.Text() == "quiesced" && !quiesced {
			quiesced = true
			close(w.quiesced)
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "progress" {
			continue
		}
		for i := range 3 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			old := w.ok[i].Swap(n)
			switch i {
			case 0:
				r.ok.Add(n - old)
			case 1:
				r.fail.Add(n - old)
			case 2:
				r.info.Add(n - old)
			}
		}
	}
}

func (r *run) killAll() {
	r.finishing.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		if w.cmd != nil && w.cmd.Process != nil {
			_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, w := range r.workers {
		<-w.done
	}
}

// progressWhile redraws the progress bar until done is closed, ctx ends,
// the deadline passes or the run ends early (a client process failed, or
// the nemesis).
func (r *run) progressWhile(ctx context.Context, done <-chan struct{}, deadline time.Time) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(time.Until(deadline))
	defer limit.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-r.ended:
			return
		case <-limit.C:
			return
		case <-t.C:
			r.drawProgress()
		}
	}
}

// progressUntil redraws the progress bar until the deadline, and returns
// at once when ctx ends or the run ends early: a client process died on
// its own (the caller then reports its error), or the nemesis failed.
func (r *run) progressUntil(ctx context.Context, deadline time.Time) {
	r.progressWhile(ctx, nil, deadline)
}

// nemesis injects the configured faults, in turn, on a schedule (healthy
// for an interval, one fault for an interval) until ctx ends, and heals
// the last one before it returns. It closes allFired once every kind has
// been injected; once overtime is closed (the run's time is up) it
// injects only the kinds not injected yet.
func (r *run) nemesis(ctx context.Context, overtime <-chan struct{}, allFired chan<- struct{}) error {
	kinds := r.cfg.scheduled()
	fired := map[string]bool{}
	// One round robin from a seeded start: the first len(kinds) turns
	// inject every kind once (a turn whose kind found nothing to hit,
	// such as no live client, comes round again).
	first := r.rng.IntN(max(len(kinds), 1))
	for i := 0; ; i++ {
		if len(fired) == len(kinds) && allFired != nil {
			close(allFired)
			allFired = nil
		}
		if len(kinds) == 0 {
			<-ctx.Done()
			return nil
		}
		kind := kinds[(first+i)%len(kinds)]
		select {
		case <-overtime:
			if allFired == nil {
				<-ctx.Done()
				return nil
			}
			if fired[kind] {
				continue
			}
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.Interval):
		}
		if kind == NemesisClientKill {
			ok, err := r.killClient(ctx)
			if err != nil {
				return err
			}
			if ok {
				fired[kind] = true
			}
			continue
		}
		if kind == NemesisClientPause {
			if r.pauseClient(ctx) {
				fired[kind] = true
			}
			continue
		}
		ictx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var fs []fault
		var descs []string
		var err error
		for _, c := range r.targets(kind) {
			var f fault
			if f, err = c.Inject(ictx, kind); err != nil {
				break
			}
			fs = append(fs, f)
			descs = append(descs, f.String())
		}
		cancel()
		w := FaultWindow{Kind: kind, Target: strings.Join(descs, "; "), Start: r.now()}
		if err == nil {
			r.mu.Lock()
			r.current = w.Target
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(r.cfg.Interval):
			}
		}
		hctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var herr error
		for _, f := range fs {
			if e := f.Heal(hctx); e != nil {
				herr = errors.Join(herr, fmt.Errorf("jepsen: heal %s: %w", f, e))
			}
		}
		cancel()
		w.End = r.now()
		r.mu.Lock()
		if len(fs) > 0 {
			r.faults = append(r.faults, w)
			fired[kind] = true
		}
		r.current = ""
		r.mu.Unlock()
		if err != nil {
			return errors.Join(fmt.Errorf("jepsen: inject %s: %w", kind, err), herr)
		}
		if herr != nil {
			return herr
		}
	}
}

// targets returns the clusters a fault of kind hits this time. With two
// clusters (mixed), a kind both support hits both, then the
// coordinator's alone, then the second's alone, in turn (starting at a
// seeded turn); a kind one supports (leader, lag: ZooKeeper) hits that
// one.
func (r *run) targets(kind string) []*cluster {
	var cs []*cluster
	for _, c := range []*cluster{r.cluster, r.cluster2} {
		if c != nil && slices.Contains(c.Faults(), kind) {
			cs = append(cs, c)
		}
	}
	if len(cs) < 2 {
		return cs
	}
	turn, ok := r.turns[kind]
	if !ok {
		turn = r.rng.IntN(3)
	}
	r.turns[kind] = turn + 1
	switch turn % 3 {
	case 1:
		return cs[:1]
	case 2:
		return cs[1:]
	}
	return cs
}

// liveWorker picks a random client process that still runs (nil if none).
func (r *run) liveWorker() *workerProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var live []*workerProc
	for _, w := range r.workers {
		select {
		case <-w.done:
		default:
			live = append(live, w)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[r.rng.IntN(len(live))]
}

// pauseClient SIGSTOPs a random live client process for an interval (or
// until ctx ends), then SIGCONTs it; false if there was none to pause.
func (r *run) pauseClient(ctx context.Context) bool {
	w := r.liveWorker()
	if w == nil {
		return false
	}
	if syscall.Kill(w.cmd.Process.Pid, syscall.SIGSTOP) != nil {
		return false
	}
	fw := FaultWindow{Kind: NemesisClientPause, Target: fmt.Sprintf("pause client process %d", w.n), Start: r.now()}
	r.mu.Lock()
	r.current = fw.Target
	r.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Interval):
	}
	_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGCONT)
	fw.End = r.now()
	r.mu.Lock()
	r.faults = append(r.faults, fw)
	r.current = ""
	r.mu.Unlock()
	return true
}

// killClient SIGKILLs a random live client process and starts another;
// false if there was none to kill.
func (r *run) killClient(ctx context.Context) (bool, error) {
	w := r.liveWorker()
	if w == nil {
		return false, nil
	}
	w.killed.Store(true)
	_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
	<-w.done
	now := r.now()
	r.mu.Lock()
	r.faults = append(r.faults, FaultWindow{Kind: NemesisClientKill, Target: fmt.Sprintf("client process %d", w.n), Start: now, End: now})
	r.workers = slices.DeleteFunc(r.workers, func(x *workerProc) bool { return x == w })
	r.mu.Unlock()
	return true, r.spawn(ctx, false)
}

// merge reads every history file, orders the events by time, closes each
// invoke left without a completion (its process was killed) with an info
// at the end, and numbers them.
func (r *run) merge() ([]check.Op, error) {
	files, err := filepath.Glob(filepath.Join(r.dir, "history-*.jsonl"))
	if err != nil {
		return nil, err
	}
	var h []check.Op
	for _, f := range files {
		ops, err := check.ReadJSONLFile(f)
		if err != nil {
			return nil, err
		}
		h = append(h, ops...)
	}
	sort.SliceStable(h, func(i, j int) bool { return h[i].Time < h[j].Time })
	open := map[int]check.Op{}
	var end int64
	for _, o := range h {
		end = max(end, o.Time)
		if o.Type == check.Invoke {
			open[o.Process] = o
		} else {
			delete(open, o.Process)
		}
	}
	var procs []int
	for p := range open {
		procs = append(procs, p)
	}
	sort.Ints(procs)
	for _, p := range procs {
		o := open[p]
		o.Type, o.Time, o.Error = check.Info, end+1, "the client process was killed"
		h = append(h, o)
	}
	for i := range h {
		h[i].Index = i
	}
	return h, nil
}

// resultsFile is results.json: the verdict ("valid" true, false or
// "unknown", as Jepsen writes :valid?), why it is UNKNOWN, the counts,
// the faults injected (each, and per kind) and every checker's result.
type resultsFile struct {
	Verdict  check.Verdict `json:"verdict"`
	Valid    any           `json:"valid"`
	CutShort string        `json:"cut_short,omitempty"`
	// CheckCutShort: cut short while checking; the history is whole.
	CheckCutShort bool           `json:"check_cut_short,omitempty"`
	Inconclusive  []string       `json:"inconclusive,omitempty"`
	Ops           int            `json:"ops"`
	OK            int            `json:"ok"`
	Fail          int            `json:"fail"`
	Info          int            `json:"info"`
	Seconds       float64        `json:"seconds"`
	FaultsFired   map[string]int `json:"faults_fired"`
	Tested        map[string]int `json:"tested"`
	MinOK         int            `json:"min_ok"`
	Faults        []FaultWindow  `json:"faults"`
	Results       []check.Result `json:"results"`
}

func (r *run) writeResults(h []check.Op, sum *Summary) error {
	// Each file is written to a temporary file and renamed into place:
	// one is whole or absent (or, checked again, the previous one),
	// never cut short by a crash half-way.
	write := func(name string, f func(io.Writer) error) error {
		file, err := os.CreateTemp(r.dir, "."+name+".*.tmp")
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(file)
		err = file.Chmod(0o644)
		if err == nil {
			err = f(bw)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = file.Sync()
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(file.Name(), filepath.Join(r.dir, name))
		}
		if err != nil {
			_ = os.Remove(file.Name())
			return fmt.Errorf("jepsen: write %s: %w", name, err)
		}
		return nil
	}
	if err := write("history.jsonl", func(w io.Writer) error { return check.WriteJSONL(w, h) }); err != nil {
		return err
	}
	if err := write("history.edn", func(w io.Writer) error { return check.WriteEDN(w, h) }); err != nil {
		return err
	}
	valid := sum.Verdict.JepsenValid()
	if sum.Verdict == VerdictIncomplete {
		valid = "unknown" // not checked
	}
	// Nothing counted is empty, not null (a run cut short checked nothing).
	tested, fired, faults, results := sum.Tested, sum.Fired, sum.Faults, sum.Results
	if tested == nil {
		tested = map[string]int{}
	}
	if fired == nil {
		fired = map[string]int{}
	}
	if faults == nil {
		faults = []FaultWindow{}
	}
	if results == nil {
		results = []check.Result{}
	}
	res, err := json.MarshalIndent(resultsFile{Verdict: sum.Verdict, Valid: valid, CutShort: sum.CutShort, CheckCutShort: sum.CheckCutShort, Inconclusive: sum.Inconclusive,
		Ops: sum.Ops, OK: sum.OK, Fail: sum.Fail, Info: sum.Info, Seconds: sum.Elapsed.Seconds(),
		FaultsFired: fired, Tested: tested, MinOK: r.cfg.minOK(), Faults: faults, Results: results}, "", "  ")
	if err != nil {
		return fmt.Errorf("jepsen: results.json: %w", err)
	}
	if err := write("results.json", func(w io.Writer) error { _, err := w.Write(res); return err }); err != nil {
		return err
	}
	cfgMap := map[string]string{
		"backend": r.cfg.Backend, "workload": r.cfg.Workload, "nemesis": strings.Join(r.cfg.Nemesis, ","),
		"time": r.cfg.Time.String(), "workers": strconv.Itoa(r.cfg.Workers), "clients": strconv.Itoa(r.cfg.Clients),
		"seed": strconv.FormatUint(r.cfg.Seed, 10), "interval": r.cfg.Interval.String(), "bug": r.cfg.Bug,
		"general path": strconv.FormatBool(r.cfg.General), "nodes": strconv.Itoa(r.cfg.Nodes),
		"rate": strconv.FormatFloat(r.cfg.Rate, 'f', -1, 64), "check timeout": r.cfg.checkTimeout().String(),
		"min ok": strconv.Itoa(r.cfg.minOK()),
	}
	if second := r.cfg.Second(); second != "" {
		cfgMap["coordinator"], cfgMap["second backend"] = r.cfg.Coordinator, second
	}
	return write("report.html", func(w io.Writer) error {
		return writeReport(w, reportData{Title: fmt.Sprintf("jepsen-lite: %s on %s", r.cfg.Workload, r.cfg.Backend),
			Config: cfgMap, Verdict: sum.Verdict, Incomplete: sum.Verdict == VerdictIncomplete, CutShort: sum.CutShort,
			Inconclusive: sum.Inconclusive, Nemesis: r.cfg.Nemesis,
			History: h, Faults: sum.Faults, Results: sum.Results, Elapsed: sum.Elapsed})
	})
}

// ErrNoRun: a directory holds no finished run to check again.
var ErrNoRun = errors.New("jepsen: not a finished run directory")

// Recheck checks a finished run's history again: the run directory's
// config.json and history.jsonl, with the faults of its results.json,
// checkTimeout bounding the linearizability searches (0: the run's). It
// writes results.json and report.html anew and returns the summary. A
// run that was UNKNOWN because a search ran out of time may be decided
// with a longer timeout.
//
// Recheck is RecheckContext with a ctx that never ends.
func Recheck(dir string, checkTimeout time.Duration) (*Summary, error) {
	return RecheckContext(context.Background(), dir, checkTimeout)
}

// RecheckContext is Recheck that stops when ctx ends (^C) while the
// history is being checked: it then returns an error, writes nothing and
// leaves the run's results as they were. A run whose own check was cut
// short (its history is whole, Summary.CheckCutShort) is checked.
func RecheckContext(ctx context.Context, dir string, checkTimeout time.Duration) (*Summary, error) {
	var cfg Config
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: config.json: %w", ErrNoRun, dir, err)
	}
	if _, err := newWorkload(cfg.Workload, 0); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoRun, dir, err)
	}
	// A run that died keeps INCOMPLETE; until its results.json is
	// written its history.jsonl may be missing or cut short (the
	// workers' histories are merged into it at the end). Only a run
	// that got as far as its results (history.jsonl is written before,
	// whole or not at all) is checked again.
	if _, err := os.Stat(filepath.Join(dir, "INCOMPLETE")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "results.json")); err != nil {
			return nil, fmt.Errorf("%w: %s is marked INCOMPLETE and has no results.json: the run did not finish, and its history may lack operations (a rerun, not a recheck, gives a verdict)", ErrNoRun, dir)
		}
	}
	h, err := check.ReadJSONLFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: history.jsonl: %w", ErrNoRun, dir, err)
	}
	var old struct {
		Verdict       check.Verdict `json:"verdict"`
		CutShort      string        `json:"cut_short"`
		CheckCutShort bool          `json:"check_cut_short"`
		Seconds       float64       `json:"seconds"`
		Faults        []FaultWindow `json:"faults"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "results.json")); err == nil {
		if err := json.Unmarshal(b, &old); err != nil {
			return nil, fmt.Errorf("%w: %s: results.json: %w", ErrNoRun, dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: results.json: %w", ErrNoRun, dir, err)
	}
	if old.Verdict == VerdictIncomplete && !old.CheckCutShort {
		return nil, fmt.Errorf("%w: %s was cut short (%s): its history lacks the rest of the run and its final reads (a rerun, not a recheck, gives a verdict)", ErrNoRun, dir, old.CutShort)
	}
	if checkTimeout > 0 {
		cfg.CheckTimeout = checkTimeout
	}
	r := &run{cfg: cfg, dir: dir, start: time.Now(), recheck: true}
	sum := &Summary{Config: cfg, Dir: dir, Faults: old.Faults, Elapsed: time.Duration(old.Seconds * float64(time.Second))}
	if err := r.finish(ctx, h, sum); err != nil {
		return sum, err
	}
	return sum, nil
}
