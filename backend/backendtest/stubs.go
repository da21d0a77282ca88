package backendtest

import "testing"

func testContract(t *testing.T, newDriver NewDriver)   {}
func testInvariants(t *testing.T, newDriver NewDriver) {}
func testCrash(t *testing.T, newDriver NewDriver)      {}
