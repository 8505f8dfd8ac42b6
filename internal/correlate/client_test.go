package correlate

import (
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// serverRec is a served request of pid 10, read at rd and answered at wl
// by thread tid.
func serverRec(tid uint32, rd, wl uint64) loader.Record {
	return loader.Record{Kind: 1, Pid: 10, Tid: tid, T_rd: rd, T_wr: wl, T_wl: wl, EndReason: 1, Sk: 1}
}

// clientRec is a call of pid 10 by thread tid: connect from syn (0: a
// pooled connection) to est, request written at wr, its answer first
// arrived at rx and read from rd to rl.
func clientRec(tid uint32, syn, est, wr, rx, rd, rl uint64, index uint32) loader.Record {
	rec := loader.Record{Kind: 1, Pid: 10, Tid: tid, Direction: uint8(DirClient), T_syn: syn, T_est: est,
		T_wr: wr, T_wl: wr, T_tx: wr, T_rx: rx, T_rd: rd, T_rl: rl, RequestIndex: index, EndReason: 2, Sk: 2,
		Flags: uint32(loader.TracerdReqFlagsREQ_HAS_EST | loader.TracerdReqFlagsREQ_HAS_RX)}
	head := "GET /down HTTP/1.1\r\nHost: x\r\n\r\n"
	rec.ReqLen = uint16(copy(rec.ReqHead[:], head))
	rec.RespLen = uint16(copy(rec.RespHead[:], "HTTP/1.1 503 Service Unavail"))
	return rec
}

func TestClientPhases(t *testing.T) {
	rec := clientRec(7, 100*ms, 101*ms, 102*ms, 132*ms, 133*ms, 134*ms, 0)
	r := FromRecordForTest(&rec)
	if r.Direction != DirClient || r.Direction.String() != "client" {
		t.Fatalf("direction %v", r.Direction)
	}
	want := map[Phase]uint64{Connect: 1 * ms, Send: 0, Wait: 30 * ms, Receive: 2 * ms}
	for p, v := range want {
		if got, ok := r.Phases.Get(p); !ok || got != int64(v) {
			t.Errorf("%s = %d (%v), want %d", p, got, ok, v)
		}
	}
	for _, p := range []Phase{App, RecvQueue, AcceptQueue} {
		if r.Phases.Has(p) {
			t.Errorf("a call has %s", p)
		}
	}
	if r.DurationNs != int64(34*ms) {
		t.Errorf("duration %d, want connect to last read (34 ms)", r.DurationNs)
	}
	if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/down" || r.HTTP.Status != 503 {
		t.Errorf("http %+v", r.HTTP)
	}
	// A pooled connection's request pays no connect, starts at its write.
	rec = clientRec(7, 100*ms, 101*ms, 200*ms, 210*ms, 211*ms, 211*ms, 3)
	r = FromRecordForTest(&rec)
	if r.Phases.Has(Connect) || r.DurationNs != int64(11*ms) {
		t.Errorf("pooled: connect %v, duration %d", r.Phases.Has(Connect), r.DurationNs)
	}
}

// FromRecordForTest decodes rec as the correlator does.
func FromRecordForTest(rec *loader.Record) Request {
	c, _ := newCorrelator(time.Second)
	var r Request
	c.decode(&r, rec)
	return r
}

func TestClientParent(t *testing.T) {
	t.Run("call first, same thread", func(t *testing.T) {
		c, out := newCorrelator(time.Hour)
		c.NoteCaller(10)
		call := clientRec(7, 0, 0, 20*ms, 40*ms, 41*ms, 41*ms, 1)
		c.AddRecord(&call)
		if len(out.reqs) != 0 {
			t.Fatal("a call was emitted before its inbound request could be known")
		}
		srv := serverRec(7, 10*ms, 50*ms)
		c.AddRecord(&srv)
		got := out.take()
		if len(got) != 2 || got[0].Direction != DirServer || got[1].Direction != DirClient {
			t.Fatalf("emitted %d: %+v", len(got), got)
		}
		if got[1].ParentSpanID != got[0].SpanID || got[1].TraceID != got[0].TraceID {
			t.Errorf("call's parent %s/%s, request %s/%s", got[1].TraceID, got[1].ParentSpanID, got[0].TraceID, got[0].SpanID)
		}
	})
	t.Run("request first, other thread", func(t *testing.T) {
		c, out := newCorrelator(time.Hour)
		c.NoteCaller(10)
		srv := serverRec(7, 10*ms, 50*ms)
		c.AddRecord(&srv)
		call := clientRec(8, 0, 0, 20*ms, 40*ms, 41*ms, 41*ms, 1)
		c.AddRecord(&call)
		got := out.take()
		if len(got) != 2 || got[1].ParentSpanID != got[0].SpanID {
			t.Fatalf("the only request containing the call is not its parent: %+v", got)
		}
	})
	t.Run("ambiguous", func(t *testing.T) {
		c, out := newCorrelator(time.Hour)
		c.NoteCaller(10)
		a, b := serverRec(7, 10*ms, 50*ms), serverRec(9, 12*ms, 60*ms)
		c.AddRecord(&a)
		c.AddRecord(&b)
		call := clientRec(8, 0, 0, 20*ms, 40*ms, 41*ms, 41*ms, 1)
		c.AddRecord(&call)
		c.Flush(0)
		got := out.take()
		if len(got) != 3 || !got[2].ParentSpanID.IsZero() {
			t.Fatalf("a call two requests on other threads contain got a parent: %+v", got)
		}
		// On the thread of one of them: that one.
		call = clientRec(9, 0, 0, 20*ms, 40*ms, 41*ms, 41*ms, 1)
		c.AddRecord(&call)
		got = out.take()
		if len(got) != 1 || got[0].ParentSpanID != (func() SpanID { w, _ := c.clients.newest(10); return w.span })() {
			t.Fatalf("call on thread 9 not under the request of thread 9: %+v", got)
		}
	})
	t.Run("no request", func(t *testing.T) {
		c, out := newCorrelator(time.Hour)
		c.NoteCaller(10)
		call := clientRec(7, 0, 0, 20*ms, 40*ms, 41*ms, 41*ms, 1)
		c.AddRecord(&call)
		c.Expire(time.Now().UnixNano())
		if len(out.reqs) != 0 {
			t.Fatal("released before the horizon")
		}
		c.goRetain = 0
		c.Expire(time.Now().UnixNano() + 1)
		got := out.take()
		if len(got) != 1 || !got[0].ParentSpanID.IsZero() || got[0].TraceID.IsZero() {
			t.Fatalf("an orphan call: %+v", got)
		}
	})
}

// A process that makes no calls: its requests' windows are not kept.
func TestNoCallerNoWindows(t *testing.T) {
	c, _ := newCorrelator(time.Hour)
	srv := serverRec(7, 10*ms, 50*ms)
	c.AddRecord(&srv)
	if _, ok := c.clients.newest(10); ok {
		t.Error("a window kept for a process that makes no calls")
	}
	c.NoteCaller(10)
	c.AddRecord(&srv)
	if _, ok := c.clients.newest(10); !ok {
		t.Error("no window for a caller")
	}
}

// BenchmarkCallAfterItsRequest: a call whose record comes after its
// inbound request's, among many requests of the process.
func BenchmarkCallAfterItsRequest(b *testing.B) {
	c, out := newCorrelator(time.Hour)
	c.clock = Clock{offset: time.Now().UnixNano() - MonotonicNow()}
	c.emit = func(*Request) {}
	_ = out
	c.NoteCaller(10)
	b.ReportAllocs()
	for i := range b.N {
		at := uint64(MonotonicNow()) - 50_000 // a request of 40 µs, just ended
		srv := serverRec(uint32(i%8), at, at+40_000)
		c.AddRecord(&srv)
		call := clientRec(uint32(i%8), 0, 0, at+10_000, at+20_000, at+21_000, at+21_000, 1)
		c.AddRecord(&call)
	}
}

// BenchmarkCallsWithoutRequest: calls of a caller process outside any
// request (held until the horizon, the bound reached).
func BenchmarkCallsWithoutRequest(b *testing.B) {
	c, _ := newCorrelator(time.Hour)
	c.clock = Clock{offset: time.Now().UnixNano() - MonotonicNow()}
	c.emit = func(*Request) {}
	c.NoteCaller(10)
	b.ReportAllocs()
	for i := range b.N {
		at := uint64(MonotonicNow())
		call := clientRec(uint32(i%8), 0, 0, at, at+1000, at+2000, at+2000, 1)
		c.AddRecord(&call)
		if i%64 == 0 {
			srv := serverRec(99, at-10_000_000, at-9_000_000) // another thread's, long over
			c.AddRecord(&srv)
		}
	}
}
