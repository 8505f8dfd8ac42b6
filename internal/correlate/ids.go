package correlate

import (
	"encoding/hex"
	"math/rand/v2"
)

// assignIDs gives the request its W3C ids: the caller's trace when a
// traceparent came in, else a new trace.
func assignIDs(r *Request, rng *rand.ChaCha8) {
	var b [16]byte
	if r.TraceID == "" {
		rng.Read(b[:])
		r.TraceID = hex.EncodeToString(b[:])
	}
	rng.Read(b[:8])
	r.SpanID = hex.EncodeToString(b[:8])
}
