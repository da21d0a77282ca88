//go:build !race

package check

const ckRaceEnabled = false
