package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	jepsenlite "github.com/epochal/epochal/jepsen-lite"
	"github.com/epochal/epochal/jepsen-lite/check"
)

// jepsenConfig holds `epochal jepsen`'s flags.
type jepsenConfig struct {
	workload    string
	coordinator string
	nemesis     string
	time        time.Duration
	workers     int
	clients     int
	dir         string
	seed        uint64
	interval    time.Duration
	nodes       int
	bug         string
	general     bool
	rate        float64
	lease       time.Duration
	checkTO     time.Duration
	watchKeep   int
	minOK       int

	redisTopology string
	redisWait     int
	quiet         bool
}

func newJepsenCmd(g *globals) *cobra.Command {
	c := &jepsenConfig{}
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Run a workload against real servers while injecting faults, and check the history",
		Long: `jepsen runs a workload from several client processes against servers it
starts itself (redis-server or ZooKeeper on loopback ports; the embedded
backend runs its clients in this process), injects faults on a schedule,
heals them, reads the final state, and checks the recorded history:

  bank         transfers and snapshot reads: totals conserved, no negative balance
  list-append  transactions of appends and reads (Elle's workload, Elle's
               inferences): Adya's anomalies G0, G1a, G1b, G1c, G-single,
               G-nonadjacent, lost-update, dirty-update, future-read,
               duplicate-elements, garbage, lost appends; write skew
               (G2-item) is allowed under snapshot isolation and reported
               as such
  register     single-ref read, write, compare-and-set: linearizability (porcupine)
  counter      commute increments and reads: every read within bounds
  atom-register  atoms (refs.Atom[int], starting at 0): Deref, Reset,
               CompareAndSet, each one compare-and-set on the backend:
               linearizability (porcupine)
  lock         distributed locks (locks.Mutex, 2 locks, short leases):
               acquire, fenced writes under the lock, release; mutual
               exclusion (porcupine: a holding whose lease was lost ends
               at an unknown time before its holder noticed, so only two
               holders that both certainly held the lock at once fail),
               fencing tokens increase in real time, the fence refuses
               stale writes
  mixed        bank and list-append over refs on two backends, Redis and
               ZooKeeper, both started (--coordinator picks the one holding
               the clock and the records; odd accounts and keys live on the
               other), each client swapping a counter atom on the other
               backend after every transaction: the bank's and
               list-append's anomalies, lost acknowledged appends
               (lost-append), atom counters against their acknowledged
               swaps (atom-counter)
  watch        counters changed only by +1, watched from every process by
               watchers that now and then stall; every committed version
               must be delivered once, in order, or announced by a gap
               notice (watch-hole, watch-duplicate, watch-out-of-order,
               watch-undelivered)

In the workloads with final reads of keys (list-append, counter, mixed,
watch), a key with acknowledged writes that no final read reads fails the
run (unread-key): the final reads read every key of the run, after every
client stopped.

Faults (--nemesis, comma-separated): kill (SIGKILL a server and restart it),
pause (SIGSTOP/SIGCONT), leader (kill the ZooKeeper leader; 3 nodes),
partition (a TCP proxy between clients and a server drops traffic), reset
(the proxy resets connections), delay (the proxy delays 50ms), jitter (the
proxy delays each chunk by 0 to 100ms, so connections overtake one
another), slow (the proxy delays about half the connections by 1.5s, the
others pass), lag (delay the traffic between the ZooKeeper leader and a
follower that clients use by 20ms: its clients read stale state; 3 nodes),
failover (SENTINEL FAILOVER: the replica becomes the master, the old
master rejoins as its replica), failover-pause (SIGSTOP the Redis master
until the sentinels promote the replica; SIGCONT, it rejoins as a
replica); both only with --redis-topology sentinel, which allows no other
server fault, client-kill (SIGKILL a client
process mid-run), client-pause (SIGSTOP a client process for an interval: a
lock holder outlives its lease), skew (clients' lease clocks skewed). With
mixed, a fault both clusters support hits both at once, then the
coordinator's alone, then the other's alone, in turn.

The schedule: healthy for --interval, one fault for --interval, the kinds
in turn, round and round. Every kind asked for is injected at least once:
the default interval is short enough for one round to fit in --time, a
--time shorter than one round (2 intervals per kind) is refused, and if
injecting and healing take longer than planned the clients run on past
--time until every kind has had its turn. The summary, results.json
(faults_fired) and report.html count the faults of each kind.

While it runs, stderr tells the progress (operations ok, failed and
info, the fault in effect): a bar redrawn in place on a terminal;
otherwise plain lines, one as the clients start (with the seed and the
run directory), one every --time/10 (2s to 30s apart) and one as they
stop; nothing with --quiet.

Everything goes to a new directory under --dir: the histories (JSON lines,
and EDN for Elle), results.json and report.html (latency and throughput
over time with the fault windows and the failing anomalies marked,
outcome counts with what ok, fail and info mean, each anomaly with a
sentence saying what its name means and its witness; where two list
reads disagree, the length of their common prefix and their differing
tails, long lists shortened). A run that does not finish keeps the file INCOMPLETE and is never
reported as a pass.

The verdict is PASS, FAIL or UNKNOWN. UNKNOWN: no anomaly that fails the
run, but something was not checked: a linearizability search (porcupine,
each key on its own) ran out of --check-timeout on a key, a watch history
had nothing to check against, a fault kind asked for was never injected,
or too little was tested: fewer than --min-ok (default 10) successful
operations, final reads not counted, of some kind that changes state (a
bank's transfers; list-append's appending transactions; a register's and
an atom register's writes and compare-and-sets together; a counter's
adds; the lock's acquisitions, and its fenced writes; mixed's transfers,
appending transactions and swaps; the watch workload's increments). It is
not a pass; the summary and results.json ("valid":
"unknown", "inconclusive") say what was left unchecked, and 'epochal
jepsen check DIR --check-timeout 5m' checks a run's history again.
'epochal jepsen check --workload list-append FILE' checks a history that
Jepsen or Elle wrote (EDN), or the runner (JSON lines).

A run cut short (^C, SIGINT) stops its clients and heals its faults,
skips the final reads and is not checked: its verdict is INCOMPLETE, in
the summary, results.json ("cut_short" says when and why) and
report.html; the run directory keeps the file INCOMPLETE, and 'epochal
jepsen check' refuses it. Cut short while its history is being checked
(after the clients and final reads), the run is INCOMPLETE too, with
"check_cut_short": its history is whole, and 'epochal jepsen check'
checks it. A second ^C ends the command at once.

Exit codes: 0 PASS; 1 FAIL (an anomaly, or the run itself failed); 2 bad
usage; 3 a server could not be started; 5 UNKNOWN; 6 INCOMPLETE (the run
was cut short).`,
		Example: "  epochal jepsen --workload bank --time 20s\n" +
			"  epochal jepsen --backend redis --workload list-append --nemesis kill,pause,partition --time 1m\n" +
			"  epochal jepsen --backend zk --workload register --nemesis leader,client-kill --time 10m\n" +
			"  epochal jepsen --backend redis --workload lock --nemesis pause,kill,client-kill --time 30s\n" +
			"  epochal jepsen --workload mixed --coordinator zk --nemesis lag,leader,kill,reset --time 30s\n" +
			"  epochal jepsen --backend redis --workload watch --nemesis slow,reset,kill --time 30s\n" +
			"  epochal jepsen check jepsen-runs/20250101-120000.000-zk-register --check-timeout 5m",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := jepsenlite.Config{Backend: g.backend, Workload: c.workload, Coordinator: c.coordinator, Time: c.time, Workers: c.workers,
				Clients: c.clients, Dir: c.dir, Seed: c.seed, Interval: c.interval, Nodes: c.nodes, Bug: c.bug,
				General: c.general, Rate: c.rate, Lease: c.lease, CheckTimeout: c.checkTO, WatchKeep: c.watchKeep, MinOK: c.minOK}
			cfg.RedisTopology, cfg.RedisWait = c.redisTopology, c.redisWait
			if !c.quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			if c.nemesis != "" && c.nemesis != "none" {
				for _, n := range strings.Split(c.nemesis, ",") {
					cfg.Nemesis = append(cfg.Nemesis, strings.TrimSpace(n))
				}
			}
			if err := jepsenCheck(cfg); err != nil {
				return err
			}
			sum, err := jepsenlite.Run(cmd.Context(), cfg)
			if err != nil {
				var ce *jepsenlite.ClusterError
				if errors.As(err, &ce) {
					return &downError{err: err}
				}
				if sum != nil && sum.Dir != "" {
					err = fmt.Errorf("%w (run directory %s is marked INCOMPLETE)", err, sum.Dir)
				}
				if cmd.Context().Err() != nil {
					// Cut short, and its results could not all be written:
					// still a run cut short (6), not a failure found.
					return &incompleteError{err: err}
				}
				return err
			}
			printSummary(cmd.OutOrStdout(), sum)
			return verdictError(sum)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.workload, "workload", "bank", strings.Join(jepsenlite.Workloads, "|"))
	f.StringVar(&c.coordinator, "coordinator", "", "mixed workload: the coordinator, redis|zk (the other is the second backend; default: --backend if redis or zk, else redis)")
	f.StringVar(&c.nemesis, "nemesis", "", "faults, comma-separated (see above); empty or none: no faults")
	f.DurationVar(&c.time, "time", 20*time.Second, "how long the clients run")
	f.IntVar(&c.workers, "workers", 2, "client processes")
	f.Float64Var(&c.rate, "rate", 500, "target operations per second over all clients (0: as fast as they go)")
	f.IntVar(&c.clients, "clients", 4, "clients per process (at most 900; mixed: 2 to 99)")
	f.StringVar(&c.dir, "dir", "jepsen-runs", "where run directories are made")
	f.Uint64Var(&c.seed, "seed", 0, "seed of the workload and the fault schedule (default: from the clock)")
	f.DurationVar(&c.interval, "interval", 0, "fault schedule period (default: --time/6, or --time/(2k+1) with k > 2 scheduled fault kinds, so that one round fits in --time with an interval to spare; at least 500ms)")
	f.IntVar(&c.nodes, "nodes", 0, "ZooKeeper nodes: 1 or 3 (default 3 with --nemesis leader or lag, else 1); refused for a run without ZooKeeper")
	f.StringVar(&c.bug, "bug", "", "test only: a deliberate engine bug ("+strings.Join(jepsenlite.BugNames, "|")+")")
	f.DurationVar(&c.lease, "lease", 0, "lease of the clients' transactions and locks (default 2s; lock workload 1s)")
	f.BoolVar(&c.general, "general", false, "commit through the general path (intents and records) even where one step would do")
	f.IntVar(&c.watchKeep, "watch-keep", 0, "older versions a Redis ref keeps while it is watched (0: the default, 256); lower, watchers depend on the change feed sooner")
	f.DurationVar(&c.checkTO, "check-timeout", 0, "bound of each linearizability search (porcupine; register, atom-register, lock): a key not decided by then makes the verdict UNKNOWN (default 30s)")
	f.IntVar(&c.minOK, "min-ok", jepsenlite.DefaultMinOK, "successful operations (final reads not counted) of each kind that changes state (transfers, appends, writes and compare-and-sets, adds, acquisitions and fenced writes, swaps, increments) a run needs; with fewer of any kind the verdict is UNKNOWN, too little was tested")
	f.StringVar(&c.redisTopology, "redis-topology", "", "Redis servers: single (one server, the default) or sentinel (a master, a replica and three sentinels; clients go through Sentinel; the nemesis failover)")
	f.IntVar(&c.redisWait, "redis-wait", 0, "with --redis-topology sentinel: clients WAIT for this many replicas after each commit (redis.Config.WaitReplicas; 0: no WAIT)")
	f.BoolVar(&c.quiet, "quiet", false, "no progress on stderr (a bar on a terminal, otherwise a line every --time/10, 2s to 30s apart), only the summary")
	_ = f.MarkHidden("bug")
	cmd.AddCommand(newJepsenCheckCmd())
	cmd.AddCommand(&cobra.Command{
		Use:                "worker",
		Short:              "A client process of a run (started by epochal jepsen)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return jepsenlite.WorkerArgsMain(cmd.Context(), args)
		},
	})
	return cmd
}

// newJepsenCheckCmd is `epochal jepsen check RUN-DIR`, a run's history
// checked again, and `epochal jepsen check --workload W FILE`, a history
// file (Jepsen's or Elle's EDN, or the runner's JSON lines) checked.
func newJepsenCheckCmd() *cobra.Command {
	var (
		timeout  time.Duration
		fc       fileCheck
		workload string
	)
	cmd := &cobra.Command{
		Use:   "check RUN-DIR | check --workload WORKLOAD FILE",
		Short: "Check a finished run's history again, or a history file (Jepsen's or Elle's EDN, or JSON lines)",
		Long: `check RUN-DIR reads a run directory that epochal jepsen wrote
(config.json, history.jsonl and the faults of results.json), runs the
workload's checkers on the history again, prints the summary and writes
results.json and report.html anew. With a longer --check-timeout, a run
that was UNKNOWN because a linearizability search ran out of time may be
decided. A run that did not finish (still marked INCOMPLETE, with no
results.json) or was cut short (^C: verdict INCOMPLETE) is refused: its
history may lack operations, and only a new run gives it a verdict; a
run cut short while it was being checked is checked.

check --workload WORKLOAD FILE checks a history file written elsewhere: by
Jepsen or Elle (EDN: operation maps such as {:type :ok, :f :txn, :value
[[:append :x 1] [:r :y [1 2]]], :process 3, :time 1234, :index 7}, one
after another or in a vector, #jepsen.history.Op records too), or the JSON
lines the runner writes (history.jsonl). WORKLOAD says what the operations
are, as Jepsen's tests of that name write them:

  list-append  transactions of [:append k v] and [:r k list]: Elle's
               analysis. Each anomaly is printed by name with its witness:
               G0, G1a, G1b, G1c, G-single, G-nonadjacent (Elle's
               G-single-item, G-nonadjacent-item), lost-update,
               incompatible-order, duplicate-elements, internal,
               future-read, dirty-update, garbage, and, with process or
               real-time order, G-single-process, G1c-realtime, ...;
               write skew (G2-item) is allowed under snapshot isolation
               and reported as such (--serializable makes it fail). A
               process's transactions happen in its order (strong session
               snapshot isolation); --realtime adds real-time order: a
               transaction that completed before another was invoked
               precedes it (strong snapshot isolation, and with
               --serializable strict serializability).
  register     :read, :write, :cas of a register (or [k v] independent
               keys): linearizability (porcupine, --check-timeout)
  bank         :transfer {:from :to :amount} and :read of the balances:
               every read sums to the total and shows no negative balance
  counter      :add n and :read: every read within the adds certainly and
               possibly done before it

--out DIR writes report.html (the anomalies with their witnesses) and
results.json there. A history that cannot be read is refused, naming the
line (and column) and what was expected there.

Exit codes: 0 PASS (valid); 1 FAIL (an anomaly; for a run directory, also
a run that failed); 2 bad usage or bad input (no such run directory, a run
that did not finish, a malformed history); 5 UNKNOWN (inconclusive: a
linearizability search ran out of --check-timeout); 6 INCOMPLETE
(interrupted, ^C, while checking: no verdict, and a run directory's
results are left as they were).`,
		Example: "  epochal jepsen check jepsen-runs/20250101-120000.000-zk-register --check-timeout 5m\n" +
			"  epochal jepsen check --workload list-append history.edn\n" +
			"  epochal jepsen check --workload list-append --realtime --serializable --out report history.edn\n" +
			"  epochal jepsen check --workload register --check-timeout 5m jepsen-runs/20250101-120000.000-zk-register/history.jsonl",
		Args: func(cmd *cobra.Command, args []string) error {
			if workload != "" {
				return exactArgs("FILE")(cmd, args)
			}
			return exactArgs("RUN-DIR")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if workload == "" {
				for _, f := range []string{"realtime", "serializable", "out"} {
					if cmd.Flags().Changed(f) {
						return usagef("--%s is for checking a history file (--workload WORKLOAD FILE); a run directory is checked as it was run", f)
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "jepsen check: checking %s again (^C stops)\n", args[0])
				sum, err := jepsenlite.RecheckContext(cmd.Context(), args[0], timeout)
				if err != nil {
					if errors.Is(err, jepsenlite.ErrNoRun) {
						return &usageError{err: err}
					}
					if cmd.Context().Err() != nil {
						return &incompleteError{err: fmt.Errorf("jepsen check: INCOMPLETE, cut short: %w", err)}
					}
					return err
				}
				printSummary(cmd.OutOrStdout(), sum)
				return verdictError(sum)
			}
			fc.workload, fc.path, fc.timeout = workload, args[0], timeout
			return fc.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&timeout, "check-timeout", 0, "bound of each linearizability search (default: the run's; for a file, 30s)")
	f.StringVar(&workload, "workload", "", "check FILE as a history of this workload: "+strings.Join(check.FileWorkloads, "|"))
	f.BoolVar(&fc.realtime, "realtime", false, "list-append: add real-time order (a transaction that completed before another was invoked precedes it)")
	f.BoolVar(&fc.serializable, "serializable", false, "list-append: write skew (G2-item) fails the check instead of being allowed (snapshot isolation)")
	f.StringVar(&fc.out, "out", "", "write report.html and results.json to this directory")
	return cmd
}

// verdictError maps a run's verdict to the command's error: nil for PASS,
// exit code 1 for FAIL, 5 for UNKNOWN, 6 for INCOMPLETE (cut short).
func verdictError(sum *jepsenlite.Summary) error {
	switch {
	case sum.Verdict == jepsenlite.VerdictIncomplete:
		return &incompleteError{err: fmt.Errorf("jepsen: INCOMPLETE, the run was cut short: %s; see %s/report.html", sum.CutShort, sum.Dir)}
	case sum.Passed():
		return nil
	case sum.Failed():
		return fmt.Errorf("jepsen: anomalies found: see %s/report.html", sum.Dir)
	}
	return &unknownError{err: fmt.Errorf("jepsen: inconclusive (UNKNOWN): %s; see %s/report.html", strings.Join(sum.Inconclusive, "; "), sum.Dir)}
}

// jepsenCheck turns bad flags into usage errors before anything starts.
func jepsenCheck(cfg jepsenlite.Config) error {
	if err := jepsenlite.CheckConfig(cfg); err != nil {
		return &usageError{err: err}
	}
	return nil
}

func printSummary(w io.Writer, s *jepsenlite.Summary) {
	cfg := s.Config
	nem := strings.Join(cfg.Nemesis, ",")
	if nem == "" {
		nem = "none"
	}
	on := cfg.Backend
	if second := cfg.Second(); second != "" {
		on = fmt.Sprintf("%s (coordinator) and %s", cfg.Coordinator, second)
	}
	fmt.Fprintf(w, "jepsen-lite: %s on %s for %v, nemesis %s\n", cfg.Workload, on, cfg.Time, nem)
	fmt.Fprintf(w, "  operations %d: ok %d, fail %d, info %d (%.1fs)\n", s.Ops, s.OK, s.Fail, s.Info, s.Elapsed.Seconds())
	var kinds []string
	for k, n := range s.Fired {
		f := fmt.Sprintf("%s x%d", k, n)
		if n == 0 {
			f += " (never injected)"
		}
		kinds = append(kinds, f)
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	fmt.Fprintf(w, "  faults: %s\n", strings.Join(kinds, ", "))
	if len(s.Tested) > 0 {
		var tested []string
		for k, n := range s.Tested {
			tested = append(tested, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(tested)
		minOK := cfg.MinOK
		if minOK <= 0 {
			minOK = jepsenlite.DefaultMinOK
		}
		fmt.Fprintf(w, "  tested (ok, final reads not counted): %s (at least %d of each)\n", strings.Join(tested, ", "), minOK)
	}
	for _, r := range s.Results {
		fmt.Fprintf(w, "  checker %s: %s\n", r.Checker, checkerVerdict(r))
		// Anomalies that fail the run, and what was not checked, are
		// listed (the first few in full); allowed ones, which a long run
		// finds by the thousand, are counted. report.html has every one
		// with its witness.
		allowed := map[string]int{}
		shown, unknown := 0, 0
		for _, a := range r.Anomalies {
			switch {
			case a.Unknown:
				if unknown++; unknown <= maxShown {
					fmt.Fprintf(w, "    %s (not checked): %s\n", a.Name, firstLine(jepsenlite.ShortLists(a.Explain)))
				}
			case a.Allowed:
				allowed[a.Name]++
			default:
				if shown++; shown <= maxShown {
					fmt.Fprintf(w, "    %s: %s\n", a.Name, firstLine(jepsenlite.ShortLists(a.Explain)))
				}
			}
		}
		if shown > maxShown {
			fmt.Fprintf(w, "    ... and %d more (report.html lists them all)\n", shown-maxShown)
		}
		if unknown > maxShown {
			fmt.Fprintf(w, "    ... and %d more not checked (report.html lists them all)\n", unknown-maxShown)
		}
		var names []string
		for n := range allowed {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "    %s: %d found, %s\n", n, allowed[n], check.AllowedWhy(n))
		}
	}
	fmt.Fprintf(w, "  run directory: %s (report.html)\n", s.Dir)
	switch {
	case s.Verdict == jepsenlite.VerdictIncomplete:
		fmt.Fprintf(w, "verdict: INCOMPLETE (the run was cut short: %s)\n", s.CutShort)
	case s.Passed():
		fmt.Fprintln(w, "verdict: PASS")
	case s.Failed():
		fmt.Fprintln(w, "verdict: FAIL")
	default:
		fmt.Fprintln(w, "verdict: UNKNOWN (no anomaly found, but not everything was checked: not a pass)")
		for _, why := range s.Inconclusive {
			fmt.Fprintf(w, "  not checked: %s\n", why)
		}
	}
}

// maxShown is how many anomalies of one checker the summary prints.
const maxShown = 5

// checkerVerdict is how a checker's verdict is printed.
func checkerVerdict(r check.Result) string {
	switch r.Verdict() {
	case check.VerdictFail:
		return "INVALID"
	case check.VerdictUnknown:
		return "UNKNOWN (not everything was checked)"
	}
	return "valid"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
