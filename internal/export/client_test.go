package export

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracerd/tracerd/internal/correlate"
)

// outboundCall is a call to 10.0.0.2:5432 from 10.0.0.1:40000 made
// inside a served request.
func outboundCall() correlate.Request {
	r := correlate.Request{Direction: correlate.DirClient, PID: 1, TID: 2, Comm: "api", Service: "api",
		StartUnixNano: 1_000_000_000, EndUnixNano: 1_031_000_000, DurationNs: 31_000_000,
		Conn: correlate.Conn{Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("10.0.0.2:5432")},
		HTTP: &correlate.HTTP{Method: "GET", Target: "/down", Status: 200}, EndReason: correlate.EndClose, Answered: true}
	r.Phases.Set(correlate.Connect, 1_000_000)
	r.Phases.Set(correlate.Send, 0)
	r.Phases.Set(correlate.Wait, 29_000_000)
	r.Phases.Set(correlate.Receive, 1_000_000)
	r.TraceID = correlate.TraceID{1}
	r.SpanID = correlate.SpanID{2}
	r.ParentSpanID = correlate.SpanID{3}
	r.Inbound = correlate.Inbound{Valid: true, DurationNs: 40_000_000}
	return r
}

func TestOutboundCallJSON(t *testing.T) {
	r := outboundCall()
	line := string(AppendJSON(nil, &r))
	for _, want := range []string{`"direction":"client"`, `"conn":{"local":"10.0.0.1:40000","peer":"10.0.0.2:5432"`,
		`"phases_ns":{"connect":1000000,"send":0,"wait":29000000,"receive":1000000}`, `"syn_retransmits":0`} {
		if !strings.Contains(line, want) {
			t.Errorf("no %s in %s", want, line)
		}
	}
	r.Direction = correlate.DirServer
	if line := string(AppendJSON(nil, &r)); !strings.Contains(line, `"direction":"server"`) || strings.Contains(line, "syn_retransmits") {
		t.Errorf("a served request: %s", line)
	}
}

func TestOutboundCallSpans(t *testing.T) {
	r := outboundCall()
	spans := RequestSpans(&r)
	call := spans[0]
	if call.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kind %v", call.Kind)
	}
	if call.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK) != 0 {
		t.Error("a call's parent is local, not remote")
	}
	if v, _ := spanAttr(call, "server.address"); v != "10.0.0.2" {
		t.Errorf("server.address %q, want the peer", v)
	}
	if v, _ := spanAttr(call, "network.local.port"); v != "40000" {
		t.Errorf("network.local.port %q", v)
	}
	// The phases follow one another; receive ends at the end.
	at := r.StartUnixNano
	for i, name := range []string{"connect", "send", "wait", "receive"} {
		s := spans[1+i]
		if s.Name != name || int64(s.StartTimeUnixNano) != at {
			t.Errorf("child %d: %s at %d, want %s at %d", i, s.Name, s.StartTimeUnixNano, name, at)
		}
		at = int64(s.EndTimeUnixNano)
		if name == "connect" {
			at = r.EndUnixNano - 30_000_000 // a gap (TLS) between connect and send
		}
	}
	if at != r.EndUnixNano {
		t.Errorf("receive ends at %d, the call at %d", at, r.EndUnixNano)
	}
}

// A call is sampled as the served request that made it was.
func TestOutboundCallSampling(t *testing.T) {
	s := Sampler{Budget: 35 * time.Millisecond}
	r := outboundCall()
	if d := s.Decide(&r); d != SampledOverBudget {
		t.Errorf("a call inside a request over budget: %v", d)
	}
	r.Inbound.DurationNs = 10_000_000
	r.DurationNs = 50_000_000
	if d := s.Decide(&r); d != NotSampled {
		t.Errorf("a call inside a request under budget and not sampled: %v", d)
	}
}

func spanAttr(s *tracepb.Span, key string) (string, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(v.IntValue, 10), true
			}
			if v, ok := kv.Value.Value.(*commonpb.AnyValue_BoolValue); ok {
				return strconv.FormatBool(v.BoolValue), true
			}
			return kv.Value.GetStringValue(), true
		}
	}
	return "", false
}

// A call on a new TLS connection: its tls object (no client_cert: the
// traced process was the client) and a tls_handshake child between
// connect and send, ending where send begins.
func TestOutboundTLSCall(t *testing.T) {
	r := outboundCall()
	r.EndUnixNano += 3_000_000 // the handshake, and 1 ms before it
	r.DurationNs += 3_000_000
	r.Phases.Set(correlate.TLSHandshake, 2_000_000)
	r.TLS = &correlate.TLS{Known: true, Version: 0x0304, CipherSuite: 0x1301, Resumed: true, Outbound: true}
	line := string(AppendJSON(nil, &r))
	for _, want := range []string{`"tls":{"version":"1.3","cipher":"TLS_AES_128_GCM_SHA256","resumed":true}`,
		`"phases_ns":{"connect":1000000,"tls_handshake":2000000,"send":0,"wait":29000000,"receive":1000000}`} {
		if !strings.Contains(line, want) {
			t.Errorf("no %s in %s", want, line)
		}
	}
	if want, err := json.Marshal(ToJSON(&r)); err != nil || string(want) != line {
		t.Errorf("AppendJSON and ToJSON differ:\n%s\n%s", line, want)
	}
	spans := RequestSpans(&r)
	if _, ok := spanAttr(spans[0], "tracerd.tls.client_cert"); ok {
		t.Error("a call's span says whether the client sent a certificate")
	}
	if v, _ := spanAttr(spans[0], "tls.resumed"); v != "true" {
		t.Errorf("tls.resumed %q", v)
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range spans[1:] {
		byName[s.Name] = s
	}
	hs, send := byName["tls_handshake"], byName["send"]
	if hs == nil || send == nil {
		t.Fatalf("children %v", byName)
	}
	if hs.ParentSpanId == nil || string(hs.ParentSpanId) != string(spans[0].SpanId) {
		t.Error("tls_handshake is not the call span's child")
	}
	if hs.EndTimeUnixNano != send.StartTimeUnixNano || hs.EndTimeUnixNano-hs.StartTimeUnixNano != 2_000_000 {
		t.Errorf("tls_handshake [%d, %d], send begins at %d", hs.StartTimeUnixNano, hs.EndTimeUnixNano, send.StartTimeUnixNano)
	}
	if c := byName["connect"]; c == nil || c.EndTimeUnixNano > hs.StartTimeUnixNano {
		t.Errorf("connect %v does not end before the handshake", c)
	}
}
