package export

import (
	"unicode/utf8"

	"github.com/tracerd/tracerd/internal/correlate"
)

// AppendJSON appends r as one JSON object, byte for byte what
// encoding/json makes of ToJSON(r), without reflection or allocation
// (the exporter runs once per request: at 20k requests/s it matters).
// Query values are redacted (see RedactedValue).
func AppendJSON(b []byte, r *correlate.Request) []byte { return JSONOptions{}.AppendJSON(b, r) }

// AppendJSON is AppendJSON with these options: byte for byte what
// encoding/json makes of o.ToJSON(r).
func (o JSONOptions) AppendJSON(b []byte, r *correlate.Request) []byte {
	var times timeDigits
	b = append(b, `{"start_unix_nano":`...)
	b = times.append(b, r.StartUnixNano)
	b = append(b, `,"end_unix_nano":`...)
	b = times.append(b, r.EndUnixNano)
	b = append(b, `,"duration_ns":`...)
	b = appendInt(b, r.DurationNs)
	b = append(b, `,"pid":`...)
	b = appendUint(b, uint64(r.PID))
	b = append(b, `,"tid":`...)
	b = appendUint(b, uint64(r.TID))
	b = append(b, `,"comm":`...)
	b = appendString(b, r.Comm)
	b = append(b, `,"service":`...)
	b = appendString(b, r.Service)
	b = append(b, `,"cgroup_id":`...)
	b = appendUint(b, r.CgroupID)
	b = append(b, `,"direction":"`...)
	b = append(b, r.Direction.String()...)
	b = append(b, `","conn":{"local":`...)
	b = appendAddrPort(b, r.Conn.Local)
	b = append(b, `,"peer":`...)
	b = appendAddrPort(b, r.Conn.Peer)
	b = append(b, `,"request_index":`...)
	b = appendUint(b, uint64(r.Conn.RequestIndex))
	b = append(b, '}')
	if r.HTTP != nil {
		b = append(b, `,"http":{"method":`...)
		b = appendString(b, r.HTTP.Method)
		b = append(b, `,"target":"`...)
		b = appendTarget(b, r.HTTP.Target, o.KeepQueryValues, appendEscaped)
		b = append(b, '"')
		if r.HTTP.Status != 0 {
			b = append(b, `,"status":`...)
			b = appendInt(b, int64(r.HTTP.Status))
		}
		b = append(b, '}')
	}
	if r.RPC != nil {
		b = append(b, `,"rpc":{"system":`...)
		b = appendString(b, r.RPC.System)
		b = append(b, `,"service":`...)
		b = appendString(b, r.RPC.Service)
		b = append(b, `,"method":`...)
		b = appendString(b, r.RPC.Method)
		if r.RPC.StatusKnown {
			b = append(b, `,"status_code":`...)
			b = appendInt(b, int64(r.RPC.StatusCode))
		}
		b = append(b, '}')
	}
	if r.TLS != nil {
		b = appendTLS(b, r.TLS)
	}
	b = append(b, `,"trace_id":"`...)
	b = appendHex(b, r.TraceID[:])
	b = append(b, `","span_id":"`...)
	b = appendHex(b, r.SpanID[:])
	b = append(b, '"')
	if !r.ParentSpanID.IsZero() {
		b = append(b, `,"parent_span_id":"`...)
		b = appendHex(b, r.ParentSpanID[:])
		b = append(b, '"')
	}
	b = append(b, `,"phases_ns":{`...)
	sep := 1 // the first measured phase's key goes without its comma
	for m := r.Phases.Measured(); m != 0; m = m.Rest() {
		p := m.First()
		b = append(b, phaseKeys[p][sep:]...)
		b = appendInt(b, r.Phases.NS(p))
		sep = 0
	}
	b = append(b, `},"tcp":{`...)
	if r.TCP.Valid {
		b = append(b, `"srtt_us":`...)
		b = appendUint(b, uint64(r.TCP.SrttUs))
		b = append(b, ',')
	}
	b = append(b, `"retransmits":`...)
	b = appendUint(b, uint64(r.TCP.Retransmits))
	b = append(b, `,"zero_window":`...)
	b = appendUint(b, uint64(r.TCP.ZeroWindow))
	if r.TCP.Valid {
		b = append(b, `,"snd_cwnd":`...)
		b = appendUint(b, uint64(r.TCP.SndCwnd))
	}
	if r.TCP.Nagle {
		b = append(b, `,"nagle":true`...)
	} else {
		b = append(b, `,"nagle":false`...)
	}
	if r.Direction == correlate.DirClient && r.Phases.Has(correlate.Connect) {
		b = append(b, `,"syn_retransmits":`...)
		b = appendUint(b, uint64(r.TCP.SynRetransmits))
	}
	b = append(b, '}')
	if len(r.Spans) > 0 {
		b = append(b, `,"spans":[`...)
		for i, s := range r.Spans {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, s.Name)
			b = append(b, `,"start_unix_nano":`...)
			b = times.append(b, s.StartUnixNano)
			b = append(b, `,"duration_ns":`...)
			b = appendInt(b, s.DurationNs)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"end_reason":`...)
	b = appendString(b, r.EndReason.String())
	if len(r.Findings) > 0 {
		b = appendFindings(b, r.Findings)
	}
	return append(b, '}')
}

// phaseKeys[p] is `,"name":` of phase p.
var phaseKeys = func() (k [correlate.NumPhases]string) {
	for p := range correlate.NumPhases {
		k[p] = `,"` + p.String() + `":`
	}
	return k
}()

const hexDigits = "0123456789abcdef"

// jsonSafe[c]: the ASCII byte c stands as it is inside a JSON string
// (encoding/json's HTML-safe set).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// Byte-lane constants of escapes8.
const (
	lanes01 = 0x0101010101010101
	lanes80 = 0x8080808080808080
)

// escapes8 says whether any of the eight bytes in x is one that
// appendEscaped does not copy as it is: a control byte (< 0x20), '"',
// '\', '<', '>', '&', or a byte ≥ 0x80 (UTF-8 to check). Each test is
// "some byte is zero" ((v - 0x01…) &^ v & 0x80…, exact for whether
// one is) over x made zero where a byte matches: '"' and '&' differ in
// bit 2 only, as '<' and '>' in bit 1.
func escapes8(x uint64) bool {
	zero := func(v uint64) uint64 { return (v - lanes01) &^ v }
	ctl := (x - 0x20*lanes01) &^ x // bytes < 0x20 (of those < 0x80)
	quoteAmp := zero((x | 0x04*lanes01) ^ 0x26*lanes01)
	ltGt := zero((x | 0x02*lanes01) ^ 0x3e*lanes01)
	backslash := zero(x ^ 0x5c*lanes01)
	return (x|ctl|quoteAmp|ltGt|backslash)&lanes80 != 0
}

// load64 is s's first eight bytes (len(s) ≥ 8) as a little-endian word:
// one load.
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// appendString quotes s as encoding/json does (HTML-safe, invalid UTF-8
// as U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends s escaped as inside a JSON string. Escaping
// pieces split at ASCII bytes gives what escaping them joined gives (a
// multi-byte sequence never spans the split), which appendTarget relies on.
func appendEscaped(b []byte, s string) []byte {
	// Eight bytes at a time while none needs a look of its own: a span
	// name or a route is most often plain ASCII throughout.
	i := 0
	for i+8 <= len(s) && !escapes8(load64(s[i:])) {
		i += 8
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b': // encoding/json's since Go 1.22
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
