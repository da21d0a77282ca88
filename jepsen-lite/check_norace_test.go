//go:build !race

package jepsenlite

const ckRaceEnabled = false
