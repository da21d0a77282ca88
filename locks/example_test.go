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

// Readers share an RWMutex; a writer waits until every reader is gone.
// Each handle is one holder (the calling goroutine holds it), as each
// process would have its own.
func ExampleRWMutex() {
	ctx := context.Background()
	b := mem.New()
	defer b.Close()
	s, err := stm.Open(ctx, b)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	reader1, _ := locks.NewRWMutex(s, "config")
	reader2, _ := locks.NewRWMutex(s, "config")
	writer, _ := locks.NewRWMutex(s, "config")
	if err := reader1.RLock(ctx); err != nil {
		panic(err)
	}
	readToken := reader1.Token()
	ok, _ := reader2.TryRLock(ctx) // no deadline: at once
	fmt.Println("second reader shares it:", ok)
	ok, _ = writer.TryLock(ctx)
	fmt.Println("writer while read:", ok)

	_ = reader1.RUnlock(ctx)
	_ = reader2.RUnlock(ctx)
	if err := writer.Lock(ctx); err != nil { // free now: at once
		panic(err)
	}
	fmt.Println("writer holds it, newer token:", writer.Token() > readToken)
	ok, _ = reader1.TryRLock(ctx)
	fmt.Println("reader while written:", ok)
	_ = writer.Unlock(ctx)
	// Output:
	// second reader shares it: true
	// writer while read: false
	// writer holds it, newer token: true
	// reader while written: false
}
