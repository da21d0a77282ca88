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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/backend/zk"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/testkit/proctest"
	"github.com/epochal/epochal/internal/testkit/testserver"
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
	// The shared multi-process tests (internal/testkit/proctest): atoms, delays,
	// promises and watches (RefsProcesses restarts the server); mutexes
	// and groups.
	standaloneTests = append(standaloneTests, serverTest{"RefsProcesses", func(t *testing.T, srv *testserver.ZK) {
		proctest.Refs(t, procHarness(srv))
	}})
	standaloneTests = append(standaloneTests, serverTest{"LocksProcesses", func(t *testing.T, srv *testserver.ZK) {
		proctest.Locks(t, procHarness(srv))
	}})
}

// procHarness is how the shared multi-process tests reach srv: a fresh
// root for each namespace; a lease is a ZooKeeper session timeout.
func procHarness(srv *testserver.ZK) proctest.Harness {
	return proctest.Harness{
		Env: func(t *testing.T) ([]string, func(*testing.T, time.Duration) backend.Driver) {
			root := newRoot("proc")
			return []string{procEnvServers + "=" + srv.ConnectString(), procEnvRoot + "=" + root},
				func(t *testing.T, lease time.Duration) backend.Driver {
					return open(t, srv, zk.Config{Root: root, SessionTimeout: lease})
				}
		},
		Restart: func(t *testing.T) { srv.Kill(t, 0); srv.Restart(t, 0) },
		Lease:   2 * time.Second,
		Slack:   10 * time.Second,
	}
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
	case "onephase":
		os.Exit(procOnePhaseWorker())
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
		opts = append(opts, engine.WithGeneralPath())
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
		opts = append(opts, engine.WithGeneralPath())
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
