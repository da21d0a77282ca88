package jepsenlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/epochal/epochal/clock"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// watchWorkload: counters changed only by Alter(+1) ("incr",
// CounterValue K, Delta 1; V the value committed), so under snapshot
// isolation the committed versions of counter k are exactly 1..N. Every
// client process also watches every counter through watchersPerKey
// handles of its own (refs.Ref.AddWatch with refs.OnGap), and records each
// delivery ("deliver", WatchValue K, Old, New) and each gap notice ("gap",
// WatchValue K, From, To: points) as an operation of a watcher process of
// its own. Every 1 to 2 s a watch callback stalls for 1 to 4 s, so the
// watcher falls behind what the backend keeps of the history (its newest
// version, MaxHistory 0, or more while it is watched) and depends on the
// change feed, which faults break or slow (a Redis Pub/Sub connection
// reset, or crawling while the commands go through), or must announce a
// gap. At the end, once every process has stopped writing, each watcher
// waits for the value it then reads ("watch-end", WatchValue K, V the
// value read, Last the last value delivered). Checkers: watch
// (WatchChecker) and watch-counter (the final reads against the
// acknowledged increments).
type watchWorkload struct {
	worker int
	keys   int
	rs     []*refs.Ref[int] // the clients' handles

	mu       sync.Mutex
	watchers []*watchState
	tried    int        // watchers Start began (a failed one's process number is not used again)
	stall    *rand.Rand // guarded by mu
}

// watchState is one watcher: a handle of its own on counter k.
type watchState struct {
	k    int
	proc int
	r    *refs.Ref[int]

	mu        sync.Mutex
	last      int  // the last value delivered
	delivered bool // anything delivered yet
	changed   chan struct{}
	nextStall time.Time // guarded by the workload's mu
}

const (
	watchPrefix = "w/"
	watchKeys   = 1
	// watchersPerKey is how many watchers (handles) a process has on
	// each counter.
	watchersPerKey = 6
	// A watcher's callback stalls for watchStallMin to watchStallMax,
	// every watchEveryMin to twice that.
	watchStallMin = time.Second
	watchStallMax = 4 * time.Second
	watchEveryMin = time.Second
	// watchSettle bounds how long a watcher may take, once every
	// process stopped writing, to deliver the value it reads then: the
	// feed wait, a poll, and a dead process's committed intents rolled
	// forward by a sweeper after its lease, with room to spare.
	watchSettle = 20 * time.Second
	// watchFeedWait is engine.WatchFeedWait in a watch workload's client
	// processes: a watcher behind a trimmed history waits this long (not
	// the default 2 s) for its feed to catch up before it gives up and
	// announces a gap, so watchers take that path often, and a change
	// feed that is merely slow (messages in flight, a delayed
	// connection) becomes an incomplete one.
	watchFeedWait = 5 * time.Millisecond
)

func newWatchWorkload(worker int) *watchWorkload {
	return &watchWorkload{worker: worker, keys: watchKeys, stall: rand.New(rand.NewPCG(uint64(worker), 99))}
}

func (w *watchWorkload) Name() string { return "watch" }

// Linearizable: the watchers' last read (Settle) and the final reads must
// see every acknowledged commit.
func (w *watchWorkload) Linearizable() bool { return true }

func (w *watchWorkload) ref(ctx context.Context, s *stm.STM, k int) (*refs.Ref[int], error) {
	return refs.New(ctx, s, watchPrefix+strconv.Itoa(k), 0, refs.WithMinHistory(0), refs.WithMaxHistory(0))
}

func (w *watchWorkload) Setup(ctx context.Context, s *stm.STM) error {
	w.rs = make([]*refs.Ref[int], w.keys)
	for k := range w.rs {
		r, err := w.ref(ctx, s, k)
		if err != nil {
			return err
		}
		w.rs[k] = r
	}
	return nil
}

func (w *watchWorkload) Next(r *rand.Rand) (string, any) {
	return "incr", check.CounterValue{K: r.IntN(w.keys), Delta: 1}
}

func (w *watchWorkload) ReadOnly(f string) bool { return f == "read" }

func (w *watchWorkload) Apply(ctx context.Context, s *stm.STM, f string, v any) (any, error) {
	in := v.(check.CounterValue)
	out := in
	err := s.Dosync(ctx, func(tx *txn.Tx) error {
		if f == "read" {
			out.V = w.rs[in.K].Get(tx)
			return nil
		}
		out.V = w.rs[in.K].Alter(tx, func(x int) int { return x + 1 })
		return nil
	})
	return out, err
}

func (w *watchWorkload) Final(context.Context, *stm.STM) ([]invocation, error) {
	var out []invocation
	for k := range w.keys {
		out = append(out, invocation{F: "read", Value: check.CounterValue{K: k}})
	}
	return out, nil
}

func (w *watchWorkload) Checkers() []check.Checker {
	return []check.Checker{check.NewWatchChecker(), &check.CounterChecker{Label: "watch-counter", Add: "incr", Read: "read"}}
}

// stallFor says how long a callback of ws stalls now: 0 until its next
// stall is due; then between watchStallMin and watchStallMax, and the
// next one is due 1 to 2 watchEveryMin after this one ends.
func (w *watchWorkload) stallFor(ws *watchState) time.Duration {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws.nextStall.IsZero() {
		ws.nextStall = now.Add(watchEveryMin + time.Duration(w.stall.Int64N(int64(watchEveryMin))))
	}
	if now.Before(ws.nextStall) {
		return 0
	}
	d := watchStallMin + time.Duration(w.stall.Int64N(int64(watchStallMax-watchStallMin)))
	ws.nextStall = now.Add(d + watchEveryMin + time.Duration(w.stall.Int64N(int64(watchEveryMin))))
	return d
}

// record records one event of a watcher as an operation that completes
// at once. An error writing it is the recorder's (Err, Failed): the
// process stops and fails with it.
func record(rec *recorder, proc int, f string, v check.WatchValue) {
	now := rec.Now()
	if rec.Record(check.Op{Type: check.Invoke, Process: proc, F: f, Time: now}.WithValue(v)) == nil {
		_ = rec.Record(check.Op{Type: check.OK, Process: proc, F: f, Time: now}.WithValue(v))
	}
}

// Start implements settler: watchersPerKey watchers on every counter,
// each through a handle of its own, recording as processes base, base+1,
// ...
func (w *watchWorkload) Start(ctx context.Context, s *stm.STM, rec *recorder, base int) error {
	// Called again after a failure (a fault), it goes on from the first
	// watcher not started.
	w.mu.Lock()
	started := len(w.watchers)
	w.mu.Unlock()
	for i := started; i < w.keys*watchersPerKey; i++ {
		k := i % w.keys
		r, err := w.ref(ctx, s, k)
		if err != nil {
			return err
		}
		w.mu.Lock()
		proc := base + w.tried
		w.tried++
		w.mu.Unlock()
		ws := &watchState{k: k, proc: proc, r: r, changed: make(chan struct{}, 1)}
		r.AddWatch("jepsen", func(_ string, _ *refs.Ref[int], old, new int) {
			record(rec, ws.proc, "deliver", check.WatchValue{K: k, Old: old, New: new})
			ws.mu.Lock()
			ws.last, ws.delivered = new, true
			ws.mu.Unlock()
			select {
			case ws.changed <- struct{}{}:
			default:
			}
			if d := w.stallFor(ws); d > 0 {
				// A slow callback: the watcher falls behind the
				// history the backend keeps.
				time.Sleep(d)
			}
		}, refs.OnGap(func(_ string, from, to clock.Point) {
			record(rec, ws.proc, "gap", check.WatchValue{K: k, From: uint64(from), To: uint64(to)})
		}))
		// What the watcher started from is at most this (it read the
		// ref before AddWatch returned).
		v, err := r.Deref(ctx)
		if err != nil {
			r.RemoveWatch("jepsen")
			return err
		}
		record(rec, ws.proc, "watch-start", check.WatchValue{K: k, V: v})
		w.mu.Lock()
		w.watchers = append(w.watchers, ws)
		w.mu.Unlock()
	}
	return nil
}

// Settle implements settler: every process has stopped writing; each
// watcher reads its counter (linearizably), waits until it has delivered
// that value (up to watchSettle), and records how far it got.
func (w *watchWorkload) Settle(ctx context.Context, s *stm.STM, rec *recorder) error {
	w.mu.Lock()
	ws := append([]*watchState(nil), w.watchers...)
	w.mu.Unlock()
	deadline := time.Now().Add(watchSettle)
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, st := range ws {
		wg.Go(func() {
			defer st.r.RemoveWatch("jepsen")
			var v int
			for {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				v, err = st.r.Deref(rctx)
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("jepsen: watcher of %s%d: read: %w", watchPrefix, st.k, err)
					return
				}
			}
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			for {
				st.mu.Lock()
				last, delivered := st.last, st.delivered
				st.mu.Unlock()
				if delivered && last >= v {
					break
				}
				select {
				case <-st.changed:
					continue
				case <-t.C:
				case <-ctx.Done():
				}
				break
			}
			st.mu.Lock()
			end := check.WatchValue{K: st.k, V: v, Last: st.last, Delivered: st.delivered}
			st.mu.Unlock()
			record(rec, st.proc, "watch-end", end)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
