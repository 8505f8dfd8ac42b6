package export

import (
	"crypto/tls"
	"strconv"

	"github.com/tracerd/tracerd/internal/correlate"
)

// JSONTLS is a connection's TLS handshake, on its first request (an
// outbound call's connection: on its first call). version, cipher,
// resumed and client_cert are absent when unknown: the TLS library could
// not be read (no probe, or a stripped Go binary) and the handshake's
// bytes did not tell (no ServerHello captured; TLS 1.3 encrypts the
// client's certificate); client_cert is a served connection's alone.
type JSONTLS struct {
	Version    string `json:"version,omitempty"`
	Cipher     string `json:"cipher,omitempty"`
	Resumed    *bool  `json:"resumed,omitempty"`
	ClientCert *bool  `json:"client_cert,omitempty"`
	Failed     bool   `json:"failed,omitempty"`
}

// TLSVersionName is a protocol version as the JSON's tls.version has it.
func TLSVersionName(v uint16) string { return tlsVersion(v) }

// tlsVersion is a protocol version as OpenTelemetry's
// tls.protocol.version has it: "1.3"; "" when unknown.
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	case 0:
		return ""
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

// tlsCipher is a cipher suite's IANA name ("0x%04X" when unknown to Go).
func tlsCipher(id uint16) string {
	if id == 0 {
		return ""
	}
	return tls.CipherSuiteName(id)
}

func toJSONTLS(t *correlate.TLS) *JSONTLS {
	j := &JSONTLS{Failed: t.Failed}
	if t.Known {
		resumed, cert := t.Resumed, t.ClientCert
		j.Version, j.Cipher = tlsVersion(t.Version), tlsCipher(t.CipherSuite)
		if !t.ResumedUnknown {
			j.Resumed = &resumed
		}
		if !t.ClientCertUnknown && !t.Outbound {
			j.ClientCert = &cert
		}
	}
	return j
}

// appendTLS writes the "tls" member as encoding/json would write JSONTLS.
func appendTLS(b []byte, t *correlate.TLS) []byte {
	b = append(b, `,"tls":{`...)
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	if t.Known {
		if v := tlsVersion(t.Version); v != "" {
			sep()
			b = append(b, `"version":`...)
			b = appendString(b, v)
		}
		if c := tlsCipher(t.CipherSuite); c != "" {
			sep()
			b = append(b, `"cipher":`...)
			b = appendString(b, c)
		}
		if !t.ResumedUnknown {
			sep()
			b = append(b, `"resumed":`...)
			b = strconv.AppendBool(b, t.Resumed)
		}
		if !t.ClientCertUnknown && !t.Outbound {
			sep()
			b = append(b, `"client_cert":`...)
			b = strconv.AppendBool(b, t.ClientCert)
		}
	}
	if t.Failed {
		sep()
		b = append(b, `"failed":true`...)
	}
	return append(b, '}')
}

// tlsAttributes are the OpenTelemetry tls.* attributes of a request
// that carried its connection's handshake.
func tlsAttributes(a *attrs, t *correlate.TLS) {
	a.str("tls.protocol.name", "tls")
	a.bool("tls.established", !t.Failed)
	if !t.Known {
		return
	}
	if v := tlsVersion(t.Version); v != "" {
		a.str("tls.protocol.version", v)
	}
	if c := tlsCipher(t.CipherSuite); c != "" {
		a.str("tls.cipher", c)
	}
	if !t.ResumedUnknown {
		a.bool("tls.resumed", t.Resumed)
	}
	if !t.ClientCertUnknown && !t.Outbound {
		a.bool("tracerd.tls.client_cert", t.ClientCert)
	}
}
