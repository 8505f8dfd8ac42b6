package export

import (
	"sync"
	"time"
)

// DefaultMaxTracesPerSecond caps the traces exported per second per
// service. Sampling alone is not a bound: a client that sends
// `traceparent: …-01` on every request, or trickles its request so that
// it outlasts the latency budget, gets every one of its requests
// exported. 200 is what the default ratio (1 %) gives at the 20k
// requests/s a node is sized for, so the default sampling of one busy
// service stays about whole while no client can make a service send more.
const DefaultMaxTracesPerSecond = 200

// traceLimiter is a token bucket per service: a service may export
// perSecond traces a second on average, and up to one second's worth at
// once (so that a burst of slow requests after a quiet spell goes out).
type traceLimiter struct {
	mu        sync.Mutex
	perSecond float64
	burst     float64
	epoch     time.Time // monotonic time origin of the buckets
	buckets   map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   int64 // ns since epoch when tokens was computed
}

// maxLimitedServices bounds the buckets; past it they start over (full),
// which only lets one extra second's worth through.
const maxLimitedServices = 4096

// newTraceLimiter returns a limiter, or nil for no cap (perSecond ≤ 0).
func newTraceLimiter(perSecond float64) *traceLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &traceLimiter{perSecond: perSecond, burst: max(perSecond, 1), epoch: time.Now(),
		buckets: map[string]*tokenBucket{}}
}

// allow takes a token of service's bucket now, if there is one.
func (l *traceLimiter) allow(service string) bool {
	return l.allowAt(service, time.Since(l.epoch).Nanoseconds())
}

// allowAt is allow at a given time (ns since epoch, never decreasing).
func (l *traceLimiter) allowAt(service string, now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[service]
	if b == nil {
		if len(l.buckets) >= maxLimitedServices {
			clear(l.buckets)
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[service] = b
	}
	if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.perSecond/1e9)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
