package zk

import "time"

// EndedIDs is how many ended session ids b remembers (in its map, and in
// its queue for forgetting).
func EndedIDs(b *Backend) (int, int) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	return len(b.sess.ended.at), len(b.sess.ended.order)
}

// SetEndedClock sets the clock by which b forgets ended ids; now is
// called with b's lock held.
func SetEndedClock(b *Backend, now func() time.Time) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	b.sess.init()
	b.sess.ended.now = now
}

// ForgetSeqs empties b's cache of learned Seqs, as learnSeq does when it
// is full.
func ForgetSeqs(b *Backend) {
	b.sess.mu.Lock()
	defer b.sess.mu.Unlock()
	b.sess.init()
	b.sess.seqs = make(map[string]uint64)
}

// SetWall sets the clock b's record sweeps read as this process's.
func SetWall(b *Backend, now func() time.Time) { b.wall = now }

// SetTombstoneKeep sets how long tombstones are kept, until the test ends.
func SetTombstoneKeep(t interface{ Cleanup(func()) }, d time.Duration) {
	old := tombstoneKeep
	tombstoneKeep = d
	t.Cleanup(func() { tombstoneKeep = old })
}
