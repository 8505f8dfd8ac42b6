package httpparse

import (
	"strings"
	"testing"
)

const (
	tpTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tpSpan  = "00f067aa0ba902b7"
	tpGood  = "00-" + tpTrace + "-" + tpSpan + "-01"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		ok      bool
		method  string
		target  string
		tpValid bool
		flags   byte
	}{
		{name: "get 1.1 line only", in: "GET / HTTP/1.1\r\n", ok: true, method: "GET", target: "/"},
		{name: "get 1.0 full head", in: "GET /index.html HTTP/1.0\r\nHost: a\r\n\r\n", ok: true, method: "GET", target: "/index.html"},
		{name: "post with body", in: "POST /api/x?y=1&z=%20 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", ok: true, method: "POST", target: "/api/x?y=1&z=%20"},
		{name: "absolute form", in: "GET http://h:8080/p?q HTTP/1.1\r\n", ok: true, method: "GET", target: "http://h:8080/p?q"},
		{name: "connect authority", in: "CONNECT example.com:443 HTTP/1.1\r\n\r\n", ok: true, method: "CONNECT", target: "example.com:443"},
		{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\n", ok: true, method: "OPTIONS", target: "*"},
		{name: "head", in: "HEAD /h HTTP/1.1\r\n", ok: true, method: "HEAD", target: "/h"},
		{name: "put", in: "PUT /p HTTP/1.1\r\n", ok: true, method: "PUT", target: "/p"},
		{name: "delete", in: "DELETE /d HTTP/1.1\r\n", ok: true, method: "DELETE", target: "/d"},
		{name: "trace", in: "TRACE /t HTTP/1.1\r\n", ok: true, method: "TRACE", target: "/t"},
		{name: "patch", in: "PATCH /p HTTP/1.1\r\n", ok: true, method: "PATCH", target: "/p"},

		// traceparent handling
		{name: "traceparent present", in: "GET /x HTTP/1.1\r\nHost: a\r\ntraceparent: " + tpGood + "\r\n\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent absent", in: "GET /x HTTP/1.1\r\nHost: a\r\nX-Trace: " + tpGood + "\r\n\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent mixed-case name", in: "POST /x HTTP/1.0\r\nTraceParent: " + tpGood + "\r\n\r\n",
			ok: true, method: "POST", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent upper-case name", in: "GET /x HTTP/1.1\r\nTRACEPARENT: " + tpGood + "\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent OWS trimmed", in: "GET /x HTTP/1.1\r\ntraceparent:\t  " + tpGood + " \t\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent no space", in: "GET /x HTTP/1.1\r\ntraceparent:" + tpGood + "\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent flags 00", in: "GET /x HTTP/1.1\r\ntraceparent: 00-" + tpTrace + "-" + tpSpan + "-00\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 0},
		{name: "traceparent duplicate", in: "GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r\nTraceparent: " + tpGood + "\r\n\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent duplicate second invalid", in: "GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r\ntraceparent: zz\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent second one truncated counts not", in: "GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r\ntraceparent: " + tpGood,
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},
		{name: "traceparent invalid hex", in: "GET /x HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e473g-" + tpSpan + "-01\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent upper-case hex", in: "GET /x HTTP/1.1\r\ntraceparent: 00-" + strings.ToUpper(tpTrace) + "-" + tpSpan + "-01\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent zero trace id", in: "GET /x HTTP/1.1\r\ntraceparent: 00-" + strings.Repeat("0", 32) + "-" + tpSpan + "-01\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent zero span id", in: "GET /x HTTP/1.1\r\ntraceparent: 00-" + tpTrace + "-" + strings.Repeat("0", 16) + "-01\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent truncated header line", in: "GET /x HTTP/1.1\r\nHost: a\r\ntraceparent: " + tpGood,
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent line missing LF", in: "GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent empty value", in: "GET /x HTTP/1.1\r\ntraceparent:\r\n\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent after blank line ignored", in: "GET /x HTTP/1.1\r\nHost: a\r\n\r\ntraceparent: " + tpGood + "\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "traceparent space before colon", in: "GET /x HTTP/1.1\r\ntraceparent : " + tpGood + "\r\n",
			ok: true, method: "GET", target: "/x"},
		{name: "header without colon skipped", in: "GET /x HTTP/1.1\r\ngarbage\r\ntraceparent: " + tpGood + "\r\n",
			ok: true, method: "GET", target: "/x", tpValid: true, flags: 1},

		// rejected
		{name: "empty", in: ""},
		{name: "lower-case method", in: "get / HTTP/1.1\r\n"},
		{name: "unknown method", in: "FOO / HTTP/1.1\r\n"},
		{name: "method prefix", in: "GETX / HTTP/1.1\r\n"},
		{name: "long method", in: "OPTIONSX / HTTP/1.1\r\n"},
		{name: "empty target", in: "GET  HTTP/1.1\r\n"},
		{name: "space in target", in: "GET /a b HTTP/1.1\r\n"},
		{name: "control byte in target", in: "GET /a\x01b HTTP/1.1\r\n"},
		{name: "high byte in target", in: "GET /a\xffb HTTP/1.1\r\n"},
		{name: "no version", in: "GET /\r\n"},
		{name: "HTTP/0.9 style", in: "GET /\r\n\r\n"},
		{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\n"},
		{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\n"},
		{name: "lower-case version", in: "GET / http/1.1\r\n"},
		{name: "bare LF", in: "GET / HTTP/1.1\n"},
		{name: "trailing junk after version", in: "GET / HTTP/1.1 \r\n"},
		{name: "leading CRLF", in: "\r\nGET / HTTP/1.1\r\n"},
		{name: "leading space", in: " GET / HTTP/1.1\r\n"},
		{name: "double space", in: "GET  / HTTP/1.1\r\n"},
		{name: "tab separator", in: "GET\t/ HTTP/1.1\r\n"},
		{name: "truncated before CRLF", in: "GET /api/x?y=1 HTTP/1.1"},
		{name: "truncated before LF", in: "GET /api/x?y=1 HTTP/1.1\r"},
		{name: "truncated in target", in: "GET /api/x?y"},
		{name: "http2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{name: "response", in: "HTTP/1.1 200 OK\r\n\r\n"},
		{name: "binary", in: "\x00\x01\x02\x03\xff\xfe GET / HTTP/1.1\r\n"},
		{name: "tls client hello", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{name: "nul in method", in: "GE\x00 / HTTP/1.1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, ok := ParseRequest([]byte(tt.in))
			if ok != tt.ok {
				t.Fatalf("ParseRequest(%q) ok = %v, want %v (req %+v)", tt.in, ok, tt.ok, req)
			}
			if !ok {
				if req != (Request{}) {
					t.Errorf("ok=false but request not zero: %+v", req)
				}
				return
			}
			if req.Method != tt.method || req.Target != tt.target {
				t.Errorf("got %q %q, want %q %q", req.Method, req.Target, tt.method, tt.target)
			}
			tp := req.TraceParent
			if tp.Valid != tt.tpValid {
				t.Fatalf("TraceParent.Valid = %v, want %v", tp.Valid, tt.tpValid)
			}
			if !tp.Valid {
				if tp != (TraceParent{}) {
					t.Errorf("invalid traceparent not zero: %+v", tp)
				}
				return
			}
			if got := tp.TraceIDHex(); got != tpTrace {
				t.Errorf("TraceIDHex = %s, want %s", got, tpTrace)
			}
			if got := tp.SpanIDHex(); got != tpSpan {
				t.Errorf("SpanIDHex = %s, want %s", got, tpSpan)
			}
			if tp.Flags != tt.flags {
				t.Errorf("Flags = %#x, want %#x", tp.Flags, tt.flags)
			}
		})
	}
}

// TestParseRequestTruncated feeds every prefix of a good request: the request
// line is reported only once its CRLF is in, and the traceparent only once its
// header line's CRLF is in.
func TestParseRequestTruncated(t *testing.T) {
	const line = "POST /api/v1/items?id=42&x=%2F HTTP/1.1\r\n"
	const tpLine = "traceparent: " + tpGood + "\r\n"
	full := line + "Host: example.com\r\n" + tpLine + "Content-Length: 3\r\n\r\nabc"
	tpEnd := strings.Index(full, tpLine) + len(tpLine)
	for i := 0; i <= len(full); i++ {
		prefix := []byte(full[:i])
		req, ok := ParseRequest(prefix)
		if wantOK := i >= len(line); ok != wantOK {
			t.Fatalf("prefix %d %q: ok = %v, want %v", i, prefix, ok, wantOK)
		}
		if !ok {
			continue
		}
		if req.Method != "POST" || req.Target != "/api/v1/items?id=42&x=%2F" {
			t.Fatalf("prefix %d: got %q %q", i, req.Method, req.Target)
		}
		if wantTP := i >= tpEnd; req.TraceParent.Valid != wantTP {
			t.Fatalf("prefix %d %q: traceparent valid = %v, want %v", i, prefix, req.TraceParent.Valid, wantTP)
		}
	}
}

func TestParseRequestGarbage(t *testing.T) {
	// Deterministic pseudo-random bytes; none can start with a method + SP.
	var x uint32 = 2463534242
	buf := make([]byte, 4096)
	for i := range buf {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		buf[i] = byte(x)
	}
	buf[0] = 0xff
	for i := 0; i <= len(buf); i += 7 {
		if _, ok := ParseRequest(buf[:i]); ok {
			t.Fatalf("garbage prefix %d accepted", i)
		}
		if _, ok := ParseResponse(buf[:i]); ok {
			t.Fatalf("garbage prefix %d accepted as response", i)
		}
	}
	// A valid request line followed by garbage is still a request.
	in := append([]byte("GET /g HTTP/1.1\r\n"), buf...)
	req, ok := ParseRequest(in)
	if !ok || req.Method != "GET" || req.Target != "/g" || req.TraceParent.Valid {
		t.Fatalf("request followed by garbage: %+v %v", req, ok)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		in     string
		status int
		ok     bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 404 Not Found\r\n", 404, true},
		{"HTTP/1.1 599 \r\n", 599, true},
		{"HTTP/1.1 100 Continue\r\n\r\n", 100, true},
		{"HTTP/1.1 204\r\n", 204, true},
		{"HTTP/1.1 200 ", 200, true}, // 13 bytes are enough
		{"HTTP/1.1 200\r", 200, true},
		{"HTTP/1.1 600 Nope\r\n", 0, false},
		{"HTTP/1.1 099 Nope\r\n", 0, false},
		{"HTTP/1.1 000 Nope\r\n", 0, false},
		{"HTTP/1.1 20", 0, false},
		{"HTTP/1.1 200", 0, false}, // cannot tell "200" from "2000"
		{"HTTP/1.1 2000 OK\r\n", 0, false},
		{"HTTP/1.1 20x OK\r\n", 0, false},
		{"HTTP/1.1 -20 OK\r\n", 0, false},
		{"HTTP/1.1 200\n", 0, false},
		{"HTTP/1.1 200\tOK\r\n", 0, false},
		{"HTTP/1.1  200 OK\r\n", 0, false},
		{"HTTP/2 200\r\n", 0, false},
		{"HTTP/2.0 200 OK\r\n", 0, false},
		{"HTTP/1.2 200 OK\r\n", 0, false},
		{"http/1.1 200 OK\r\n", 0, false},
		{"GET / HTTP/1.1\r\n", 0, false},
		{"", 0, false},
		{"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, false},
		{"\xff\xfe\xfd garbage here\r\n", 0, false},
	}
	for _, tt := range tests {
		status, ok := ParseResponse([]byte(tt.in))
		if status != tt.status || ok != tt.ok {
			t.Errorf("ParseResponse(%q) = %d, %v; want %d, %v", tt.in, status, ok, tt.status, tt.ok)
		}
	}
}

func TestParseTraceParent(t *testing.T) {
	z32, z16 := strings.Repeat("0", 32), strings.Repeat("0", 16)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", tpGood, true},
		{"flags 00", "00-" + tpTrace + "-" + tpSpan + "-00", true},
		{"flags ff", "00-" + tpTrace + "-" + tpSpan + "-ff", true},
		{"future version", "01-" + tpTrace + "-" + tpSpan + "-01", true},
		{"future version with extra field", "cc-" + tpTrace + "-" + tpSpan + "-01-what-the-future-holds", true},
		{"future version extra no dash", "01-" + tpTrace + "-" + tpSpan + "-01x", false},
		{"version 00 with extra field", tpGood + "-00", false},
		{"version 00 trailing char", tpGood + "x", false},
		{"version ff", "ff-" + tpTrace + "-" + tpSpan + "-01", false},
		{"version uppercase", "0A-" + tpTrace + "-" + tpSpan + "-01", false},
		{"version non-hex", "0g-" + tpTrace + "-" + tpSpan + "-01", false},
		{"zero trace id", "00-" + z32 + "-" + tpSpan + "-01", false},
		{"zero span id", "00-" + tpTrace + "-" + z16 + "-01", false},
		{"upper-case trace id", "00-" + strings.ToUpper(tpTrace) + "-" + tpSpan + "-01", false},
		{"upper-case flags", "00-" + tpTrace + "-" + tpSpan + "-0A", false},
		{"invalid hex span", "00-" + tpTrace + "-00f067aa0ba902bz-01", false},
		{"short trace id", "00-" + tpTrace[:31] + "-" + tpSpan + "-01", false},
		{"long trace id", "00-" + tpTrace + "0-" + tpSpan + "-01", false},
		{"wrong separator", "00_" + tpTrace + "-" + tpSpan + "-01", false},
		{"truncated", tpGood[:54], false},
		{"leading space", " " + tpGood, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, ok := ParseTraceParent(tt.in)
			if ok != tt.ok || tp.Valid != tt.ok {
				t.Fatalf("ParseTraceParent(%q) = %+v, %v; want ok %v", tt.in, tp, ok, tt.ok)
			}
			if !ok {
				if tp != (TraceParent{}) {
					t.Errorf("not ok but non-zero: %+v", tp)
				}
				return
			}
			if tp.TraceIDHex() != tt.in[3:35] || tp.SpanIDHex() != tt.in[36:52] {
				t.Errorf("ids = %s %s, want %s %s", tp.TraceIDHex(), tp.SpanIDHex(), tt.in[3:35], tt.in[36:52])
			}
		})
	}
	var zero TraceParent
	if zero.TraceIDHex() != z32 || zero.SpanIDHex() != z16 {
		t.Errorf("zero value hex = %s %s", zero.TraceIDHex(), zero.SpanIDHex())
	}
}

func TestParseRequestAllocs(t *testing.T) {
	in := []byte("GET /api/x?y=1 HTTP/1.1\r\nHost: a\r\nTraceParent: " + tpGood + "\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := ParseRequest(in); !ok {
			t.Fatal("not ok")
		}
	})
	if allocs > 1 { // only the Target string
		t.Errorf("ParseRequest allocs = %v, want <= 1", allocs)
	}
	resp := []byte("HTTP/1.1 200 OK\r\n")
	if a := testing.AllocsPerRun(100, func() { ParseResponse(resp) }); a != 0 {
		t.Errorf("ParseResponse allocs = %v, want 0", a)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	in := []byte("GET /api/x?y=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\ntraceparent: " + tpGood + "\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		ParseRequest(in)
	}
}

func TestIsRequestStart(t *testing.T) {
	for in, want := range map[string]bool{
		"G": true, "GE": true, "GET": true, "OPTIO": true, "P": true, "CONNECT": true,
		"": false, "GET ": false, "GET /": false, "X": false, "PRI * HTTP/2.0": false, "\x16\x03": false, "get": false,
	} {
		if got := IsRequestStart([]byte(in)); got != want {
			t.Errorf("IsRequestStart(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct {
		target, path, query string
		hasQuery            bool
	}{
		{"/", "/", "", false},
		{"/a/b", "/a/b", "", false},
		{"/a/b?x=1&y=2", "/a/b", "x=1&y=2", true},
		{"/a?", "/a", "", true},
		{"/a?x=1#frag", "/a", "x=1", true},
		{"/a#frag?x=1", "/a", "", false},
		{"/a/http://b?c", "/a/http://b", "c", true},
		{"http://user:secret@example.com:8080/a/b?x=1", "/a/b", "x=1", true},
		{"https://example.com", "/", "", false},
		{"http://example.com?x=1", "/", "x=1", true},
		{"http://example.com#f", "/", "", false},
		{"example.com:443", "example.com:443", "", false},
		{"*", "*", "", false},
		{"://x/y", "://x/y", "", false},
		{"a?b://c/d", "a?b://c/d", "", false},
	} {
		path, query, has := SplitTarget(tc.target)
		if path != tc.path || query != tc.query || has != tc.hasQuery {
			t.Errorf("SplitTarget(%q) = %q, %q, %v; want %q, %q, %v", tc.target, path, query, has, tc.path, tc.query, tc.hasQuery)
		}
	}
	if n := testing.AllocsPerRun(100, func() { SplitTarget("http://h/a/b?x=1#f") }); n != 0 {
		t.Errorf("SplitTarget allocates %v times", n)
	}
}
