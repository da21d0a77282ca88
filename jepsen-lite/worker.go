package jepsenlite

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/jepsen-lite/check"
	"github.com/epochal/epochal/stm"
)

// bugFaults names the engine's deliberate protocol bugs a run can switch on to
// prove the checkers catch them.
var bugFaults = map[string]engine.Faults{
	"skip-read-point-check":  {SkipReadPointCheck: true},
	"no-commute-recompute":   {NoCommuteRecompute: true},
	"release-intents-early":  {ReleaseIntentsEarly: true},
	"skip-intent-recovery":   {SkipIntentRecovery: true},
	"observe-foreign-points": {ObserveForeignPoints: true},
	"trust-missing-record":   {TrustMissingRecord: true},
	"watch-gap-first-only":   {WatchGapFirstOnly: true},
	"extend-unchecked":       {ExtendUnchecked: true},
}

// BugNames lists bugFaults' keys in a fixed order.
var BugNames = []string{"skip-read-point-check", "no-commute-recompute", "release-intents-early", "skip-intent-recovery",
	"observe-foreign-points", "trust-missing-record", "watch-gap-first-only", "extend-unchecked"}

// workerConfig configures one client process.
type workerConfig struct {
	Backend   string   // mem, redis or zk
	Addrs     []string // servers (redis: one address; zk: the ensemble)
	Namespace string   // Redis prefix or ZooKeeper root

	// Second, Addrs2 and Namespace2 name the second backend of a
	// workload over two (mixed): refs there are refs.On it, and Backend
	// is the coordinator.
	Second     string
	Addrs2     []string
	Namespace2 string

	Workload string
	Worker   int // this worker's number in the run (unique, replacements included)
	Clients  int
	Seed     uint64
	Start    int64         // the run's start on monoNow's clock: history times count from it
	Time     time.Duration // stop after this long (0: when Stop closes)
	Ops      int           // per client, if > 0
	Rate     float64       // operations per second of this process, if > 0
	Skew     time.Duration // offset of this process's wall clock (leases)
	Lease    time.Duration // default 2s
	Bug      string
	General  bool // commit through the general path
	// WatchKeep is redis.Config.WatchKeep of the Redis clients (0: the
	// default).
	WatchKeep int
	// RedisSentinel is the master name to connect through Sentinel
	// (Addrs are the sentinels'), "" to dial Addrs[0]; RedisWait is
	// redis.Config.WaitReplicas (failover.go).
	RedisSentinel string
	RedisWait     int
	Final         bool // run the workload's final reads instead
	Out           io.Writer
	// Stop, when closed (or at EOF, for a reader), ends the run.
	Stop <-chan struct{}
	// Quiesce, when closed, stops the clients of a workload with
	// background work (the watch workload's watchers): the process then
	// writes "quiesced" to Progress, and settles the background work
	// once Stop is closed, when every process has stopped writing.
	Quiesce <-chan struct{}
	// Progress, if set, receives "progress ok fail info" lines.
	Progress io.Writer
	// Driver, if set, is used instead of opening Backend (mem runs in
	// the runner's process).
	Driver backend.Driver
}

// twoBackends is a workload over two backends (mixed): the worker opens
// the second and hands it over before Setup.
type twoBackends interface{ setSecond(backend.Driver) }

// clientSTMs is a workload whose clients each run an STM of their own,
// over connections of their own (mixed): as far as the engine and the
// servers know, each client is a process. The worker hands over how to
// open one (client numbers its home server) before Setup.
type clientSTMs interface {
	setOpen(func(ctx context.Context, client int) (s *stm.STM, second backend.Driver, close func(), err error))
}

// openSTM opens cfg's backends (a ZooKeeper client preferring server
// home, the second backend's the next one) and an STM over them with
// opts; close closes them all. With cfg.Driver, that is the coordinator.
func openSTM(ctx context.Context, cfg workerConfig, w workload, home int, linearizable bool, opts []stm.Option) (*stm.STM, backend.Driver, func(), error) {
	var closers []func() error
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	d := cfg.Driver
	if d == nil {
		octx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var err error
		d, err = openWorkerDriver(octx, cfg, linearizable, home)
		cancel()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("jepsen: worker %d: open %s: %w", cfg.Worker, cfg.Backend, err)
		}
		closers = append(closers, d.Close)
	}
	var d2 backend.Driver
	if _, ok := w.(twoBackends); ok {
		octx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var err error
		d2, err = openDriver(octx, cfg.Second, cfg.Addrs2, cfg.Namespace2, linearizable, home+1, cfg.WatchKeep)
		cancel()
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("jepsen: worker %d: open %s: %w", cfg.Worker, cfg.Second, err)
		}
		closers = append(closers, d2.Close)
		opts = append(slices.Clip(opts), stm.WithBackends(d2))
	}
	s, err := stm.Open(ctx, d, opts...)
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("jepsen: worker %d: %w", cfg.Worker, err)
	}
	closers = append(closers, s.Close)
	return s, d2, closeAll, nil
}

// settler is a workload with background work that outlives its clients
// (the watch workload's watchers).
type settler interface {
	// Start begins the background work, recording as processes base,
	// base+1, ...
	Start(ctx context.Context, s *stm.STM, rec *recorder, base int) error
	// Settle runs once every client process has stopped writing (after
	// the faults healed): it lets the background work catch up with the
	// final state, records how far it got, and stops it.
	Settle(ctx context.Context, s *stm.STM, rec *recorder) error
}

// openDriver opens the backend a worker uses. linearizable asks for reads
// that see every commit acknowledged before they began, in any process
// (ZooKeeper: Config.SyncReads; the other backends always do). A
// ZooKeeper client with home >= 0 prefers
// the server addrs[home % len(addrs)]: it connects there first, and tries
// there first again whenever it reconnects, the others in order after it
// (instead of go-zookeeper's shuffled order), so that client processes
// spread over the ensemble in a known way.
// A Redis client's watched refs keep watchKeep older versions (0: the
// default).
func openDriver(ctx context.Context, backendName string, addrs []string, namespace string, linearizable bool, home, watchKeep int) (backend.Driver, error) {
	switch backendName {
	case "mem":
		return mem.New(), nil
	case "redis":
		if len(addrs) != 1 {
			return nil, fmt.Errorf("jepsen: redis wants one address, got %v", addrs)
		}
		return redis.Open(ctx, redis.Config{Addr: addrs[0], Prefix: namespace, WatchKeep: watchKeep})
	case "zk":
		cfg := zk.Config{Servers: addrs, Root: namespace, SessionTimeout: 4 * time.Second, SyncReads: linearizable}
		if home < 0 || len(addrs) < 2 {
			return zk.Open(ctx, cfg)
		}
		return openZKHome(ctx, cfg, home)
	}
	return nil, fmt.Errorf("jepsen: unknown backend %q (want mem, redis or zk)", backendName)
}

// openZKHome opens a ZooKeeper backend over a connection that prefers
// server home (see openDriver).
func openZKHome(ctx context.Context, cfg zk.Config, home int) (backend.Driver, error) {
	n := len(cfg.Servers)
	order := make([]string, n)
	for i := range n {
		order[i] = cfg.Servers[(home+i)%n]
	}
	conn, events, err := gozk.Connect(order, cfg.SessionTimeout, gozk.WithHostProvider(&homeHosts{servers: order}),
		gozk.WithLogger(quietZK{}), gozk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("zk: open %v: %w", order, err)
	}
	go func() {
		for range events {
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		cfg.DialTimeout = time.Until(dl)
	}
	b, err := zk.New(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &ownConn{Backend: b, conn: conn}, nil
}

// ownConn closes its connection with the backend (zk.New leaves it open).
type ownConn struct {
	*zk.Backend
	conn *gozk.Conn
}

func (o *ownConn) Close() error {
	err := o.Backend.Close()
	o.conn.Close()
	return err
}

// homeHosts is a go-zookeeper HostProvider that tries its servers in
// its order, from the first again after every successful connection.
type homeHosts struct {
	mu      sync.Mutex
	servers []string // in order of preference
	next    int
	tried   int // attempts since the last connection
}

// Init is given the servers shuffled (gozk.Connect shuffles them): the
// order of preference is kept.
func (h *homeHosts) Init(servers []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(slices.Sorted(slices.Values(servers)), slices.Sorted(slices.Values(h.servers))) {
		return fmt.Errorf("zk: servers %v, want %v", servers, h.servers)
	}
	return nil
}

func (h *homeHosts) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

// Next returns the next server; retryStart is true once every server was
// tried without a connection (go-zookeeper then pauses a second).
func (h *homeHosts) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	h.tried++
	return s, h.tried > len(h.servers) && (h.tried-1)%len(h.servers) == 0
}

func (h *homeHosts) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next, h.tried = 0, 0
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// runWorker runs one client process: cfg.Clients clients of the workload
// (or, with Final, the workload's final reads, each retried until it
// succeeds), recording to cfg.Out.
func runWorker(ctx context.Context, cfg workerConfig) error {
	w, err := newWorkload(cfg.Workload, cfg.Worker)
	if err != nil {
		return err
	}
	faults, ok := bugFaults[cfg.Bug]
	if cfg.Bug != "" && !ok {
		return fmt.Errorf("jepsen: unknown bug %q (want one of %s)", cfg.Bug, strings.Join(BugNames, ", "))
	}
	lease := cfg.Lease
	if lease <= 0 {
		lease = 2 * time.Second
	}
	if ls, ok := w.(leaseSetter); ok {
		ls.setLease(lease)
	}
	opts := []stm.Option{stm.WithLease(lease), stm.WithSweepInterval(lease), engine.WithFaults(faults),
		engine.WithWallClock(clock.Skewed{Base: clock.System, Offset: cfg.Skew})}
	if cfg.General {
		opts = append(opts, engine.WithGeneralPath())
	}
	// The final reads see every commit acknowledged before them.
	linearizable := w.Linearizable() || cfg.Final
	if _, ok := w.(twoBackends); ok && (cfg.Second == "" || cfg.Second == cfg.Backend) {
		return fmt.Errorf("jepsen: worker %d: workload %s needs a second backend other than %s", cfg.Worker, cfg.Workload, cfg.Backend)
	}
	open := func(ctx context.Context, home int) (*stm.STM, backend.Driver, func(), error) {
		return openSTM(ctx, cfg, w, home, linearizable, opts)
	}
	// A client process started during a fault (a replacement for a
	// killed one, or any while connections are reset) waits it out.
	var s *stm.STM
	var d2 backend.Driver
	var closeAll func()
	err = retryFor(ctx, setupRetry, func(ctx context.Context) (err error) {
		s, d2, closeAll, err = open(ctx, cfg.Worker)
		return err
	})
	if err != nil {
		return err
	}
	defer closeAll()
	if tb, ok := w.(twoBackends); ok {
		tb.setSecond(d2)
	}
	if cs, ok := w.(clientSTMs); ok {
		cs.setOpen(func(ctx context.Context, client int) (*stm.STM, backend.Driver, func(), error) {
			return open(ctx, cfg.Worker+client)
		})
	}
	if err := setup(ctx, s, w); err != nil {
		return fmt.Errorf("jepsen: worker %d: set up %s: %w", cfg.Worker, cfg.Workload, err)
	}
	rec := newRecorder(cfg.Out, cfg.Start)
	if cfg.Final {
		return final(ctx, s, w, rec, cfg.Worker)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A history that cannot be written ends the process, with the error.
	go func() {
		select {
		case <-rec.Failed():
			cancel()
		case <-rctx.Done():
		}
	}()
	if cfg.Time > 0 {
		rctx, cancel = context.WithTimeout(rctx, cfg.Time)
		defer cancel()
	}
	if cfg.Stop != nil || cfg.Quiesce != nil {
		go func() {
			select {
			case <-cfg.Stop:
				cancel()
			case <-cfg.Quiesce:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	st, settles := w.(settler)
	if settles {
		if err := retryFor(ctx, setupRetry, func(ctx context.Context) error {
			return st.Start(ctx, s, rec, cfg.Worker*1_000_000_000+watcherBase)
		}); err != nil {
			return fmt.Errorf("jepsen: worker %d: start %s: %w", cfg.Worker, cfg.Workload, err)
		}
	}
	done := make(chan struct{})
	progressDone := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			defer close(progressDone)
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
	} else {
		close(progressDone)
	}
	runClients(rctx, s, w, rec, clientConfig{Clients: cfg.Clients, ProcessBase: cfg.Worker * 1_000_000_000, Seed: cfg.Seed ^ uint64(cfg.Worker), Ops: cfg.Ops,
		Rate: cfg.Rate / float64(max(cfg.Clients, 1))})
	close(done)
	<-progressDone
	if err := rec.Err(); err != nil {
		return fmt.Errorf("jepsen: worker %d: %w", cfg.Worker, err)
	}
	if !settles {
		return nil
	}
	// This process has stopped writing; once every process has (Stop),
	// the background work catches up with the final state.
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress, "quiesced")
	}
	if cfg.Stop != nil {
		select {
		case <-cfg.Stop:
		case <-ctx.Done():
		case <-rec.Failed():
		}
	}
	if err := rec.Err(); err != nil {
		return fmt.Errorf("jepsen: worker %d: %w", cfg.Worker, err)
	}
	if err := st.Settle(ctx, s, rec); err != nil {
		return err
	}
	if err := rec.Err(); err != nil {
		return fmt.Errorf("jepsen: worker %d: %w", cfg.Worker, err)
	}
	return nil
}

// watcherBase numbers a process's background recorders (watchers) after
// its clients (ProcessBase + client*1e6, below 1e9 for fewer than 900
// clients).
const watcherBase = 900_000_000

// setupRetry bounds how long a client process tries to open its
// backends, set up and start its background work while faults come and go
// (each fault lasts an interval; a ZooKeeper ensemble may take seconds
// to elect a leader).
const setupRetry = 60 * time.Second

// retryFor runs f, each attempt under a 20 s timeout, until it succeeds,
// ctx ends or d has passed since the first attempt: a step that fails
// while a fault is in effect is tried again once it may have healed. f
// must leave nothing behind when it fails.
func retryFor(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(d)
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// setup creates the workload's refs, retrying while a fault heals.
func setup(ctx context.Context, s *stm.STM, w workload) error {
	return retryFor(ctx, setupRetry, func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return w.Setup(sctx, s)
	})
}

// final runs the workload's final reads, each until it succeeds (or 60 s
// pass): every fault has healed by now.
func final(ctx context.Context, s *stm.STM, w workload, rec *recorder, worker int) error {
	deadline := time.Now().Add(60 * time.Second)
	var invs []invocation
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
			t := invoke(s, w, rec, proc, in.F, in.Value, 5*time.Second, true)
			if err := rec.Err(); err != nil {
				return fmt.Errorf("jepsen: final reads: %w", err)
			}
			if t == check.OK {
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

// stdinSignals follows what the runner writes to a worker's stdin: the
// line "quiesce" closes quiesce; EOF (the runner closed it) closes stop,
// and quiesce if it is still open.
func stdinSignals(r io.Reader) (quiesce, stop <-chan struct{}) {
	q, st := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		quiesced := false
		for sc.Scan() {
			if sc.Text() == "quiesce" && !quiesced {
				quiesced = true
				close(q)
			}
		}
		if !quiesced {
			close(q)
		}
		close(st)
	}()
	return q, st
}

// workerMain is the body of `epochal jepsen worker`: cfg comes from
// flags; the history goes to path, stdin's EOF stops it, progress goes
// to stdout.
func workerMain(ctx context.Context, cfg workerConfig, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("jepsen: history file: %w", err)
	}
	defer f.Close()
	cfg.Out = f
	if cfg.Stop == nil {
		cfg.Quiesce, cfg.Stop = stdinSignals(os.Stdin)
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stdout
	}
	return runWorker(ctx, cfg)
}

// WorkerArgsMain parses `epochal jepsen worker` flags (as the runner
// writes them) and runs the worker.
func WorkerArgsMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("jepsen worker", flag.ContinueOnError)
	var cfg workerConfig
	var addr, out string
	var start int64
	fs.StringVar(&cfg.Backend, "backend", "", "mem, redis or zk")
	fs.StringVar(&addr, "addr", "", "server addresses, comma-separated")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Redis prefix or ZooKeeper root")
	var addr2 string
	fs.StringVar(&cfg.Second, "backend2", "", "second backend (mixed workload): redis or zk")
	fs.StringVar(&addr2, "addr2", "", "the second backend's server addresses, comma-separated")
	fs.StringVar(&cfg.Namespace2, "namespace2", "", "the second backend's Redis prefix or ZooKeeper root")
	fs.StringVar(&cfg.Workload, "workload", "", "workload")
	fs.IntVar(&cfg.Worker, "worker", 0, "worker number")
	fs.IntVar(&cfg.Clients, "clients", 1, "clients")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed")
	fs.Int64Var(&start, "start", 0, "the run's start, CLOCK_MONOTONIC ns")
	fs.DurationVar(&cfg.Lease, "lease", 2*time.Second, "lease")
	fs.DurationVar(&cfg.Skew, "skew", 0, "wall clock offset")
	fs.StringVar(&cfg.Bug, "bug", "", "seeded engine bug")
	fs.BoolVar(&cfg.General, "general", false, "general commit path")
	fs.IntVar(&cfg.WatchKeep, "watch-keep", 0, "older versions a watched Redis ref keeps (0: the default)")
	fs.StringVar(&cfg.RedisSentinel, "redis-sentinel", "", "connect to Redis through the sentinels at --addr, master of this name")
	fs.IntVar(&cfg.RedisWait, "redis-wait", 0, "redis.Config.WaitReplicas (0: no WAIT)")
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
	if addr2 != "" {
		cfg.Addrs2 = strings.Split(addr2, ",")
	}
	cfg.Start = start
	if cfg.Workload == "watch" {
		// This process is the worker's own: its watchers may take the
		// gap path sooner than the library's default (see
		// watchFeedWait).
		engine.WatchFeedWait = watchFeedWait
	}
	return workerMain(ctx, cfg, out)
}
