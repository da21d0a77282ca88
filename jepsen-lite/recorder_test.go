package jepsenlite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/mem"
)

// failingWriter accepts ok bytes, then fails every write (a full disk).
type failingWriter struct{ ok int }

var errDiskFull = errors.New("no space left on device")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= f.ok {
		f.ok -= len(p)
		return len(p), nil
	}
	n := f.ok
	f.ok = 0
	return n, errDiskFull
}

// TestRecordErrorIsFatal: a history that cannot be written is a failed
// client process (its error says why), never one that returns as if its
// history were whole: the run then errors instead of checking what was
// kept. Each case is bounded by operations, not time.
func TestRecordErrorIsFatal(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  workerConfig
	}{
		{"clients", workerConfig{Workload: "bank", Clients: 2, Ops: 50}},
		{"clients, failing later", workerConfig{Workload: "register", Clients: 2, Ops: 50}},
		{"lock clients", workerConfig{Workload: "lock", Clients: 2, Ops: 20}},
		{"final reads", workerConfig{Workload: "counter", Final: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Backend, cfg.Worker, cfg.Seed, cfg.Start = "mem", 1, 7, monoNow()
			cfg.Driver = mem.New()
			defer cfg.Driver.Close()
			w := &failingWriter{}
			if strings.Contains(tc.name, "later") {
				w.ok = 2000
			}
			cfg.Out = w
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := runWorker(ctx, cfg)
			if !errors.Is(err, errDiskFull) {
				t.Fatalf("RunWorker with a history that cannot be written = %v, want an error wrapping %v", err, errDiskFull)
			}
		})
	}
}
