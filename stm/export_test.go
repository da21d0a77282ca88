package stm

import "github.com/epochal/epochal/internal/engine"

// Closers is how many OnClose functions s holds, for tests that check that
// background work leaves nothing behind.
func Closers(s *STM) int { return engine.Of(s).Closers() }
