package backend

import "sync"

// FeedLimit bounds how many versions a FeedBuffer keeps for a reader that
// does not drain them; past it the feed says it is incomplete.
const FeedLimit = 4096

// FeedBuffer is the hint channel and version buffer a driver's
// subscription needs to be a Feed; drivers embed it and call Push and Lost.
// The zero value is not ready: use NewFeedBuffer.
type FeedBuffer struct {
	ch chan struct{}

	mu       sync.Mutex
	versions []Version
	lost     bool
}

// NewFeedBuffer returns an empty buffer.
func NewFeedBuffer() *FeedBuffer { return &FeedBuffer{ch: make(chan struct{}, 1)} }

// Push buffers v (versions must be pushed in point order) and hints.
func (f *FeedBuffer) Push(v Version) {
	f.mu.Lock()
	if len(f.versions) < FeedLimit {
		f.versions = append(f.versions, v)
	} else {
		f.versions, f.lost = nil, true
	}
	f.mu.Unlock()
	f.hint()
}

// Lost records that versions may have been missed (a reconnect, a
// malformed message) and hints, so the reader falls back on the history.
func (f *FeedBuffer) Lost() {
	f.mu.Lock()
	f.versions, f.lost = nil, true
	f.mu.Unlock()
	f.hint()
}

func (f *FeedBuffer) hint() {
	select {
	case f.ch <- struct{}{}:
	default: // a hint is already waiting: merged
	}
}

// C receives a value after the ref may have changed.
func (f *FeedBuffer) C() <-chan struct{} { return f.ch }

// Drain returns the versions pushed since the last Drain, and whether none
// was lost.
func (f *FeedBuffer) Drain() ([]Version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, complete := f.versions, !f.lost
	f.versions, f.lost = nil, false
	return vs, complete
}
