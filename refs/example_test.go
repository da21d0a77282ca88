package refs_test

import (
	"context"
	"encoding/json"
	"fmt"

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
