package sched_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backend/sched"
)

// points runs actors that each draw n read points, releases calls by
// choose, and returns each actor's points and the schedule.
func points(t *testing.T, o sched.Options, actors, n int, choose func(int) int) ([][]uint64, []sched.Step) {
	t.Helper()
	sc := sched.New(o)
	d := sc.Wrap(mem.New())
	defer d.Close()
	if _, ok := d.(backend.LocalClock); !ok {
		t.Fatal("the wrapper does not implement backend.LocalClock")
	}
	if _, ok := d.(backend.OnePhase); !ok {
		t.Fatal("the wrapper hides mem's one-phase path")
	}
	got := make([][]uint64, actors)
	for a := range actors {
		sc.Go(context.Background(), a, func(ctx context.Context) {
			for range n {
				p, err := d.ReadPoint(ctx)
				if err != nil {
					t.Error(err)
				}
				got[a] = append(got[a], uint64(p))
				// A commit moves the clock, so the order is visible.
				if _, err := d.(backend.OnePhase).CommitOnePhase(ctx, backend.OnePhaseRequest{Txn: strings.Repeat("t", a+1) + string(rune('0'+len(got[a]))), RP: p}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	if err := sc.Run(choose); err != nil {
		t.Fatal(err)
	}
	return got, sc.Steps()
}

func TestOrderFollowsChoices(t *testing.T) {
	// Always the last pending call: actor 1 runs to its end first.
	got, steps := points(t, sched.Options{}, 2, 2, func(n int) int { return n - 1 })
	want := [][]uint64{{2, 3}, {0, 1}}
	for a := range want {
		for i := range want[a] {
			if got[a][i] != want[a][i] {
				t.Fatalf("points %v, want %v; schedule %v", got, want, steps)
			}
		}
	}
	if len(steps) != 8 || steps[0].Actor != 1 || steps[0].Op != "ReadPoint" || steps[1].Op != "CommitOnePhase" || steps[4].Actor != 0 {
		t.Fatalf("schedule %v", steps)
	}
	// Always the first: actor 0 first.
	got, _ = points(t, sched.Options{}, 2, 2, func(int) int { return 0 })
	if got[0][0] != 0 || got[0][1] != 1 || got[1][0] != 2 {
		t.Fatalf("points %v", got)
	}
}

func TestSplitReplies(t *testing.T) {
	_, steps := points(t, sched.Options{SplitReplies: true}, 2, 1, func(n int) int { return n - 1 })
	var ops []string
	for _, s := range steps {
		ops = append(ops, s.String())
	}
	want := "a1#0 ReadPoint [1/2]|a1#0 <-ReadPoint [1/2]|a1#1 CommitOnePhase [1/2]|a1#1 <-CommitOnePhase [1/2]|a0#0 ReadPoint [0/1]|a0#0 <-ReadPoint [0/1]|a0#1 CommitOnePhase [0/1]|a0#1 <-CommitOnePhase [0/1]"
	if got := strings.Join(ops, "|"); got != want {
		t.Fatalf("schedule\n%s\nwant\n%s", got, want)
	}
}

func TestFairFallback(t *testing.T) {
	// After 3 choices the call that waited longest goes first.
	_, steps := points(t, sched.Options{MaxChoices: 3}, 3, 3, func(int) int { return 0 })
	fair := 0
	for _, s := range steps {
		if s.Fair {
			fair++
		}
	}
	if len(steps) != 18 || fair == 0 {
		t.Fatalf("%d steps, %d fair: %v", len(steps), fair, steps)
	}
}

func TestUntrackedCall(t *testing.T) {
	sc := sched.New(sched.Options{})
	d := sc.Wrap(mem.New())
	defer d.Close()
	// Outside actors, calls pass through.
	if _, err := d.ReadPoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	sc.Go(context.Background(), 0, func(ctx context.Context) {
		_, _ = d.ReadPoint(context.Background()) // not the actor's ctx
	})
	if err := sc.Run(func(int) int { return 0 }); err == nil || !strings.Contains(err.Error(), "not one") {
		t.Fatalf("Run: %v, want an error about a call outside the actors", err)
	}
}

func TestStuckActor(t *testing.T) {
	sc := sched.New(sched.Options{StuckAfter: 50 * time.Millisecond})
	d := sc.Wrap(mem.New())
	defer d.Close()
	block := make(chan struct{})
	sc.Go(context.Background(), 0, func(ctx context.Context) { _, _ = d.ReadPoint(ctx) })
	sc.Go(context.Background(), 1, func(ctx context.Context) { <-block })
	err := sc.Run(func(int) int { return 0 })
	close(block)
	if err == nil || !strings.Contains(err.Error(), "actors [1] ran for") {
		t.Fatalf("Run: %.300v, want a stuck actor 1", err)
	}
}

func TestChoosePanics(t *testing.T) {
	sc := sched.New(sched.Options{})
	d := sc.Wrap(mem.New())
	defer d.Close()
	done := make([]bool, 2)
	for a := range 2 {
		sc.Go(context.Background(), a, func(ctx context.Context) {
			_, _ = d.ReadPoint(ctx)
			done[a] = true
		})
	}
	defer func() {
		if v := recover(); v != "stop" {
			t.Fatalf("recovered %v, want the panic of choose", v)
		}
		if !done[0] || !done[1] {
			t.Fatalf("Run panicked before its actors finished: %v", done)
		}
	}()
	_ = sc.Run(func(int) int { panic("stop") })
}
