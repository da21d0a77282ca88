package group_test

import (
	"context"
	"fmt"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/group"
)

func ExampleJoin() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()

	a, err := group.Join(ctx, b, "workers", "host-a", group.WithData(map[string]string{"zone": "eu"}))
	if err != nil {
		panic(err)
	}
	fmt.Println("a sees", (<-a.Events()).Joined)
	c, _ := group.Join(ctx, b, "workers", "host-c")
	fmt.Println("a sees joined", (<-a.Events()).Joined)
	_ = c.Leave(ctx)
	fmt.Println("a sees left", (<-a.Events()).Left)

	ms, _ := group.Members(ctx, b, "workers")
	var data map[string]string
	_ = ms[0].Decode(&data)
	fmt.Println(len(ms), ms[0].Name, data["zone"])
	_ = a.Leave(ctx)
	// Output:
	// a sees [host-a]
	// a sees joined [host-c]
	// a sees left [host-c]
	// 1 host-a eu
}

func ExampleWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := mem.New()
	defer b.Close()

	a, _ := group.Join(ctx, b, "workers", "host-a")
	defer a.Leave(ctx)
	snap, _ := group.MembersAt(ctx, b, "workers")
	fmt.Println("members", len(snap.Members), snap.Members[0].Name)

	// A member comes and goes, another joins: a watch from the snapshot,
	// started later, still reports both.
	flick, _ := group.Join(ctx, b, "workers", "host-b")
	_ = flick.Leave(ctx)
	c, _ := group.Join(ctx, b, "workers", "host-c")
	defer c.Leave(ctx)

	events, _ := group.Watch(ctx, b, "workers", snap)
	ev := <-events
	fmt.Println("joined", ev.Joined, "left", ev.Left)
	// Output:
	// members 1 host-a
	// joined [host-b host-c] left [host-b]
}
