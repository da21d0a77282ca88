// Package backendtest is the conformance suite every backend driver must
// pass, in the style of go-cloud's drivertest. A driver's test is a harness
// plus one call:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Driver { return mem.New() })
//	}
//
// The suite checks the driver contract directly (atomic commit steps, the
// read rule, intents, records, history trimming, the change stream, unknown
// outcomes) and, through the public API (stm, refs), every invariant of the
// engine, I1 to I7, including transactions that span two backends and
// committers that crash after every step of the commit.
package backendtest

import (
	"testing"

	"github.com/epochal/epochal/backend"
)

// NewDriver returns a new, empty, independent backend for one test: its own
// keys, clock and records. The harness closes it (and stops anything it
// started) in t.Cleanup. Two calls within one test must return two backends
// that do not share data, for mixed-backend transactions.
type NewDriver func(t *testing.T) backend.Driver

// Run runs the whole suite.
func Run(t *testing.T, newDriver NewDriver) {
	t.Run("Contract", func(t *testing.T) { testContract(t, newDriver) })
	t.Run("Invariants", func(t *testing.T) { testInvariants(t, newDriver) })
	t.Run("Scenarios", func(t *testing.T) { testScenarios(t, newDriver) })
	t.Run("Crash", func(t *testing.T) { testCrash(t, newDriver) })
	t.Run("Model", func(t *testing.T) { testModel(t, newDriver) })
	t.Run("Linearizable", func(t *testing.T) { testLinearizable(t, newDriver) })
	t.Run("Atoms", func(t *testing.T) { testAtoms(t, newDriver) })
	t.Run("Promises", func(t *testing.T) { testPromises(t, newDriver) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, newDriver) })
	t.Run("StoredFaults", func(t *testing.T) { testStoredFaults(t, newDriver) })
}
