package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of bits below a latency's leading one that a
// histogram keeps: each power of two is split in 1<<subBits buckets, so a
// quantile is within 1/16 (6%) of the true value.
const subBits = 4

// hist is a log-linear histogram of latencies in nanoseconds: cheap to
// add to from one goroutine, merged at the end.
type hist struct {
	n       int64
	buckets [64 << subBits]int64
}

func bucket(ns uint64) int {
	if ns < 1<<subBits {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // position of the leading one, >= subBits
	sub := (ns >> (e - subBits)) & (1<<subBits - 1)
	return (e-subBits+1)<<subBits + int(sub)
}

// lower returns the least latency of bucket k.
func lower(k int) float64 {
	if k < 1<<subBits {
		return float64(k)
	}
	e := k>>subBits + subBits - 1
	sub := uint64(k & (1<<subBits - 1))
	return float64((1<<subBits | sub) << (e - subBits))
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucket(uint64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	h.n += o.n
	for i, c := range o.buckets {
		h.buckets[i] += c
	}
}

// quantile returns the q-quantile in microseconds: the middle of the
// bucket holding it (0 when empty).
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen int64
	for k, c := range h.buckets {
		seen += c
		if seen >= rank {
			lo := lower(k)
			hi := lower(k + 1)
			return (lo + hi) / 2 / 1e3
		}
	}
	return 0
}
