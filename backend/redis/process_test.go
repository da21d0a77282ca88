package redis_test

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/faulty"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/internal/proctest"
	"github.com/epochal/epochal/internal/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// The test binary runs as a worker process when EPOCHAL_WORKER is set.
const (
	envWorker   = "EPOCHAL_WORKER"
	envAddr     = "EPOCHAL_ADDR"
	envPrefix   = "EPOCHAL_PREFIX"
	envDuration = "EPOCHAL_DURATION"
	envStep     = "EPOCHAL_STEP"
	envGeneral  = "EPOCHAL_GENERAL"
	envSeed     = "EPOCHAL_SEED"
	envCount    = "EPOCHAL_COUNT" // atoms: the swaps to make; delay: the goroutines
	envLease    = "EPOCHAL_LEASE" // delay: the STM's lease
	envBlock    = "EPOCHAL_BLOCK" // delay: "1": the body blocks until killed
)

const (
	accounts = 5
	initial  = 100
)

func TestMain(m *testing.M) {
	if code, ok := proctest.Worker(func(ctx context.Context, _ time.Duration) (backend.Driver, error) {
		return redis.Open(ctx, redis.Config{Addr: os.Getenv(envAddr), Prefix: os.Getenv(envPrefix)})
	}); ok {
		os.Exit(code)
	}
	switch os.Getenv(envWorker) {
	case "":
		os.Exit(m.Run())
	case "bank":
		os.Exit(bankWorker())
	case "crash":
		os.Exit(crashWorker())
	case "atoms":
		os.Exit(atomWorker())
	case "delay":
		os.Exit(delayWorker())
	case "promise":
		os.Exit(promiseWorker())
	default:
		fmt.Fprintln(os.Stderr, "unknown worker", os.Getenv(envWorker))
		os.Exit(2)
	}
}

func acct(i int) string { return fmt.Sprintf("acct/%d", i) }

// workerSTM opens the backend and STM a worker process uses.
func workerSTM(ctx context.Context, lease time.Duration) (*stm.STM, *redis.Backend, error) {
	b, err := redis.Open(ctx, redis.Config{Addr: os.Getenv(envAddr), Prefix: os.Getenv(envPrefix)})
	if err != nil {
		return nil, nil, err
	}
	opts := []stm.Option{stm.WithLease(lease)}
	if os.Getenv(envGeneral) == "1" {
		opts = append(opts, stm.WithGeneralPath())
	}
	s, err := stm.Open(ctx, b, opts...)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return s, b, nil
}

type bankResult struct {
	Commits, Reads, Torn, Errors int
	FirstError                   string
}

// bankWorker runs transfers and snapshot reads for a while and prints a
// bankResult as JSON.
func bankWorker() int {
	ctx := context.Background()
	s, b, err := workerSTM(ctx, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	var rs []*refs.Ref[int]
	for i := 0; i < accounts; i++ {
		r, err := refs.New(ctx, s, acct(i), initial)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		rs = append(rs, r)
	}
	d, _ := time.ParseDuration(os.Getenv(envDuration))
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	rnd := rand.New(rand.NewPCG(seed, 1))
	var res bankResult
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		i, j := rnd.IntN(accounts), rnd.IntN(accounts-1)
		if j >= i {
			j++
		}
		n := rnd.IntN(10) + 1
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			if rs[i].Get(tx) < n {
				return nil
			}
			rs[i].Alter(tx, func(v int) int { return v - n })
			rs[j].Commute(tx, func(v int) int { return v + n })
			return nil
		})
		if err == nil {
			res.Commits++
		} else if res.Errors++; res.FirstError == "" {
			res.FirstError = err.Error()
		}
		err = s.Dosync(ctx, func(tx *txn.Tx) error {
			sum := 0
			for _, r := range rs {
				v := r.Get(tx)
				if v < 0 {
					res.Torn++
				}
				sum += v
			}
			if sum != accounts*initial {
				res.Torn++
			}
			return nil
		})
		if err == nil {
			res.Reads++
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// crashWorker makes one transfer (acct/0 -> acct/1, 10) and stops before
// its k-th mutating backend call: it prints "AT k" and waits to be killed.
func crashWorker() int {
	ctx := context.Background()
	b, err := redis.Open(ctx, redis.Config{Addr: os.Getenv(envAddr), Prefix: os.Getenv(envPrefix)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := faulty.Wrap(b)
	opts := []stm.Option{stm.WithLease(crashLease)}
	if os.Getenv(envGeneral) == "1" {
		opts = append(opts, stm.WithGeneralPath())
	}
	s, err := stm.Open(ctx, w, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err1 := refs.New(ctx, s, acct(0), initial)
	c, err2 := refs.New(ctx, s, acct(1), initial)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k, _ := strconv.Atoi(os.Getenv(envStep))
	w.SetHook(func(call faulty.Call) faulty.Fault {
		if call.N == k {
			fmt.Printf("AT %d %s\n", k, call.Op)
			select {} // killed here
		}
		return faulty.Pass
	})
	err = s.Dosync(ctx, func(tx *txn.Tx) error {
		a.Alter(tx, func(v int) int { return v - 10 })
		c.Commute(tx, func(v int) int { return v + 10 })
		return nil
	})
	fmt.Printf("DONE %v\n", err)
	return 0
}

const crashLease = 2 * time.Second

func worker(t *testing.T, kind string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{envWorker + "=" + kind}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestTwoProcessesBank: two OS processes run the bank workload against one
// server; totals are conserved and no snapshot is torn.
func TestTwoProcessesBank(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("bank")
	var outs [2]strings.Builder
	var cmds [2]*exec.Cmd
	for i := range cmds {
		cmds[i] = worker(t, "bank", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envDuration+"=1500ms", fmt.Sprintf("%s=%d", envSeed, i))
		cmds[i].Stdout = &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
		var r bankResult
		if err := json.Unmarshal([]byte(outs[i].String()), &r); err != nil {
			t.Fatalf("worker %d printed %q: %v", i, outs[i].String(), err)
		}
		if r.Torn > 0 || r.Errors > 0 || r.Commits == 0 || r.Reads == 0 {
			t.Fatalf("worker %d: %+v", i, r)
		}
		total += r.Commits
		t.Logf("worker %d: %+v", i, r)
	}
	s := openSTM(t, open(t, srv, prefix))
	sum := 0
	for i := 0; i < accounts; i++ {
		r, err := refs.New(context.Background(), s, acct(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := r.Deref(context.Background())
		if err != nil || v < 0 {
			t.Fatalf("%s = %d, %v", acct(i), v, err)
		}
		sum += v
	}
	if sum != accounts*initial {
		t.Fatalf("total %d after %d commits, want %d", sum, total, accounts*initial)
	}
}

// TestCommitterKilledAtEveryStep: a worker process is SIGKILLed before each
// mutating call of a transfer's commit, on the fast and the general path.
// Afterwards this process reads a consistent snapshot at once, commits to
// the same refs within one lease, and finds the dead transfer applied
// exactly when it was killed after its commit point.
func TestCommitterKilledAtEveryStep(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	for _, path := range []struct {
		name    string
		general string
		steps   int
		commit  int // the step that is the commit point
	}{{"fastpath", "0", 1, 1}, {"general", "1", 6, 4}} {
		for k := 1; k <= path.steps; k++ {
			t.Run(fmt.Sprintf("%s/step%d", path.name, k), func(t *testing.T) {
				prefix := newPrefix("crash")
				cmd := worker(t, "crash", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envGeneral+"="+path.general, fmt.Sprintf("%s=%d", envStep, k))
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := make(chan string, 1)
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						lines <- sc.Text()
					}
					close(lines)
				}()
				var line string
				select {
				case line = <-lines:
				case <-time.After(30 * time.Second):
					_ = cmd.Process.Kill()
					t.Fatal("the worker never reached the step")
				}
				if !strings.HasPrefix(line, fmt.Sprintf("AT %d ", k)) {
					_ = cmd.Process.Kill()
					t.Fatalf("worker said %q, want it stopped at step %d", line, k)
				}
				if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				t.Logf("killed at %s", line)

				ctx := context.Background()
				s := openSTM(t, open(t, srv, prefix), stm.WithLease(crashLease))
				a, _ := refs.New(ctx, s, acct(0), 0)
				c, _ := refs.New(ctx, s, acct(1), 0)
				var va, vc int
				if err := s.Dosync(ctx, func(tx *txn.Tx) error { va, vc = a.Get(tx), c.Get(tx); return nil }); err != nil {
					t.Fatalf("snapshot read after the kill: %v", err)
				}
				applied := k > path.commit
				if want := map[bool]int{true: 90, false: 100}[applied]; va != want || va+vc != 2*initial {
					t.Fatalf("after a kill at step %d: a=%d c=%d, want a=%d (committed: %v) and the total conserved", k, va, vc, want, applied)
				}
				// Within one lease (plus slack for the backoff), this
				// process commits to the same refs.
				wctx, cancel := context.WithTimeout(ctx, 3*crashLease)
				defer cancel()
				if err := s.Dosync(wctx, func(tx *txn.Tx) error {
					a.Alter(tx, func(v int) int { return v - 1 })
					c.Alter(tx, func(v int) int { return v + 1 })
					return nil
				}); err != nil {
					t.Fatalf("writing after the killed committer: %v", err)
				}
				if v, _ := a.Deref(ctx); v != va-1 {
					t.Fatalf("a = %d, want %d", v, va-1)
				}
			})
		}
	}
}

// runLoad runs transfers and snapshot reads on g goroutines until stop is
// closed, counting acknowledged commits, failures and torn reads. A counter
// ref is commuted by every transfer, so acknowledged commits can be checked
// against it.
type load struct {
	acked, failed, torn atomic.Int64
	wg                  sync.WaitGroup
}

func runLoad(ctx context.Context, s *stm.STM, rs []*refs.Ref[int], ctr *refs.Ref[int], g int, stop <-chan struct{}) *load {
	l := &load{}
	for w := 0; w < g; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i, j := rnd.IntN(len(rs)), rnd.IntN(len(rs)-1)
				if j >= i {
					j++
				}
				dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := s.Dosync(dctx, func(tx *txn.Tx) error {
					rs[i].Alter(tx, func(v int) int { return v - 1 })
					rs[j].Alter(tx, func(v int) int { return v + 1 })
					ctr.Commute(tx, func(v int) int { return v + 1 })
					return nil
				})
				cancel()
				if err == nil {
					l.acked.Add(1)
				} else {
					l.failed.Add(1)
				}
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_ = s.Dosync(rctx, func(tx *txn.Tx) error {
					sum := 0
					for _, r := range rs {
						sum += r.Get(tx)
					}
					if sum != 0 {
						l.torn.Add(1)
					}
					return nil
				})
				cancel()
			}
		}()
	}
	return l
}

// faultLoad runs a workload, applies fault mid-way, and checks afterwards:
// no torn snapshot, the total conserved, and no acknowledged commit lost.
func faultLoad(t *testing.T, srv *testserver.Redis, fault func()) {
	ctx := context.Background()
	s := openSTM(t, open(t, srv, newPrefix("fault")), stm.WithLease(time.Second))
	var rs []*refs.Ref[int]
	for i := 0; i < 4; i++ {
		r, err := refs.New(ctx, s, acct(i), 0)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	ctr, err := refs.New(ctx, s, "commits", 0)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	l := runLoad(ctx, s, rs, ctr, 3, stop)
	waitFor(t, func() bool { return l.acked.Load() >= 20 }, "commits before the fault")
	before := l.acked.Load()
	fault()
	waitFor(t, func() bool { return l.acked.Load() >= before+20 }, "commits after the fault")
	close(stop)
	l.wg.Wait()
	if n := l.torn.Load(); n > 0 {
		t.Fatalf("%d torn snapshots", n)
	}
	sum := 0
	for _, r := range rs {
		v, err := r.Deref(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	if sum != 0 {
		t.Fatalf("total %d, want 0", sum)
	}
	n, err := ctr.Deref(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked, failed := l.acked.Load(), l.failed.Load()
	// A failed Dosync may have committed (its outcome unknown), so the
	// counter lies between the acknowledged commits and all attempts.
	if int64(n) < acked || int64(n) > acked+failed {
		t.Fatalf("commit counter %d with %d acknowledged and %d failed transfers: an acknowledged commit was lost or one applied twice", n, acked, failed)
	}
	t.Logf("%d acknowledged, %d failed, counter %d", acked, failed, n)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerRestartMidWorkload: the server is SIGKILLed and restarted from
// its append-only file while clients commit; no acknowledged commit is
// lost, and the clients reconnect and go on.
func TestServerRestartMidWorkload(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	faultLoad(t, srv, func() {
		srv.Kill(t)
		srv.Restart(t)
	})
}

// TestServerPausedLongerThanALease: the server is stopped (SIGSTOP) for
// longer than the lease while clients commit; nothing breaks.
func TestServerPausedLongerThanALease(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	faultLoad(t, srv, func() {
		srv.Pause(t)
		time.Sleep(1500 * time.Millisecond) // the fault's length: longer than the 1 s lease
		srv.Resume(t)
	})
}

// atomCounter is the atom the atoms workers and TestAtomSwapTwoProcesses
// increment.
const atomCounter = "atom/counter"

// atomWorker opens the backend and the counter atom, prints "READY", waits
// for a line on stdin (so that every process swaps at once), makes
// EPOCHAL_COUNT swaps of +1 and prints "DONE n", n being how many
// succeeded. It stops at the first error.
func atomWorker() int {
	ctx := context.Background()
	s, b, err := workerSTM(ctx, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker:", err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	a, err := refs.NewAtom(ctx, s, atomCounter, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker:", err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "atoms worker: no go:", err)
		return 1
	}
	done := 0
	for ; done < n; done++ {
		if _, err := a.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
			fmt.Fprintln(os.Stderr, "atoms worker:", err)
			break
		}
	}
	fmt.Printf("DONE %d\n", done)
	return 0
}

// TestAtomSwapTwoProcesses: two OS processes and goroutines of this one
// swap one atom (+1) at the same time; the final value counts every swap.
func TestAtomSwapTwoProcesses(t *testing.T) {
	const (
		procs, perProc       = 2, 200
		goroutines, perG     = 8, 25
		want             int = procs*perProc + goroutines*perG
	)
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("atoms")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, prefix))
	a, err := refs.NewAtom(ctx, s, atomCounter, 0)
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
		cmd := worker(t, "atoms", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envCount+"="+strconv.Itoa(perProc))
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
		case <-time.After(60 * time.Second):
			t.Fatalf("worker %d said nothing for a minute", i)
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
				if _, err := a.Swap(ctx, func(v int) int { return v + 1 }); err != nil {
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
		l := next(i)
		if l != fmt.Sprintf("DONE %d", perProc) {
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
	delayName    = "delay/d"
	delayRuns    = "delay/runs" // an atom the delay's body increments first
	promiseName  = "promise/p"
	procPatience = 30 * time.Second
)

// delayBody is the body of the delay under test in every process: it
// counts its run in the runs atom and returns a value naming the run and
// the process. With block it prints "RUNNING" and waits to be killed.
func delayBody(runs *refs.Atom[int], block bool) func(context.Context) (string, error) {
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

// delayWorker opens the delay (with the lease EPOCHAL_LEASE), prints
// "READY", waits for a line on stdin, and Derefs it on EPOCHAL_COUNT
// goroutines at once, printing "VALUE v" (or "ERROR e") for each, then
// "DONE". With EPOCHAL_BLOCK=1 its body blocks (see delayBody).
func delayWorker() int {
	ctx := context.Background()
	lease, err := time.ParseDuration(os.Getenv(envLease))
	if err != nil {
		lease = 10 * time.Second
	}
	s, b, err := workerSTM(ctx, lease)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	runs, err := refs.NewAtom(ctx, s, delayRuns, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	d, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, os.Getenv(envBlock) == "1"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay worker:", err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
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

// promiseWorker opens the promise, checks that a Deref blocks while it is
// undelivered (a short Deref must end with its ctx), prints "WAITING",
// and Derefs it: "VALUE v" or "ERROR e".
func promiseWorker() int {
	ctx := context.Background()
	s, b, err := workerSTM(ctx, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promise worker:", err)
		return 1
	}
	defer b.Close()
	defer s.Close()
	p, err := refs.NewPromise[string](ctx, s, promiseName)
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

// lineProc is a worker process whose stdout lines are read into a
// channel; it is SIGKILLed, by PID, when the test ends if it still runs.
type lineProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startLineProc(t *testing.T, kind string, env ...string) *lineProc {
	t.Helper()
	cmd := worker(t, kind, env...)
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
	p := &lineProc{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
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
func (p *lineProc) next(t *testing.T) string {
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

func (p *lineProc) expect(t *testing.T, want string) {
	t.Helper()
	if l := p.next(t); l != want {
		t.Fatalf("worker %d said %q, want %q", p.cmd.Process.Pid, l, want)
	}
}

func (p *lineProc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("worker %d: %v", p.cmd.Process.Pid, err)
	}
}

// TestDelayTwoProcesses: two OS processes of 8 goroutines each and 8
// goroutines of this one Deref one delay at once; its body runs exactly
// once and every caller in every process gets its value.
func TestDelayTwoProcesses(t *testing.T) {
	const procs, goroutines = 2, 8
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("delay")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, prefix))
	runs, err := refs.NewAtom(ctx, s, delayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, false))
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]*lineProc, procs)
	for i := range ps {
		ps[i] = startLineProc(t, "delay", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envCount+"="+strconv.Itoa(goroutines))
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

// TestDelayRunnerKilled: a worker process claims a delay (lease 1 s) and
// its body blocks; the worker is SIGKILLed; a Deref here takes the claim
// over once the lease runs out, runs the body again and delivers, and
// every later Deref, in any process, returns that second run's value.
func TestDelayRunnerKilled(t *testing.T) {
	const lease = time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("delaykill")
	ctx := context.Background()
	p := startLineProc(t, "delay", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envCount+"=1", envBlock+"=1", envLease+"="+lease.String())
	p.expect(t, "READY")
	p.send(t, "go")
	p.expect(t, "RUNNING")
	s := openSTM(t, open(t, srv, prefix), stm.WithLease(lease))
	runs, err := refs.NewAtom(ctx, s, delayRuns, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := runs.Deref(ctx); err != nil || n != 1 {
		t.Fatalf("runs = %d (%v) while the worker's body runs, want 1", n, err)
	}
	d, err := refs.NewDelay(ctx, s, delayName, delayBody(runs, false))
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
	s2 := openSTM(t, open(t, srv, prefix), stm.WithLease(lease))
	d2, err := refs.NewDelay(ctx, s2, delayName, func(context.Context) (string, error) {
		return "a third run", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d2.Deref(dctx); err != nil || v != want {
		t.Fatalf("Deref on a new handle = %q, %v; want %q", v, err, want)
	}
	q := startLineProc(t, "delay", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envCount+"=2", envLease+"="+lease.String())
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

// TestPromiseWaiterAcrossServerRestart: a waiter in a worker process and
// one here are blocked in Promise.Deref while the server is killed and
// restarted from its append-only file; a delivery afterwards, from a new
// handle, reaches both.
func TestPromiseWaiterAcrossServerRestart(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("promise")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, prefix))
	p, err := refs.NewPromise[string](ctx, s, promiseName)
	if err != nil {
		t.Fatal(err)
	}
	w := startLineProc(t, "promise", envAddr+"="+srv.Addr, envPrefix+"="+prefix)
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

	srv.Kill(t)
	srv.Restart(t)

	s2 := openSTM(t, open(t, srv, prefix))
	p2, err := refs.NewPromise[string](ctx, s2, promiseName)
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

// TestWatchTwoProcesses: a watch here on an atom that two worker
// processes increment 250 times each sees strictly increasing values,
// each one more than the one before unless a gap notice says what it
// missed, ending at 500.
func TestWatchTwoProcesses(t *testing.T) {
	const procs, perProc, want = 2, 250, 500
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("watch")
	ctx := context.Background()
	s := openSTM(t, open(t, srv, prefix))
	a, err := refs.NewAtom(ctx, s, atomCounter, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ws watchLog
	a.AddWatch("w", func(_ string, _ *refs.Atom[int], old, new int) { ws.change(old, new) },
		refs.OnGap(func(_ string, from, to clock.Point) { ws.gap(uint64(from), uint64(to)) }))
	ps := make([]*lineProc, procs)
	for i := range ps {
		ps[i] = startLineProc(t, "atoms", envAddr+"="+srv.Addr, envPrefix+"="+prefix, envCount+"="+strconv.Itoa(perProc))
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

// watchLog records what a watch is told, in order.
type watchLog struct {
	mu     sync.Mutex
	last   int
	calls  int
	gaps   int
	gapped bool // a gap notice came since the last change
	bad    []string
}

func (w *watchLog) change(old, new int) {
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

func (w *watchLog) gap(from, to uint64) {
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
func (w *watchLog) check(t *testing.T, want int) {
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

// TestLocksProcesses: mutexes and groups across OS processes (the shared
// kit in internal/proctest): exclusion, killed and stopped holders, a
// killed group member.
func TestLocksProcesses(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	proctest.Locks(t, proctest.Harness{
		Env: func(t *testing.T, _ time.Duration) ([]string, backend.Driver) {
			prefix := newPrefix("proc")
			return []string{envAddr + "=" + srv.Addr, envPrefix + "=" + prefix}, open(t, srv, prefix)
		},
		Lease: time.Second,
		Slack: 10 * time.Second,
	})
}
