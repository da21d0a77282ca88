package jepsenlite

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epochal/epochal/stm"

	"github.com/epochal/epochal/jepsen-lite/check"
)

// recorder appends a process's events to its history file, one JSON line
// each, flushed at once: a client killed with SIGKILL leaves every event
// it recorded, and an invoke without its completion reads as info.
//
// A write that fails is fatal: the history is no longer whole, so no
// later event is written, Err returns the error and Failed is closed (the
// process stops its clients and exits with it, and the run errors).
type recorder struct {
	mu     sync.Mutex
	w      *bufio.Writer
	start  int64 // the run's start on monoNow's clock, shared by every process
	err    error // the first failed write
	failed chan struct{}

	OK, Fail, Info atomic.Int64
}

// newRecorder writes to w; times are measured from start (monoNow's
// clock).
func newRecorder(w io.Writer, start int64) *recorder {
	return &recorder{w: bufio.NewWriter(w), start: start, failed: make(chan struct{})}
}

// Err is the first error writing the history (nil if none).
func (r *recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Failed is closed once a write of the history has failed.
func (r *recorder) Failed() <-chan struct{} { return r.failed }

// Now is the time since the run began, in nanoseconds.
func (r *recorder) Now() int64 { return monoNow() - r.start }

// Record writes one event.
func (r *recorder) Record(o check.Op) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	_, _ = r.w.Write(b) // bufio's errors stick: Flush returns them
	_ = r.w.WriteByte('\n')
	if err := r.w.Flush(); err != nil {
		r.err = fmt.Errorf("jepsen: write history: %w", err)
		close(r.failed)
		return r.err
	}
	switch o.Type {
	case check.OK:
		r.OK.Add(1)
	case check.Fail:
		r.Fail.Add(1)
	case check.Info:
		r.Info.Add(1)
	}
	return nil
}

// clientConfig configures runClients.
type clientConfig struct {
	Clients int
	// ProcessBase numbers the clients' processes ProcessBase,
	// ProcessBase+1e6, ... A client whose operation ended in info moves
	// on to its next process number (+1).
	ProcessBase int
	Seed        uint64
	OpTimeout   time.Duration // default 5s
	// Ops, if > 0, ends each client after that many operations.
	Ops int
	// Rate, if > 0, paces each client to at most Rate operations per
	// second (jittered), so a run's history stays checkable.
	Rate float64
}

// runClients runs cfg.Clients clients of w on s until ctx ends (or each
// ran cfg.Ops operations), recording every operation.
func runClients(ctx context.Context, s *stm.STM, w workload, rec *recorder, cfg clientConfig) {
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 5 * time.Second
	}
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			if cl, ok := w.(clientLoop); ok {
				cl.Loop(ctx, s, rec, c, r, cfg)
				return
			}
			proc := cfg.ProcessBase + c*1_000_000
			next := time.Now()
			for n := 0; ctx.Err() == nil && (cfg.Ops <= 0 || n < cfg.Ops); n++ {
				if !pace(ctx, r, cfg.Rate, &next) {
					return
				}
				f, v := w.Next(r)
				if invoke1(ctx, s, w, rec, proc, f, v, cfg.OpTimeout) == check.Info {
					proc++
				}
			}
		})
	}
	wg.Wait()
}

// invoke1 runs one operation and records its invoke and completion. The
// operation runs under its own timeout, not ctx: ending the run must not
// turn operations in flight into infos.
func invoke1(_ context.Context, s *stm.STM, w workload, rec *recorder, proc int, f string, v any, timeout time.Duration) check.Type {
	return invoke(s, w, rec, proc, f, v, timeout, false)
}

// invoke is invoke1; final marks both events as a final read (Op.Final).
func invoke(s *stm.STM, w workload, rec *recorder, proc int, f string, v any, timeout time.Duration, final bool) check.Type {
	if rec.Record(check.Op{Type: check.Invoke, Process: proc, F: f, Time: rec.Now(), Final: final}.WithValue(v)) != nil {
		// The history is broken (recorder.Err): the process is
		// stopping, and runs nothing it could not record.
		return check.Fail
	}
	octx, cancel := context.WithTimeout(context.Background(), timeout)
	res, err := w.Apply(octx, s, f, v)
	cancel()
	t := classify(err, w.ReadOnly(f))
	done := check.Op{Type: t, Process: proc, F: f, Time: rec.Now(), Final: final}
	if t == check.OK {
		done = done.WithValue(res)
	} else {
		done = done.WithValue(v)
		done.Error = fmt.Sprint(err)
	}
	if rec.Record(done) != nil {
		return check.Fail
	}
	return t
}

// pace waits for a client's next slot at rate ops/s (0: no pacing),
// jittered so that clients do not move in lockstep; false if ctx ended.
func pace(ctx context.Context, r *rand.Rand, rate float64, next *time.Time) bool {
	if rate <= 0 {
		return true
	}
	*next = next.Add(time.Duration((0.5 + r.Float64()) * float64(time.Second) / rate))
	d := time.Until(*next)
	if d <= 0 {
		*next = time.Now()
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
