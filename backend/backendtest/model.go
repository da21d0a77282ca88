package backendtest

import "testing"

// testModel: property tests with rapid (being written).
func testModel(t *testing.T, newDriver NewDriver) {}

// testLinearizable: porcupine checks of single-ref histories (being written).
func testLinearizable(t *testing.T, newDriver NewDriver) {}
