package export

import (
	"net/netip"
	"strconv"
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
	b = append(b, `{"start_unix_nano":`...)
	b = strconv.AppendInt(b, r.StartUnixNano, 10)
	b = append(b, `,"end_unix_nano":`...)
	b = strconv.AppendInt(b, r.EndUnixNano, 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, r.DurationNs, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(r.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(r.TID), 10)
	b = append(b, `,"comm":`...)
	b = appendString(b, r.Comm)
	b = append(b, `,"service":`...)
	b = appendString(b, r.Service)
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, r.CgroupID, 10)
	b = append(b, `,"direction":"`...)
	b = append(b, r.Direction.String()...)
	b = append(b, `","conn":{"local":`...)
	b = appendAddrPort(b, r.Conn.Local)
	b = append(b, `,"peer":`...)
	b = appendAddrPort(b, r.Conn.Peer)
	b = append(b, `,"request_index":`...)
	b = strconv.AppendUint(b, uint64(r.Conn.RequestIndex), 10)
	b = append(b, '}')
	if r.HTTP != nil {
		b = append(b, `,"http":{"method":`...)
		b = appendString(b, r.HTTP.Method)
		b = append(b, `,"target":"`...)
		b = appendTarget(b, r.HTTP.Target, o.KeepQueryValues, appendEscaped)
		b = append(b, '"')
		if r.HTTP.Status != 0 {
			b = append(b, `,"status":`...)
			b = strconv.AppendInt(b, int64(r.HTTP.Status), 10)
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
			b = strconv.AppendInt(b, int64(r.RPC.StatusCode), 10)
		}
		b = append(b, '}')
	}
	if r.TLS != nil {
		b = appendTLS(b, r.TLS)
	}
	b = append(b, `,"trace_id":"`...)
	b = r.TraceID.Hex(b)
	b = append(b, `","span_id":"`...)
	b = r.SpanID.Hex(b)
	b = append(b, '"')
	if !r.ParentSpanID.IsZero() {
		b = append(b, `,"parent_span_id":"`...)
		b = r.ParentSpanID.Hex(b)
		b = append(b, '"')
	}
	b = append(b, `,"phases_ns":{`...)
	sep := false
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		ns, ok := r.Phases.Get(p)
		if !ok {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = append(b, '"')
		b = append(b, p.String()...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, ns, 10)
	}
	b = append(b, `},"tcp":{`...)
	if r.TCP.Valid {
		b = append(b, `"srtt_us":`...)
		b = strconv.AppendUint(b, uint64(r.TCP.SrttUs), 10)
		b = append(b, ',')
	}
	b = append(b, `"retransmits":`...)
	b = strconv.AppendUint(b, uint64(r.TCP.Retransmits), 10)
	b = append(b, `,"zero_window":`...)
	b = strconv.AppendUint(b, uint64(r.TCP.ZeroWindow), 10)
	if r.TCP.Valid {
		b = append(b, `,"snd_cwnd":`...)
		b = strconv.AppendUint(b, uint64(r.TCP.SndCwnd), 10)
	}
	b = append(b, `,"nagle":`...)
	b = strconv.AppendBool(b, r.TCP.Nagle)
	if r.Direction == correlate.DirClient && r.Phases.Has(correlate.Connect) {
		b = append(b, `,"syn_retransmits":`...)
		b = strconv.AppendUint(b, uint64(r.TCP.SynRetransmits), 10)
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
			b = strconv.AppendInt(b, s.StartUnixNano, 10)
			b = append(b, `,"duration_ns":`...)
			b = strconv.AppendInt(b, s.DurationNs, 10)
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

const hexDigits = "0123456789abcdef"

// jsonSafe[c]: the ASCII byte c stands as it is inside a JSON string
// (encoding/json's HTML-safe set).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

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
	start := 0
	for i := 0; i < len(s); {
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

// appendAddrPort appends p as a JSON string, as p.String() spells it,
// without the string (addresses need no escaping).
func appendAddrPort(b []byte, p netip.AddrPort) []byte {
	if !p.IsValid() {
		return appendString(b, p.String())
	}
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}
