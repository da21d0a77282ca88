//go:build race

package check

// ckRaceEnabled: the race detector slows the large tests tenfold.
const ckRaceEnabled = true
