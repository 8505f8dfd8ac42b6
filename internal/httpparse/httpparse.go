// Package httpparse parses the first bytes of plaintext HTTP/1.x requests and
// responses captured by tracerd's BPF programs.
//
// The input is whatever the kernel side managed to copy: it may be truncated at
// any byte, and it may be binary data or garbage that merely looks like HTTP.
// Every function here is total: it never panics and reports ok=false rather
// than guessing when the bytes do not form what it is looking for.
package httpparse

import (
	"bytes"
	"encoding/hex"
)

// Request is what could be read from a request head.
type Request struct {
	Method      string      // e.g. "GET"
	Target      string      // request-target exactly as sent, e.g. "/api/x?y=1"
	TraceParent TraceParent // zero value (Valid=false) when absent/invalid
}

// TraceParent is a parsed W3C trace-context traceparent header.
type TraceParent struct {
	Valid   bool
	TraceID [16]byte
	SpanID  [8]byte // the caller's span (parent-id field)
	Flags   byte
}

// TraceIDHex returns the trace-id as 32 lowercase hex digits. It encodes the
// stored bytes whether or not t.Valid is set (all zeros for the zero value).
func (t TraceParent) TraceIDHex() string { return hex.EncodeToString(t.TraceID[:]) }

// SpanIDHex returns the parent-id as 16 lowercase hex digits. It encodes the
// stored bytes whether or not t.Valid is set (all zeros for the zero value).
func (t TraceParent) SpanIDHex() string { return hex.EncodeToString(t.SpanID[:]) }

// ParseRequest returns ok=false unless b starts with a complete, well-formed
// request line ("METHOD SP request-target SP HTTP/1.0|HTTP/1.1 CRLF").
// Headers are scanned only as far as the captured bytes go; a header line
// counts only when complete (terminated by CRLF). Scanning stops at the blank
// line that ends the head. A traceparent header that appears more than once
// is treated as invalid.
func ParseRequest(b []byte) (Request, bool) {
	return ParseRequestWith(b, func(t []byte) string { return string(t) })
}

// ParseRequestWith is ParseRequest making the target's string with str
// (which may reuse the string of bytes seen before).
func ParseRequestWith(b []byte, str func([]byte) string) (Request, bool) {
	method, rest, ok := parseMethod(b)
	if !ok {
		return Request{}, false
	}
	// request-target: one or more visible ASCII bytes, then SP.
	n := 0
	for n < len(rest) && isVisible(rest[n]) {
		n++
	}
	if n == 0 || n >= len(rest) || rest[n] != ' ' {
		return Request{}, false
	}
	targetBytes := rest[:n]
	rest = rest[n+1:]
	// HTTP-version CRLF.
	const verLen = len("HTTP/1.x\r\n")
	if len(rest) < verLen ||
		string(rest[:7]) != "HTTP/1." ||
		(rest[7] != '0' && rest[7] != '1') ||
		rest[8] != '\r' || rest[9] != '\n' {
		return Request{}, false
	}
	req := Request{Method: method, Target: str(targetBytes)}
	req.TraceParent = scanHeaders(rest[verLen:])
	return req, true
}

// methods are the accepted request methods.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// parseMethod matches one of the accepted methods followed by SP at the
// start of b and returns the method (a constant string, no allocation) and
// the bytes following the SP.
func parseMethod(b []byte) (string, []byte, bool) {
	i := 0
	// The longest accepted method is 7 bytes ("OPTIONS", "CONNECT").
	for i < len(b) && i < 8 && b[i] != ' ' {
		i++
	}
	if i >= len(b) || b[i] != ' ' {
		return "", nil, false
	}
	for _, m := range methods {
		if string(b[:i]) == m { // the compiler does not allocate for this conversion
			return m, b[i+1:], true
		}
	}
	return "", nil, false
}

// IsRequestStart says whether b, not empty, is the start of a request
// line cut before its method's SP was read: what net/http's background
// read leaves when it takes a request's first byte alone.
func IsRequestStart(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, m := range methods {
		if len(b) <= len(m) && string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

// scanHeaders walks the complete header lines in b (up to the blank line or
// the end of the captured bytes) and returns the traceparent header, if
// exactly one complete, valid one is present.
func scanHeaders(b []byte) TraceParent {
	var (
		tp    TraceParent
		count int
	)
	for {
		end := bytes.Index(b, crlf)
		if end < 0 {
			break // incomplete (truncated) line: ignored
		}
		line := b[:end]
		b = b[end+2:]
		if len(line) == 0 {
			break // end of the header section
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !isTraceParentName(line[:colon]) {
			continue
		}
		count++
		if count > 1 {
			// W3C: multiple traceparent headers make the context invalid.
			return TraceParent{}
		}
		tp, _ = parseTraceParent(trimOWS(line[colon+1:]))
	}
	return tp
}

// ParseResponse returns the status code when b starts with "HTTP/1.0 " or
// "HTTP/1.1 " and a 3-digit code in 100..599 followed by SP or CR; ok=false
// otherwise (needs only the first 12-13 bytes).
func ParseResponse(b []byte) (status int, ok bool) {
	if len(b) < 13 ||
		string(b[:7]) != "HTTP/1." ||
		(b[7] != '0' && b[7] != '1') ||
		b[8] != ' ' ||
		(b[12] != ' ' && b[12] != '\r') {
		return 0, false
	}
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 || status > 599 {
		return 0, false
	}
	return status, true
}

// ParseTraceParent parses a W3C trace-context traceparent header value
// (version 00: "00-<32 hex>-<16 hex>-<2 hex>"; lowercase hex; all-zero
// trace-id or parent-id invalid; version ff invalid; future versions (not 00,
// not ff) accepted when the first 55 chars follow the 00 layout and are
// followed by end or '-').
func ParseTraceParent(v string) (TraceParent, bool) {
	return parseTraceParent(v)
}

// traceParentLen is the length of a version-00 traceparent value.
const traceParentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2

func parseTraceParent[T string | []byte](v T) (TraceParent, bool) {
	if len(v) < traceParentLen {
		return TraceParent{}, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff {
		return TraceParent{}, false
	}
	if ver == 0 {
		if len(v) != traceParentLen {
			return TraceParent{}, false
		}
	} else if len(v) > traceParentLen && v[traceParentLen] != '-' {
		return TraceParent{}, false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return TraceParent{}, false
	}
	var tp TraceParent
	var nonZero byte
	for i := range tp.TraceID {
		c, ok := hexByte(v[3+2*i], v[4+2*i])
		if !ok {
			return TraceParent{}, false
		}
		tp.TraceID[i] = c
		nonZero |= c
	}
	if nonZero == 0 {
		return TraceParent{}, false
	}
	nonZero = 0
	for i := range tp.SpanID {
		c, ok := hexByte(v[36+2*i], v[37+2*i])
		if !ok {
			return TraceParent{}, false
		}
		tp.SpanID[i] = c
		nonZero |= c
	}
	if nonZero == 0 {
		return TraceParent{}, false
	}
	if tp.Flags, ok = hexByte(v[53], v[54]); !ok {
		return TraceParent{}, false
	}
	tp.Valid = true
	return tp, true
}

// hexByte decodes two lowercase hex digits.
func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexNibble(hi)
	l, ok2 := hexNibble(lo)
	return h<<4 | l, ok1 && ok2
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isVisible(c byte) bool { return c >= 0x21 && c <= 0x7e }

// isTraceParentName reports whether name equals "traceparent", ASCII
// case-insensitively.
func isTraceParentName(name []byte) bool {
	const want = "traceparent"
	if len(name) != len(want) {
		return false
	}
	for i := range name {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// trimOWS removes optional whitespace (SP / HTAB) from both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var crlf = []byte("\r\n")
