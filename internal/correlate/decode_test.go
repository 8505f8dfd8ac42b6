package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

const ms = uint64(1_000_000)

func baseRecord() loader.Record {
	var rec loader.Record
	rec.Flags = uint32(loader.TracerdReqFlagsREQ_HAS_EST | loader.TracerdReqFlagsREQ_HAS_RX |
		loader.TracerdReqFlagsREQ_HAS_SOFTIRQ | loader.TracerdReqFlagsREQ_HAS_SCHED | loader.TracerdReqFlagsREQ_HAS_TCP)
	rec.T_est = 1000 * ms
	rec.T_rx = 1001 * ms
	rec.T_acc = 1010 * ms // data arrived before accept()
	rec.T_rd = 1030 * ms
	rec.T_wr = 1050 * ms
	rec.T_wl = 1060 * ms
	rec.T_tx = 1065 * ms
	rec.T_ack = 1066 * ms
	rec.SoftirqNs = 3000
	rec.RunqNs = 4 * ms
	rec.ThrottleNs = 5 * ms
	rec.Family = uint16(loader.TracerdAddrFamilyFAMILY_INET)
	copy(rec.Laddr[:], []byte{127, 0, 0, 1})
	copy(rec.Raddr[:], []byte{127, 0, 0, 2})
	rec.Lport, rec.Rport = 8080, 40000
	copy(rec.ReqHead[:], "GET /api/x?y=1 HTTP/1.1\r\nHost: a\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	rec.ReqLen = uint16(len("GET /api/x?y=1 HTTP/1.1\r\nHost: a\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"))
	copy(rec.RespHead[:], "HTTP/1.1 404 Not Found\r\n")
	rec.RespLen = 24
	rec.EndReason = uint8(loader.TracerdEndReasonEND_IDLE)
	return rec
}

func TestPhasesFromRecord(t *testing.T) {
	rec := baseRecord()
	r := FromRecord(&rec, Clock{offset: 0})
	want := map[Phase]int64{
		AcceptQueue: int64(10 * ms),
		Softirq:     3000,
		RecvQueue:   int64(20 * ms), // from accept, not from arrival
		Runqueue:    int64(4 * ms),
		CFSThrottle: int64(5 * ms),
		App:         int64(30 * ms),
		SendQueue:   int64(5 * ms),
		AckWait:     int64(1 * ms),
	}
	for p := Phase(0); p < NumPhases; p++ {
		got, ok := r.Phases.Get(p)
		w, wok := want[p]
		if ok != wok || got != w {
			t.Errorf("%s = %d (present %v), want %d (present %v)", p, got, ok, w, wok)
		}
	}
	if r.DurationNs != int64(65*ms) || r.StartUnixNano != int64(1000*ms) {
		t.Errorf("duration %d start %d: want from T_est to T_tx", r.DurationNs, r.StartUnixNano)
	}
	if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/api/x?y=1" || r.HTTP.Status != 404 {
		t.Errorf("http = %+v", r.HTTP)
	}
	if r.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || r.ParentSpanID.String() != "b7ad6b7169203331" {
		t.Errorf("traceparent: trace %q parent %q", r.TraceID, r.ParentSpanID)
	}
	if r.Route() != "GET /api/x" || r.EndReason != EndIdle {
		t.Errorf("route %q end %q", r.Route(), r.EndReason)
	}
	if r.Conn.Local != netip.MustParseAddrPort("127.0.0.1:8080") || r.Conn.Peer != netip.MustParseAddrPort("127.0.0.2:40000") {
		t.Errorf("conn %+v", r.Conn)
	}
}

// A phase whose hook did not run is absent, never a made-up 0.
func TestUnmeasuredPhasesAreAbsent(t *testing.T) {
	rec := baseRecord()
	rec.Flags = 0
	rec.T_tx, rec.T_ack = 0, 0
	rec.RequestIndex = 3
	r := FromRecord(&rec, Clock{})
	for _, p := range []Phase{AcceptQueue, Softirq, RecvQueue, Runqueue, CFSThrottle, SendQueue, AckWait, GCSTW, Serialize} {
		if r.Phases.Has(p) {
			t.Errorf("%s present without its measurement", p)
		}
	}
	if !r.Phases.Has(App) {
		t.Error("app missing")
	}
	if r.TCP.Valid {
		t.Error("tcp facts claimed without an incoming segment")
	}
	if r.DurationNs != int64(30*ms) {
		t.Errorf("duration %d: want T_rd..T_wl when T_rx and T_tx are unknown", r.DurationNs)
	}
}

func TestTransmitBeforeWriteReturnIsZeroSendQueue(t *testing.T) {
	rec := baseRecord()
	rec.T_tx = rec.T_wl - 1000 // loopback: sent inside the write syscall
	r := FromRecord(&rec, Clock{})
	if v, ok := r.Phases.Get(SendQueue); !ok || v != 0 {
		t.Errorf("send_queue = %d, %v; want measured 0", v, ok)
	}
}

func TestIPv4MappedAddresses(t *testing.T) {
	rec := baseRecord()
	rec.Family = uint16(loader.TracerdAddrFamilyFAMILY_INET6)
	mapped := netip.MustParseAddr("::ffff:10.1.2.3").As16()
	rec.Laddr = mapped
	if got := FromRecord(&rec, Clock{}).Conn.Local.Addr(); got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("local = %v", got)
	}
}

func TestCorrelatorIDs(t *testing.T) {
	c, out := newCorrelator(time.Second)
	rec := baseRecord()
	c.AddRecord(&rec)
	c.AddRecord(&rec)
	a, b := out.one(t), out.one(t)
	if a.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || a.SpanID.IsZero() || a.SpanID == b.SpanID {
		t.Errorf("ids: %q %q / %q", a.TraceID, a.SpanID, b.SpanID)
	}
	rec.ReqLen = 0
	c.AddRecord(&rec)
	d := out.one(t)
	if d.TraceID.IsZero() || d.TraceID == a.TraceID || !d.ParentSpanID.IsZero() {
		t.Errorf("new trace: %q parent %q", d.TraceID, d.ParentSpanID)
	}
}

func TestPhaseNames(t *testing.T) {
	for p := Phase(0); p < NumPhases; p++ {
		if q, ok := PhaseByName(p.String()); !ok || q != p {
			t.Errorf("PhaseByName(%q) = %v, %v", p, q, ok)
		}
	}
	if App.Nested() || !Runqueue.Nested() || Serialize.Parent() != App {
		t.Error("nesting wrong")
	}
}

func TestIsTLSRequestHead(t *testing.T) {
	for _, c := range []struct {
		head []byte
		want bool
	}{
		{[]byte{0x17, 0x03, 0x03, 0x00, 0x20}, true}, // application data
		{[]byte{0x16, 0x03, 0x01, 0x02, 0x00}, true}, // ClientHello
		{[]byte("GET / HTTP/1.1\r\n"), false},
		{[]byte{0x17, 0x03}, false},                   // too short to tell
		{[]byte{0x18, 0x03, 0x03, 0x00, 0x20}, false}, // not a content type
		{[]byte{0x17, 0x02, 0x03, 0x00, 0x20}, false},
	} {
		var rec loader.Record
		rec.ReqLen = uint16(len(c.head))
		copy(rec.ReqHead[:], c.head)
		if got := isTLSRequestHead(&rec); got != c.want {
			t.Errorf("%x: %v, want %v", c.head, got, c.want)
		}
	}
}
