// Package tlswire reads what a TLS handshake negotiated from its bytes
// on the wire: the plaintext part of each side's stream (RFC 5246 TLS
// 1.2, RFC 8446 TLS 1.3). It works for any TLS implementation, server
// or client side, without reading the library's memory.
//
// What the wire tells:
//   - the server's ServerHello (plaintext in 1.2 and 1.3): the version
//     (legacy_version, or the supported_versions extension for 1.3) and
//     the cipher suite;
//   - TLS 1.3 resumption: the ServerHello's pre_shared_key extension;
//   - TLS 1.2 resumption: the abbreviated handshake — the ServerHello is
//     followed by NewSessionTicket or ChangeCipherSpec instead of the
//     server's Certificate/ServerKeyExchange/ServerHelloDone;
//   - TLS 1.2 client certificates: the server's CertificateRequest in its
//     first flight, and the client's Certificate message (its list empty
//     when the client had none) opening its second flight;
//   - TLS 1.3 client certificates: nothing — CertificateRequest and the
//     client's Certificate are both encrypted.
//
// Input is any bytes (a hostile peer writes them): every length is
// checked, nothing panics, and what cannot be read is reported unknown.
// A stream may be cut short (a capture's limit): what lies past the cut
// is unknown, never guessed.
package tlswire

import "encoding/binary"

// TLS record content types and handshake message types.
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23

	msgClientHello        = 1
	msgServerHello        = 2
	msgNewSessionTicket   = 4
	msgCertificate        = 11
	msgServerKeyExchange  = 12
	msgCertificateRequest = 13
	msgServerHelloDone    = 14
	msgClientKeyExchange  = 16

	extSupportedVersions = 43
	extPreSharedKey      = 41

	// VersionTLS12 and VersionTLS13 are crypto/tls's values.
	VersionTLS12 = 0x0303
	VersionTLS13 = 0x0304
)

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest
// (RFC 8446 §4.1.3).
var helloRetryRandom = [32]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// maxMessages bounds the handshake messages read from one stream.
const maxMessages = 32

// Message is one plaintext handshake message.
type Message struct {
	Type uint8
	Body []byte // its body, cut short when the stream was (Complete false)
	// Complete: the whole body is in Body.
	Complete bool
}

// Stream is the plaintext handshake part of one side's byte stream.
type Stream struct {
	Messages []Message
	// ChangeCipherSpec: a ChangeCipherSpec record came after Messages
	// (what follows it is encrypted: not read).
	ChangeCipherSpec bool
	// Ended: the plaintext part ended inside the stream (an encrypted or
	// non-handshake record followed); false when the stream was cut
	// before that, so that more messages may have followed.
	Ended bool
}

// Split reads the plaintext handshake messages at the start of b, a
// prefix of one side's TLS stream. It stops at the end of b, at a
// record that is not a handshake record (a ChangeCipherSpec record is
// noted; TLS 1.3's compatibility ChangeCipherSpec after a
// HelloRetryRequest is skipped), or at a malformed record. Messages may
// span records (fragmentation); the last one may be incomplete.
func Split(b []byte) Stream {
	var s Stream
	var hs []byte // the handshake records' payloads so far
	for len(b) >= 5 {
		typ, major := b[0], b[1]
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if major != 3 || n > 1<<14+2048 {
			s.Ended = true
			break
		}
		payload := b[5:]
		whole := len(payload) >= n
		if whole {
			payload = payload[:n]
		}
		if typ == recordChangeCipherSpec && whole && n == 1 && afterRetry(hs) {
			b = b[5+n:]
			continue
		}
		if typ != recordHandshake {
			s.ChangeCipherSpec = typ == recordChangeCipherSpec
			s.Ended = true
			break
		}
		hs = append(hs, payload...)
		if !whole {
			break
		}
		b = b[5+n:]
	}
	s.Messages = splitMessages(hs)
	return s
}

// afterRetry: the handshake bytes so far are exactly one complete
// HelloRetryRequest (a ServerHello with the retry random).
func afterRetry(hs []byte) bool {
	msgs := splitMessages(hs)
	if len(msgs) != 1 || msgs[0].Type != msgServerHello || !msgs[0].Complete {
		return false
	}
	sh, ok := ParseServerHello(msgs[0].Body)
	return ok && sh.HelloRetry && 4+len(msgs[0].Body) == len(hs)
}

func splitMessages(hs []byte) []Message {
	var msgs []Message
	for len(hs) >= 4 && len(msgs) < maxMessages {
		n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		body := hs[4:]
		if len(body) < n {
			msgs = append(msgs, Message{Type: hs[0], Body: body})
			break
		}
		msgs = append(msgs, Message{Type: hs[0], Body: body[:n], Complete: true})
		hs = body[n:]
	}
	return msgs
}

// ServerHello is what a ServerHello message says.
type ServerHello struct {
	LegacyVersion uint16
	Version       uint16 // supported_versions' when present, else LegacyVersion
	CipherSuite   uint16
	SessionID     []byte
	PreSharedKey  bool // pre_shared_key extension: TLS 1.3 resumption
	HelloRetry    bool // a HelloRetryRequest, not the real ServerHello
}

// ParseServerHello reads a ServerHello message body. Extensions cut
// short are read as far as they are whole; ok is false when the fixed
// part (up to the cipher suite and compression method) is not there.
func ParseServerHello(body []byte) (sh ServerHello, ok bool) {
	if len(body) < 2+32+1 {
		return sh, false
	}
	sh.LegacyVersion = binary.BigEndian.Uint16(body)
	sh.Version = sh.LegacyVersion
	sh.HelloRetry = [32]byte(body[2:34]) == helloRetryRandom
	sid := int(body[34])
	rest := body[35:]
	if sid > 32 || len(rest) < sid+3 {
		return ServerHello{}, false
	}
	sh.SessionID = rest[:sid]
	sh.CipherSuite = binary.BigEndian.Uint16(rest[sid:])
	rest = rest[sid+3:]
	if len(rest) < 2 {
		return sh, true
	}
	exts := rest[2:]
	if n := int(binary.BigEndian.Uint16(rest)); n < len(exts) {
		exts = exts[:n]
	}
	for len(exts) >= 4 {
		typ := binary.BigEndian.Uint16(exts)
		n := int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts) < 4+n {
			break
		}
		data := exts[4 : 4+n]
		switch typ {
		case extSupportedVersions:
			if n == 2 {
				sh.Version = binary.BigEndian.Uint16(data)
			}
		case extPreSharedKey:
			sh.PreSharedKey = n == 2
		}
		exts = exts[4+n:]
	}
	return sh, true
}

// Tri is a fact that may be unknown.
type Tri uint8

// Tri values.
const (
	Unknown Tri = iota
	No
	Yes
)

func tri(b bool) Tri {
	if b {
		return Yes
	}
	return No
}

// Server is what the server's side of a handshake says.
type Server struct {
	Hello   ServerHello // the real ServerHello (after a HelloRetryRequest, the second)
	OK      bool        // Hello was read
	Resumed Tri
	// CertRequested: the server asked for a client certificate (TLS
	// 1.2's plaintext CertificateRequest); Unknown in TLS 1.3 (encrypted)
	// or when the stream was cut before the flight's end.
	CertRequested Tri
}

// ParseServer reads a server's stream: its ServerHello, and for TLS
// 1.2 the rest of its first flight (full or abbreviated handshake,
// certificate request).
func ParseServer(b []byte) Server {
	var srv Server
	s := Split(b)
	at := -1
	for i, m := range s.Messages {
		if m.Type != msgServerHello || !m.Complete {
			continue // a ServerHello cut short may miss supported_versions
		}
		if sh, ok := ParseServerHello(m.Body); ok && !sh.HelloRetry {
			srv.Hello, srv.OK, at = sh, true, i
			break
		}
	}
	if !srv.OK {
		return srv
	}
	if srv.Hello.Version >= VersionTLS13 {
		srv.Resumed = tri(srv.Hello.PreSharedKey)
		return srv
	}
	// TLS 1.2 and earlier: the messages after the ServerHello.
	next := s.Messages[at+1:]
	switch {
	case len(next) > 0 && next[0].Type == msgNewSessionTicket:
		srv.Resumed, srv.CertRequested = Yes, No
	case len(next) > 0 && (next[0].Type == msgCertificate || next[0].Type == msgServerKeyExchange ||
		next[0].Type == msgCertificateRequest || next[0].Type == msgServerHelloDone):
		srv.Resumed = No
		for _, m := range next {
			if m.Type == msgCertificateRequest {
				srv.CertRequested = Yes
				break
			}
			if m.Type == msgServerHelloDone {
				srv.CertRequested = No
				break
			}
		}
	case len(next) == 0 && s.ChangeCipherSpec:
		srv.Resumed, srv.CertRequested = Yes, No
	}
	return srv
}

// Client is what the client's side of a TLS 1.2 handshake says.
type Client struct {
	Hello     bool   // a ClientHello was read
	SessionID []byte // the (last) ClientHello's legacy_session_id
	// Cert: the client sent a certificate (a non-empty Certificate
	// message opening its second flight); No when that flight opens with
	// an empty Certificate or with its ClientKeyExchange; Unknown when the
	// stream was cut before it.
	Cert Tri
}

// ParseClient reads a client's stream: its ClientHello and, in TLS
// 1.2, the start of its second flight. In TLS 1.3 the client's
// certificate is encrypted: Cert is Unknown (the caller knows the
// version from the server's side).
func ParseClient(b []byte) Client {
	var c Client
	s := Split(b)
	for i, m := range s.Messages {
		switch m.Type {
		case msgClientHello:
			c.Hello = true
			c.SessionID = clientSessionID(m.Body)
		case msgCertificate:
			if i > 0 && len(m.Body) >= 3 {
				n := int(m.Body[0])<<16 | int(m.Body[1])<<8 | int(m.Body[2])
				c.Cert = tri(n > 0)
			}
			return c
		case msgClientKeyExchange:
			if i > 0 {
				c.Cert = No
			}
			return c
		}
	}
	return c
}

func clientSessionID(body []byte) []byte {
	if len(body) < 2+32+1 {
		return nil
	}
	n := int(body[34])
	if n > 32 || len(body) < 35+n {
		return nil
	}
	return body[35 : 35+n]
}

// ClientCert is whether the client sent a certificate in this
// handshake, from both sides: TLS 1.2 only (Unknown in 1.3, where it is
// encrypted); No in an abbreviated (resumed) 1.2 handshake or when the
// server asked for none; else the client's Certificate message.
func ClientCert(srv Server, cli Client) Tri {
	switch {
	case !srv.OK || srv.Hello.Version >= VersionTLS13:
		return Unknown
	case srv.Resumed == Yes || srv.CertRequested == No:
		return No
	}
	return cli.Cert
}
