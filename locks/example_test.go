package locks_test

import (
	"context"
	"fmt"
	"time"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/locks"
	"github.com/epochal/epochal/stm"
)

func ExampleMutex() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	a, _ := locks.NewMutex(s, "jobs/cleanup", locks.WithLease(5*time.Second))
	other, _ := locks.NewMutex(s, "jobs/cleanup")
	if err := a.Lock(ctx); err != nil {
		panic(err)
	}
	first := a.Token()
	ok, _ := other.TryLock(ctx) // no deadline: at once
	fmt.Println("other got it while held:", ok)
	_ = a.Unlock(ctx)

	ok, _ = other.TryLock(ctx)
	fmt.Println("other got it after Unlock:", ok, "newer token:", other.Token() > first)
	_ = other.Unlock(ctx)
	fmt.Println(a.Unlock(ctx))
	// Output:
	// other got it while held: false
	// other got it after Unlock: true newer token: true
	// locks: not held (lock "jobs/cleanup", by this goroutine)
}
