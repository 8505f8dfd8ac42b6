package export

import (
	"testing"

	"github.com/tracerd/tracerd/internal/correlate"
)

// A connection's first request over TLS: the tls.* attributes on the
// server span, and a tls_handshake span ending where app starts, after
// recv_queue (the ClientHello's).
func TestTLSSpans(t *testing.T) {
	r := fixedRequests()[0]
	r.TLS = &correlate.TLS{Known: true, Version: 0x0304, CipherSuite: 0x1301, ClientCert: true}
	r.Phases.Set(correlate.TLSHandshake, 3e6)
	spans := RequestSpans(&r)
	attrs := map[string]string{}
	for _, kv := range spans[0].Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	for k, want := range map[string]string{"tls.protocol.version": `string_value:"1.3"`, "tls.cipher": `string_value:"TLS_AES_128_GCM_SHA256"`,
		"tls.resumed": "bool_value:false", "tracerd.tls.client_cert": "bool_value:true", "tls.established": "bool_value:true"} {
		if attrs[k] != want {
			t.Errorf("%s = %q, want %q", k, attrs[k], want)
		}
	}
	byName := map[string][2]uint64{}
	for _, s := range spans[1:] {
		byName[s.Name] = [2]uint64{s.StartTimeUnixNano, s.EndTimeUnixNano}
	}
	hs, ok := byName["tls_handshake"]
	if !ok {
		t.Fatalf("no tls_handshake span: %v", byName)
	}
	if hs[1]-hs[0] != 3e6 || hs[1] != byName["app"][0] || byName["recv_queue"][1] != hs[0] {
		t.Errorf("tls_handshake %v, app %v, recv_queue %v: want recv_queue → tls_handshake → app", hs, byName["app"], byName["recv_queue"])
	}
}

// url.scheme says https for HTTP/1 under TLS: a connection's first
// request (its handshake known) and the later ones (only their bytes,
// TLS records, say so; their HTTP came from probes).
func TestURLSchemeUnderTLS(t *testing.T) {
	scheme := func(r correlate.Request) string {
		for _, kv := range RequestSpans(&r)[0].Attributes {
			if kv.Key == "url.scheme" {
				return kv.Value.GetStringValue()
			}
		}
		return ""
	}
	plain := fixedRequests()[0]
	if plain.HTTP == nil {
		t.Fatal("fixture without HTTP")
	}
	first, later := plain, plain
	first.TLS = &correlate.TLS{Known: true, Version: 0x0304}
	later.Encrypted = true
	for _, c := range []struct {
		name string
		r    correlate.Request
		want string
	}{{"plaintext", plain, "http"}, {"first under TLS", first, "https"}, {"later under TLS", later, "https"}} {
		if got := scheme(c.r); got != c.want {
			t.Errorf("%s: url.scheme %q, want %q", c.name, got, c.want)
		}
	}
}
