// Package goid tells the current goroutine's id, which Go does not
// expose. Locks use it to know which goroutine holds a shared *Mutex (as
// sync.Mutex's users expect one goroutine to exclude the others), and the
// engine to keep two goroutines from joining one transaction through a
// shared ctx.
//
// petermattis/goid reads the id from the runtime's goroutine struct, in a
// few nanoseconds; it depends on that struct's layout, so it is checked
// against the stack-trace id at start-up, on two goroutines, and not used
// if they ever disagree.
package goid

import (
	"runtime"

	fastgoid "github.com/petermattis/goid"
)

// Get returns the current goroutine's id (never 0).
func Get() uint64 {
	if fastOK {
		return uint64(fastgoid.Get())
	}
	return slow()
}

var fastOK = func() bool {
	if uint64(fastgoid.Get()) != slow() {
		return false
	}
	ok := make(chan bool)
	go func() { ok <- uint64(fastgoid.Get()) == slow() }()
	return <-ok
}()

// slow parses the first line of the goroutine's stack trace ("goroutine
// 42 [running]:"). It formats a trace under a runtime-wide lock: a few
// microseconds, and serialised across goroutines.
func slow() uint64 {
	var buf [32]byte
	n := runtime.Stack(buf[:], false)
	var id uint64
	for _, c := range buf[len("goroutine "):n] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
