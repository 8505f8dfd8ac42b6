package export

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/tracerd/tracerd/internal/correlate"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// fixedRequests are two requests with known phases.
func fixedRequests() []correlate.Request {
	a := correlate.Request{
		StartUnixNano: 1_700_000_000_000_000_000, EndUnixNano: 1_700_000_000_065_000_000, DurationNs: 65_000_000,
		PID: 42, TID: 43, Comm: "api", Service: "api", CgroupID: 7,
		Conn:    correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:51234")},
		HTTP:    &correlate.HTTP{Method: "GET", Target: "/api/x?id=1", Status: 200},
		TraceID: correlate.TraceID(mustHex("0af7651916cd43dd8448eb211c80319c")), SpanID: correlate.SpanID(mustHex("00f067aa0ba902b7")), ParentSpanID: correlate.SpanID(mustHex("b7ad6b7169203331")),
		TCP:       correlate.TCP{Valid: true, SrttUs: 30, SndCwnd: 10, Nagle: true},
		EndReason: correlate.EndNextRequest, Answered: true,
	}
	for p, v := range map[correlate.Phase]int64{correlate.AcceptQueue: 10e6, correlate.RecvQueue: 20e6,
		correlate.Runqueue: 4e6, correlate.CFSThrottle: 5e6, correlate.App: 30e6, correlate.SendQueue: 5e6, correlate.AckWait: 1e6} {
		a.Phases.Set(p, v)
	}
	a.Findings = []correlate.Finding{{Code: correlate.LateRead, Phase: correlate.RecvQueue, LostNs: 20e6,
		Evidence: []correlate.Evidence{correlate.IntEvidence("recv_queue_ns", 20e6)}}}
	b := a
	b.Findings = nil
	b.HTTP = nil
	b.ParentSpanID = correlate.SpanID{}
	b.TCP = correlate.TCP{Retransmits: 2}
	b.Conn.RequestIndex = 1
	b.Phases = correlate.Phases{}
	b.Phases.Set(correlate.App, 1e6)
	b.Phases.Set(correlate.SendQueue, 0)
	return []correlate.Request{a, b}
}

func TestJSONLinesGolden(t *testing.T) {
	var buf bytes.Buffer
	jl := NewJSONLines(&buf)
	for _, r := range fixedRequests() {
		if err := jl.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := jl.Flush(); err != nil {
		t.Fatal(err)
	}
	golden(t, "requests.jsonl", buf.Bytes())
}

// writeLog records each write's size, and fails from the failAt-th
// write on (0: never).
type writeLog struct {
	bytes.Buffer
	sizes  []int
	failAt int
}

var errDiskFull = errors.New("disk full")

func (w *writeLog) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	if w.failAt > 0 && len(w.sizes) >= w.failAt {
		return 0, errDiskFull
	}
	return w.Buffer.Write(p)
}

// JSON lines go out in writes of at least jsonBuffer bytes, and what
// is left at each Flush: every line once, whole, in order.
func TestJSONLinesWrites(t *testing.T) {
	var w writeLog
	jl := NewJSONLines(&w)
	reqs := fixedRequests()
	var want []byte
	for i := 0; len(want) < 3*jsonBuffer+jsonBuffer/2; i++ {
		r := &reqs[i%2]
		r.Conn.RequestIndex = uint32(i)
		want = append(AppendJSON(want, r), '\n')
		if err := jl.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.sizes) != 3 {
		t.Fatalf("%d writes before Flush (%v), want 3", len(w.sizes), w.sizes)
	}
	for _, n := range w.sizes {
		if n < jsonBuffer || n > jsonBuffer+jsonSlack {
			t.Fatalf("write of %d bytes, want [%d, %d]", n, jsonBuffer, jsonBuffer+jsonSlack)
		}
	}
	if err := jl.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := jl.Flush(); err != nil || len(w.sizes) != 4 {
		t.Fatalf("empty Flush: %v, %d writes (want none more)", err, len(w.sizes)-4)
	}
	if !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("the lines written differ from AppendJSON's (%d bytes, want %d)", w.Len(), len(want))
	}
}

// A write error sticks: later Writes and Flushes return it and write
// nothing.
func TestJSONLinesWriteErrorSticks(t *testing.T) {
	w := writeLog{failAt: 1}
	jl := NewJSONLines(&w)
	r := fixedRequests()[0]
	if err := jl.Write(&r); err != nil {
		t.Fatal(err) // buffered
	}
	if err := jl.Flush(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Flush: %v, want %v", err, errDiskFull)
	}
	if err := jl.Write(&r); !errors.Is(err, errDiskFull) {
		t.Fatalf("Write after the error: %v", err)
	}
	if err := jl.Flush(); !errors.Is(err, errDiskFull) || len(w.sizes) != 1 {
		t.Fatalf("Flush after the error: %v, %d writes (want 1)", err, len(w.sizes))
	}
}

// The profile keeps nested phases under app, so latency sums to the
// top-level phases only, and each request is counted once.
func TestProfileNoDoubleCounting(t *testing.T) {
	p := NewProfile()
	reqs := fixedRequests()
	var wantLatency int64
	for i := range reqs {
		p.Add(&reqs[i])
		reqs[i].Phases.Each(func(ph correlate.Phase, ns int64) {
			if !ph.Nested() && ph != correlate.AckWait {
				wantLatency += ns
			}
		})
	}
	var buf bytes.Buffer
	if err := p.WriteProfile(&buf); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := prof.CheckValid(); err != nil {
		t.Fatal(err)
	}
	var count, latency int64
	stacks := map[string]int64{}
	for _, s := range prof.Sample {
		count += s.Value[0]
		latency += s.Value[1]
		var names []string
		for i := len(s.Location) - 1; i >= 0; i-- {
			names = append(names, s.Location[i].Line[0].Function.Name)
		}
		stacks[strings.Join(names, ";")] += s.Value[1]
		if s.Label["phase"][0] != names[len(names)-1] || s.NumLabel["pid"][0] != 42 {
			t.Errorf("labels %v %v for %v", s.Label, s.NumLabel, names)
		}
	}
	if count != 2 || latency != wantLatency {
		t.Errorf("requests %d latency %d; want 2 and %d", count, latency, wantLatency)
	}
	if got := stacks["service api;GET /api/x;app;runqueue"]; got != 4e6 {
		t.Errorf("runqueue under app = %d", got)
	}
	if got := stacks["service api;GET /api/x;app"]; got != 21e6 { // 30 − 4 − 5
		t.Errorf("app self time = %d, want 21ms", got)
	}
	if got := stacks["service api;tcp:8080;app"]; got != 1e6 {
		t.Errorf("non-HTTP route: %v", stacks)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 10000)
	for i := range vals {
		vals[i] = rng.Int64N(1e9)
		h.add(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if d := float64(got-want) / float64(want); d > 0.02 || d < -0.02 {
			t.Errorf("q%.2f = %d, exact %d (%.1f%% off)", q, got, want, d*100)
		}
	}
	if h.max != vals[len(vals)-1] {
		t.Errorf("max %d", h.max)
	}
}

func TestSummary(t *testing.T) {
	s := NewSummary(1)
	for _, r := range fixedRequests() {
		s.Add(&r)
	}
	var buf bytes.Buffer
	s.Write(&buf)
	out := buf.String()
	for _, want := range []string{"2 requests", "recv_queue", "  runqueue", "slowest 1:", "GET /api/x", "[runqueue=4.00ms]",
		"    findings: late_read 20.00ms (recv_queue)\n",
		"findings, most time lost first (docs/findings.md):\n  1. api GET /api/x: late_read (recv_queue) on 1 requests, 20.00ms lost, 20.00ms on average\n     confirm: ss -tn 'sport = :8080'",
		"     remedy: the app read the request late"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// AppendJSON is byte for byte encoding/json's rendering of ToJSON.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	reqs := fixedRequests()
	odd := reqs[1]
	odd.Comm = "we<ird>&\"\\\n\t\x01\u2028é\xff"
	odd.HTTP = &correlate.HTTP{Method: "GET", Target: "/a?b=<c>"}
	odd.Spans = []correlate.Span{{Name: "encoding/json.Marshal", StartUnixNano: 5, DurationNs: 7}}
	grpcOK, grpcUnseen := reqs[0], reqs[0]
	grpcOK.RPC = &correlate.RPC{System: "grpc", Service: "pkg.Svc", Method: "Get", StatusKnown: true}
	grpcUnseen.RPC = &correlate.RPC{System: "grpc", Service: "pkg.Svc", Method: "Watch", StatusCode: 7}
	v6 := reqs[0]
	v6.Conn.Local, v6.Conn.Peer = netip.MustParseAddrPort("[::1]:8080"), netip.AddrPort{}
	found := reqs[1]
	found.Findings = []correlate.Finding{
		{Code: correlate.CFSThrottled, Phase: correlate.CFSThrottle, LostNs: 7, Evidence: []correlate.Evidence{
			correlate.TextEvidence("cgroup", "/sys/fs/cgroup/a<b>&\"c\"/\xff"), correlate.FloatEvidence("quota_cpus", 0.2),
			correlate.FloatEvidence("big", 1e22), correlate.FloatEvidence("tiny", 1e-9), correlate.IntEvidence("cpu_quota_us", -1)}},
		{Code: correlate.SlowHandler, Phase: correlate.App, LostNs: 1},
	}
	tlsKnown, tlsUnknown, tlsFailed := reqs[0], reqs[1], reqs[1]
	tlsKnown.TLS = &correlate.TLS{Known: true, Version: 0x0304, CipherSuite: 0x1301, Resumed: true}
	tlsKnown.Phases.Set(correlate.TLSHandshake, 1234)
	tlsUnknown.TLS = &correlate.TLS{}
	tlsFailed.TLS = &correlate.TLS{Known: true, Failed: true}
	for _, r := range append(reqs, odd, grpcOK, grpcUnseen, v6, found, tlsKnown, tlsUnknown, tlsFailed) {
		want, err := json.Marshal(ToJSON(&r))
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSON(nil, &r); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := fixedRequests()[0]
	r.Findings = nil // most requests have none: BenchmarkAppendJSONFindings
	var buf []byte
	for b.Loop() {
		buf = AppendJSON(buf[:0], &r)
	}
}

func BenchmarkAppendJSONFindings(b *testing.B) {
	r := fixedRequests()[0]
	var buf []byte
	for b.Loop() {
		buf = AppendJSON(buf[:0], &r)
	}
}

// mustHex decodes a hex literal of a test fixture.
func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The JSON lines' findings read back as they were: numbers keep their
// kind, evidence its order.
func TestFindingsRoundTrip(t *testing.T) {
	r := fixedRequests()[0]
	r.Findings = append(r.Findings, correlate.Finding{Code: correlate.CFSThrottled, Phase: correlate.CFSThrottle, LostNs: 5e6,
		Evidence: []correlate.Evidence{correlate.TextEvidence("cgroup", "/sys/fs/cgroup/x"), correlate.FloatEvidence("quota_cpus", 0.2), correlate.IntEvidence("cpu_quota_us", 20000),
			correlate.FloatEvidence("host_cpu_busy_pct", 51)}})
	var j JSONRecord
	if err := json.Unmarshal(AppendJSON(nil, &r), &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Findings) != 2 || j.Findings[1].Code != "cfs_throttled" || j.Findings[1].Phase != "cfs_throttle" || j.Findings[1].LostNs != 5e6 ||
		j.Findings[1].Remedy != correlate.CFSThrottled.Remedy() {
		t.Fatalf("%+v", j.Findings)
	}
	if got := j.Findings[1].Evidence; !slices.Equal(got, JSONEvidence(r.Findings[1].Evidence)) {
		t.Errorf("evidence %+v, want %+v", got, r.Findings[1].Evidence)
	}
	if e, ok := j.Findings[0].Evidence.Get("recv_queue_ns"); !ok || e.Int != 20e6 {
		t.Errorf("late_read evidence %+v", j.Findings[0].Evidence)
	}
}
