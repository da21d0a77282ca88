package redis_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/redis"
	"github.com/epochal/epochal/internal/testkit/testserver"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// logCapture collects what the process logs with log/slog.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// captureLog sends slog's default logger to a buffer for the test.
func captureLog(t *testing.T) *logCapture {
	l := &logCapture{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(l, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return l
}

// bank is a live process's view of a small bank: its STM and accounts.
type bank struct {
	b    *redis.Backend
	s    *stm.STM
	accs []*refs.Ref[int]
}

const bankAccounts, bankInitial = 4, 250

func openBank(t *testing.T, srv *testserver.Redis, prefix string) *bank {
	t.Helper()
	b := open(t, srv, prefix)
	s := openSTM(t, b)
	k := &bank{b: b, s: s}
	for i := 0; i < bankAccounts; i++ {
		r, err := refs.New(context.Background(), s, "acct/"+string(rune('a'+i)), bankInitial)
		if err != nil {
			t.Fatal(err)
		}
		k.accs = append(k.accs, r)
	}
	return k
}

// transfer moves n from account i to account i+1 (mod the accounts).
func (k *bank) transfer(ctx context.Context, i, n int) error {
	return k.s.Dosync(ctx, func(tx *txn.Tx) error {
		a, b := k.accs[i%len(k.accs)], k.accs[(i+1)%len(k.accs)]
		a.Alter(tx, func(v int) int { return v - n })
		b.Alter(tx, func(v int) int { return v + n })
		return nil
	})
}

// balances reads every account through a fresh backend and STM.
func balances(t *testing.T, srv *testserver.Redis, prefix string) []int {
	t.Helper()
	k := openBank(t, srv, prefix)
	var out []int
	if err := k.s.Dosync(context.Background(), func(tx *txn.Tx) error {
		out = out[:0]
		for _, a := range k.accs {
			out = append(out, a.Get(tx))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDataLossDetected: when the server loses this prefix's data under a
// live process (a FLUSHALL, a FLUSHDB, a restart without persistence, a
// restart from an older AOF) and another process recreates the refs, the
// live process must not go on committing on top of what it no longer
// matches (the bank total drifted, 1000 to 1148 and to 554, before this was
// detected): its next Dosync fails with stm.ErrDataLost, writes nothing,
// logs why, and the STM refuses every later call until reopened. A process
// that opens afresh works on the data as it now is.
func TestDataLossDetected(t *testing.T) {
	cases := []struct {
		name string
		opts testserver.RedisOptions
		// lose makes the server lose data under the live process; it may
		// recreate what it lost at its own point in time.
		lose func(t *testing.T, srv *testserver.Redis, prefix string, live *bank)
		// total is the bank total a fresh process then sees.
		total int
	}{
		{"FLUSHALL", testserver.RedisOptions{}, func(t *testing.T, srv *testserver.Redis, prefix string, live *bank) {
			redisDo(t, srv, "FLUSHALL")
			balances(t, srv, prefix) // recreates the refs, at their initial values
		}, bankAccounts * bankInitial},
		{"FLUSHDB", testserver.RedisOptions{}, func(t *testing.T, srv *testserver.Redis, prefix string, live *bank) {
			redisDo(t, srv, "FLUSHDB")
			balances(t, srv, prefix)
		}, bankAccounts * bankInitial},
		{"RestartWithoutPersistence", testserver.RedisOptions{Args: []string{"appendonly no", `save ""`}}, func(t *testing.T, srv *testserver.Redis, prefix string, live *bank) {
			srv.Kill(t)
			srv.Restart(t)
			balances(t, srv, prefix)
		}, bankAccounts * bankInitial},
		{"RestartFromOlderAOF", testserver.RedisOptions{}, func(t *testing.T, srv *testserver.Redis, prefix string, live *bank) {
			// A backup taken now, while the live process goes on committing
			// (the clock moves past the backup), is restored under it.
			srv.Stop(t)
			backup := copyDir(t, filepath.Join(srv.Dir, "appendonlydir"))
			srv.Restart(t)
			for i := 0; i < 5; i++ {
				if err := live.transfer(context.Background(), i, 10); err != nil {
					t.Fatal(err)
				}
			}
			srv.Stop(t)
			if err := os.RemoveAll(filepath.Join(srv.Dir, "appendonlydir")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(backup, filepath.Join(srv.Dir, "appendonlydir")); err != nil {
				t.Fatal(err)
			}
			srv.Restart(t)
		}, bankAccounts * bankInitial},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			srv := testserver.StartRedis(t, tc.opts)
			prefix := newPrefix("lost")
			live := openBank(t, srv, prefix)
			ctx := context.Background()
			for i := 0; i < 10; i++ {
				if err := live.transfer(ctx, i, 7); err != nil {
					t.Fatal(err)
				}
			}
			tc.lose(t, srv, prefix, live)
			before := balances(t, srv, prefix)
			err := live.transfer(ctx, 0, 100)
			if !errors.Is(err, stm.ErrDataLost) || !errors.Is(err, backend.ErrDataLost) {
				t.Fatalf("a Dosync after the server lost the data: %v, want stm.ErrDataLost", err)
			}
			if after := balances(t, srv, prefix); !slicesEqual(before, after) {
				t.Fatalf("the Dosync that failed wrote: balances %v, then %v", before, after)
			}
			total := 0
			for _, v := range before {
				total += v
			}
			if total != tc.total {
				t.Fatalf("a fresh process sees a total of %d (%v), want %d", total, before, tc.total)
			}
			if !strings.Contains(logs.String(), "lost") {
				t.Fatalf("nothing logged about the lost data; the log:\n%s", logs)
			}
			// The STM refuses to go on, for transactions, atoms and refs.
			if err := live.transfer(ctx, 1, 1); !errors.Is(err, stm.ErrDataLost) {
				t.Fatalf("a second Dosync: %v, want stm.ErrDataLost", err)
			}
			if err := live.s.Err(); !errors.Is(err, stm.ErrDataLost) {
				t.Fatalf("STM.Err() = %v, want stm.ErrDataLost", err)
			}
			if _, err := refs.NewAtom(ctx, live.s, "hits", 0); !errors.Is(err, stm.ErrDataLost) {
				t.Fatalf("NewAtom on the stopped STM: %v, want stm.ErrDataLost", err)
			}
			if _, err := live.accs[0].Deref(ctx); !errors.Is(err, stm.ErrDataLost) {
				t.Fatalf("Deref on the stopped STM: %v, want stm.ErrDataLost", err)
			}
			if _, err := live.b.ReadPoint(ctx); !errors.Is(err, backend.ErrDataLost) {
				t.Fatalf("the backend's ReadPoint: %v, want backend.ErrDataLost", err)
			}
			// Reopened, it works on the data as it is now.
			fresh := openBank(t, srv, prefix)
			if err := fresh.transfer(ctx, 2, 5); err != nil {
				t.Fatalf("a reopened backend: %v", err)
			}
		})
	}
}

// TestNoDataLossFalseAlarm: a restart from an AOF written with appendfsync
// always loses nothing, and concurrent clients of one backend reading and
// committing never take each other's newer points for a clock that went
// back.
func TestNoDataLossFalseAlarm(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	prefix := newPrefix("nolost")
	live := openBank(t, srv, prefix)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				if err := live.transfer(ctx, g+i, 1); err != nil {
					errs <- err
				}
				if _, err := live.accs[g%bankAccounts].Deref(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent clients: %v", err)
	}
	srv.Kill(t)
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := live.transfer(ctx, 0, 1)
		if err == nil {
			break
		}
		if errors.Is(err, stm.ErrDataLost) || time.Now().After(deadline) {
			t.Fatalf("a transfer after a restart that lost nothing: %v", err)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// redisDo runs one command on the server.
func redisDo(t *testing.T, srv *testserver.Redis, args ...any) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := c.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// copyDir copies a directory next to it and returns the copy's path.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := dir + ".backup"
	if out, err := exec.Command("cp", "-a", dir, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", dir, to, err, out)
	}
	return to
}
