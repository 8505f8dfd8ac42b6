package findings

import (
	"crypto/tls"
	"net/netip"

	"github.com/tracerd/tracerd/internal/correlate"
)

// tlsSessionWindow: a client that completed a handshake with a server
// this recently could have resumed that session (nginx's
// ssl_session_timeout defaults to 5 minutes; Go's tickets live 7 days).
const tlsSessionWindow = int64(5 * 60 * 1e9)

// maxTLSClients bounds the clients remembered; past it, stale ones are
// swept and, if none is stale, new clients are not remembered.
const maxTLSClients = 1 << 16

// tlsClientKey is a client (its address, not its port) of a server (a
// process's listening port).
type tlsClientKey struct {
	pid    uint32
	port   uint16
	client netip.Addr
}

// tlsClients remembers when each client's last handshake with a server
// started. Used from the Analyzer's one goroutine.
type tlsClients struct {
	last map[tlsClientKey]int64
}

// seen records r's handshake, when it has one, and returns how long
// before it the same client's previous handshake with the same server
// started (0: none within tlsSessionWindow).
func (c *tlsClients) seen(r *correlate.Request) (sinceNs int64) {
	// An outbound call's handshake is the traced process's as a client:
	// its key would be its ephemeral port, never seen again.
	if r.TLS == nil || r.TLS.Outbound || !r.Conn.Peer.IsValid() {
		return 0
	}
	if c.last == nil {
		c.last = map[tlsClientKey]int64{}
	}
	k := tlsClientKey{r.PID, r.Conn.Local.Port(), r.Conn.Peer.Addr().Unmap()}
	now := r.StartUnixNano
	prev, had := c.last[k]
	if had && prev < now && now-prev <= tlsSessionWindow {
		sinceNs = now - prev
	}
	if !had || prev < now {
		if !had && len(c.last) >= maxTLSClients {
			for kk, at := range c.last {
				if now-at > tlsSessionWindow {
					delete(c.last, kk)
				}
			}
			if len(c.last) >= maxTLSClients {
				return sinceNs
			}
		}
		c.last[k] = now
	}
	return sinceNs
}

// tlsFullHandshake names a full TLS 1.2 handshake (read from the
// server's TLS library: not resumed, not failed) by a client that had
// completed one with the same server within tlsSessionWindow: resuming
// would have saved a round trip (TLS 1.2's abbreviated handshake). The
// loss is one smoothed round trip, at most the handshake. TLS 1.3
// resumption takes as many round trips as a full handshake (0-RTT
// aside): not named.
func tlsFullHandshake(r *correlate.Request, sinceNs int64) (lost int64, yes bool) {
	t := r.TLS
	if sinceNs == 0 || t == nil || !t.Known || t.ResumedUnknown || t.Resumed || t.Failed || t.Version != tls.VersionTLS12 || !r.TCP.Valid {
		return 0, false
	}
	hs, ok := r.Phases.Get(correlate.TLSHandshake)
	if !ok {
		return 0, false
	}
	return min(int64(r.TCP.SrttUs)*1000, hs), true
}
