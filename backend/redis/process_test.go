package redis_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/internal/testkit/proctest"
	"github.com/epochal/epochal/internal/testkit/testserver"
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
		opts = append(opts, engine.WithGeneralPath())
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
		opts = append(opts, engine.WithGeneralPath())
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

// procHarness is how the shared multi-process tests (internal/testkit/proctest)
// reach srv: a fresh prefix for each namespace.
func procHarness(srv *testserver.Redis) proctest.Harness {
	return proctest.Harness{
		Env: func(t *testing.T) ([]string, func(*testing.T, time.Duration) backend.Driver) {
			prefix := newPrefix("proc")
			return []string{envAddr + "=" + srv.Addr, envPrefix + "=" + prefix},
				func(t *testing.T, _ time.Duration) backend.Driver { return open(t, srv, prefix) }
		},
		Restart: func(t *testing.T) { srv.Kill(t); srv.Restart(t) }, // from the append-only file
		Lease:   time.Second,
		Slack:   10 * time.Second,
	}
}

// TestLocksProcesses: mutexes and groups across OS processes (the shared
// kit in internal/testkit/proctest): exclusion, killed and stopped holders, a
// killed group member.
func TestLocksProcesses(t *testing.T) {
	proctest.Locks(t, procHarness(testserver.StartRedis(t, testserver.RedisOptions{})))
}

// TestRefsProcesses: atoms, delays, promises and watches across OS
// processes (internal/testkit/proctest): an atom swapped from two processes, a
// delay Derefed from three, its runner SIGKILLed, a watch on an atom two
// processes swap, and a promise's waiters across a server restart.
func TestRefsProcesses(t *testing.T) {
	proctest.Refs(t, procHarness(testserver.StartRedis(t, testserver.RedisOptions{})))
}
