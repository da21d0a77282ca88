package txn

import (
	"runtime"

	fastgoid "github.com/petermattis/goid"
)

// goid returns the current goroutine's id, used only to keep two goroutines
// from joining one transaction through a shared ctx. Go does not expose it.
// petermattis/goid reads it from the runtime's goroutine struct, in a few
// nanoseconds; it depends on that struct's layout, so it is checked against
// the stack-trace id at start-up, on two goroutines, and not used if they
// ever disagree.
func goid() uint64 {
	if fastOK {
		return uint64(fastgoid.Get())
	}
	return slowGoid()
}

var fastOK = func() bool {
	if uint64(fastgoid.Get()) != slowGoid() {
		return false
	}
	ok := make(chan bool)
	go func() { ok <- uint64(fastgoid.Get()) == slowGoid() }()
	return <-ok
}()

// slowGoid parses the first line of the goroutine's stack trace
// ("goroutine 42 [running]:"). It formats a trace under a runtime-wide lock:
// a few microseconds, and serialised across goroutines.
func slowGoid() uint64 {
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
