package httpparse

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

var allowedMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true,
}

func FuzzParseRequest(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\n",
		"GET /index.html HTTP/1.0\r\nHost: a\r\n\r\n",
		"POST /api/x?y=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
		"GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r\n\r\n",
		"GET /x HTTP/1.1\r\nTraceParent:  " + tpGood + " \r\n",
		"GET /x HTTP/1.1\r\ntraceparent: " + tpGood + "\r\ntraceparent: " + tpGood + "\r\n",
		"GET /x HTTP/1.1\r\ntraceparent: 01-" + tpTrace + "-" + tpSpan + "-01-extra\r\n",
		"GET /x HTTP/1.1\r\ntraceparent: " + tpGood[:40],
		"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n",
		"DELETE /d HTTP/1.0\r",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"HTTP/1.1 200 OK\r\n",
		"GET /a b HTTP/1.1\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		req, ok := ParseRequest(b)
		if !bytes.Equal(in, b) {
			t.Fatal("input modified")
		}
		if !ok {
			if req != (Request{}) {
				t.Fatalf("ok=false with non-zero request %+v", req)
			}
			return
		}
		if !allowedMethods[req.Method] {
			t.Fatalf("method %q not allowed", req.Method)
		}
		if req.Target == "" {
			t.Fatal("empty target")
		}
		for i := 0; i < len(req.Target); i++ {
			if c := req.Target[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("target %q has byte %#x", req.Target, c)
			}
		}
		if !bytes.Contains(b, []byte(req.Target)) {
			t.Fatalf("target %q not in input", req.Target)
		}
		if !bytes.HasPrefix(b, []byte(req.Method+" "+req.Target+" HTTP/1.")) {
			t.Fatalf("input %q does not start with %s %s", b, req.Method, req.Target)
		}
		end := bytes.Index(b, []byte("\r\n"))
		if end < 0 {
			t.Fatalf("ok without CRLF in %q", b)
		}
		lineLen := end + 2
		req2, ok2 := ParseRequest(b[:lineLen])
		if !ok2 || req2.Method != req.Method || req2.Target != req.Target {
			t.Fatalf("request-line prefix parse = %+v %v, full = %+v", req2, ok2, req)
		}
		if req2.TraceParent.Valid {
			t.Fatal("traceparent from request line alone")
		}
		if _, ok3 := ParseRequest(b[:lineLen-1]); ok3 {
			t.Fatal("ok without the request line's LF")
		}
		if tp := req.TraceParent; tp.Valid {
			checkTraceParent(t, tp)
			// The value must occur verbatim in the input.
			if !bytes.Contains(b, []byte(tp.TraceIDHex()+"-"+tp.SpanIDHex()+"-")) {
				t.Fatalf("trace ids %s %s not in input", tp.TraceIDHex(), tp.SpanIDHex())
			}
		} else if tp != (TraceParent{}) {
			t.Fatalf("invalid traceparent not zero: %+v", tp)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	seeds := []string{
		"HTTP/1.1 200 OK\r\n",
		"HTTP/1.0 404 Not Found\r\n",
		"HTTP/1.1 599 \r\n",
		"HTTP/1.1 204\r\n",
		"HTTP/1.1 600 Nope\r\n",
		"HTTP/1.1 20",
		"HTTP/2 200\r\n",
		"GET / HTTP/1.1\r\n",
		"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		status, ok := ParseResponse(b)
		if !ok {
			if status != 0 {
				t.Fatalf("ok=false with status %d", status)
			}
			return
		}
		if status < 100 || status > 599 {
			t.Fatalf("status %d out of range", status)
		}
		if len(b) < 13 || string(b[9:12]) != strconv.Itoa(status) {
			t.Fatalf("status %d does not match input %q", status, b)
		}
		if s2, ok2 := ParseResponse(b[:13]); !ok2 || s2 != status {
			t.Fatalf("13-byte prefix parse = %d %v, full = %d", s2, ok2, status)
		}
		if _, ok3 := ParseResponse(b[:12]); ok3 {
			t.Fatal("ok with only 12 bytes")
		}
	})
}

func FuzzParseTraceParent(f *testing.F) {
	seeds := []string{
		tpGood,
		"00-" + tpTrace + "-" + tpSpan + "-00",
		"01-" + tpTrace + "-" + tpSpan + "-01",
		"cc-" + tpTrace + "-" + tpSpan + "-01-future",
		"ff-" + tpTrace + "-" + tpSpan + "-01",
		"00-" + strings.Repeat("0", 32) + "-" + tpSpan + "-01",
		"00-" + tpTrace + "-" + strings.Repeat("0", 16) + "-01",
		"00-" + strings.ToUpper(tpTrace) + "-" + tpSpan + "-01",
		tpGood + "-",
		tpGood[:54],
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tp, ok := ParseTraceParent(v)
		if ok != tp.Valid {
			t.Fatalf("ok=%v but Valid=%v", ok, tp.Valid)
		}
		if !ok {
			if tp != (TraceParent{}) {
				t.Fatalf("ok=false with non-zero %+v", tp)
			}
			return
		}
		checkTraceParent(t, tp)
		if len(v) < traceParentLen {
			t.Fatalf("ok for short value %q", v)
		}
		if v[:2] == "ff" {
			t.Fatal("version ff accepted")
		}
		if v[:2] == "00" && len(v) != traceParentLen {
			t.Fatalf("version 00 with length %d accepted", len(v))
		}
		if len(v) > traceParentLen && v[traceParentLen] != '-' {
			t.Fatalf("future version not followed by '-': %q", v)
		}
		if v[3:35] != tp.TraceIDHex() || v[36:52] != tp.SpanIDHex() || v[53:55] != hex.EncodeToString([]byte{tp.Flags}) {
			t.Fatalf("fields of %q do not match %+v", v, tp)
		}
		// Re-encoding as version 00 must round-trip.
		canon := "00-" + tp.TraceIDHex() + "-" + tp.SpanIDHex() + "-" + hex.EncodeToString([]byte{tp.Flags})
		if tp2, ok2 := ParseTraceParent(canon); !ok2 || tp2 != tp {
			t.Fatalf("canonical %q = %+v %v, want %+v", canon, tp2, ok2, tp)
		}
		// The same value inside a request header must be found too.
		req, rok := ParseRequest([]byte("GET / HTTP/1.1\r\nTraceparent: " + v + "\r\n\r\n"))
		if strings.ContainsAny(v, "\r\n") {
			return // can't be in a header line
		}
		if !rok || req.TraceParent != tp {
			t.Fatalf("in header: %+v %v, want %+v", req.TraceParent, rok, tp)
		}
	})
}

func checkTraceParent(t *testing.T, tp TraceParent) {
	t.Helper()
	if tp.TraceID == ([16]byte{}) || tp.SpanID == ([8]byte{}) {
		t.Fatalf("valid traceparent with zero id: %+v", tp)
	}
}

func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"/", "/a/b?x=1&y=2#f", "http://u:p@h:1/a?b", "https://h", "h:443", "*", "", "?", "/#?", "x://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		path, query, hasQuery := SplitTarget(target)
		if path != "/" && !strings.Contains(target, path) {
			t.Fatalf("path %q is not part of %q", path, target)
		}
		if !strings.Contains(target, query) || strings.Contains(query, "#") || (!hasQuery && query != "") {
			t.Fatalf("query %q (%v) of %q", query, hasQuery, target)
		}
		if hasQuery && strings.ContainsAny(path, "?#") {
			t.Fatalf("path %q of %q holds the query or fragment", path, target)
		}
		if strings.HasPrefix(target, "/") && (!strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#")) {
			t.Fatalf("origin-form %q gave path %q", target, path)
		}
	})
}
