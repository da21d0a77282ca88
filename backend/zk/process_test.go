package zk_test

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/proctest"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Tests with more than one OS process: the test binary runs as a worker
// process when EPOCHAL_WORKER is set (see TestMain), so that a client can
// be SIGKILLed, or run beside another client, against real servers.

const (
	procEnvWorker  = "EPOCHAL_WORKER"  // "bank" or "crash"
	procEnvServers = "EPOCHAL_SERVERS" // comma-separated host:port
	procEnvRoot    = "EPOCHAL_ROOT"
	procEnvID      = "EPOCHAL_ID"      // bank: the worker's number
	procEnvGeneral = "EPOCHAL_GENERAL" // "1": commit on the general path
	procEnvStep    = "EPOCHAL_STEP"    // crash: the mutating call to stop at
	procEnvAfter   = "EPOCHAL_AFTER"   // crash: "1": die after the call applied
	procEnvCount   = "EPOCHAL_COUNT"   // atoms: the swaps to make; delay: the goroutines
	procEnvLease   = "EPOCHAL_LEASE"   // delay: the STM's lease
	procEnvBlock   = "EPOCHAL_BLOCK"   // delay: "1": the body blocks until killed
)

const (
	procAccounts = 5
	procInitial  = 100
	procTotal    = procAccounts * procInitial

	// procBankLease is the bank workers' lease: short, so that intents a
	// worker's failed commit leaves behind are cleared soon.
	procBankLease = 2 * time.Second
	// procSession is the bank workers' ZooKeeper session timeout.
	procSession = 3 * time.Second
	// procTxTimeout bounds each of a bank worker's Dosyncs.
	procTxTimeout = 5 * time.Second
	// procCrashLease is the crash worker's lease.
	procCrashLease = 2 * time.Second
	// procPatience bounds every wait for progress.
	procPatience = 30 * time.Second
)

func init() {
	ensembleTests = append(ensembleTests, serverTest{"TwoProcessBankLeaderKilled", testTwoProcessBankLeaderKilled})
	standaloneTests = append(standaloneTests, serverTest{"CommitterKilledAtEveryStep", testCommitterKilledAtEveryStep})
	standaloneTests = append(standaloneTests, serverTest{"AtomSwapTwoProcesses", testAtomSwapTwoProcesses})
	standaloneTests = append(standaloneTests, serverTest{"DelayTwoProcesses", testDelayTwoProcesses})
	standaloneTests = append(standaloneTests, serverTest{"DelayRunnerKilled", testDelayRunnerKilled})
	standaloneTests = append(standaloneTests, serverTest{"PromiseWaiterAcrossServerRestart", testPromiseWaiterAcrossServerRestart})
	standaloneTests = append(standaloneTests, serverTest{"WatchTwoProcesses", testWatchTwoProcesses})
	standaloneTests = append(standaloneTests, serverTest{"LocksProcesses", testLocksProcesses})
}

// testLocksProcesses: mutexes and groups across OS processes (the shared
// kit in internal/proctest): exclusion, killed and stopped holders, a
// killed group member. The lease is the ZooKeeper session timeout.
func testLocksProcesses(t *testing.T, srv *testserver.ZK) {
	proctest.Locks(t, proctest.Harness{
		Env: func(t *testing.T, lease time.Duration) ([]string, backend.Driver) {
			root := newRoot("proc")
			env := []string{procEnvServers + "=" + strings.Join(srv.Servers, ","), procEnvRoot + "=" + root}
			return env, open(t, srv, zk.Config{Root: root, SessionTimeout: lease})
		},
		Lease: 2 * time.Second,
		Slack: 10 * time.Second,
	})
}

func TestMain(m *testing.M) {
	if code, ok := proctest.Worker(func(_ context.Context, lease time.Duration) (backend.Driver, error) {
		return procOpen(lease)
	}); ok {
		os.Exit(code)
	}
	switch os.Getenv(procEnvWorker) {
	case "":
		os.Exit(m.Run())
	case "bank":
		os.Exit(procBankWorker())
	case "crash":
		os.Exit(procCrashWorker())
	case "atoms":
		os.Exit(procAtomWorker())
	case "delay":
		os.Exit(procDelayWorker())
	case "promise":
		os.Exit(procPromiseWorker())
	default:
		fmt.Fprintln(os.Stderr, "unknown worker", os.Getenv(procEnvWorker))
		os.Exit(2)
	}
}

func procAcct(i int) string { return fmt.Sprintf("acct/%d", i) }
func procCtr(i int) string  { return fmt.Sprintf("ctr/%d", i) }

// procOpen opens the backend a worker process uses.
func procOpen(session time.Duration) (*zk.Backend, error) {
	ctx, cancel := context.WithTimeout(context.Background(), procPatience)
	defer cancel()
	return zk.Open(ctx, zk.Config{Servers: strings.Split(os.Getenv(procEnvServers), ","), Root: os.Getenv(procEnvRoot), SessionTimeout: session})
}

// procBankReport is what a bank worker prints: "P <json>" lines while it
// runs, "R <json>" when it stops.
type procBankReport struct {
	Acked    int // transfers whose Dosync returned nil
	Failed   int // transfers whose Dosync returned an error
	Unknown  int // of those, ErrOutcomeUnknown: applied or not; the others applied nothing
	Timeouts int // of those, ctx deadline
	Reads    int // snapshot reads that returned nil
	ReadErrs int
	Errors   map[string]int `json:",omitempty"` // first words of errors, counted
}

// procBankWorker runs transfers among the accounts, each incrementing the
// worker's counter ref in the same transaction, and snapshot reads of all
// accounts, until its stdin closes. Errors are counted and the worker goes
// on; a torn snapshot makes it print "TORN ..." and exit 3.
func procBankWorker() int {
	id, _ := strconv.Atoi(os.Getenv(procEnvID))
	b, err := procOpen(procSession)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bank worker:", err)
		return 1
	}
	defer b.Close()
	opts := []stm.Option{stm.WithLease(procBankLease), stm.WithSweepInterval(time.Second)}
	if os.Getenv(procEnvGeneral) == "1" {
		opts = append(opts, stm.WithGeneralPath())
	}
	ctx := context.Background()
	s, err := stm.Open(ctx, b, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bank worker:", err)
		return 1
	}
	defer s.Close()
	var rs []*refs.Ref[int]
	for i := 0; i < procAccounts; i++ {
		r, err := refs.New(ctx, s, procAcct(i), procInitial)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bank worker:", err)
			return 1
		}
		rs = append(rs, r)
	}
	ctr, err := refs.New(ctx, s, procCtr(id), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bank worker:", err)
		return 1
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	rep := procBankReport{Errors: map[string]int{}}
	note := func(err error) {
		msg := err.Error()
		if len(msg) > 60 {
			msg = msg[:60]
		}
		rep.Errors[msg]++
	}
	out := json.NewEncoder(os.Stdout)
	last := time.Now()
	rnd := rand.New(rand.NewPCG(uint64(id), 7))
	for {
		select {
		case <-stop:
			fmt.Print("R ")
			_ = out.Encode(rep)
			return 0
		default:
		}
		i, j := rnd.IntN(procAccounts), rnd.IntN(procAccounts-1)
		if j >= i {
			j++
		}
		n := rnd.IntN(10) + 1
		tctx, cancel := context.WithTimeout(ctx, procTxTimeout)
		err := s.Dosync(tctx, func(tx *txn.Tx) error {
			if rs[i].Get(tx) >= n {
				rs[i].Alter(tx, func(v int) int { return v - n })
				rs[j].Alter(tx, func(v int) int { return v + n })
			}
			ctr.Alter(tx, func(v int) int { return v + 1 })
			return nil
		})
		cancel()
		switch {
		case err == nil:
			rep.Acked++
		case errors.Is(err, txn.ErrOutcomeUnknown):
			rep.Failed++
			rep.Unknown++
			note(err)
		case errors.Is(err, context.DeadlineExceeded):
			rep.Failed++
			rep.Timeouts++
			note(err)
		default:
			rep.Failed++
			note(err)
		}
		var torn string
		rctx, cancel := context.WithTimeout(ctx, procTxTimeout)
		err = s.Dosync(rctx, func(tx *txn.Tx) error {
			vals := make([]int, len(rs))
			sum, neg := 0, false
			for k, r := range rs {
				vals[k] = r.Get(tx)
				sum += vals[k]
				neg = neg || vals[k] < 0
			}
			if sum != procTotal || neg {
				torn = fmt.Sprintf("accounts %v sum to %d, want %d, none negative", vals, sum, procTotal)
			}
			return nil
		})
		cancel()
		if torn != "" {
			fmt.Printf("TORN %s\n", torn)
			return 3
		}
		if err == nil {
			rep.Reads++
		} else {
			rep.ReadErrs++
			note(err)
		}
		if time.Since(last) > 50*time.Millisecond {
			last = time.Now()
			fmt.Print("P ")
			_ = out.Encode(rep)
		}
	}
}

// procBank is a running bank worker as the test sees it.
type procBank struct {
	id    int
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	last   procBankReport
	final  bool   // last is the final report
	torn   string // what a TORN line said
	bad    string // a line that could not be parsed
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

func (w *procBank) report() (procBankReport, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.final
}

// gone returns why the worker exited, or "" while it runs.
func (w *procBank) gone() string {
	select {
	case <-w.exited:
	default:
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("bank worker %d exited (%v); torn: %q; unparsable output: %q", w.id, w.err, w.torn, w.bad)
}

// procCommand is the test binary run as a worker of the given kind.
func procCommand(kind string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{procEnvWorker + "=" + kind}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// procStartBank starts a bank worker and a goroutine that follows its
// output. The worker is SIGKILLed, by PID, when the test ends if it still
// runs.
func procStartBank(t *testing.T, srv *testserver.ZK, root string, id int, general bool) *procBank {
	t.Helper()
	g := "0"
	if general {
		g = "1"
	}
	cmd := procCommand("bank", procEnvServers+"="+srv.ConnectString(), procEnvRoot+"="+root,
		procEnvID+"="+strconv.Itoa(id), procEnvGeneral+"="+g)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &procBank{id: id, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			kind, body, _ := strings.Cut(line, " ")
			w.mu.Lock()
			switch kind {
			case "P", "R":
				var r procBankReport
				if err := json.Unmarshal([]byte(body), &r); err != nil {
					w.bad = line
				} else {
					w.last, w.final = r, kind == "R"
				}
			case "TORN":
				w.torn = body
			default:
				w.bad = line
			}
			w.mu.Unlock()
		}
		err := cmd.Wait()
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(w.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
			return
		default:
		}
		_ = cmd.Process.Kill()
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("bank worker %d (pid %d) did not exit after SIGKILL", id, cmd.Process.Pid)
		}
	})
	return w
}

// procWaitAcks waits until every worker i has had at least from[i] + n
// transfers acknowledged, failing the test if one exits first or the wait
// takes longer than procPatience. It returns the counts reached.
func procWaitAcks(t *testing.T, ws []*procBank, from []int, n int, what string) []int {
	t.Helper()
	deadline := time.Now().Add(procPatience)
	for {
		done := true
		now := make([]int, len(ws))
		for i, w := range ws {
			if why := w.gone(); why != "" {
				t.Fatalf("%s: %s", what, why)
			}
			r, _ := w.report()
			now[i] = r.Acked
			done = done && r.Acked >= from[i]+n
		}
		if done {
			return now
		}
		if time.Now().After(deadline) {
			var rs []procBankReport
			for _, w := range ws {
				r, _ := w.report()
				rs = append(rs, r)
			}
			t.Fatalf("%s: fewer than %d more commits per worker within %v: %+v", what, n, procPatience, rs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procHold lets the workers run through a fault window of length d,
// failing the test if one exits meanwhile.
func procHold(t *testing.T, ws []*procBank, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, w := range ws {
			if why := w.gone(); why != "" {
				t.Fatalf("during a fault: %s", why)
			}
		}
		time.Sleep(min(20*time.Millisecond, time.Until(end)))
	}
}

// procBusiestFollower returns the follower with the most client sessions
// (by its "cons" listing), so that pausing it cuts clients off.
func procBusiestFollower(t *testing.T, srv *testserver.ZK) int {
	t.Helper()
	leader := srv.Leader(t)
	best, most := -1, -1
	for i := range srv.Servers {
		if i == leader {
			continue
		}
		s, _ := srv.FourLetter(i, "cons", time.Second)
		if n := strings.Count(s, "sid=0x"); n > most {
			best, most = i, n
		}
	}
	t.Logf("follower %d has %d client sessions", best, most)
	return best
}

// testTwoProcessBankLeaderKilled: two OS processes, one committing on the
// fast path and one on the general path, run the bank workload against a
// three-node ensemble while the leader is SIGKILLed and restarted and then
// a follower is paused longer than a session timeout. Afterwards no
// snapshot was torn, the total is conserved, no acknowledged commit is
// lost (each worker's counter ref is at least its acknowledged count, and
// at most that plus its transfers that failed with ErrOutcomeUnknown), and
// nothing stays locked past the lease.
func testTwoProcessBankLeaderKilled(t *testing.T, srv *testserver.ZK) {
	start := time.Now()
	// Whatever happens, leave the ensemble whole for the tests after this
	// one.
	t.Cleanup(func() {
		for i := range srv.Servers {
			if srv.PID(i) == 0 {
				srv.Restart(t, i)
			} else {
				srv.Resume(t, i)
			}
		}
	})
	root := newRoot("bank")
	ws := []*procBank{procStartBank(t, srv, root, 0, false), procStartBank(t, srv, root, 1, true)}
	acks := procWaitAcks(t, ws, []int{0, 0}, 10, "before the faults")

	leader := srv.Leader(t)
	t.Logf("%v: %v commits acknowledged; killing leader %d", time.Since(start).Round(time.Millisecond), acks, leader)
	srv.Kill(t, leader)
	procHold(t, ws, 2*time.Second) // the fault: the old leader stays down
	srv.Restart(t, leader)
	acks = procWaitAcks(t, ws, acks, 10, "after the leader's restart")

	f := procBusiestFollower(t, srv)
	t.Logf("%v: %v commits acknowledged; pausing follower %d", time.Since(start).Round(time.Millisecond), acks, f)
	srv.Pause(t, f)
	procHold(t, ws, procSession+time.Second) // the fault: longer than a session timeout
	srv.Resume(t, f)
	acks = procWaitAcks(t, ws, acks, 10, "after the follower's resumption")
	t.Logf("%v: %v commits acknowledged; stopping the workers", time.Since(start).Round(time.Millisecond), acks)

	for _, w := range ws {
		_ = w.stdin.Close()
	}
	var reps []procBankReport
	for _, w := range ws {
		select {
		case <-w.exited:
		case <-time.After(procPatience):
			t.Fatalf("bank worker %d did not stop within %v of its stdin closing", w.id, procPatience)
		}
		r, final := w.report()
		if !final || w.err != nil || w.torn != "" || w.bad != "" {
			t.Fatalf("%s; last report %+v (final: %v)", w.gone(), r, final)
		}
		if r.Reads == 0 {
			t.Fatalf("bank worker %d: no snapshot read succeeded: %+v", w.id, r)
		}
		t.Logf("bank worker %d: %+v", w.id, r)
		reps = append(reps, r)
	}

	// Check from a fresh client.
	ctx, cancel := context.WithTimeout(context.Background(), procPatience)
	defer cancel()
	b := open(t, srv, zk.Config{Root: root})
	s := openSTM(t, b, stm.WithLease(procBankLease), stm.WithSweepInterval(0))
	var rs, ctrs []*refs.Ref[int]
	var names []string
	for i := 0; i < procAccounts; i++ {
		r, err := refs.New(ctx, s, procAcct(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
		names = append(names, r.Name())
	}
	for i := range ws {
		r, err := refs.New(ctx, s, procCtr(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, r)
		names = append(names, r.Name())
	}
	// The client's server may lag a little behind the workers' last
	// commits (reads are not synced): read until every acknowledged commit
	// shows, or fail after a while. Each snapshot must conserve the total
	// and hold no more commits than may have happened.
	vals, counts := make([]int, procAccounts), make([]int, len(ws))
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := s.Dosync(ctx, func(tx *txn.Tx) error {
			for i, r := range rs {
				vals[i] = r.Get(tx)
			}
			for i, r := range ctrs {
				counts[i] = r.Get(tx)
			}
			return nil
		}); err != nil {
			t.Fatalf("reading the accounts: %v", err)
		}
		sum, neg := 0, false
		for _, v := range vals {
			sum += v
			neg = neg || v < 0
		}
		if sum != procTotal || neg {
			t.Fatalf("accounts %v sum to %d, want %d, none negative", vals, sum, procTotal)
		}
		lost := false
		for i, r := range reps {
			// Only a Dosync that returned ErrOutcomeUnknown may have
			// committed unacknowledged: every other failure is certain
			// to have applied nothing (I7).
			if counts[i] > r.Acked+r.Unknown {
				t.Fatalf("worker %d: counter %d with %d acknowledged transfers and %d of unknown outcome: a commit reported failed applied, or one applied twice",
					i, counts[i], r.Acked, r.Unknown)
			}
			lost = lost || counts[i] < r.Acked
		}
		if !lost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters %v with %+v: an acknowledged commit was lost", counts, reps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("accounts %v, counters %v", vals, counts)
	procNothingStuck(t, ctx, s, b, names, time.Now().Add(procBankLease+5*time.Second))
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// procNothingStuck polls, until deadline, for no pending record and no
// intent on the named refs, recovering what the lease lets it recover.
func procNothingStuck(t *testing.T, ctx context.Context, s *stm.STM, b *zk.Backend, names []string, deadline time.Time) {
	t.Helper()
	for {
		left, err := procLeft(ctx, s, b, names)
		if err == nil && left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still stuck well after the lease: %s (last error: %v)", left, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procLeft runs a recovery sweep and describes what is left: pending or
// committed records (committed ones are deleted once rolled forward), and
// intents on the named refs.
func procLeft(ctx context.Context, s *stm.STM, b *zk.Backend, names []string) (string, error) {
	if _, err := s.Recover(ctx); err != nil {
		return "", err
	}
	recs, err := b.ListRecords(ctx)
	if err != nil {
		return "", err
	}
	var left []string
	for _, r := range recs {
		if r.Status == backend.Pending || r.Status == backend.Committed {
			left = append(left, fmt.Sprintf("record %s %s", r.ID, r.Status))
		}
	}
	for _, n := range names {
		v, err := b.Versions(ctx, n)
		if err != nil {
			return "", err
		}
		if v.Intent != nil {
			left = append(left, fmt.Sprintf("intent of %s on %q", v.Intent.Txn, n))
		}
	}
	return strings.Join(left, "; "), nil
}

// procCrashWorker makes one transfer (acct/0 -> acct/1, 10: an Alter and
// a Commute; and +1 to a tally, which the test leaves to the recovery
// sweep) and stops at its k-th mutating backend call: before it (it
// prints "AT k <op>" and waits to be killed), or with EPOCHAL_AFTER=1
// after the call applied (nothing it sends later arrives; it prints
// "AT k <op> after" once its Dosync gave up, and waits to be killed).
func procCrashWorker() int {
	b, err := procOpen(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash worker:", err)
		return 1
	}
	w := faulty.Wrap(b)
	opts := []stm.Option{stm.WithLease(procCrashLease)}
	if os.Getenv(procEnvGeneral) == "1" {
		opts = append(opts, stm.WithGeneralPath())
	}
	ctx := context.Background()
	s, err := stm.Open(ctx, w, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash worker:", err)
		return 1
	}
	a, err1 := refs.New(ctx, s, procAcct(0), procInitial)
	c, err2 := refs.New(ctx, s, procAcct(1), procInitial)
	d, err3 := refs.New(ctx, s, procTally, 0)
	if err := errors.Join(err1, err2, err3); err != nil {
		fmt.Fprintln(os.Stderr, "crash worker:", err)
		return 1
	}
	k, _ := strconv.Atoi(os.Getenv(procEnvStep))
	after := os.Getenv(procEnvAfter) == "1"
	var op faulty.Op
	w.SetHook(func(call faulty.Call) faulty.Fault {
		if call.N != k {
			return faulty.Pass
		}
		if after {
			op = call.Op
			return faulty.CrashAfter
		}
		fmt.Printf("AT %d %s\n", k, call.Op)
		select {} // killed here
	})
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		a.Alter(tx, func(v int) int { return v - 10 })
		c.Commute(tx, func(v int) int { return v + 10 })
		d.Alter(tx, func(v int) int { return v + 1 })
		return nil
	})
	if after && op != "" {
		fmt.Printf("AT %d %s after (%v)\n", k, op, err)
		select {} // killed here
	}
	fmt.Printf("DONE %v\n", err)
	return 0
}

// testCommitterKilledAtEveryStep: a worker process is SIGKILLed at each
// mutating call of a transfer's commit: before the one Multi of the fast
// path and after it (applied, its client never learned so), and before
// each step of the general path (PutRecord, Lock, Stage, CommitRecord,
// Resolve, DeleteRecord). Afterwards this process reads a consistent
// snapshot at once, finds the dead transfer applied exactly when the kill
// came after its commit point, commits to two of its refs within a lease
// plus slack, and, once the lease is over, a recovery sweep (Recover)
// leaves no pending or committed record and no intent, on the third ref
// too, which nobody wrote meanwhile.
func testCommitterKilledAtEveryStep(t *testing.T, srv *testserver.ZK) {
	type step struct {
		k       int
		op      faulty.Op // the k-th mutating call
		after   bool
		applied bool // the kill comes after the commit point
	}
	for _, path := range []struct {
		name    string
		general bool
		steps   []step
	}{
		{"fastpath", false, []step{
			{1, faulty.OpCommitOnePhase, false, false},
			{1, faulty.OpCommitOnePhase, true, true},
		}},
		{"general", true, []step{
			{1, faulty.OpPutRecord, false, false},
			{2, faulty.OpLock, false, false},
			{3, faulty.OpStage, false, false},
			{4, faulty.OpCommitRecord, false, false},
			{5, faulty.OpResolve, false, true},
			{6, faulty.OpDeleteRecord, false, true},
		}},
	} {
		for _, st := range path.steps {
			name := fmt.Sprintf("%s/step%d", path.name, st.k)
			if st.after {
				name += "-after"
			}
			t.Run(name, func(t *testing.T) { procCrashAt(t, srv, path.general, st.k, st.op, st.after, st.applied) })
		}
	}
}

// procTally is a ref the crash worker's transfer increments and the test
// does not write: only a recovery sweep clears an intent left on it.
const procTally = "tally"

func procCrashAt(t *testing.T, srv *testserver.ZK, general bool, k int, op faulty.Op, after, applied bool) {
	root := newRoot("crash")
	g, af := "0", "0"
	if general {
		g = "1"
	}
	if after {
		af = "1"
	}
	cmd := procCommand("crash", procEnvServers+"="+srv.ConnectString(), procEnvRoot+"="+root,
		procEnvGeneral+"="+g, procEnvStep+"="+strconv.Itoa(k), procEnvAfter+"="+af)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID; a no-op error if it is gone
		go func() {
			for range lines { // let the reader reach Wait
			}
		}()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("crash worker (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	var line string
	select {
	case line = <-lines:
	case <-time.After(procPatience):
		t.Fatal("the worker never reached the step")
	}
	want := fmt.Sprintf("AT %d %s", k, op)
	if after {
		want += " after"
	}
	if line != want && !strings.HasPrefix(line, want+" ") {
		t.Fatalf("worker said %q, want it stopped at step %d, %s (after: %v)", line, k, op, after)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not exit after SIGKILL")
	}
	killed := time.Now()
	t.Logf("killed at %s", line)

	ctx, cancel := context.WithTimeout(context.Background(), procPatience)
	defer cancel()
	b := open(t, srv, zk.Config{Root: root})
	s := openSTM(t, b, stm.WithLease(procCrashLease), stm.WithSweepInterval(0))
	a, err1 := refs.New(ctx, s, procAcct(0), 0)
	c, err2 := refs.New(ctx, s, procAcct(1), 0)
	d, err3 := refs.New(ctx, s, procTally, 0)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	var va, vc, vd int
	t0 := time.Now()
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { va, vc, vd = a.Get(tx), c.Get(tx), d.Get(tx); return nil }); err != nil {
		t.Fatalf("snapshot read after the kill: %v", err)
	}
	if took := time.Since(t0); took >= procCrashLease {
		t.Errorf("the snapshot read took %v: readers must not wait for a dead committer's lease", took)
	}
	want1 := map[bool]int{true: procInitial - 10, false: procInitial}[applied]
	wantD := map[bool]int{true: 1, false: 0}[applied]
	if va != want1 || va+vc != 2*procInitial || vd != wantD {
		t.Fatalf("after a kill at step %d: a=%d c=%d tally=%d, want a=%d tally=%d (committed: %v) and the total conserved", k, va, vc, vd, want1, wantD, applied)
	}
	// Within a lease plus slack, this process commits to the same refs.
	wctx, wcancel := context.WithDeadline(ctx, killed.Add(procCrashLease+5*time.Second))
	defer wcancel()
	if err := s.Dosync(wctx, func(tx *txn.Tx) error {
		a.Alter(tx, func(v int) int { return v - 1 })
		c.Alter(tx, func(v int) int { return v + 1 })
		return nil
	}); err != nil {
		t.Fatalf("writing %v after the killed committer: %v", time.Since(killed).Round(time.Millisecond), err)
	}
	t.Logf("committed %v after the kill", time.Since(killed).Round(time.Millisecond))
	if err := s.Dosync(ctx, func(tx *txn.Tx) error { va, vc = a.Get(tx), c.Get(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if va != want1-1 || va+vc != 2*procInitial {
		t.Fatalf("after the write: a=%d c=%d, want a=%d and the total conserved", va, vc, want1-1)
	}
	// Once the dead committer's lease is over, nothing of it is left: the
	// sweep clears the tally, which nobody wrote since.
	procNothingStuck(t, ctx, s, b, []string{procAcct(0), procAcct(1), procTally}, killed.Add(procCrashLease+5*time.Second))
	if vd, err := d.Deref(ctx); err != nil || vd != wantD {
		t.Fatalf("tally = %d (%v) after recovery, want %d", vd, err, wantD)
	}
}

// procAtomCounter is the atom the atoms workers and
// testAtomSwapTwoProcesses increment.
const procAtomCounter = "atom/counter"

// procAtomWorker opens the backend and the counter atom, prints "READY",
// waits for a line on stdin (so that every process swaps at once), makes
// EPOCHAL_COUNT swaps of +1 and prints "DONE n", n being how many
// succeeded. It stops at the first error.
func procAtomWorker() int {
	b, err := procOpen(procSession)
	if err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker:", err)
		return 1
	}
	defer b.Close()
	ctx := context.Background()
	s, err := stm.Open(ctx, b)
	if err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker:", err)
		return 1
	}
	defer s.Close()
	a, err := refs.NewAtom(ctx, s, procAtomCounter, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker:", err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(procEnvCount))
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker: no go:", err)
		return 1
	}
	done := 0
	for ; done < n; done++ {
		sctx, cancel := context.WithTimeout(ctx, procPatience)
		_, err := a.Swap(sctx, func(v int) int { return v + 1 })
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "atoms worker:", err)
			break
		}
	}
	fmt.Printf("DONE %d\n", done)
	return 0
}

// testAtomSwapTwoProcesses: two OS processes and goroutines of this one
// swap one atom (+1) at the same time; the final value counts every swap.
func testAtomSwapTwoProcesses(t *testing.T, srv *testserver.ZK) {
	const (
		procs, perProc   = 2, 200
		goroutines, perG = 8, 25
		want             = procs*perProc + goroutines*perG
	)
	root := newRoot("atoms")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, zk.Config{Root: root}))
	a, err := refs.NewAtom(ctx, s, procAtomCounter, 0)
	if err != nil {
		t.Fatal(err)
	}
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines chan string
	}
	ps := make([]*proc, procs)
	for i := range ps {
		cmd := procCommand("atoms", procEnvServers+"="+srv.ConnectString(), procEnvRoot+"="+root, procEnvCount+"="+strconv.Itoa(perProc))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
		ps[i] = p
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
			close(p.lines)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill() // by PID; an error if it is gone
			_ = cmd.Wait()
		})
	}
	next := func(i int) string {
		t.Helper()
		select {
		case l, ok := <-ps[i].lines:
			if !ok {
				t.Fatalf("worker %d ended its output early", i)
			}
			return l
		case <-time.After(2 * procPatience):
			t.Fatalf("worker %d said nothing for %v", i, 2*procPatience)
		}
		return ""
	}
	for i := range ps {
		if l := next(i); l != "READY" {
			t.Fatalf("worker %d said %q, want READY", i, l)
		}
	}
	// Go: both processes and the goroutines start swapping together.
	for i, p := range ps {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range perG {
				sctx, cancel := context.WithTimeout(ctx, procPatience)
				_, err := a.Swap(sctx, func(v int) int { return v + 1 })
				cancel()
				if err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		if l := next(i); l != fmt.Sprintf("DONE %d", perProc) {
			t.Fatalf("worker %d said %q, want DONE %d", i, l, perProc)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	v, err := a.Deref(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != want {
		t.Fatalf("counter = %d after %d swaps", v, want)
	}
}

// Names the delay, promise and watch tests use.
const (
	procDelayName   = "delay/d"
	procDelayRuns   = "delay/runs" // an atom the delay's body increments first
	procPromiseName = "promise/p"
)

// procDelayBody is the body of the delay under test in every process: it
// counts its run in the runs atom and returns a value naming the run and
// the process. With block it prints "RUNNING" and waits to be killed.
func procDelayBody(runs *refs.Atom[int], block bool) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		n, err := runs.Swap(ctx, func(v int) int { return v + 1 })
		if err != nil {
			return "", err
		}
		if block {
			fmt.Println("RUNNING")
			<-ctx.Done() // the claim lost, or the process killed
			return "", ctx.Err()
		}
		return fmt.Sprintf("run %d by pid %d", n, os.Getpid()), nil
	}
}

// procDelayWorker opens the delay (with the lease EPOCHAL_LEASE), prints
// "READY", waits for a line on stdin, and Derefs it on EPOCHAL_COUNT
// goroutines at once, printing "VALUE v" (or "ERROR e") for each, then
// "DONE". With EPOCHAL_BLOCK=1 its body blocks (see procDelayBody).
func procDelayWorker() int {
	ctx := context.Background()
	lease, err := time.ParseDuration(os.Getenv(procEnvLease))
	if err != nil {
		lease = 10 * time.Second
	}
	s, b, err := procWorkerSTM(ctx, lease)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	runs, err := refs.NewAtom(ctx, s, procDelayRuns, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	d, err := refs.NewDelay(ctx, s, procDelayName, procDelayBody(runs, os.Getenv(procEnvBlock) == "1"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(procEnvCount))
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "delay worker: no go:", err)
		return 1
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, procPatience)
			defer cancel()
			v, err := d.Deref(dctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Printf("ERROR %v\n", err)
				return
			}
			fmt.Printf("VALUE %s\n", v)
		})
	}
	wg.Wait()
	fmt.Println("DONE")
	return 0
}

// procPromiseWorker opens the promise, checks that a Deref blocks while it is
// undelivered (a short Deref must end with its ctx), prints "WAITING",
// and Derefs it: "VALUE v" or "ERROR e".
func procPromiseWorker() int {
	ctx := context.Background()
	s, b, err := procWorkerSTM(ctx, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promise worker:", err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	p, err := refs.NewPromise[string](ctx, s, procPromiseName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promise worker:", err)
		return 1
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	v, err := p.Deref(sctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		fmt.Printf("ERROR an undelivered promise's Deref returned %q, %v\n", v, err)
		return 0
	}
	fmt.Println("WAITING")
	dctx, cancel := context.WithTimeout(ctx, 2*procPatience)
	defer cancel()
	if v, err = p.Deref(dctx); err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 0
	}
	fmt.Printf("VALUE %s\n", v)
	return 0
}

// procLine is a worker process whose stdout lines are read into a
// channel; it is SIGKILLed, by PID, when the test ends if it still runs.
type procLine struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func procStartLine(t *testing.T, srv *testserver.ZK, root string, kind string, env ...string) *procLine {
	t.Helper()
	cmd := procCommand(kind, append([]string{procEnvServers + "=" + srv.ConnectString(), procEnvRoot + "=" + root}, env...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &procLine{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) // an error if it is gone
		_ = cmd.Wait()
	})
	return p
}

// next returns the worker's next line, failing the test if it ends its
// output or says nothing within procPatience.
func (p *procLine) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("worker %d ended its output early", p.cmd.Process.Pid)
		}
		return l
	case <-time.After(procPatience):
		t.Fatalf("worker %d said nothing for %v", p.cmd.Process.Pid, procPatience)
	}
	return ""
}

func (p *procLine) expect(t *testing.T, want string) {
	t.Helper()
	if l := p.next(t); l != want {
		t.Fatalf("worker %d said %q, want %q", p.cmd.Process.Pid, l, want)
	}
}

func (p *procLine) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("worker %d: %v", p.cmd.Process.Pid, err)
	}
}

// testDelayTwoProcesses: two OS processes of 8 goroutines each and 8
// goroutines of this one Deref one delay at once; its body runs exactly
// once and every caller in every process gets its value.
func testDelayTwoProcesses(t *testing.T, srv *testserver.ZK) {
	const procs, goroutines = 2, 8
	root := newRoot("delay")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, zk.Config{Root: root}))
	runs, err := refs.NewAtom(ctx, s, procDelayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := refs.NewDelay(ctx, s, procDelayName, procDelayBody(runs, false))
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]*procLine, procs)
	for i := range ps {
		ps[i] = procStartLine(t, srv, root, "delay", procEnvCount+"="+strconv.Itoa(goroutines))
	}
	for _, p := range ps {
		p.expect(t, "READY")
	}
	for _, p := range ps {
		p.send(t, "go")
	}
	var values []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, procPatience)
			defer cancel()
			v, err := d.Deref(dctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				values = append(values, "ERROR "+err.Error())
				return
			}
			values = append(values, v)
		})
	}
	wg.Wait()
	for i, p := range ps {
		for range goroutines {
			l := p.next(t)
			v, ok := strings.CutPrefix(l, "VALUE ")
			if !ok {
				t.Fatalf("worker %d said %q, want a value", i, l)
			}
			values = append(values, v)
		}
		p.expect(t, "DONE")
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	if n, err := runs.Deref(ctx); err != nil || n != 1 {
		t.Fatalf("the body ran %d times (%v), want once", n, err)
	}
	if len(values) != (procs+1)*goroutines {
		t.Fatalf("%d values, want %d", len(values), (procs+1)*goroutines)
	}
	if !strings.HasPrefix(values[0], "run 1 by pid ") {
		t.Fatalf("value %q, want the first run's", values[0])
	}
	for i, v := range values {
		if v != values[0] {
			t.Fatalf("caller %d got %q, caller 0 %q", i, v, values[0])
		}
	}
	t.Logf("every caller got %q", values[0])
}

// testDelayRunnerKilled: a worker process claims a delay (lease 1 s) and
// its body blocks; the worker is SIGKILLed; a Deref here takes the claim
// over once the lease runs out, runs the body again and delivers, and
// every later Deref, in any process, returns that second run's value.
func testDelayRunnerKilled(t *testing.T, srv *testserver.ZK) {
	const lease = time.Second
	root := newRoot("delaykill")
	ctx := context.Background()
	p := procStartLine(t, srv, root, "delay", procEnvCount+"=1", procEnvBlock+"=1", procEnvLease+"="+lease.String())
	p.expect(t, "READY")
	p.send(t, "go")
	p.expect(t, "RUNNING")
	s := openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithLease(lease))
	runs, err := refs.NewAtom(ctx, s, procDelayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := runs.Deref(ctx); err != nil || n != 1 {
		t.Fatalf("runs = %d (%v) while the worker's body runs, want 1", n, err)
	}
	d, err := refs.NewDelay(ctx, s, procDelayName, procDelayBody(runs, false))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.Realized(ctx); err != nil || ok {
		t.Fatalf("realized %v (%v) while the body runs", ok, err)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	killed := time.Now()
	dctx, cancel := context.WithTimeout(ctx, procPatience)
	defer cancel()
	v, err := d.Deref(dctx)
	took := time.Since(killed)
	if err != nil {
		t.Fatalf("Deref after the runner was killed: %v (after %v)", err, took)
	}
	if slack := 3 * time.Second; took > lease+slack {
		t.Fatalf("the takeover took %v, want at most the lease %v + %v", took, lease, slack)
	}
	want := fmt.Sprintf("run 2 by pid %d", os.Getpid())
	if v != want {
		t.Fatalf("Deref = %q, want %q", v, want)
	}
	t.Logf("took over and delivered %v after the kill", took)
	// Later Derefs: this handle, a new handle on a new connection, and
	// another process; none runs the body again.
	if v, err := d.Deref(ctx); err != nil || v != want {
		t.Fatalf("Deref again = %q, %v; want %q", v, err, want)
	}
	s2 := openSTM(t, open(t, srv, zk.Config{Root: root}), stm.WithLease(lease))
	d2, err := refs.NewDelay(ctx, s2, procDelayName, func(context.Context) (string, error) {
		return "a third run", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d2.Deref(dctx); err != nil || v != want {
		t.Fatalf("Deref on a new handle = %q, %v; want %q", v, err, want)
	}
	q := procStartLine(t, srv, root, "delay", procEnvCount+"=2", procEnvLease+"="+lease.String())
	q.expect(t, "READY")
	q.send(t, "go")
	q.expect(t, "VALUE "+want)
	q.expect(t, "VALUE "+want)
	q.expect(t, "DONE")
	if err := q.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n, err := runs.Deref(ctx); err != nil || n != 2 {
		t.Fatalf("the body ran %d times (%v), want twice", n, err)
	}
}

// testPromiseWaiterAcrossServerRestart: a waiter in a worker process and
// one here are blocked in Promise.Deref while the server is restarted; a delivery afterwards, from a new
// handle, reaches both.
func testPromiseWaiterAcrossServerRestart(t *testing.T, srv *testserver.ZK) {
	root := newRoot("promise")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, zk.Config{Root: root}))
	p, err := refs.NewPromise[string](ctx, s, procPromiseName)
	if err != nil {
		t.Fatal(err)
	}
	w := procStartLine(t, srv, root, "promise")
	w.expect(t, "WAITING")
	type result struct {
		v   string
		err error
	}
	got := make(chan result, 1)
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	v, err := p.Deref(sctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an undelivered promise's Deref returned %q, %v", v, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*procPatience)
	defer cancel()
	go func() {
		v, err := p.Deref(dctx)
		got <- result{v, err}
	}()

	srv.Restart(t, 0)

	s2 := openSTM(t, open(t, srv, zk.Config{Root: root}))
	p2, err := refs.NewPromise[string](ctx, s2, procPromiseName)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p2.Realized(ctx); err != nil || ok {
		t.Fatalf("realized %v (%v) before the delivery", ok, err)
	}
	const want = "delivered after the restart"
	delivered := time.Now()
	if ok, err := p2.Deliver(ctx, want); err != nil || !ok {
		t.Fatalf("Deliver = %v, %v", ok, err)
	}
	deadline := time.After(10 * time.Second)
	select {
	case r := <-got:
		if r.err != nil || r.v != want {
			t.Errorf("the waiter here got %q, %v; want %q", r.v, r.err, want)
		}
	case <-deadline:
		t.Error("the waiter here did not return within 10 s of the delivery")
	}
	if l := w.next(t); l != "VALUE "+want {
		t.Fatalf("the waiting worker said %q, want %q", l, "VALUE "+want)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the worker's waiter returned %v after the delivery", time.Since(delivered))
}

// testWatchTwoProcesses: a watch here on an atom that two worker
// processes increment 250 times each sees strictly increasing values,
// each one more than the one before unless a gap notice says what it
// missed, ending at 500.
func testWatchTwoProcesses(t *testing.T, srv *testserver.ZK) {
	const procs, perProc, want = 2, 250, 500
	root := newRoot("watch")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, zk.Config{Root: root}))
	a, err := refs.NewAtom(ctx, s, procAtomCounter, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ws procWatchLog
	a.AddWatch("w", func(_ string, _ *refs.Atom[int], old, new int) { ws.change(old, new) },
		refs.OnGap(func(_ string, from, to clock.Point) { ws.gap(uint64(from), uint64(to)) }))
	ps := make([]*procLine, procs)
	for i := range ps {
		ps[i] = procStartLine(t, srv, root, "atoms", procEnvCount+"="+strconv.Itoa(perProc))
	}
	for _, p := range ps {
		p.expect(t, "READY")
	}
	for _, p := range ps {
		p.send(t, "go")
	}
	for i, p := range ps {
		p.expect(t, fmt.Sprintf("DONE %d", perProc))
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	ws.check(t, want)
}

// procWatchLog records what a watch is told, in order.
type procWatchLog struct {
	mu     sync.Mutex
	last   int
	calls  int
	gaps   int
	gapped bool // a gap notice came since the last change
	bad    []string
}

func (w *procWatchLog) change(old, new int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	switch {
	case old != w.last:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: old is not the last value seen, %d", old, new, w.last))
	case new <= w.last:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: not increasing", old, new))
	case new != w.last+1 && !w.gapped:
		w.bad = append(w.bad, fmt.Sprintf("change %d -> %d: missed %d changes without a gap notice", old, new, new-w.last-1))
	}
	w.last, w.gapped = new, false
}

func (w *procWatchLog) gap(from, to uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gaps++
	if from >= to {
		w.bad = append(w.bad, fmt.Sprintf("gap notice from point %d to %d", from, to))
	}
	w.gapped = true
}

// check waits (up to procPatience) for the watch to see want, then
// reports what was wrong.
func (w *procWatchLog) check(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(procPatience)
	for {
		w.mu.Lock()
		last, calls, gaps, bad := w.last, w.calls, w.gaps, slices.Clone(w.bad)
		w.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("the watch saw %d changes, %d gap notices; wrong: %s", calls, gaps, strings.Join(bad, "; "))
		}
		if last == want {
			t.Logf("the watch saw %d changes and %d gap notices, ending at %d", calls, gaps, last)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch's last value is %d after %v, want %d (%d changes, %d gap notices)", last, procPatience, want, calls, gaps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procWorkerSTM opens the backend and STM (with lease) a worker process
// uses.
func procWorkerSTM(ctx context.Context, lease time.Duration) (*stm.STM, *zk.Backend, error) {
	b, err := procOpen(procSession)
	if err != nil {
		return nil, nil, err
	}
	s, err := stm.Open(ctx, b, stm.WithLease(lease))
	if err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	return s, b, nil
}
