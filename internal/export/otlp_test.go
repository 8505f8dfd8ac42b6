package export

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracerd/tracerd/internal/correlate"
)

const t0 = 1_700_000_000_000_000_000

func ms(v float64) int64 { return int64(v * 1e6) }

// otlpRequests are fixed requests covering the span tree's cases.
func otlpRequests() []correlate.Request {
	// A first request with a traceparent, every phase and Go spans.
	a := correlate.Request{
		StartUnixNano: t0, EndUnixNano: t0 + ms(65), DurationNs: ms(65),
		PID: 42, TID: 43, Comm: "api", Service: "api", CgroupID: 7,
		Conn:         correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:51234")},
		HTTP:         &correlate.HTTP{Method: "GET", Target: "/api/x?id=1", Status: 200},
		TraceID:      correlate.TraceID(mustHex("0af7651916cd43dd8448eb211c80319c")),
		SpanID:       correlate.SpanID(mustHex("00f067aa0ba902b7")),
		ParentSpanID: correlate.SpanID(mustHex("b7ad6b7169203331")),
		TraceFlags:   1,
		TCP:          correlate.TCP{Valid: true, SrttUs: 30, SndCwnd: 10, Nagle: true},
		EndReason:    correlate.EndNextRequest, Answered: true,
	}
	for p, v := range map[correlate.Phase]int64{
		correlate.AcceptQueue: ms(10), correlate.Softirq: 2_000, correlate.RecvQueue: ms(20),
		correlate.App: ms(30), correlate.Runqueue: ms(4), correlate.CFSThrottle: ms(5),
		correlate.GCSTW: ms(0.5), correlate.Serialize: ms(6),
		correlate.SendQueue: ms(5), correlate.AckWait: ms(1),
	} {
		a.Phases.Set(p, v)
	}
	appStart := t0 + ms(30)
	a.Spans = []correlate.Span{
		{Name: "net/http.serverHandler.ServeHTTP", StartUnixNano: appStart + ms(1), DurationNs: ms(28)},
		{Name: "encoding/json.(*Encoder).Encode", StartUnixNano: appStart + ms(20), DurationNs: ms(6)},
		{Name: "encoding/json.Marshal", StartUnixNano: appStart + ms(21), DurationNs: ms(4)},
		{Name: "encoding/json.Unmarshal", StartUnixNano: appStart + ms(2), DurationNs: ms(1)},
		{Name: "runtime.GC stop-the-world (sweep termination)", StartUnixNano: appStart + ms(22), DurationNs: ms(0.4)},
		{Name: "runtime.GC stop-the-world (mark termination)", StartUnixNano: appStart + ms(24), DurationNs: ms(0.1)},
	}

	a.Findings = []correlate.Finding{
		{Code: correlate.LateRead, Phase: correlate.RecvQueue, LostNs: ms(20), Evidence: []correlate.Evidence{correlate.IntEvidence("recv_queue_ns", ms(20))}},
		{Code: correlate.CFSThrottled, Phase: correlate.CFSThrottle, LostNs: ms(5), Evidence: []correlate.Evidence{
			correlate.TextEvidence("cgroup", "/sys/fs/cgroup/api"), correlate.IntEvidence("cpu_quota_us", 20000), correlate.FloatEvidence("quota_cpus", 0.2)}},
	}

	// A keep-alive request of another protocol over IPv6, no traceparent.
	b := correlate.Request{
		StartUnixNano: t0 + ms(100), EndUnixNano: t0 + ms(103), DurationNs: ms(3),
		PID: 42, TID: 44, Comm: "api", Service: "api",
		Conn:    correlate.Conn{Local: netip.MustParseAddrPort("[::1]:6379"), Peer: netip.MustParseAddrPort("[::1]:40000"), RequestIndex: 3},
		TraceID: correlate.TraceID(mustHex("4bf92f3577b34da6a3ce929d0e0e4736")), SpanID: correlate.SpanID(mustHex("53995c3f42cd8ad8")),
		TCP:       correlate.TCP{Retransmits: 2, ZeroWindow: 1},
		EndReason: correlate.EndClose, Answered: true,
	}
	b.Phases.Set(correlate.RecvQueue, 0)
	b.Phases.Set(correlate.App, ms(2))
	b.Phases.Set(correlate.SendQueue, ms(1))

	// An HTTP/2 stream seen by the Go probes only, answered 503, in
	// another service.
	c := correlate.Request{
		StartUnixNano: t0 + ms(200), EndUnixNano: t0 + ms(212), DurationNs: ms(12),
		PID: 77, Comm: "grpcsrv", Service: "checkout",
		Conn:    correlate.Conn{Peer: netip.MustParseAddrPort("10.0.0.9:5555")},
		HTTP:    &correlate.HTTP{Method: "POST", Target: "/cart.Cart/Add", Status: 503},
		TraceID: correlate.TraceID(mustHex("11111111111111112222222222222222")), SpanID: correlate.SpanID(mustHex("3333333333333333")),
		Spans:     []correlate.Span{{Name: "net/http.serverHandler.ServeHTTP", StartUnixNano: t0 + ms(200), DurationNs: ms(12)}},
		EndReason: correlate.EndStream, Answered: true,
	}
	c.Phases.Set(correlate.App, ms(12))
	c.Phases.Set(correlate.GCSTW, 0)

	// An unknown method, not answered: no app, no send_queue.
	d := correlate.Request{
		StartUnixNano: t0 + ms(300), EndUnixNano: t0 + ms(301), DurationNs: ms(1),
		PID: 42, TID: 45, Comm: "api", Service: "api",
		Conn:    correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:51300")},
		HTTP:    &correlate.HTTP{Method: "PURGE", Target: "/cache"},
		TraceID: correlate.TraceID(mustHex("aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb")), SpanID: correlate.SpanID(mustHex("cccccccccccccccc")),
		EndReason: correlate.EndIdle,
	}
	d.Phases.Set(correlate.RecvQueue, ms(1))
	return []correlate.Request{a, b, c, d}
}

// fakeClient records what would be sent.
type fakeClient struct {
	mu      sync.Mutex
	sent    [][]*tracepb.ResourceSpans
	fail    error
	block   chan struct{} // exports wait for it when set
	started bool
}

func (f *fakeClient) Start(context.Context) error { f.started = true; return nil }
func (f *fakeClient) Stop(context.Context) error  { return nil }
func (f *fakeClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.sent = append(f.sent, rs)
	return nil
}

func (f *fakeClient) spans() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, rss := range f.sent {
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
	}
	return n
}

func testProcesses() map[uint32]*Process {
	return map[uint32]*Process{
		42: {PID: 42, Comm: "api", Unit: "api",
			ContainerID: "8f2b9c6e0d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
			PodUID:      "0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e"},
		77: {PID: 77, Comm: "grpcsrv"},
	}
}

// TestOTLPGolden renders what the exporter sends for fixed requests:
// resources, span tree, timing relative to each request's start and
// every attribute. go test -run OTLPGolden -update rewrites it.
func TestOTLPGolden(t *testing.T) {
	client := &fakeClient{}
	e, err := NewOTLP(OTLPOptions{
		Client: client, Sampler: Sampler{Ratio: 1}, QueueSpans: 1000, BatchSpans: 1000, BatchDelay: time.Hour,
		Host: "node-1", Version: "v1.2.3", Resource: []*commonpb.KeyValue{strKV("deployment.environment.name", "test"), strKV("service.name", "ignored")},
	})
	if err != nil {
		t.Fatal(err)
	}
	procs := testProcesses()
	reqs := otlpRequests()
	for i := range reqs {
		if d := e.Add(&reqs[i], procs[reqs[i].PID]); d == NotSampled {
			t.Fatalf("request %d: decision %s", i, d)
		}
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(client.sent) != 1 {
		t.Fatalf("%d exports, want 1 batch", len(client.sent))
	}
	var b strings.Builder
	for _, rs := range client.sent[0] {
		fmt.Fprintf(&b, "resource %s (schema %s)\n", renderAttrs(rs.Resource.Attributes), rs.SchemaUrl)
		for _, ss := range rs.ScopeSpans {
			fmt.Fprintf(&b, "scope %s %s\n", ss.Scope.Name, ss.Scope.Version)
			renderTree(&b, ss.Spans)
		}
	}
	golden(t, "otlp_spans.golden", []byte(b.String()))
	st := e.Stats()
	if st.SpansExported != int64(client.spans()) || st.SpansDropped != 0 || st.ExportErrors != 0 {
		t.Errorf("stats %+v, sent %d spans", st, client.spans())
	}
}

// renderTree prints spans as a tree: offsets from the root's start.
func renderTree(b *strings.Builder, spans []*tracepb.Span) {
	children := map[string][]*tracepb.Span{}
	byID := map[string]bool{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.SpanId)] = true
	}
	var roots []*tracepb.Span
	for _, s := range spans {
		p := hex.EncodeToString(s.ParentSpanId)
		if byID[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s *tracepb.Span, depth int, origin uint64)
	walk = func(s *tracepb.Span, depth int, origin uint64) {
		ind := strings.Repeat("  ", depth)
		fmt.Fprintf(b, "%s%s [%s] span=%x", ind, s.Name, strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"), s.SpanId)
		if depth == 0 {
			fmt.Fprintf(b, " trace=%x", s.TraceId)
			if len(s.ParentSpanId) > 0 {
				fmt.Fprintf(b, " parent=%x", s.ParentSpanId)
			}
		}
		fmt.Fprintf(b, " flags=%#x at %s for %s", s.Flags,
			time.Duration(int64(s.StartTimeUnixNano)-int64(origin)), time.Duration(s.EndTimeUnixNano-s.StartTimeUnixNano))
		if s.Status != nil {
			fmt.Fprintf(b, " status=%s", strings.TrimPrefix(s.Status.Code.String(), "STATUS_CODE_"))
		}
		b.WriteString("\n")
		if len(s.Attributes) > 0 {
			fmt.Fprintf(b, "%s  · %s\n", ind, renderAttrs(s.Attributes))
		}
		for _, e := range s.Events {
			fmt.Fprintf(b, "%s  ! %s at %s: %s\n", ind, e.Name, time.Duration(int64(e.TimeUnixNano)-int64(origin)), renderAttrs(e.Attributes))
		}
		kids := children[hex.EncodeToString(s.SpanId)]
		slices.SortStableFunc(kids, func(x, y *tracepb.Span) int { return cmp.Compare(x.StartTimeUnixNano, y.StartTimeUnixNano) })
		for _, k := range kids {
			walk(k, depth+1, origin)
		}
	}
	for _, r := range roots {
		walk(r, 0, r.StartTimeUnixNano)
	}
}

func renderAttrs(kvs []*commonpb.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		var v string
		switch x := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			v = fmt.Sprintf("%q", x.StringValue)
		case *commonpb.AnyValue_IntValue:
			v = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_BoolValue:
			v = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			v = fmt.Sprint(x.DoubleValue)
		default:
			v = fmt.Sprintf("%v", kv.Value)
		}
		parts[i] = kv.Key + "=" + v
	}
	return strings.Join(parts, " ")
}

// TestOTLPSpanTreeShape checks the tree's invariants on the fixed
// requests: one root per request with the request's ids and times,
// top-level phases tile the request, nested phases and Go spans sit
// under app, and span ids are unique.
func TestOTLPSpanTreeShape(t *testing.T) {
	for _, r := range otlpRequests() {
		spans := RequestSpans(&r)
		if got, want := int64(len(spans)), SpanCount(&r); got != want {
			t.Errorf("%s: %d spans, SpanCount says %d", r.SpanID.String(), got, want)
		}
		root := spans[0]
		if !bytes.Equal(root.TraceId, r.TraceID[:]) || !bytes.Equal(root.SpanId, r.SpanID[:]) ||
			!bytes.Equal(root.ParentSpanId, r.ParentSpanID[:]) && !r.ParentSpanID.IsZero() {
			t.Errorf("root ids %x/%x/%x, request %s/%s/%s", root.TraceId, root.SpanId, root.ParentSpanId, r.TraceID, r.SpanID, r.ParentSpanID)
		}
		if int64(root.StartTimeUnixNano) != r.StartUnixNano || int64(root.EndTimeUnixNano) != r.EndUnixNano {
			t.Errorf("root times differ from the request's")
		}
		ids := map[string]*tracepb.Span{}
		for _, s := range spans {
			id := hex.EncodeToString(s.SpanId)
			if ids[id] != nil {
				t.Errorf("duplicate span id %s", id)
			}
			ids[id] = s
			if !slices.Equal(s.TraceId, root.TraceId) {
				t.Errorf("%s: another trace id", s.Name)
			}
		}
		byName := map[string]*tracepb.Span{}
		for _, s := range spans[1:] {
			byName[s.Name] = s
			parent := ids[hex.EncodeToString(s.ParentSpanId)]
			if parent == nil {
				t.Fatalf("%s: parent not in the tree", s.Name)
			}
			if p, ok := correlate.PhaseByName(s.Name); ok {
				want := root
				if p.Nested() {
					want = byName[p.Parent().String()]
				}
				if parent != want {
					t.Errorf("%s is under %s", s.Name, parent.Name)
				}
				ns, _ := r.Phases.Get(p)
				if got := int64(s.EndTimeUnixNano - s.StartTimeUnixNano); got != ns {
					t.Errorf("%s lasts %d, measured %d", s.Name, got, ns)
				}
			} else if isGCPause(s.Name) {
				if parent != byName["gc_stw"] {
					t.Errorf("GC pause %s is under %s", s.Name, parent.Name)
				}
			} else if parent != byName["app"] && !strings.HasPrefix(parent.Name, "net/http") && !strings.HasPrefix(parent.Name, "encoding/json") {
				t.Errorf("Go span %s is under %s", s.Name, parent.Name)
			}
		}
		// recv_queue, app and send_queue follow one another and end
		// with the request.
		seq := []*tracepb.Span{byName["recv_queue"], byName["app"], byName["send_queue"]}
		for i := 1; i < len(seq); i++ {
			if seq[i-1] != nil && seq[i] != nil && seq[i-1].EndTimeUnixNano != seq[i].StartTimeUnixNano {
				t.Errorf("%s ends at %d, %s starts at %d", seq[i-1].Name, seq[i-1].EndTimeUnixNano, seq[i].Name, seq[i].StartTimeUnixNano)
			}
		}
		if sq := byName["send_queue"]; sq != nil && sq.EndTimeUnixNano != root.EndTimeUnixNano {
			t.Errorf("send_queue ends at %d, the request at %d", sq.EndTimeUnixNano, root.EndTimeUnixNano)
		}
	}
}

func TestOTLPSampler(t *testing.T) {
	r := correlate.Request{DurationNs: ms(60), TraceID: correlate.TraceID(mustHex("ffffffffffffffffffffffffffffffff"))}
	s := Sampler{Budget: 50 * time.Millisecond, Ratio: 0}
	if d := s.Decide(&r); d != SampledOverBudget {
		t.Errorf("over budget: %s", d)
	}
	r.DurationNs = ms(50)
	if d := s.Decide(&r); d != NotSampled {
		t.Errorf("at budget with ratio 0: %s", d)
	}
	s.Ratio = 1
	if d := s.Decide(&r); d != SampledByRatio {
		t.Errorf("ratio 1: %s", d)
	}
	// The ratio keeps about that share of random trace ids, always the
	// same ones (OTel's TraceIDRatioBased rule).
	s.Ratio = 0.1
	rng := rand.New(rand.NewPCG(1, 2))
	kept := 0
	const n = 20000
	for range n {
		var id [16]byte
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		r.TraceID = correlate.TraceID(id)
		d := s.Decide(&r)
		if d != s.Decide(&r) {
			t.Fatal("decision not reproducible")
		}
		if d == SampledByRatio {
			kept++
		}
	}
	if kept < n*8/100 || kept > n*12/100 {
		t.Errorf("ratio 0.1 kept %d of %d", kept, n)
	}
	r.TraceID = correlate.TraceID{}
	if d := s.Decide(&r); d != NotSampled {
		t.Errorf("invalid trace id: %s", d)
	}
	// A caller's flag wins over the ratio, not over the budget.
	r.TraceID = correlate.TraceID(mustHex("ffffffffffffffffffffffffffffffff")) // kept by any ratio < 1
	r.ParentSpanID = correlate.SpanID(mustHex("b7ad6b7169203331"))
	for _, tc := range []struct {
		flags byte
		dur   int64
		want  Decision
	}{{1, ms(10), SampledByParent}, {0, ms(10), NotSampled}, {0, ms(60), SampledOverBudget}, {1, ms(60), SampledOverBudget}} {
		r.TraceFlags, r.DurationNs = tc.flags, tc.dur
		if d := s.Decide(&r); d != tc.want {
			t.Errorf("parent flags %02x, %d ms: %s, want %s", tc.flags, tc.dur/1e6, d, tc.want)
		}
	}
}

// TestOTLPQueueBound: with the endpoint stuck, spans beyond the queue
// bound are dropped and counted, Add never blocks, and export resumes.
func TestOTLPQueueBound(t *testing.T) {
	client := &fakeClient{block: make(chan struct{})}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Ratio: 1}, QueueSpans: 50, BatchSpans: 10, BatchDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reqs := otlpRequests()
	r := reqs[1] // 4 spans
	per := SpanCount(&r)
	start := time.Now()
	const n = 1000
	for i := range n {
		r.SpanID = correlate.SpanID(mustHex(fmt.Sprintf("%016x", i+1)))
		e.Add(&r, &Process{PID: r.PID})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Add blocked: %d adds took %s", n, d)
	}
	st := e.Stats()
	// At most the queue plus one batch in flight got through.
	if st.SpansDropped < n*per-50-10-per || st.SpansDropped%per != 0 {
		t.Errorf("dropped %d spans of %d", st.SpansDropped, n*per)
	}
	close(client.block) // the endpoint answers again
	r.SpanID = correlate.SpanID(mustHex("00000000000000ff"))
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().SpansQueued > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	e.Add(&r, &Process{PID: r.PID})
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = e.Stats()
	if st.SpansExported+st.SpansDropped != (n+1)*per || st.SpansExported != int64(client.spans()) {
		t.Errorf("exported %d + dropped %d ≠ %d (client got %d)", st.SpansExported, st.SpansDropped, (n+1)*per, client.spans())
	}
}

// TestOTLPExportErrors: failed exports are counted; the next batch goes
// when the endpoint is back.
func TestOTLPExportErrors(t *testing.T) {
	client := &fakeClient{fail: errors.New("connection refused")}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Ratio: 1}, QueueSpans: 100, BatchSpans: 4, BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := otlpRequests()[1]
	e.Add(&r, &Process{})
	waitFor(t, func() bool { return e.Stats().ExportErrors == 1 })
	client.mu.Lock()
	client.fail = nil
	client.mu.Unlock()
	e.Add(&r, &Process{})
	waitFor(t, func() bool { return e.Stats().SpansExported == 4 })
	_ = e.Shutdown(context.Background())
	if st := e.Stats(); st.SpansFailed != 4 || st.Exports != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestOTLPShutdownDeadline: a stuck endpoint cannot hold the shutdown
// past its deadline; what did not go is counted.
func TestOTLPShutdownDeadline(t *testing.T) {
	client := &fakeClient{block: make(chan struct{})}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Ratio: 1}, QueueSpans: 100, BatchSpans: 4, BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := otlpRequests()[1]
	for range 5 {
		e.Add(&r, &Process{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = e.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	st := e.Stats()
	if st.SpansExported != 0 || st.SpansFailed+st.SpansDropped != 20 {
		t.Errorf("stats %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkOTLPAdd is the reader goroutine's cost per request: an
// unsampled request, and a sampled one queued (spans are built later,
// on the export goroutine).
func BenchmarkOTLPAdd(b *testing.B) {
	for _, ratio := range []float64{0, 1} {
		b.Run(fmt.Sprintf("ratio=%g", ratio), func(b *testing.B) {
			client := &fakeClient{}
			e, _ := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Ratio: ratio}, QueueSpans: 1 << 20, BatchSpans: 512, BatchDelay: time.Millisecond})
			defer e.Shutdown(context.Background())
			r := otlpRequests()[1]
			p := &Process{PID: r.PID}
			b.ReportAllocs()
			for b.Loop() {
				e.Add(&r, p)
			}
		})
	}
}

// BenchmarkRequestSpans is the export goroutine's cost per request.
func BenchmarkRequestSpans(b *testing.B) {
	r := otlpRequests()[0]
	b.ReportAllocs()
	for b.Loop() {
		RequestSpans(&r)
	}
}

// A gRPC call follows the RPC conventions: "service/method", rpc.*
// attributes instead of http.*, server-side error codes as errors.
func TestOTLPGRPCSpan(t *testing.T) {
	for _, tc := range []struct {
		code  int
		known bool
		err   bool
	}{{0, true, false}, {5, true, false}, {13, true, true}, {12, true, true}, {0, false, false}} {
		r := otlpRequests()[0]
		r.HTTP = &correlate.HTTP{Method: "POST", Target: "/pkg.Lab/Sleep"}
		r.RPC = &correlate.RPC{System: "grpc", Service: "pkg.Lab", Method: "Sleep", StatusCode: tc.code, StatusKnown: tc.known}
		root := RequestSpans(&r)[0]
		if root.Name != "pkg.Lab/Sleep" {
			t.Errorf("name %q", root.Name)
		}
		attrs := map[string]string{}
		for _, kv := range root.Attributes {
			attrs[kv.Key] = kv.Value.GetStringValue()
		}
		for k, want := range map[string]string{"rpc.system": "grpc", "rpc.service": "pkg.Lab", "rpc.method": "Sleep"} {
			if got := attrs[k]; got != want {
				t.Errorf("%s = %s, want %s", k, got, want)
			}
		}
		if _, ok := attrs["http.request.method"]; ok {
			t.Errorf("gRPC span has http.request.method")
		}
		if _, ok := attrs["rpc.grpc.status_code"]; ok != tc.known {
			t.Errorf("code %d known=%v: rpc.grpc.status_code present=%v", tc.code, tc.known, ok)
		}
		isErr := root.Status != nil && root.Status.Code == tracepb.Status_STATUS_CODE_ERROR
		if _, hasType := attrs["error.type"]; isErr != tc.err || hasType != tc.err {
			t.Errorf("code %d: error status %v, error.type %v, want %v", tc.code, isErr, hasType, tc.err)
		}
	}
}
