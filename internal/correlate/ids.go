package correlate

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
)

// TraceID is a W3C trace id; all zero means none (invalid in W3C trace
// context and OTLP). Kept as bytes: exporters write hex (JSON) or bytes
// (OTLP) straight from it, without a string per request.
type TraceID [16]byte

// SpanID is a W3C span (parent) id; all zero means none.
type SpanID [8]byte

func (t TraceID) IsZero() bool        { return t == TraceID{} }
func (s SpanID) IsZero() bool         { return s == SpanID{} }
func (t TraceID) String() string      { return hex.EncodeToString(t[:]) }
func (s SpanID) String() string       { return hex.EncodeToString(s[:]) }
func (t TraceID) Hex(b []byte) []byte { return hex.AppendEncode(b, t[:]) }
func (s SpanID) Hex(b []byte) []byte  { return hex.AppendEncode(b, s[:]) }

// ParseTraceID reads 32 hex digits.
func ParseTraceID(s string) (TraceID, error) {
	var t TraceID
	return t, parseHexID(t[:], s)
}

// ParseSpanID reads 16 hex digits.
func ParseSpanID(s string) (SpanID, error) {
	var id SpanID
	return id, parseHexID(id[:], s)
}

func parseHexID(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("id %q: want %d hex digits", s, 2*len(dst))
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// assignIDs gives the request its W3C ids: the caller's trace when a
// traceparent came in, else a new trace.
// Their bytes are the generator's words (Uint64, little-endian): Read
// goes through a byte buffer for the same randomness.
func assignIDs(r *Request, rng *rand.ChaCha8) {
	for r.TraceID.IsZero() {
		binary.LittleEndian.PutUint64(r.TraceID[:8], rng.Uint64())
		binary.LittleEndian.PutUint64(r.TraceID[8:], rng.Uint64())
	}
	r.SpanID = SpanID{}
	for r.SpanID.IsZero() {
		binary.LittleEndian.PutUint64(r.SpanID[:], rng.Uint64())
	}
}
