package export

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

func TestShownTarget(t *testing.T) {
	for _, tc := range []struct{ target, redacted, kept string }{
		{"/", "/", "/"},
		{"/a/b", "/a/b", "/a/b"},
		{"/a?x=1", "/a?x=REDACTED", "/a?x=1"},
		{"/a?", "/a?", "/a?"},
		{"/a?x", "/a?REDACTED", "/a?x"},
		{"/a?x=&y=2", "/a?x=&y=REDACTED", "/a?x=&y=2"},
		{"/a?x=1&&y=a=b", "/a?x=REDACTED&&y=REDACTED", "/a?x=1&&y=a=b"},
		{"/a?x=1;s=2", "/a?x=REDACTED", "/a?x=1;s=2"},
		{"/a?sig=abc#frag", "/a?sig=REDACTED", "/a?sig=abc"},
		{"/a#frag", "/a", "/a"},
		{"http://u:p@h:8080/a?k=v", "/a?k=REDACTED", "/a?k=v"},
		{"http://h", "/", "/"},
		{"*", "*", "*"},
		{"h:443", "h:443", "h:443"},
	} {
		if got := ShownTarget(tc.target, false); got != tc.redacted {
			t.Errorf("ShownTarget(%q) = %q, want %q", tc.target, got, tc.redacted)
		}
		if got := ShownTarget(tc.target, true); got != tc.kept {
			t.Errorf("ShownTarget(%q, keep) = %q, want %q", tc.target, got, tc.kept)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ShownTarget("/a/b", false) }); n != 0 {
		t.Errorf("a target without query costs %v allocations", n)
	}
}

// AppendJSON redacts piece by piece what ToJSON redacts as a string:
// both render the same bytes, with and without KeepQueryValues.
func TestAppendJSONOptionsMatchEncodingJSON(t *testing.T) {
	targets := []string{secretTarget, "/a?<b>=\"c\"&d=\\", "/é?ü=ß&\xff=\xfe", "http://u:p@h/x?y=1#z", "*", "/plain"}
	for _, keep := range []bool{false, true} {
		o := JSONOptions{KeepQueryValues: keep}
		for _, target := range targets {
			r := fixedRequests()[0]
			r.HTTP = &correlate.HTTP{Method: "GET", Target: target}
			want, err := json.Marshal(o.ToJSON(&r))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.AppendJSON(nil, &r); !bytes.Equal(got, want) {
				t.Errorf("keep=%v %q:\nAppendJSON:    %s\nencoding/json: %s", keep, target, got, want)
			}
		}
	}
}

// Redaction adds no allocation to the JSON lines' hot path.
func TestAppendJSONAllocs(t *testing.T) {
	r := fixedRequests()[0]
	r.HTTP = &correlate.HTTP{Method: "GET", Target: secretTarget, Status: 200}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &r) }); n != 0 {
		t.Errorf("AppendJSON of a query: %v allocations", n)
	}
}

// The operator can keep the values: JSON lines and OTLP alike.
func TestKeepQueryValues(t *testing.T) {
	r := otlpRequests()[0]
	r.HTTP = &correlate.HTTP{Method: "GET", Target: "/search?q=shoes&page=2", Status: 200}
	var buf bytes.Buffer
	jl := NewJSONLinesWith(&buf, JSONOptions{KeepQueryValues: true})
	if err := jl.Write(&r); err != nil {
		t.Fatal(err)
	}
	_ = jl.Flush()
	if !bytes.Contains(buf.Bytes(), []byte(`"target":"/search?q=shoes\u0026page=2"`)) {
		t.Errorf("kept values: %s", buf.Bytes())
	}

	client := &fakeClient{}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Ratio: 1}, QueueSpans: 100, BatchSpans: 100,
		BatchDelay: time.Millisecond, KeepQueryValues: true})
	if err != nil {
		t.Fatal(err)
	}
	e.Add(&r, &Process{PID: r.PID})
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(client.sent) != 1 {
		t.Fatalf("%d exports", len(client.sent))
	}
	server := client.sent[0][0].ScopeSpans[0].Spans[0]
	for _, kv := range server.Attributes {
		if kv.Key == "url.query" && kv.Value.GetStringValue() != "q=shoes&page=2" {
			t.Errorf("url.query %q", kv.Value.GetStringValue())
		}
	}
}
