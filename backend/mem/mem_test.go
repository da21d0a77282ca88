package mem_test

import (
	"testing"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/backend/mem"
	"github.com/epochal/epochal/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Driver {
		b := mem.New()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
