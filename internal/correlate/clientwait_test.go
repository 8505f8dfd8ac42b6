package correlate

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// A connection's first call after a full TLS 1.3 handshake whose server
// sent its session tickets after its first flight, read by the client
// only after it wrote its request (they arrived before): the first read
// (T_rd) took the tickets, and the kernel's T_rx is then the first
// arrival after the request's last write (bpf/client.h), later than
// T_rd. The call waited for its answer until T_rx, not until the
// tickets' read.
func TestClientWaitAfterQueuedTickets(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, ProbeCostNs: 100}, true)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	hs := clientHandshake(900, 3600, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, loader.TracerdGoTlsFlagsGO_TLS_KNOWN)
	c.AddGo(&hs)
	// Finished at 3450, the request at 3700; the tickets read at 3710;
	// the answer arrived at 33000, read from 33010 to 33200.
	call := tlsCall(1, 3450, 3700, 3710, 33200, ccs, appData, EndIdle)
	call.T_rx, call.Flags = 33000, call.Flags|uint32(loader.TracerdReqFlagsREQ_HAS_RX)
	c.AddRecord(&call)
	c.Flush(0)
	r := out.one(t)
	if v, _ := r.Phases.Get(Wait); v != 33000-3700 {
		t.Errorf("wait = %d, want %d (the request's last write → the answer's first arrival)", v, 33000-3700)
	}
	if v, _ := r.Phases.Get(Receive); v != 33200-33000 {
		t.Errorf("receive = %d, want %d", v, 33200-33000)
	}
	// Unchanged: the answer's arrival before its first read.
	rec := clientRec(7, 100*ms, 101*ms, 102*ms, 132*ms, 133*ms, 134*ms, 0)
	got := FromRecordForTest(&rec)
	if v, _ := got.Phases.Get(Wait); v != int64(30*ms) {
		t.Errorf("wait = %d, want 30 ms", v)
	}
}
