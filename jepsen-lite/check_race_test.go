//go:build race

package jepsenlite

// ckRaceEnabled: the race detector slows the large tests tenfold.
const ckRaceEnabled = true
