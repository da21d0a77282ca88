package jepsenlite

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Bugs names the engine's deliberate protocol bugs a run can switch on to
// prove the checkers catch them.
var Bugs = map[string]txn.Faults{
	"skip-read-point-check": {SkipReadPointCheck: true},
	"no-commute-recompute":  {NoCommuteRecompute: true},
	"release-intents-early": {ReleaseIntentsEarly: true},
	"skip-intent-recovery":  {SkipIntentRecovery: true},
}

// BugNames lists Bugs' keys in a fixed order.
var BugNames = []string{"skip-read-point-check", "no-commute-recompute", "release-intents-early", "skip-intent-recovery"}

// WorkerConfig configures one client process.
type WorkerConfig struct {
	Backend   string   // mem, redis or zk
	Addrs     []string // servers (redis: one address; zk: the ensemble)
	Namespace string   // Redis prefix or ZooKeeper root
	Workload  string
	Worker    int // this worker's number in the run (unique, replacements included)
	Clients   int
	Seed      uint64
	Start     int64         // the run's start on MonoNow's clock: history times count from it
	Time      time.Duration // stop after this long (0: when Stop closes)
	Ops       int           // per client, if > 0
	Rate      float64       // operations per second of this process, if > 0
	Skew      time.Duration // offset of this process's wall clock (leases)
	Lease     time.Duration // default 2s
	Bug       string
	General   bool // commit through the general path
	Final     bool // run the workload's final reads instead
	Out       io.Writer
	// Stop, when closed (or at EOF, for a reader), ends the run.
	Stop <-chan struct{}
	// Progress, if set, receives "progress ok fail info" lines.
	Progress io.Writer
	// Driver, if set, is used instead of opening Backend (mem runs in
	// the runner's process).
	Driver backend.Driver
}

// OpenDriver opens the backend a worker uses. linearizable asks for reads
// that see every commit acknowledged before they began, in any process
// (ZooKeeper: Config.SyncReads; the other backends always do).
func OpenDriver(ctx context.Context, backendName string, addrs []string, namespace string, linearizable bool) (backend.Driver, error) {
	switch backendName {
	case "mem":
		return mem.New(), nil
	case "redis":
		if len(addrs) != 1 {
			return nil, fmt.Errorf("jepsen: redis wants one address, got %v", addrs)
		}
		return redis.Open(ctx, redis.Config{Addr: addrs[0], Prefix: namespace})
	case "zk":
		return zk.Open(ctx, zk.Config{Servers: addrs, Root: namespace, SessionTimeout: 4 * time.Second, SyncReads: linearizable})
	}
	return nil, fmt.Errorf("jepsen: unknown backend %q (want mem, redis or zk)", backendName)
}

// RunWorker runs one client process: cfg.Clients clients of the workload
// (or, with Final, the workload's final reads, each retried until it
// succeeds), recording to cfg.Out.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	w, err := NewWorkload(cfg.Workload, cfg.Worker)
	if err != nil {
		return err
	}
	faults, ok := Bugs[cfg.Bug]
	if cfg.Bug != "" && !ok {
		return fmt.Errorf("jepsen: unknown bug %q (want one of %s)", cfg.Bug, strings.Join(BugNames, ", "))
	}
	d := cfg.Driver
	if d == nil {
		octx, cancel := context.WithTimeout(ctx, 20*time.Second)
		d, err = OpenDriver(octx, cfg.Backend, cfg.Addrs, cfg.Namespace, w.Linearizable())
		cancel()
		if err != nil {
			return fmt.Errorf("jepsen: worker %d: open %s: %w", cfg.Worker, cfg.Backend, err)
		}
		defer d.Close()
	}
	lease := cfg.Lease
	if lease <= 0 {
		lease = 2 * time.Second
	}
	if ls, ok := w.(leaseSetter); ok {
		ls.setLease(lease)
	}
	opts := []stm.Option{stm.WithLease(lease), stm.WithSweepInterval(lease), stm.WithFaults(faults),
		stm.WithWallClock(clock.Skewed{Base: clock.System, Offset: cfg.Skew})}
	if cfg.General {
		opts = append(opts, stm.WithGeneralPath())
	}
	s, err := stm.Open(ctx, d, opts...)
	if err != nil {
		return fmt.Errorf("jepsen: worker %d: %w", cfg.Worker, err)
	}
	defer s.Close()
	if err := setup(ctx, s, w); err != nil {
		return fmt.Errorf("jepsen: worker %d: set up %s: %w", cfg.Worker, cfg.Workload, err)
	}
	rec := NewRecorder(cfg.Out, cfg.Start)
	if cfg.Final {
		return final(ctx, s, w, rec, cfg.Worker)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Time > 0 {
		rctx, cancel = context.WithTimeout(rctx, cfg.Time)
		defer cancel()
	}
	if cfg.Stop != nil {
		go func() {
			select {
			case <-cfg.Stop:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	done := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					fmt.Fprintf(cfg.Progress, "progress %d %d %d\n", rec.OK.Load(), rec.Fail.Load(), rec.Info.Load())
					return
				case <-t.C:
					fmt.Fprintf(cfg.Progress, "progress %d %d %d\n", rec.OK.Load(), rec.Fail.Load(), rec.Info.Load())
				}
			}
		}()
	}
	RunClients(rctx, s, w, rec, ClientConfig{Clients: cfg.Clients, ProcessBase: cfg.Worker * 1_000_000_000, Seed: cfg.Seed ^ uint64(cfg.Worker), Ops: cfg.Ops,
		Rate: cfg.Rate / float64(max(cfg.Clients, 1))})
	close(done)
	return nil
}

// setup creates the workload's refs, retrying while a fault heals.
func setup(ctx context.Context, s *stm.STM, w Workload) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.Setup(sctx, s)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
	}
}

// final runs the workload's final reads, each until it succeeds (or 60 s
// pass): every fault has healed by now.
func final(ctx context.Context, s *stm.STM, w Workload, rec *Recorder, worker int) error {
	deadline := time.Now().Add(60 * time.Second)
	var invs []Invocation
	for {
		var err error
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		invs, err = w.Final(fctx, s)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jepsen: final reads: %w", err)
		}
	}
	proc := worker * 1_000_000_000
	for _, in := range invs {
		for {
			if Invoke1(ctx, s, w, rec, proc, in.F, in.Value, 5*time.Second) == OK {
				break
			}
			proc++
			if time.Now().After(deadline) {
				return errors.New("jepsen: final reads did not succeed within 60s")
			}
		}
	}
	return nil
}

// stdinStop closes the returned channel when r reaches EOF (the runner
// closed the worker's stdin).
func stdinStop(r io.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(ch)
	}()
	return ch
}

// WorkerMain is the body of `epochal jepsen worker`: cfg comes from
// flags; the history goes to path, stdin's EOF stops it, progress goes
// to stdout.
func WorkerMain(ctx context.Context, cfg WorkerConfig, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("jepsen: history file: %w", err)
	}
	defer f.Close()
	cfg.Out = f
	if cfg.Stop == nil {
		cfg.Stop = stdinStop(os.Stdin)
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stdout
	}
	return RunWorker(ctx, cfg)
}

// WorkerArgsMain parses `epochal jepsen worker` flags (as the runner
// writes them) and runs the worker.
func WorkerArgsMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("jepsen worker", flag.ContinueOnError)
	var cfg WorkerConfig
	var addr, out string
	var start int64
	fs.StringVar(&cfg.Backend, "backend", "", "mem, redis or zk")
	fs.StringVar(&addr, "addr", "", "server addresses, comma-separated")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis prefix or ZooKeeper root")
	fs.StringVar(&cfg.Workload, "workload", "", "workload")
	fs.IntVar(&cfg.Worker, "worker", 0, "worker number")
	fs.IntVar(&cfg.Clients, "clients", 1, "clients")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed")
	fs.Int64Var(&start, "start", 0, "the run's start, CLOCK_MONOTONIC ns")
	fs.DurationVar(&cfg.Lease, "lease", 2*time.Second, "lease")
	fs.DurationVar(&cfg.Skew, "skew", 0, "wall clock offset")
	fs.StringVar(&cfg.Bug, "bug", "", "seeded engine bug")
	fs.BoolVar(&cfg.General, "general", false, "general commit path")
	fs.Float64Var(&cfg.Rate, "rate", 0, "operations per second of this process (0: as fast as it can)")
	fs.BoolVar(&cfg.Final, "final", false, "run the final reads")
	fs.StringVar(&out, "out", "", "history file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if out == "" || cfg.Backend == "" || cfg.Workload == "" || start == 0 {
		return errors.New("jepsen worker: --out, --backend, --workload and --start are required (the runner starts workers; run `epochal jepsen` instead)")
	}
	if addr != "" {
		cfg.Addrs = strings.Split(addr, ",")
	}
	cfg.Start = start
	return WorkerMain(ctx, cfg, out)
}
