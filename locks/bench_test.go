package locks_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/internal/benchkit"
	"github.com/epochal/epochal/locks"
)

// BenchmarkMemLock measures locks.Mutex on the embedded backend beside a
// sync.Mutex (the floor: what one process needs without leases, tokens or
// a queue), with benchkit.Locks.
func BenchmarkMemLock(b *testing.B) {
	be := mem.New()
	defer be.Close()
	var mus sync.Map
	benchkit.Locks(b, []benchkit.LockImpl{
		{
			Name: "epochal",
			New: func(b *testing.B, name string) benchkit.Lock {
				m, err := locks.NewMutex(be, name, locks.WithLease(10*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				return m
			},
		},
		{
			Name: "sync.Mutex",
			New: func(b *testing.B, name string) benchkit.Lock {
				m, _ := mus.LoadOrStore(name, &syncLock{})
				return m.(*syncLock)
			},
		},
	})
}

type syncLock struct{ mu sync.Mutex }

func (l *syncLock) Lock(context.Context) error   { l.mu.Lock(); return nil }
func (l *syncLock) Unlock(context.Context) error { l.mu.Unlock(); return nil }
