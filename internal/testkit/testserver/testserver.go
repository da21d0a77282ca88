package testserver

import (
	"errors"
	"os"
	"testing"

	"github.com/epochal/epochal/internal/servers"
)

// requireServer is the common part of RequireRedis and RequireZK: with CI=true
// a missing server fails the test, otherwise it skips it. It reports whether
// the test may go on (it always may not after a real Fatalf or Skipf, which do
// not return).
func requireServer(t testing.TB, missing string) bool {
	t.Helper()
	if missing == "" {
		return true
	}
	msg := "testserver: " + missing + "; `make test` installs it (scripts/test-deps.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
	} else {
		t.Skipf("%s", msg)
	}
	return false
}

// reporter fails tests on the errors of a server's operations and remembers
// whether a failure message already showed the tail of the server's log.
type reporter struct {
	tailShown bool
}

// check fails t with err, if any.
func (r *reporter) check(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ns *servers.NotServingError
	if errors.As(err, &ns) {
		r.tailShown = true
	}
	t.Fatalf("testserver: %v", err)
}
