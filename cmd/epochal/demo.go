package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// errInsufficient aborts a transfer whose source cannot cover it: a
// declined transfer, not a failure.
var errInsufficient = errors.New("insufficient funds")

// Values of the hidden --fault flag: deliberate engine bugs, so that a test
// can show the demo's check catches a broken engine.
const (
	faultSkipReadPointCheck = "skip-read-point-check"
	faultNoCommuteRecompute = "no-commute-recompute"
)

// maxAccounts bounds --accounts: the demo keeps every account in one
// snapshot read, and names them with at least three digits.
const maxAccounts = 100_000

// txGrace is how long past --duration transactions already running may take
// to finish before the demo gives up on them (a hung engine).
const txGrace = 30 * time.Second

// demoConfig is the demo's flags.
type demoConfig struct {
	accounts int
	initial  int
	workers  int
	readers  int
	duration time.Duration
	seed     uint64
	fault    string
	// where names the prefix or root the accounts live under, and the
	// command that inspects them ("" on the embedded backend).
	where string
}

func newDemoCmd(g *globals) *cobra.Command {
	var c demoConfig
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a bank workload (embedded backend by default) and check its invariants",
		Long: `demo moves money between accounts, one ref each, for a while and checks that
none is created or lost.

Transfer workers pick two distinct accounts and an amount and, in one
transaction, read the source, decline if it cannot cover the amount, alter
the source and commute the destination. Reader goroutines sum every account
in one transaction: each sum must be the initial total (no torn snapshot)
and no balance may be negative. At the end the total must be conserved.

The report gives commits, throughput, retries per commit, the p50 and p99
latency of committed transfers and the snapshot reads, and ends with
"check: PASS" or "check: FAIL (reason)"; a failed check exits with 1.

With --backend redis the accounts live under a fresh key prefix per run
(or --prefix), with --backend zk under a fresh root znode (or --root); an
existing prefix's or root's accounts are joined, and the total they hold at
the start is the one checked. The report names the prefix or root and the
command that inspects it ('epochal ... refs ls', with the connection flags
the demo took; a password is never printed: the command asks for
EPOCHAL_PASSWORD, EPOCHAL_SENTINEL_PASSWORD or EPOCHAL_AUTH to be set
instead).`,
		Example: "  epochal demo --duration 300ms\n  epochal demo --accounts 3 --workers 16 --duration 10s --seed 42\n  epochal --backend redis --addr 127.0.0.1:6379 demo\n  epochal --backend zk --addr 127.0.0.1:2181 demo",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("seed") {
				c.seed = uint64(time.Now().UnixNano())
			}
			faults, err := c.check()
			if err != nil {
				return err
			}
			fresh := fmt.Sprintf("demo-%d", time.Now().UnixNano())
			b, err := g.open(cmd.Context(), fresh)
			if err != nil {
				return err
			}
			c.where = g.demoWhere(fresh)
			defer b.Close()
			return runDemo(cmd.Context(), cmd.OutOrStdout(), g.backend, b, c, faults)
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.accounts, "accounts", 10, "number of accounts (refs), at least 2")
	f.IntVar(&c.initial, "initial", 1000, "initial balance of each account, > 0")
	f.IntVar(&c.workers, "workers", 8, "transfer goroutines, > 0")
	f.IntVar(&c.readers, "readers", 2, "snapshot-reader goroutines, >= 0")
	f.DurationVar(&c.duration, "duration", 3*time.Second, "how long to run, > 0")
	f.Uint64Var(&c.seed, "seed", 0, "seed of the workers' random choices (default: from the clock)")
	f.StringVar(&c.fault, "fault", "", "test only: run a deliberately broken engine ("+
		faultSkipReadPointCheck+"|"+faultNoCommuteRecompute+")")
	_ = f.MarkHidden("fault")
	return cmd
}

// demoWhere says where a demo's accounts live and how to inspect them:
// "prefix demo-1 (inspect: epochal --backend redis --addr ... --prefix
// demo-1 refs ls)"; "" for the embedded backend. The command carries every
// connection flag the demo's own connection took (the address a URL names,
// --db, --user, the TLS files, --sentinel-master, --cluster); a password
// or ZooKeeper --auth is never printed: the command ends ", with
// EPOCHAL_PASSWORD set" (or EPOCHAL_AUTH) instead.
func (g *globals) demoWhere(fresh string) string {
	switch g.backend {
	case backendRedis:
		prefix := cmp.Or(g.prefix, fresh)
		return fmt.Sprintf("prefix:             %s (inspect: epochal %s --prefix %s refs ls%s)", prefix, g.connFlags(), shellQuote(prefix), g.secretVar())
	case backendZK:
		root := cmp.Or(g.root, "/"+fresh)
		return fmt.Sprintf("root:               %s (inspect: epochal %s --root %s refs ls%s)", root, g.connFlags(), shellQuote(root), g.secretVar())
	}
	return ""
}

// connFlags are the command-line flags, secrets left out, that connect
// to the server this command connected to.
func (g *globals) connFlags() string {
	s := &g.sec
	addr := g.addr
	if len(s.addrs) > 0 { // resolved: host:port, a URL's included
		addr = strings.Join(s.addrs, ",")
	}
	f := []string{"--backend", g.backend, "--addr", shellQuote(addr)}
	if g.backend != backendRedis {
		return strings.Join(f, " ")
	}
	if s.sentinelMaster != "" {
		f = append(f, "--sentinel-master", shellQuote(s.sentinelMaster))
	}
	if s.cluster {
		f = append(f, "--cluster")
	}
	if s.db != 0 {
		f = append(f, "--db", strconv.Itoa(s.db))
	}
	if s.user != "" {
		f = append(f, "--user", shellQuote(s.user))
	}
	if s.tls {
		f = append(f, "--tls")
		for _, o := range []struct{ flag, v string }{{"--tls-ca", s.tlsCA}, {"--tls-cert", s.tlsCert}, {"--tls-key", s.tlsKey}} {
			if o.v != "" {
				f = append(f, o.flag, shellQuote(o.v))
			}
		}
		if s.tlsInsecure {
			f = append(f, "--tls-insecure")
		}
	}
	return strings.Join(f, " ")
}

// secretVar is ", with EPOCHAL_PASSWORD set" (or EPOCHAL_AUTH, or
// EPOCHAL_PASSWORD and EPOCHAL_SENTINEL_PASSWORD) when this command
// connected with secrets, which connFlags leaves out; else "".
func (g *globals) secretVar() string {
	var vars []string
	switch g.backend {
	case backendRedis:
		if g.sec.password != "" {
			vars = append(vars, envPassword)
		}
		if g.sec.sentinelPass != "" {
			vars = append(vars, envSentinelPassword)
		}
	case backendZK:
		if g.sec.auth != "" {
			vars = append(vars, envAuth)
		}
	}
	if len(vars) == 0 {
		return ""
	}
	return ", with " + strings.Join(vars, " and ") + " set"
}

// shellQuote quotes s for a POSIX shell, unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/@%+=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// check validates the flags and returns the engine faults asked for.
func (c demoConfig) check() (engine.Faults, error) {
	var faults engine.Faults
	switch {
	case c.accounts < 2:
		return faults, usagef("--accounts %d: need at least 2 accounts to transfer between", c.accounts)
	case c.accounts > maxAccounts:
		return faults, usagef("--accounts %d: at most %d", c.accounts, maxAccounts)
	case c.initial <= 0:
		return faults, usagef("--initial %d: must be > 0", c.initial)
	case c.initial > math.MaxInt64/maxAccounts:
		return faults, usagef("--initial %d: at most %d", c.initial, math.MaxInt64/maxAccounts)
	case c.workers <= 0:
		return faults, usagef("--workers %d: must be > 0", c.workers)
	case c.readers < 0:
		return faults, usagef("--readers %d: must be >= 0", c.readers)
	case c.duration <= 0:
		return faults, usagef("--duration %v: must be > 0", c.duration)
	}
	switch c.fault {
	case "":
	case faultSkipReadPointCheck:
		faults.SkipReadPointCheck = true
	case faultNoCommuteRecompute:
		faults.NoCommuteRecompute = true
	default:
		return faults, usagef("--fault %q: want %s or %s", c.fault, faultSkipReadPointCheck, faultNoCommuteRecompute)
	}
	return faults, nil
}

// transferResult is what one transfer worker saw.
type transferResult struct {
	committed []time.Duration // latency of each committed transfer
	declined  int
	failed    int
	firstErr  error
}

// readResult is what one snapshot reader saw.
type readResult struct {
	reads     int
	torn      int
	firstTorn string
	failed    int
	firstErr  error
}

// runDemo runs the bank workload and writes the report to out. It returns
// an error wrapping errCheckFailed when an invariant did not hold.
func runDemo(ctx context.Context, out io.Writer, backendName string, b backend.Driver, c demoConfig, faults engine.Faults) error {
	// Transactions run under their own ctx, so that the end of the run (or
	// an interrupt) lets the ones in flight finish instead of cutting them
	// off; txGrace bounds them should the engine hang.
	txCtx, cancelTx := context.WithTimeout(context.WithoutCancel(ctx), c.duration+txGrace)
	defer cancelTx()

	s, err := stm.Open(txCtx, b, engine.WithFaults(faults))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer s.Close()

	accts := make([]*refs.Ref[int], c.accounts)
	for i := range accts {
		name := fmt.Sprintf("bank/acct-%03d", i)
		if accts[i], err = refs.New(txCtx, s, name, c.initial); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	// The total to conserve: what the accounts hold now (accounts * initial
	// unless an existing prefix was joined).
	expected := 0
	if err := s.Dosync(txCtx, func(tx *txn.Tx) error {
		expected = 0
		for _, a := range accts {
			expected += a.Get(tx)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	runCtx, stopRun := context.WithTimeout(ctx, c.duration)
	defer stopRun()
	transfers := make([]transferResult, c.workers)
	reads := make([]readResult, c.readers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range transfers {
		rng := rand.New(rand.NewPCG(c.seed, uint64(w)))
		wg.Go(func() { transfers[w] = transferLoop(runCtx, txCtx, s, accts, c.initial, rng) })
	}
	for r := range reads {
		wg.Go(func() { reads[r] = readLoop(runCtx, txCtx, s, accts, expected) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	interrupted := ctx.Err() != nil
	stopRun()

	// The final check reads every account outside any transaction.
	final, negative := 0, []string(nil)
	for _, a := range accts {
		v, err := a.Deref(txCtx)
		if err != nil {
			return fmt.Errorf("demo: final read: %w", err)
		}
		final += v
		if v < 0 {
			negative = append(negative, fmt.Sprintf("%s=%d", a.Name(), v))
		}
	}

	// Merge the workers' figures.
	var lat []time.Duration
	var declined, failed int
	var firstErr error
	for _, t := range transfers {
		lat = append(lat, t.committed...)
		declined += t.declined
		failed += t.failed
		if firstErr == nil {
			firstErr = t.firstErr
		}
	}
	var nReads, torn, readFailed int
	var firstTorn string
	for _, r := range reads {
		nReads += r.reads
		torn += r.torn
		readFailed += r.failed
		if firstTorn == "" {
			firstTorn = r.firstTorn
		}
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	slices.Sort(lat)
	st := s.Stats()

	var problems []string
	if failed+readFailed > 0 {
		problems = append(problems, fmt.Sprintf("%d transactions failed, first: %v", failed+readFailed, firstErr))
	}
	if torn > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d snapshots torn, first: %s", torn, nReads, firstTorn))
	}
	if final != expected {
		problems = append(problems, fmt.Sprintf("final total %d, expected %d", final, expected))
	}
	if len(negative) > 0 {
		problems = append(problems, "negative balances: "+strings.Join(negative, " "))
	}

	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	p("epochal demo: backend %s, %d accounts x %d, %d workers, %d readers, seed %d",
		backendName, c.accounts, c.initial, c.workers, c.readers, c.seed)
	if c.where != "" {
		p("%s", c.where)
	}
	if faults != (engine.Faults{}) {
		p("fault injected:     %s (the engine is broken on purpose)", c.fault)
	}
	if interrupted {
		p("interrupted:        after %v", elapsed.Round(time.Millisecond))
	}
	p("elapsed:            %v", elapsed.Round(time.Millisecond))
	p("commits:            %d (%.0f/s)", len(lat), float64(len(lat))/elapsed.Seconds())
	p("declined:           %d (insufficient funds)", declined)
	if failed > 0 {
		p("failed:             %d", failed)
	}
	p("retries per commit: %.3f (%d retries, %d commits; at most %d for one transaction)",
		ratio(st.Retries, st.Commits), st.Retries, st.Commits, st.MaxRetries)
	p("latency p50 / p99:  %v / %v", fmtDur(percentile(lat, 0.50)), fmtDur(percentile(lat, 0.99)))
	p("snapshot reads:     %d, torn %d", nReads, torn)
	p("final total:        %d (expected %d)", final, expected)
	if len(problems) > 0 {
		reason := strings.Join(problems, "; ")
		p("check: FAIL (%s)", reason)
		return fmt.Errorf("demo: %w: %s", errCheckFailed, reason)
	}
	p("check: PASS")
	return nil
}

// transferLoop moves money between random accounts until runCtx ends.
func transferLoop(runCtx, txCtx context.Context, s *stm.STM, accts []*refs.Ref[int], initial int, rng *rand.Rand) transferResult {
	var res transferResult
	maxAmount := max(1, initial/4)
	for runCtx.Err() == nil && txCtx.Err() == nil {
		i := rng.IntN(len(accts))
		j := rng.IntN(len(accts) - 1)
		if j >= i {
			j++
		}
		from, to := accts[i], accts[j]
		amount := 1 + rng.IntN(maxAmount)
		start := time.Now()
		err := s.Dosync(txCtx, func(tx *txn.Tx) error {
			if from.Get(tx) < amount {
				return errInsufficient
			}
			from.Alter(tx, func(v int) int { return v - amount })
			to.Commute(tx, func(v int) int { return v + amount })
			return nil
		})
		switch {
		case err == nil:
			res.committed = append(res.committed, time.Since(start))
		case errors.Is(err, errInsufficient):
			res.declined++
		default:
			res.failed++
			if res.firstErr == nil {
				res.firstErr = fmt.Errorf("transfer %s -> %s: %w", from.Name(), to.Name(), err)
			}
		}
	}
	return res
}

// readLoop sums every account in one transaction until runCtx ends; every
// sum must be expected and no balance negative.
func readLoop(runCtx, txCtx context.Context, s *stm.STM, accts []*refs.Ref[int], expected int) readResult {
	var res readResult
	bal := make([]int, len(accts))
	for runCtx.Err() == nil && txCtx.Err() == nil {
		err := s.Dosync(txCtx, func(tx *txn.Tx) error {
			for i, a := range accts {
				bal[i] = a.Get(tx)
			}
			return nil
		})
		if err != nil {
			res.failed++
			if res.firstErr == nil {
				res.firstErr = fmt.Errorf("snapshot read: %w", err)
			}
			continue
		}
		res.reads++
		sum, neg := 0, -1
		for i, v := range bal {
			sum += v
			if v < 0 && neg < 0 {
				neg = i
			}
		}
		if sum != expected || neg >= 0 {
			res.torn++
			if res.firstTorn == "" {
				res.firstTorn = fmt.Sprintf("sum %d", sum)
				if neg >= 0 {
					res.firstTorn += fmt.Sprintf(", %s=%d", accts[neg].Name(), bal[neg])
				}
			}
		}
	}
	return res
}

// percentile returns the q-th quantile of sorted, 0 if it is empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// fmtDur rounds d to three significant figures or so.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.String()
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
