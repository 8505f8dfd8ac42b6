package correlate

import "github.com/tracerd/tracerd/internal/tlswire"

// clientWireFacts fills t, an outbound connection's handshake, unless a
// probed library (Go's crypto/tls) described it, from the handshake's
// bytes (bpf/tlswire.h captures a client's flights as a served
// connection's; a process that is not Go: curl, nginx's upstreams): the
// server's ServerHello and the messages after it are in what the client
// read. A client certificate is not a call's fact. The bytes are
// forgotten either way.
func (c *Correlator) clientWireFacts(sk uint64, pid uint32, t *TLS) {
	st := c.tlsWire[sk]
	if st == nil || st.pid != pid {
		return
	}
	c.dropWire(sk)
	if t.Known {
		return
	}
	srv := tlswire.ParseServer(st.in.b)
	if !srv.OK {
		return
	}
	serverFacts(t, srv)
}
