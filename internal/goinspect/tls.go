package goinspect

// TLSServerHandshake is the function a crypto/tls server connection's
// handshake runs in, once per connection: Conn.HandshakeContext calls it
// through the method value c.handshakeFn, under the handshake lock, only
// while the handshake is not complete (Read and Write call
// HandshakeContext every time; they never reach it after).
const TLSServerHandshake = "crypto/tls.(*Conn).serverHandshake"

// TLSClientHandshake is its client side's (tls.Client, net/http's
// Transport on https:// connections): one call per outbound TLS
// connection, the same way.
const TLSClientHandshake = "crypto/tls.(*Conn).clientHandshake"

const dwarfTLSConn = "crypto/tls.Conn"

// TLSLayout holds the offsets in crypto/tls.Conn of what a handshake
// negotiated, read when serverHandshake or clientHandshake returns
// (amd64).
type TLSLayout struct {
	Vers             uint64 // vers (uint16): the protocol version
	DidResume        uint64 // didResume (bool)
	CipherSuite      uint64 // cipherSuite (uint16)
	PeerCertificates uint64 // peerCertificates ([]*x509.Certificate): its length at +8
}

// tlsLayoutOf reads the layout from the struct members DWARF gave; nil
// unless every field is there (the Conn has held these fields since Go
// 1.0, but a renamed one must not be read at a guessed place). Fields
// at offset 0 are impossible (conn, the net.Conn, is first): such a
// layout is refused too.
func tlsLayoutOf(types map[string]map[string]dwarfMember) *TLSLayout {
	conn, ok := types[dwarfTLSConn]
	if !ok {
		return nil
	}
	var l TLSLayout
	for name, dst := range map[string]*uint64{
		"vers": &l.Vers, "didResume": &l.DidResume, "cipherSuite": &l.CipherSuite, "peerCertificates": &l.PeerCertificates,
	} {
		m, ok := conn[name]
		if !ok || m.off == 0 {
			return nil
		}
		*dst = m.off
	}
	return &l
}
