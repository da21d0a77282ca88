package jepsenlite

import "golang.org/x/sys/unix"

// monoNow reads the machine's monotonic clock (CLOCK_MONOTONIC), in
// nanoseconds. Every process of a run reads the same clock, so their
// histories merge in real-time order, and neither wall-clock steps nor a
// client's skewed lease clock move it.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("jepsen: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}
