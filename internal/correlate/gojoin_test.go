package correlate

import (
	"net/netip"
	"testing"
	"time"

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

func goEvent(fn GoFunc, goid, start, end uint64, arg uint32) loader.GoEvent {
	return loader.GoEvent{Kind: uint32(loader.KindGo), Pid: 7, Goid: goid, Func: uint32(fn), Start: start, End: end, Arg: arg}
}

// A kernel request gets the Go view of its goroutine and process: GC
// pauses in its window, serialization (nested calls once), net/http facts.
func TestJoinGo(t *testing.T) {
	c := New(time.Minute)
	c.clock = Clock{}
	c.SetGoProbes(7, GoProbes{GC: true, Serialization: true, HTTP: true, ProbeCostNs: 100}, true)
	events := []loader.GoEvent{
		goEvent(GoServeHTTP, 5, 1100, 9000, 0),
		goEvent(GoJSONEncode, 5, 2000, 5100, 0),  // 3000 after the probe cost
		goEvent(GoJSONMarshal, 5, 2500, 3100, 0), // nested in Encode
		goEvent(GoJSONMarshal, 6, 2500, 3100, 0), // another goroutine
		goEvent(GoWriteHeader, 5, 6000, 6000, 404),
		goEvent(GoSTW, 0, 3000, 3600, 1),   // GC: 500 after cost
		goEvent(GoSTW, 0, 7000, 7300, 7),   // ReadMemStats: not GC
		goEvent(GoSTW, 0, 20000, 21000, 2), // outside the request
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
	r, ok := c.Request(&rec)
	if !ok {
		t.Fatal("record held although its ServeHTTP had come")
	}
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
	if got := c.Streams(1<<62, true); len(got) != 0 {
		t.Errorf("a joined ServeHTTP came out as a stream: %+v", got)
	}
}

// A ServeHTTP no kernel record claims (HTTP/2) becomes its own request.
func TestStreams(t *testing.T) {
	c := New(time.Second)
	c.clock = Clock{}
	c.SetGoProbes(7, GoProbes{GC: true, HTTP: true, Serialization: true}, true)
	ev := goEvent(GoServeHTTP, 9, 1000, 5000, 0)
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
	wh := goEvent(GoWriteHeader, 9, 4990, 4990, 201)
	c.AddGo(&wh)
	if got := c.Streams(5000+int64(time.Millisecond), false); len(got) != 0 {
		t.Fatalf("stream emitted before the join horizon: %+v", got)
	}
	got := c.Streams(5000+int64(2*time.Second), false)
	if len(got) != 1 {
		t.Fatalf("%d streams", len(got))
	}
	r := got[0]
	if r.HTTP.Method != "POST" || r.HTTP.Target != "/rpc" || r.HTTP.Status != 201 || r.Conn.Peer.String() != "127.0.0.1:4000" || r.EndReason != "stream" {
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
	c := New(time.Second)
	c.clock = Clock{}
	c.SetGoProbes(7, GoProbes{HTTP: true, GRPC: true, Serialization: true, ProbeCostNs: 10_000}, true)
	ev := goEvent(GoGRPCMethod, 9, 1000, 9100, 0)
	for i, b := range []byte("/pkg.Lab/Sleep") {
		ev.Path[i] = int8(b)
		ev.PathLen++
	}
	c.AddGo(&ev)
	for _, e := range []loader.GoEvent{
		goEvent(GoProtoUnmarsh, 9, 1100, 1300, 0),
		goEvent(GoProtoMarshal, 9, 2000, 3100, 0),
		goEvent(GoGRPCStatus, 10, 9000, 9000, 13), // another call's
		goEvent(GoGRPCStatus, 9, 9050, 9050, 5),   // within the probes' margin
	} {
		c.AddGo(&e)
	}
	// Calibration ends after the events came: the calibrated cost applies.
	c.SetGoProbes(7, GoProbes{HTTP: true, GRPC: true, Serialization: true, ProbeCostNs: 100}, true)
	c.goProcs[7].notePeer(netip.MustParseAddrPort("127.0.0.1:4000"), 900)
	got := c.Streams(1<<62, true)
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
	if len(r.Spans) != 3 || r.Spans[0].Name != GoFuncNames[GoGRPCMethod] {
		t.Errorf("spans %+v", r.Spans)
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
	c := New(time.Second)
	c.clock = Clock{}
	c.SetGoProbes(7, GoProbes{HTTP: true, Serialization: true, AttachedAt: 1200}, true)
	rec := baseRecord()
	rec.Pid, rec.Goid = 7, 5
	rec.T_rd, rec.T_wl, rec.T_tx = 1100, 2000, 2000
	rec.ReqLen = 1 // "G"
	if _, ok := c.Request(&rec); !ok {
		t.Fatal("a request that began before the probes were on was held")
	}
	rec.T_rd = 1300
	if _, ok := c.Request(&rec); ok {
		t.Fatal("record not held: its ServeHTTP has not returned")
	}
	other := rec
	other.Goid = 6
	if _, ok := c.Request(&other); ok {
		t.Fatal("second record not held")
	}
	notHTTP := rec
	copy(notHTTP.ReqHead[:], "\x00\x01binary")
	notHTTP.ReqLen = 8
	if _, ok := c.Request(&notHTTP); !ok {
		t.Error("a record that is not HTTP/1 was held")
	}
	if got := c.Released(); len(got) != 0 {
		t.Fatalf("released before ServeHTTP: %d", len(got))
	}
	ev := goEvent(GoServeHTTP, 5, 1500, 30000, 0)
	ev.MethodLen = uint8(copy(ev.Method[:], []int8{'G', 'E', 'T'}))
	ev.PathLen = uint8(copy(ev.Path[:], []int8{'/', 'f'}))
	c.AddGo(&ev)
	got := c.Released()
	if len(got) != 1 {
		t.Fatalf("%d released, want the record of goroutine 5", len(got))
	}
	r := got[0]
	if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/f" || len(r.Spans) != 1 || r.Spans[0].Name != GoFuncNames[GoServeHTTP] {
		t.Errorf("released request: %+v spans %+v", r.HTTP, r.Spans)
	}
	if s := c.Streams(1<<62, true); len(s) != 1 || s[0].Conn.Sock != rec.Sk || s[0].HTTP != nil {
		t.Errorf("at the end the other held record comes out unjoined, and no stream: %+v", s)
	}
	// Probes switched off: what waits goes out at once.
	if _, ok := c.Request(&other); ok {
		t.Fatal("record not held")
	}
	c.SetGoProbes(7, GoProbes{Serialization: true, AttachedAt: 1200}, true)
	if got := c.Released(); len(got) != 1 {
		t.Errorf("%d released when the HTTP probes went off, want 1", len(got))
	}
}

// Go calls served on connections the kernel side does not trace are not
// exported (a full conns map, a connection accepted before tracerd), nor
// are HTTP/1 calls no kernel record claimed (a client reset the
// connection before the answer: its unanswered record already went out).
func TestStreamsNeedTracedConnection(t *testing.T) {
	c := New(time.Second)
	c.clock = Clock{}
	c.SetGoProbes(7, GoProbes{HTTP: true, GRPC: true}, true)
	call := func(fn GoFunc, goid uint64, remote string, proto uint8) {
		ev := goEvent(fn, goid, 1000, 5000, 0)
		for i, b := range []byte(remote) {
			ev.Remote[i] = int8(b)
		}
		ev.RemoteLen, ev.ProtoMajor = uint8(len(remote)), proto
		c.AddGo(&ev)
	}
	call(GoServeHTTP, 1, "127.0.0.1:4000", 2) // HTTP/2, untraced peer
	call(GoServeHTTP, 2, "127.0.0.1:4001", 1) // HTTP/1 without its record
	call(GoGRPCMethod, 3, "", 2)              // gRPC, no traced connection at all
	if got := c.Streams(1<<62, true); len(got) != 0 {
		t.Fatalf("exported %d calls of untraced connections: %+v", len(got), got)
	}
	if n := c.UntracedGoCalls(); n != 3 {
		t.Errorf("UntracedGoCalls = %d, want 3", n)
	}

	c.SetGoProbes(8, GoProbes{HTTP: true}, true)
	c.goProcs[8].notePeer(netip.MustParseAddrPort("[::ffff:127.0.0.1]:4002"), 900)
	ev := goEvent(GoServeHTTP, 4, 1000, 5000, 0)
	ev.Pid = 8
	for i, b := range []byte("127.0.0.1:4002") {
		ev.Remote[i] = int8(b)
	}
	ev.RemoteLen, ev.ProtoMajor = 14, 2
	c.AddGo(&ev)
	if got := c.Streams(1<<62, true); len(got) != 1 {
		t.Errorf("an HTTP/2 stream of a traced (v4-mapped) peer: %d requests", len(got))
	}
}
