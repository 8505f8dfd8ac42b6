package live

import (
	"math"
	"math/bits"
)

// histogram counts durations in log-linear buckets: 16 per power of two
// (a bucket's middle is within 3 % of its values), up to 2^40 ns
// (18 minutes; longer ones count there). The buckets are allocated on
// first use: a route quiet in a second costs none.
type histogram struct {
	n, max int64
	b      *[nBuckets]uint32
}

const (
	subBits  = 4
	maxBits  = 40
	nBuckets = (maxBits - subBits + 1) << subBits
)

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	v = min(v, 1<<maxBits-1)
	exp := bits.Len64(uint64(v)) - subBits - 1
	return (exp+1)<<subBits + int(v>>uint(exp)) - 1<<subBits
}

// bucketMid is the middle of bucket k's values.
func bucketMid(k int) int64 {
	if k < 1<<subBits {
		return int64(k)
	}
	exp := k>>subBits - 1
	lo := int64(k&(1<<subBits-1)+1<<subBits) << uint(exp)
	return lo + (int64(1)<<uint(exp))/2
}

func (h *histogram) add(v int64) {
	v = max(v, 0)
	if h.b == nil {
		h.b = new([nBuckets]uint32)
	}
	h.n++
	h.max = max(h.max, v)
	h.b[bucketOf(v)]++
}

func (h *histogram) reset() {
	if h.b != nil {
		clear(h.b[:])
	}
	h.n, h.max = 0, 0
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.b == nil {
		h.b = new([nBuckets]uint32)
	}
	for k, c := range o.b {
		h.b[k] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the value at q (0..1): the middle of its bucket, never
// above the largest value seen.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.n))), 1)
	var seen int64
	for k, c := range h.b {
		seen += int64(c)
		if seen >= rank {
			return min(bucketMid(k), h.max)
		}
	}
	return h.max
}
