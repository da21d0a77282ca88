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
  list-append  transactions of appends and reads (Elle's workload): Adya's
               anomalies G0, G1a, G1b, G1c, G-single, G-nonadjacent, lost
               updates, duplicates, garbage; write skew (G2-item) is allowed
               under snapshot isolation and reported as such
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

Faults (--nemesis, comma-separated): kill (SIGKILL a server and restart it),
pause (SIGSTOP/SIGCONT), leader (kill the ZooKeeper leader; 3 nodes),
partition (a TCP proxy between clients and a server drops traffic), reset
(the proxy resets connections), delay (the proxy delays 50ms), jitter (the
proxy delays each chunk by 0 to 100ms, so connections overtake one
another), slow (the proxy delays about half the connections by 1.5s, the
others pass), lag (delay the traffic between the ZooKeeper leader and a
follower that clients use by 20ms: its clients read stale state; 3 nodes),
client-kill (SIGKILL a client
process mid-run), client-pause (SIGSTOP a client process for an interval: a
lock holder outlives its lease), skew (clients' lease clocks skewed). With
mixed, a fault both clusters support hits both at once, then the
coordinator's alone, then the other's alone, in turn.

Everything goes to a new directory under --dir: the histories (JSON lines,
and EDN for Elle), results.json and report.html (latency and throughput
over time with the fault windows, outcome counts, each anomaly with its
witness). A run that does not finish keeps the file INCOMPLETE and is never
reported as a pass. Exit code 0: no anomaly; 1: an anomaly (or the run
failed); 2: bad usage; 3: a server could not be started.`,
		Example: "  epochal jepsen --workload bank --time 20s\n" +
			"  epochal jepsen --backend redis --workload list-append --nemesis kill,pause,partition --time 1m\n" +
			"  epochal jepsen --backend zk --workload register --nemesis leader,client-kill --time 10m\n" +
			"  epochal jepsen --backend redis --workload lock --nemesis pause,kill,client-kill --time 30s\n" +
			"  epochal jepsen --workload mixed --coordinator zk --nemesis lag,leader,kill,reset --time 30s\n" +
			"  epochal jepsen --backend redis --workload watch --nemesis slow,reset,kill --time 30s",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := jepsenlite.Config{Backend: g.backend, Workload: c.workload, Coordinator: c.coordinator, Time: c.time, Workers: c.workers,
				Clients: c.clients, Dir: c.dir, Seed: c.seed, Interval: c.interval, Nodes: c.nodes, Bug: c.bug,
				General: c.general, Rate: c.rate, Lease: c.lease, Progress: cmd.ErrOrStderr()}
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
					return fmt.Errorf("%w (run directory %s is marked INCOMPLETE)", err, sum.Dir)
				}
				return err
			}
			printSummary(cmd.OutOrStdout(), cfg, sum)
			if sum.Failed() {
				return fmt.Errorf("jepsen: anomalies found: see %s/report.html", sum.Dir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.workload, "workload", "bank", strings.Join(jepsenlite.Workloads, "|"))
	f.StringVar(&c.coordinator, "coordinator", "", "mixed workload: the coordinator, redis|zk (the other is the second backend; default: --backend if redis or zk, else redis)")
	f.StringVar(&c.nemesis, "nemesis", "", "faults, comma-separated (see above); empty or none: no faults")
	f.DurationVar(&c.time, "time", 20*time.Second, "how long the clients run")
	f.IntVar(&c.workers, "workers", 2, "client processes")
	f.Float64Var(&c.rate, "rate", 500, "target operations per second over all clients (0: as fast as they go)")
	f.IntVar(&c.clients, "clients", 4, "clients per process")
	f.StringVar(&c.dir, "dir", "jepsen-runs", "where run directories are made")
	f.Uint64Var(&c.seed, "seed", 0, "seed of the workload and the fault schedule (default: from the clock)")
	f.DurationVar(&c.interval, "interval", 0, "fault schedule period (default: --time/6, at least 500ms)")
	f.IntVar(&c.nodes, "nodes", 0, "ZooKeeper nodes: 1 or 3 (default 3 with --nemesis leader or lag, else 1)")
	f.StringVar(&c.bug, "bug", "", "test only: a deliberate engine bug ("+strings.Join(jepsenlite.BugNames, "|")+")")
	f.DurationVar(&c.lease, "lease", 0, "lease of the clients' transactions and locks (default 2s; lock workload 1s)")
	f.BoolVar(&c.general, "general", false, "commit through the general path (intents and records) even where one step would do")
	_ = f.MarkHidden("bug")
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

// jepsenCheck turns bad flags into usage errors before anything starts.
func jepsenCheck(cfg jepsenlite.Config) error {
	if err := jepsenlite.CheckConfig(cfg); err != nil {
		return &usageError{err: err}
	}
	return nil
}

func printSummary(w io.Writer, cfg jepsenlite.Config, s *jepsenlite.Summary) {
	nem := strings.Join(cfg.Nemesis, ",")
	if nem == "" {
		nem = "none"
	}
	on := cfg.Backend
	if second := s.Config.Second(); second != "" {
		on = fmt.Sprintf("%s (coordinator) and %s", s.Config.Coordinator, second)
	}
	fmt.Fprintf(w, "jepsen-lite: %s on %s for %v, nemesis %s\n", cfg.Workload, on, cfg.Time, nem)
	fmt.Fprintf(w, "  operations %d: ok %d, fail %d, info %d (%.1fs)\n", s.Ops, s.OK, s.Fail, s.Info, s.Elapsed.Seconds())
	counts := map[string]int{}
	for _, f := range s.Faults {
		counts[f.Kind]++
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	fmt.Fprintf(w, "  faults: %s\n", strings.Join(kinds, ", "))
	for _, r := range s.Results {
		verdict := "valid"
		if !r.Valid {
			verdict = "INVALID"
		}
		fmt.Fprintf(w, "  checker %s: %s\n", r.Checker, verdict)
		// Anomalies that fail the run are listed (the first few in
		// full); allowed ones, which a long run finds by the thousand,
		// are counted. report.html has every one with its witness.
		allowed := map[string]int{}
		shown := 0
		for _, a := range r.Anomalies {
			if a.Allowed {
				allowed[a.Name]++
				continue
			}
			if shown++; shown <= maxShown {
				fmt.Fprintf(w, "    %s: %s\n", a.Name, firstLine(a.Explain))
			}
		}
		if shown > maxShown {
			fmt.Fprintf(w, "    ... and %d more (report.html lists them all)\n", shown-maxShown)
		}
		var names []string
		for n := range allowed {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			why := "allowed under snapshot isolation"
			if n == "announced-gap" {
				why = "allowed: the watcher was told (a gap notice)"
			}
			fmt.Fprintf(w, "    %s: %d found, %s\n", n, allowed[n], why)
		}
	}
	fmt.Fprintf(w, "  run directory: %s (report.html)\n", s.Dir)
	if s.Failed() {
		fmt.Fprintln(w, "verdict: FAIL")
	} else {
		fmt.Fprintln(w, "verdict: PASS")
	}
}

// maxShown is how many anomalies of one checker the summary prints.
const maxShown = 5

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
