package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/internal/bench"
	"github.com/epochal/epochal/internal/servers"
)

type benchCmd struct {
	workloads string
	impls     string
	workers   string
	accounts  string
	time      time.Duration
	dir       string
	seed      uint64
	durable   bool
	quiet     bool

	redisWait int
}

func newBenchCmd(g *globals) *cobra.Command {
	c := &benchCmd{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Epochal beside hand-written peers (WATCH/MULTI, one EVALSHA, a ZooKeeper Multi, a mutex, a Go STM)",
		Long: `Runs the same workload with Epochal and with the code it replaces, in one
process and one run, cell by cell (each implementation in each regime of
workers and accounts, for --time each), and prints a table: ops/s, the
ratio to the first peer that ran in the same regime, retries per op, p50
and p99 latency, and round trips (Redis) or server writes (ZooKeeper) per
op where they can be counted. Each cell checks its state afterwards (the
bank total, the counters, mutual exclusion) and a cell that fails it
fails the run (exit 1).

Workloads: bank (a transfer of 1 between two accounts chosen at random,
with an overdraft check), swap (add 1 to a counter chosen at random),
lock (lock and unlock a lock chosen at random). Few accounts (counters,
locks) is contention.

Implementations (--impls; default: every one that runs on --backend):
  epochal          Epochal, default options (bank: Alter both refs; swap: Atom.Swap; lock: locks.Mutex)
  epochal-commute  Epochal, Alter the debit and Commute the credit (swap: Commute +1)
  epochal-prefetch Epochal, bank only, starting with refs.Prefetch of both accounts (only when named)
  watch-multi      go-redis WATCH, MGET, MULTI/SET/EXEC, retried on TxFailedErr (redis)
  lua              one EVALSHA doing the whole op (redis; lock: SET NX PX and a release script)
  zk-multi         go-zookeeper: versioned reads, one Multi of version-checked SetData (zk; lock: zk.Lock)
  go-stm           github.com/anacrolix/stm, in process (mem)
  mutex            a sync.Mutex, in process (mem)

Every cell runs its ops unmeasured for a fifth of --time (at most 1s)
first, so that servers, connections and caches are warm for each.

Without --addr, a redis or zk run starts its own server on 127.0.0.1 (as
'epochal jepsen' does; redis-server or ZooKeeper must be installed)
without persistence unless --durable, and stops it at the end. With
--addr the cells run against that server, each under a new key prefix
(starting with --prefix) or root (under --root), left behind.

Writes <dir>/<run>/results.json (machine, versions, command, every cell,
the goals), report.html and results.md (the same tables in Markdown). An interrupted run (^C) writes what it has,
marked cut short, and exits 1.`,
		Example: `  epochal bench                                  # mem: epochal vs go-stm and a mutex
  epochal bench --backend redis --time 3s        # starts redis-server itself
  epochal bench --backend redis --addr 10.0.0.5:6379 --workload swap
  epochal bench --backend zk --workers 1,16 --accounts 1000,10`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("bench takes no arguments (got %q)", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd, g)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.workloads, "workload", bench.Bank, "workloads to run, comma-separated: bank, swap, lock")
	f.StringVar(&c.impls, "impls", "", "implementations to run, comma-separated, in the order the ratios are taken (default: every one that runs on --backend)")
	f.StringVar(&c.workers, "workers", "1,16", "goroutine counts, comma-separated")
	f.StringVar(&c.accounts, "accounts", "1000,10", "accounts (counters, locks) per regime, comma-separated")
	f.DurationVar(&c.time, "time", 5*time.Second, "how long each cell runs")
	f.StringVar(&c.dir, "dir", "bench-runs", "directory for the run's results.json and report.html (in a new subdirectory per run)")
	f.Uint64Var(&c.seed, "seed", 1, "seed of the workers' random choices")
	f.BoolVar(&c.durable, "durable", false, "servers the run starts make every write durable before answering (Redis appendonly with appendfsync always, ZooKeeper's log fsynced); default: no persistence (no effect with --addr)")
	f.IntVar(&c.redisWait, "redis-wait", 0, "Redis: Epochal's commits WAIT for this many replicas (redis.Config.WaitReplicas); the run starts that many replicas of the server it starts (with --addr, the server must have them); 0: no WAIT")
	f.BoolVar(&c.quiet, "quiet", false, "no progress output, only the table")
	return cmd
}

// Bounds of --workers and --accounts: a cell keeps state per worker and
// account.
const (
	maxBenchWorkers  = 1024
	maxBenchAccounts = 100_000
)

func parseInts(flag, list string, least, most int) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < least || n > most {
			return nil, usagef("--%s %q: want whole numbers from %d to %d, comma-separated", flag, list, least, most)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, usagef("--%s: empty", flag)
	}
	return out, nil
}

func (c *benchCmd) run(cmd *cobra.Command, g *globals) error {
	ctx := cmd.Context()
	var workloads []string
	for _, w := range strings.Split(c.workloads, ",") {
		w = strings.TrimSpace(w)
		if !slices.Contains(bench.Workloads, w) {
			return usagef("--workload %q: want bank, swap or lock", w)
		}
		workloads = append(workloads, w)
	}
	workers, err := parseInts("workers", c.workers, 1, maxBenchWorkers)
	if err != nil {
		return err
	}
	accounts, err := parseInts("accounts", c.accounts, 1, maxBenchAccounts)
	if err != nil {
		return err
	}
	if slices.Contains(workloads, bench.Bank) && slices.Min(accounts) < 2 {
		return usagef("--accounts %q: the bank workload needs at least 2 accounts", c.accounts)
	}
	if c.time <= 0 {
		return usagef("--time %v: must be > 0", c.time)
	}
	var names []string
	if c.impls != "" {
		if names, err = bench.ParseImpls(c.impls); err != nil {
			return usagef("--impls: %v", err)
		}
		for _, n := range names {
			im, _ := bench.Lookup(n)
			if !slices.Contains(im.Backends, g.backend) {
				return usagef("--impls: %s does not run on --backend %s (it runs on %s)", n, g.backend, strings.Join(im.Backends, ", "))
			}
		}
	}

	target, servers, stop, err := c.target(ctx, cmd, g)
	if err != nil {
		return err
	}
	defer stop()

	res := &bench.Result{
		Started:  time.Now().UTC(),
		Command:  append([]string{"epochal"}, os.Args[1:]...),
		Machine:  bench.ThisMachine(),
		Versions: bench.Versions(),
		Servers:  servers,
		Workers:  workers,
		Accounts: accounts,
		Seconds:  c.time.Seconds(),
	}
	if v := bench.ServerVersion(ctx, target); v != "" {
		res.Versions["server"] = v
	}
	// The run's directory is made first: a --dir that cannot be written
	// is found before the cells run.
	dir, err := newRunDir(c.dir)
	if err != nil {
		return usagef("--dir %s: %v", c.dir, err)
	}
	res.Run = filepath.Base(dir)
	var specs []bench.Spec
	for _, w := range workloads {
		wl := names
		if wl == nil {
			wl = bench.Defaults(w, g.backend)
		}
		for _, n := range wl {
			if !slices.Contains(res.Impls, n) {
				res.Impls = append(res.Impls, n)
			}
		}
		for _, a := range accounts {
			for _, k := range workers {
				for _, n := range wl {
					im, _ := bench.Lookup(n)
					if !im.Runs(w, g.backend) {
						continue
					}
					specs = append(specs, bench.Spec{Workload: w, Impl: im, Workers: k, Accounts: a, Time: c.time, Seed: c.seed})
				}
			}
		}
	}
	if len(specs) == 0 {
		return usagef("no implementation named runs %s on %s", c.workloads, g.backend)
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	prog := newBenchProgress(errw, c.quiet, len(specs), c.time)
	for i, s := range specs {
		prog.start(i, s)
		cell, err := bench.Run(ctx, target, s)
		if err != nil { // ctx ended: ^C
			break
		}
		res.Cells = append(res.Cells, cell)
		prog.done(i, cell)
	}
	prog.finish()
	res.Complete = len(res.Cells) == len(specs)
	res.Machine.LoadAvgAfter = bench.ThisMachine().LoadAvg
	bench.Ratios(res.Cells)
	res.Goals = bench.Goals(res.Cells)
	werr := res.Write(dir)
	if err := res.Table(out); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("writing the results: %w", werr)
	}
	fmt.Fprintf(out, "\nresults: %s\n", filepath.Join(dir, "results.json"))
	fmt.Fprintf(out, "report:  %s\n", filepath.Join(dir, "report.html"))
	if failed := res.Failed(); len(failed) > 0 {
		for _, c := range failed {
			if strings.HasPrefix(c.Error, "check failed") {
				return fmt.Errorf("%w: %d of %d cells failed (see above)", errCheckFailed, len(failed), len(res.Cells))
			}
		}
		return fmt.Errorf("%d of %d cells failed (see above)", len(failed), len(res.Cells))
	}
	if !res.Complete {
		return fmt.Errorf("cut short: %d of %d cells ran (%w)", len(res.Cells), len(specs), context.Cause(ctx))
	}
	return nil
}

// target returns where the cells run: the server --addr names, or one the
// run starts (and stop stops).
func (c *benchCmd) target(ctx context.Context, cmd *cobra.Command, g *globals) (bench.Target, string, func(), error) {
	t := bench.Target{Backend: g.backend, Prefix: "epochal-bench", ConnectTimeout: g.connect, RedisWait: c.redisWait}
	if c.redisWait < 0 || c.redisWait > 0 && g.backend != backendRedis {
		return t, "", func() {}, usagef("--redis-wait %d: want 0 or more replicas, with --backend redis", c.redisWait)
	}
	if g.backend == backendRedis && g.prefix != "" {
		t.Prefix = g.prefix
	}
	if g.backend == backendZK && g.root != "" {
		t.Prefix = strings.Trim(g.root, "/")
	}
	given := cmd.Flags().Changed("addr") || strings.TrimSpace(os.Getenv(envAddr)) != ""
	nop := func() {}
	switch g.backend {
	case backendMem:
		return t, "in process", nop, nil
	case backendRedis:
		if given {
			t.RedisAddr = g.addr
			if err := bench.Ping(ctx, t); err != nil {
				return t, "", nop, &downError{err: fmt.Errorf("%w (is redis-server running at %s? set --addr or %s)", err, g.addr, envAddr)}
			}
			return t, "redis at " + g.addr, nop, nil
		}
		if m := servers.RedisMissing(); m != "" {
			return t, "", nop, usagef("%s; or name a server with --addr", m)
		}
		opts := servers.RedisOptions{}
		desc := "redis-server started by the run on 127.0.0.1, appendonly yes, appendfsync always"
		if !c.durable {
			opts.Args = []string{"appendonly no", `save ""`}
			desc = "redis-server started by the run on 127.0.0.1, no persistence (appendonly no, no snapshots)"
		}
		r, err := servers.StartRedis(opts)
		if err != nil {
			return t, "", nop, fmt.Errorf("starting redis-server: %w", err)
		}
		t.RedisAddr = r.Addr
		if c.redisWait > 0 {
			return c.withReplicas(t, desc, r, opts)
		}
		return t, desc, func() { _ = r.Close() }, nil
	case backendZK:
		if given {
			t.ZKServers = strings.Split(g.addr, ",")
			if err := bench.Ping(ctx, t); err != nil {
				return t, "", nop, &downError{err: fmt.Errorf("%w (is ZooKeeper running at %s? set --addr or %s)", err, g.addr, envAddr)}
			}
			t.ZKWrites = bench.ZxidOf(t.ZKServers[0], g.connect)
			if _, err := t.ZKWrites(); err != nil {
				t.ZKWrites = nil // srvr not allowed there: writes not counted
			}
			return t, "zookeeper at " + g.addr, nop, nil
		}
		if m := servers.ZKMissing(); m != "" {
			return t, "", nop, usagef("%s; or name a server with --addr", m)
		}
		opts := servers.ZKOptions{}
		desc := "one ZooKeeper server started by the run on 127.0.0.1, its log fsynced before each write is acknowledged"
		if !c.durable {
			opts.Args = []string{"forceSync=no"}
			desc = "one ZooKeeper server started by the run on 127.0.0.1, no fsync (forceSync=no)"
		}
		z, err := servers.StartZK(1, opts)
		if err != nil {
			return t, "", nop, fmt.Errorf("starting ZooKeeper: %w", err)
		}
		t.ZKServers = z.Servers
		t.ZKWrites = bench.ZxidOf(z.Servers[0], 5*time.Second)
		return t, desc, func() { _ = z.Close() }, nil
	}
	return t, "", nop, usagef("unknown backend %q", g.backend)
}

// newRunDir makes a new directory for a run under dir, named by the
// time (a suffix when two runs start in the same second).
func newRunDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		p := filepath.Join(dir, name)
		err := os.Mkdir(p, 0o755)
		if err == nil {
			return p, nil
		}
		if !os.IsExist(err) || i > 100 {
			return "", err
		}
	}
}

// benchProgress tells how far a run is: a bar redrawn in place on a
// terminal, a line per cell otherwise, nothing with --quiet.
type benchProgress struct {
	w     io.Writer
	quiet bool
	tty   bool
	total int
	each  time.Duration
}

func newBenchProgress(w io.Writer, quiet bool, total int, each time.Duration) *benchProgress {
	return &benchProgress{w: w, quiet: quiet, tty: isTerminal(w), total: total, each: each}
}

func cellName(s bench.Spec) string {
	return fmt.Sprintf("%s %d accounts, %d workers, %s", s.Workload, s.Accounts, s.Workers, s.Impl.Name)
}

func (p *benchProgress) start(i int, s bench.Spec) {
	if p.quiet || !p.tty {
		return
	}
	const width = 30
	fill := width * i / p.total
	left := time.Duration(p.total-i) * p.each
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %d/%d %s (about %v left)", strings.Repeat("#", fill), strings.Repeat("-", width-fill), i+1, p.total, cellName(s), left.Round(time.Second))
}

func (p *benchProgress) done(i int, c bench.Cell) {
	if p.quiet || p.tty {
		return
	}
	status := "ok"
	if c.Error != "" {
		status = "FAILED: " + c.Error
	}
	fmt.Fprintf(p.w, "cell %d/%d: %s %d accounts, %d workers, %s: %.0f ops/s, %s\n", i+1, p.total, c.Workload, c.Accounts, c.Workers, c.Impl, c.PerSec, status)
}

func (p *benchProgress) finish() {
	if !p.quiet && p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// withReplicas starts --redis-wait replicas of r (configured as r) for a
// run that WAITs for them.
func (c *benchCmd) withReplicas(t bench.Target, desc string, r *servers.Redis, opts servers.RedisOptions) (bench.Target, string, func(), error) {
	closers := []func() error{r.Close}
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	for range c.redisWait {
		rep, err := servers.StartReplica(r, opts)
		if err != nil {
			stop()
			return t, "", func() {}, fmt.Errorf("starting a replica: %w", err)
		}
		closers = append(closers, rep.Close)
	}
	desc += fmt.Sprintf(", with %d replica(s) on 127.0.0.1 (the same settings); Epochal's commits WAIT for %d", c.redisWait, c.redisWait)
	return t, desc, stop, nil
}
