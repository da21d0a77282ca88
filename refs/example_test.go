package refs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

func openMem() (*stm.STM, func()) {
	b := mem.New()
	s, err := stm.Open(context.Background(), b)
	if err != nil {
		panic(err)
	}
	return s, func() { s.Close(); b.Close() }
}

// Watches run after each committed change, in commit order.
func ExampleRef_AddWatch() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	temp, _ := refs.New(ctx, s, "sensors/temp", 20)
	seen := make(chan string, 3)
	temp.AddWatch("log", func(key string, r *refs.Ref[int], old, new int) {
		seen <- fmt.Sprintf("%s: %d -> %d", r.Name(), old, new)
	})
	for _, v := range []int{21, 23} {
		_ = s.Dosync(ctx, func(tx *txn.Tx) error { temp.Set(tx, v); return nil })
	}
	fmt.Println(<-seen)
	fmt.Println(<-seen)
	temp.RemoveWatch("log")
	// Output:
	// sensors/temp: 20 -> 21
	// sensors/temp: 21 -> 23
}

// History keeps MinHistory older versions (more, up to MaxHistory, when
// readers fault); At reads the value as of a point.
func ExampleRef_History() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	r, _ := refs.New(ctx, s, "config/limit", 1, refs.WithMinHistory(2))
	for _, v := range []int{2, 3, 4} {
		_ = s.Dosync(ctx, func(tx *txn.Tx) error { r.Set(tx, v); return nil })
	}
	hist, _ := r.History(ctx)
	for _, v := range hist {
		fmt.Println(v.Value)
	}
	old, _ := r.At(ctx, hist[1].Point)
	fmt.Println("at", hist[1].Point, "it was", old)
	// Output:
	// 4
	// 3
	// 2
	// at 2 it was 3
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// WithCodec stores a ref's values in another encoding.
func ExampleWithCodec() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	type user struct {
		Name string `json:"name"`
	}
	u, _ := refs.New(ctx, s, "users/1", user{"ada"}, refs.WithCodec(jsonCodec{}))
	hist, _ := u.History(ctx)
	vr, _ := u.Backend().Versions(ctx, u.Name())
	fmt.Println(hist[0].Value.Name, string(vr.Versions[0].Value))
	// Output:
	// ada {"name":"ada"}
}

// An atom changes outside transactions, each change one compare-and-set
// on its backend. NewAtom joins an atom that exists (it never resets it).
func ExampleNewAtom() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	hits, err := refs.NewAtom(ctx, s, "stats/hits", 0)
	if err != nil {
		panic(err)
	}
	again, _ := refs.NewAtom(ctx, s, "stats/hits", 100) // joins: 100 is ignored
	_, _ = hits.Swap(ctx, func(n int) int { return n + 1 })
	v, _ := again.Deref(ctx)
	fmt.Println(v)
	// Output:
	// 1
}

// Swap applies f to the newest value and sets the result; under
// contention f runs again on the newer value, so it must be free of side
// effects.
func ExampleAtom_Swap() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	counter, _ := refs.NewAtom(ctx, s, "stats/counter", 0)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := counter.Swap(ctx, func(n int) int { return n + 1 }); err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()
	v, _ := counter.Deref(ctx)
	fmt.Println(v)
	// Output:
	// 10
}

// CompareAndSet sets a new value only if the atom still holds the old one.
func ExampleAtom_CompareAndSet() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	leader, _ := refs.NewAtom(ctx, s, "cluster/leader", "")
	won, _ := leader.CompareAndSet(ctx, "", "host-a") // an empty seat: taken
	fmt.Println("host-a:", won)
	won, _ = leader.CompareAndSet(ctx, "", "host-b") // no longer empty
	fmt.Println("host-b:", won)
	v, _ := leader.Deref(ctx)
	fmt.Println(v)
	// Output:
	// host-a: true
	// host-b: false
	// host-a
}

// Exactly one Deliver wins, across processes; Deref blocks until a value
// is delivered (or its ctx ends).
func ExamplePromise() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	result, err := refs.NewPromise[string](ctx, s, "jobs/42/result")
	if err != nil {
		panic(err)
	}
	got := make(chan string)
	go func() {
		v, err := result.Deref(ctx) // waits for the delivery
		if err != nil {
			panic(err)
		}
		got <- v
	}()
	first, _ := result.Deliver(ctx, "done")
	second, _ := result.Deliver(ctx, "done again") // too late: changes nothing
	fmt.Println(first, second, <-got)
	// Output:
	// true false done
}

// A delay's body runs on the first Deref in any process; every caller
// gets the one result it delivered.
func ExampleNewDelay() {
	ctx := context.Background()
	s, done := openMem()
	defer done()
	var runs atomic.Int32
	body := func(ctx context.Context) (int, error) {
		runs.Add(1)
		return 42, nil // an expensive computation
	}
	answer, err := refs.NewDelay(ctx, s, "cache/answer", body)
	if err != nil {
		panic(err)
	}
	other, _ := refs.NewDelay(ctx, s, "cache/answer", body) // another handle, as another process would have
	realized, _ := answer.Realized(ctx)
	fmt.Println("realized:", realized)
	a, _ := answer.Deref(ctx)
	b, _ := other.Deref(ctx)
	fmt.Println(a, b, "body runs:", runs.Load())
	// Output:
	// realized: false
	// 42 42 body runs: 1
}
