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
