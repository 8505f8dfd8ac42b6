package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

func TestUnionAndOverlap(t *testing.T) {
	ivs := []interval{{start: 10, end: 20}, {start: 15, end: 30}, {start: 40, end: 50}, {start: 41, end: 45}}
	if got := union(ivs); got != 30 {
		t.Errorf("union = %d, want 30 (nested calls count once)", got)
	}
	if got := overlap([]interval{{start: 0, end: 10}, {start: 20, end: 30}}, 5, 25, 0); got != 10 {
		t.Errorf("overlap = %d, want 10", got)
	}
	// The probes' cost comes off each end, never below the start.
	if got := overlap([]interval{{start: 0, end: 10}, {start: 20, end: 22}}, 5, 25, 3); got != 2 {
		t.Errorf("overlap with cost = %d, want 2", got)
	}
	if union(nil) != 0 {
		t.Error("union of nothing")
	}
}

// emitted keeps what a correlator emits, in order.
type emitted struct{ reqs []Request }

func (e *emitted) add(r *Request) { e.reqs = append(e.reqs, r.Clone()) }

// take returns what was emitted since the last take.
func (e *emitted) take() []Request {
	out := e.reqs
	e.reqs = nil
	return out
}

// one returns the oldest request not taken yet.
func (e *emitted) one(t *testing.T) Request {
	t.Helper()
	if len(e.reqs) == 0 {
		t.Fatal("no request emitted")
	}
	r := e.reqs[0]
	e.reqs = e.reqs[1:]
	return r
}

// newCorrelator returns a correlator whose clock is the monotonic one.
func newCorrelator(goRetain time.Duration) (*Correlator, *emitted) {
	out := &emitted{}
	c := New(goRetain, out.add)
	c.clock = Clock{}
	return c, out
}

func goEvent(fn goFunc, goid, start, end uint64, arg uint32) loader.GoEvent {
	return loader.GoEvent{Kind: uint32(loader.KindGo), Pid: 7, Goid: goid, Func: uint32(fn), Start: start, End: end, Arg: arg}
}

// A kernel request gets the Go view of its goroutine and process: GC
// pauses in its window, serialization (nested calls once), net/http facts.
func TestJoinGo(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{GC: true, Serialization: true, HTTP: true, ProbeCostNs: 100}, true)
	events := []loader.GoEvent{
		goEvent(goServeHTTP, 5, 1100, 9000, 0),
		goEvent(goJSONEncode, 5, 2000, 5100, 0),  // 3000 after the probe cost
		goEvent(goJSONMarshal, 5, 2500, 3100, 0), // nested in Encode
		goEvent(goJSONMarshal, 6, 2500, 3100, 0), // another goroutine
		goEvent(goWriteHeader, 5, 6000, 6000, 404),
		goEvent(goSTW, 0, 3000, 3600, 1),   // GC: 500 after cost
		goEvent(goSTW, 0, 7000, 7300, 7),   // ReadMemStats: not GC
		goEvent(goSTW, 0, 20000, 21000, 2), // outside the request
	}
	methodPath := func(ev *loader.GoEvent, m, p string) {
		for i := range m {
			ev.Method[i] = int8(m[i])
		}
		for i := range p {
			ev.Path[i] = int8(p[i])
		}
		ev.MethodLen, ev.PathLen = uint8(len(m)), uint8(len(p))
	}
	methodPath(&events[0], "GET", "/items")
	for i := range events {
		c.AddGo(&events[i])
	}
	rec := baseRecord()
	rec.Pid, rec.Goid = 7, 5
	rec.T_rd, rec.T_wl, rec.T_tx, rec.T_ack = 1000, 10000, 10000, 0
	rec.T_est, rec.T_rx, rec.T_acc = 0, 900, 0
	rec.Flags = uint32(loader.TracerdReqFlagsREQ_HAS_RX)
	copy(rec.ReqHead[:], "GET /items?page=2 HTTP/1.1\r\n\r\n")
	rec.ReqLen = 30
	c.AddRecord(&rec)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d requests emitted, want the record's (its ServeHTTP had come)", len(got))
	}
	r := got[0]
	if v, _ := r.Phases.Get(GCSTW); v != 500 {
		t.Errorf("gc_stw = %d, want 500 (GC pause only, probe cost off)", v)
	}
	if v, _ := r.Phases.Get(Serialize); v != 3000 {
		t.Errorf("serialize = %d, want 3000", v)
	}
	if r.HTTP.Status != 404 || r.HTTP.Target != "/items?page=2" || r.HTTP.Method != "GET" {
		t.Errorf("http = %+v (ServeHTTP path equal to the bytes': keep the query)", r.HTTP)
	}
	names := map[string]bool{}
	for _, s := range r.Spans {
		names[s.Name] = true
	}
	for _, n := range []string{"net/http.serverHandler.ServeHTTP", "encoding/json.(*Encoder).Encode", "encoding/json.Marshal", gcPauseSpans[1]} {
		if !names[n] {
			t.Errorf("span %q missing: %+v", n, r.Spans)
		}
	}
	if c.Flush(1 << 62); len(out.reqs) != 0 {
		t.Errorf("a joined ServeHTTP came out as a stream: %+v", out.reqs)
	}
}

// A GC pause is timed between two probes' clock reads, whichever probe
// ends it: a mark termination at startTheWorldWithSema's entry (Go's
// clock stops before the call), a sweep termination at its RET (Go's
// clock stops inside it, before the RET). Either way the stop probe reads
// its clock an entry probe's tail before Go's clock starts, and the
// ending probe reads its own a probe's head after Go's clock stops: the
// pair that calibration times from entry to RET on an empty function.
// So the same cost comes off both kinds, and gc_stw is what Go counts in
// PauseTotalNs.
func TestGCPauseProbeCost(t *testing.T) {
	const tail, head = 700, 600 // ns
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{GC: true, ProbeCostNs: tail + head}, true)
	// pause is the event the probes make of a pause Go times as [from, to].
	pause := func(reason loader.TracerdStwReason, from, to uint64) loader.GoEvent {
		return goEvent(goSTW, 0, from-tail, to+head, uint32(reason))
	}
	for _, ev := range []loader.GoEvent{
		pause(loader.TracerdStwReasonSTW_GC_SWEEP_TERM, 20_000, 23_000),
		pause(loader.TracerdStwReasonSTW_GC_MARK_TERM, 40_000, 45_000),
	} {
		c.AddGo(&ev)
	}
	rec := baseRecord()
	rec.Pid, rec.Goid = 7, 0
	rec.T_rd, rec.T_wl, rec.T_tx = 10_000, 60_000, 60_000
	c.AddRecord(&rec)
	r := out.one(t)
	if v, _ := r.Phases.Get(GCSTW); v != 3000+5000 {
		t.Errorf("gc_stw = %d, want 8000: Go's own pause times", v)
	}
	want := map[string]int64{
		gcPauseSpans[loader.TracerdStwReasonSTW_GC_SWEEP_TERM]: 3000,
		gcPauseSpans[loader.TracerdStwReasonSTW_GC_MARK_TERM]:  5000,
	}
	for _, s := range r.Spans {
		if s.DurationNs != want[s.Name] {
			t.Errorf("span %q: %d ns, want %d", s.Name, s.DurationNs, want[s.Name])
		}
		delete(want, s.Name)
	}
	if len(want) != 0 {
		t.Errorf("pause spans missing: %v", want)
	}
}

// A ServeHTTP no kernel record claims (HTTP/2) becomes its own request.
func TestStreams(t *testing.T) {
	c, out := newCorrelator(time.Second)
	c.SetGoProbes(7, goprobe.Probes{GC: true, HTTP: true, Serialization: true}, true)
	ev := goEvent(goServeHTTP, 9, 1000, 5000, 0)
	ev.Method[0], ev.MethodLen = 'P', 1
	copy8 := func(dst []int8, s string) uint8 {
		for i := range s {
			dst[i] = int8(s[i])
		}
		return uint8(len(s))
	}
	ev.MethodLen = copy8(ev.Method[:], "POST")
	ev.PathLen = copy8(ev.Path[:], "/rpc")
	ev.RemoteLen = copy8(ev.Remote[:], "127.0.0.1:4000")
	ev.ProtoMajor = 2
	c.AddGo(&ev)
	c.goProcs[7].notePeer(netip.MustParseAddrPort("127.0.0.1:4000"), 900) // its connection is traced
	wh := goEvent(goWriteHeader, 9, 4990, 4990, 201)
	c.AddGo(&wh)
	if c.Expire(5000 + int64(time.Millisecond)); len(out.reqs) != 0 {
		t.Fatalf("stream emitted before the join horizon: %+v", out.reqs)
	}
	c.Expire(5000 + int64(2*time.Second))
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d streams", len(got))
	}
	r := got[0]
	if r.HTTP.Method != "POST" || r.HTTP.Target != "/rpc" || r.HTTP.Status != 201 || r.Conn.Peer.String() != "127.0.0.1:4000" || r.EndReason != EndStream {
		t.Errorf("stream request: %+v %+v", r.HTTP, r.Conn)
	}
	if v, ok := r.Phases.Get(App); !ok || v != 4000 {
		t.Errorf("app = %d", v)
	}
}

// A grpc-go call becomes its own request: service and method from the
// path, the status code written inside it, the protobuf work in
// serialize; a status written on another goroutine is not its own.
func TestGRPCStream(t *testing.T) {
	c, out := newCorrelator(time.Second)
	c.SetGoProbes(7, goprobe.Probes{HTTP: true, GRPC: true, Serialization: true, ProbeCostNs: 10_000}, true)
	ev := goEvent(goGRPCMethod, 9, 1000, 9100, 0)
	for i, b := range []byte("/pkg.Lab/Sleep") {
		ev.Path[i] = int8(b)
		ev.PathLen++
	}
	c.AddGo(&ev)
	for _, e := range []loader.GoEvent{
		goEvent(goProtoUnmarsh, 9, 1100, 1300, 0),
		goEvent(goProtoMarshal, 9, 2000, 3100, 0),
		goEvent(goGRPCStatus, 10, 9000, 9000, 13), // another call's
		goEvent(goGRPCStatus, 9, 9050, 9050, 5),   // within the probes' margin
	} {
		c.AddGo(&e)
	}
	// Calibration ends after the events came: the calibrated cost applies.
	c.SetGoProbes(7, goprobe.Probes{HTTP: true, GRPC: true, Serialization: true, ProbeCostNs: 100}, true)
	c.goProcs[7].notePeer(netip.MustParseAddrPort("127.0.0.1:4000"), 900)
	c.Flush(1 << 62)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if r.RPC == nil || *r.RPC != (RPC{System: "grpc", Service: "pkg.Lab", Method: "Sleep", StatusCode: 5, StatusKnown: true}) {
		t.Errorf("rpc %+v", r.RPC)
	}
	if r.HTTP.Method != "POST" || r.HTTP.Target != "/pkg.Lab/Sleep" || r.HTTP.Status != 0 {
		t.Errorf("http %+v", r.HTTP)
	}
	if v, _ := r.Phases.Get(App); v != 8000 {
		t.Errorf("app %d, want 8000", v)
	}
	if v, _ := r.Phases.Get(Serialize); v != 100+1000 {
		t.Errorf("serialize %d, want 1100", v)
	}
	if len(r.Spans) != 3 || r.Spans[0].Name != goFuncNames[goGRPCMethod] {
		t.Errorf("spans %+v", r.Spans)
	}
}

// A call that waits for the join horizon keeps the calls made inside
// it: the session's tick prunes calls older than the horizon by their
// end, and the handler's own calls end before the handler does. With
// the horizon passing between a gRPC handler's proto.Marshal and its
// handleStream's end, the stream came out with grpc-go's codec marshal
// alone (TestGoUnderLoad, at 150 ms ticks, under load).
func TestStreamKeepsItsCalls(t *testing.T) {
	const retain = time.Second
	c, out := newCorrelator(retain)
	c.SetGoProbes(7, goprobe.Probes{HTTP: true, GRPC: true, Serialization: true}, true)
	c.goProcs[7].notePeer(netip.MustParseAddrPort("127.0.0.1:4000"), 900)
	hs := goEvent(goGRPCMethod, 9, 1000, 9000, 0)
	for i, b := range []byte("/pkg.Lab/Sleep") {
		hs.Path[i] = int8(b)
		hs.PathLen++
	}
	// In arrival order: each event leaves the kernel at its call's end.
	for _, e := range []loader.GoEvent{
		goEvent(goProtoUnmarsh, 9, 1100, 1300, 0),
		goEvent(goProtoMarshal, 9, 2000, 3000, 0), // the handler's
		goEvent(goProtoMarshal, 7, 2500, 2600, 0), // another goroutine's
		goEvent(goProtoMarshal, 9, 4000, 8000, 0), // grpc-go's codec
		goEvent(goGRPCStatus, 9, 8900, 8900, 0),
		hs,
	} {
		c.AddGo(&e)
	}
	// Ticks: the horizon passes the handler's calls, then the stream.
	for _, at := range []int64{3100, 8500, 9100} {
		c.Expire(at + retain.Nanoseconds())
	}
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d requests, want the stream", len(got))
	}
	r := got[0]
	var marshals []int64
	for _, s := range r.Spans {
		if s.Name == goFuncNames[goProtoMarshal] {
			marshals = append(marshals, s.DurationNs)
		}
	}
	if len(marshals) != 2 || marshals[0] != 1000 || marshals[1] != 4000 {
		t.Errorf("proto.Marshal spans %v, want [1000 4000]: %+v", marshals, r.Spans)
	}
	if v, _ := r.Phases.Get(Serialize); v != 200+1000+4000 {
		t.Errorf("serialize %d, want 5200", v)
	}
	if r.RPC == nil || !r.RPC.StatusKnown {
		t.Errorf("rpc %+v: the status written inside it is lost", r.RPC)
	}
	// Once it is out, its calls go at the next tick; the other
	// goroutine's went with the first.
	c.Expire(9200 + retain.Nanoseconds())
	if n := len(c.goProcs[7].byGoid); n != 0 {
		t.Errorf("%d goroutines' calls kept after the stream went out: %v", n, c.goProcs[7].byGoid)
	}
}

func TestNewGRPC(t *testing.T) {
	for path, want := range map[string]RPC{
		"/a.B/C":  {System: "grpc", Service: "a.B", Method: "C"},
		"/x/y/z":  {System: "grpc", Service: "x/y", Method: "z"},
		"noslash": {System: "grpc", Method: "noslash"},
		"//M":     {System: "grpc", Method: "//M"},
		"/svc/":   {System: "grpc", Method: "/svc/"},
		"":        {System: "grpc"},
	} {
		if got := newGRPC(path); *got != want {
			t.Errorf("newGRPC(%q) = %+v, want %+v", path, *got, want)
		}
	}
}

// A handler that sends its answer before returning: the record comes
// before ServeHTTP's RET and waits for it (even when net/http's
// background read left only the first byte in the record's head); a
// record whose ServeHTTP never comes goes out after the join horizon.
func TestHeldUntilServeHTTP(t *testing.T) {
	c, out := newCorrelator(time.Second)
	c.SetGoProbes(7, goprobe.Probes{HTTP: true, Serialization: true, AttachedAt: 1200}, true)
	rec := baseRecord()
	rec.Pid, rec.Goid = 7, 5
	rec.T_rd, rec.T_wl, rec.T_tx = 1100, 2000, 2000
	rec.ReqLen = 1 // "G"
	if c.AddRecord(&rec); len(out.take()) != 1 {
		t.Fatal("a request that began before the probes were on was held")
	}
	rec.T_rd = 1300
	if c.AddRecord(&rec); len(out.reqs) != 0 {
		t.Fatal("record not held: its ServeHTTP has not returned")
	}
	other := rec
	other.Goid = 6
	if c.AddRecord(&other); len(out.reqs) != 0 {
		t.Fatal("second record not held")
	}
	notHTTP := rec
	copy(notHTTP.ReqHead[:], "\x00\x01binary")
	notHTTP.ReqLen = 8
	if c.AddRecord(&notHTTP); len(out.take()) != 1 {
		t.Error("a record that is not HTTP/1 was held")
	}
	ev := goEvent(goServeHTTP, 5, 1500, 30000, 0)
	ev.MethodLen = uint8(copy(ev.Method[:], []int8{'G', 'E', 'T'}))
	ev.PathLen = uint8(copy(ev.Path[:], []int8{'/', 'f'}))
	c.AddGo(&ev)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d released, want the record of goroutine 5", len(got))
	}
	r := got[0]
	if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/f" || len(r.Spans) != 1 || r.Spans[0].Name != goFuncNames[goServeHTTP] {
		t.Errorf("released request: %+v spans %+v", r.HTTP, r.Spans)
	}
	if c.Flush(1 << 62); len(out.reqs) != 1 || out.reqs[0].Conn.Sock != rec.Sk || out.reqs[0].HTTP != nil {
		t.Errorf("at the end the other held record comes out unjoined, and no stream: %+v", out.reqs)
	}
	out.take()
	// Probes switched off: what waits goes out at once.
	if c.AddRecord(&other); len(out.reqs) != 0 {
		t.Fatal("record not held")
	}
	c.SetGoProbes(7, goprobe.Probes{Serialization: true, AttachedAt: 1200}, true)
	if got := out.take(); len(got) != 1 {
		t.Errorf("%d released when the HTTP probes went off, want 1", len(got))
	}
}

// Go calls served on connections the kernel side does not trace are not
// exported (a full conns map, a connection accepted before tracerd), nor
// are HTTP/1 calls no kernel record claimed (a client reset the
// connection before the answer: its unanswered record already went out).
func TestStreamsNeedTracedConnection(t *testing.T) {
	c, out := newCorrelator(time.Second)
	c.SetGoProbes(7, goprobe.Probes{HTTP: true, GRPC: true}, true)
	call := func(fn goFunc, goid uint64, remote string, proto uint8) {
		ev := goEvent(fn, goid, 1000, 5000, 0)
		for i, b := range []byte(remote) {
			ev.Remote[i] = int8(b)
		}
		ev.RemoteLen, ev.ProtoMajor = uint8(len(remote)), proto
		c.AddGo(&ev)
	}
	call(goServeHTTP, 1, "127.0.0.1:4000", 2) // HTTP/2, untraced peer
	call(goServeHTTP, 2, "127.0.0.1:4001", 1) // HTTP/1 without its record
	call(goGRPCMethod, 3, "", 2)              // gRPC, no traced connection at all
	if c.Flush(1 << 62); len(out.reqs) != 0 {
		t.Fatalf("exported %d calls of untraced connections: %+v", len(out.reqs), out.reqs)
	}

	c.SetGoProbes(8, goprobe.Probes{HTTP: true}, true)
	c.goProcs[8].notePeer(netip.MustParseAddrPort("[::ffff:127.0.0.1]:4002"), 900)
	ev := goEvent(goServeHTTP, 4, 1000, 5000, 0)
	ev.Pid = 8
	for i, b := range []byte("127.0.0.1:4002") {
		ev.Remote[i] = int8(b)
	}
	ev.RemoteLen, ev.ProtoMajor = 14, 2
	c.AddGo(&ev)
	if c.Flush(1 << 62); len(out.reqs) != 1 {
		t.Errorf("an HTTP/2 stream of a traced (v4-mapped) peer: %d requests", len(out.reqs))
	}
}

// Where no WriteHeader probe is attached, ServeHTTP's exit reads the
// status: one the handler set wins over the bytes' (as a WriteHeader's
// does); 0 (nothing written) is the 200 net/http sends, but only fills a
// status the bytes lack (a hijacked connection writes its own), and none
// when the connection was seen hijacked; a WriteHeader's status wins
// over the exit's; an HTTP/2 stream takes it too.
func TestServeHTTPExitStatus(t *testing.T) {
	const (
		read     = uint8(loader.TracerdGoStatusFlagsGO_STATUS_READ)
		known    = uint8(loader.TracerdGoStatusFlagsGO_STATUS_HIJACK_KNOWN)
		hijacked = uint8(loader.TracerdGoStatusFlagsGO_STATUS_HIJACKED)
	)
	for _, c := range []struct {
		name        string
		arg         uint32
		flags       uint8
		bytesStatus string // the response bytes' status line ("": none seen, TLS)
		writeHeader uint32 // a WriteHeader event's status (0: none)
		want        int
	}{
		{"explicit over TLS", 404, read, "", 0, 404},
		{"implicit over TLS", 0, read | known, "", 0, 200},
		{"implicit, hijack unknown", 0, read, "", 0, 200},
		{"hijacked", 0, read | known | hijacked, "", 0, 0},
		{"not read", 0, 0, "", 0, 0},
		{"not a status", 42, read, "", 0, 0},
		{"explicit over the bytes", 201, read, "HTTP/1.1 200 OK\r\n", 0, 201},
		{"implicit leaves the bytes'", 0, read, "HTTP/1.1 101 Switching Protocols\r\n", 0, 101},
		{"WriteHeader wins", 500, read, "", 503, 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			cr, out := newCorrelator(time.Minute)
			cr.SetGoProbes(7, goprobe.Probes{HTTP: true}, true)
			ev := goEvent(goServeHTTP, 5, 1100, 9000, c.arg)
			ev.StatusFlags = c.flags
			ev.MethodLen = uint8(copy(ev.Method[:], []int8{'G', 'E', 'T'}))
			ev.PathLen = uint8(copy(ev.Path[:], []int8{'/'}))
			ev.ProtoMajor = 1
			if c.writeHeader != 0 {
				wh := goEvent(goWriteHeader, 5, 5000, 5000, c.writeHeader)
				cr.AddGo(&wh)
			}
			cr.AddGo(&ev)
			rec := baseRecord()
			rec.Pid, rec.Goid = 7, 5
			rec.T_rd, rec.T_wl, rec.T_tx, rec.T_ack = 1000, 10000, 10000, 0
			rec.T_est, rec.T_rx, rec.T_acc = 0, 900, 0
			rec.Flags = uint32(loader.TracerdReqFlagsREQ_HAS_RX)
			rec.ReqLen = uint16(copy(rec.ReqHead[:], "GET / HTTP/1.1\r\n\r\n"))
			rec.RespHead = [len(rec.RespHead)]uint8{}
			rec.RespLen = uint16(copy(rec.RespHead[:], c.bytesStatus))
			cr.AddRecord(&rec)
			r := out.one(t)
			if r.HTTP == nil || r.HTTP.Status != c.want {
				t.Errorf("http %+v, want status %d", r.HTTP, c.want)
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		cr, out := newCorrelator(time.Second)
		cr.SetGoProbes(7, goprobe.Probes{HTTP: true}, true)
		for i, arg := range []uint32{0, 201} {
			ev := goEvent(goServeHTTP, uint64(9+i), 1000, 5000, arg)
			ev.StatusFlags = read | uint8(loader.TracerdGoStatusFlagsGO_STATUS_HTTP2)
			ev.MethodLen = uint8(copy(ev.Method[:], []int8{'G', 'E', 'T'}))
			ev.RemoteLen = uint8(copy(ev.Remote[:], []int8{'1', '.', '2', '.', '3', '.', '4', ':', '5'}))
			ev.ProtoMajor = 2
			cr.AddGo(&ev)
		}
		cr.goProcs[7].notePeer(netip.MustParseAddrPort("1.2.3.4:5"), 900)
		cr.Flush(1 << 62)
		got := out.take()
		if len(got) != 2 || got[0].HTTP.Status != 200 || got[1].HTTP.Status != 201 {
			for _, r := range got {
				t.Errorf("stream %+v", r.HTTP)
			}
			t.Fatalf("%d streams, want 2 with statuses 200 (implied) and 201", len(got))
		}
	})
}
