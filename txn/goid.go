package txn

import "runtime"

// goid returns the current goroutine's id. Go does not expose it; the first
// line of a goroutine's stack trace ("goroutine 42 [running]:") does. It is
// used only to keep two goroutines from joining one transaction through a
// shared ctx.
func goid() uint64 {
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
