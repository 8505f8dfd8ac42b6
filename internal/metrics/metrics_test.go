package metrics

import (
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/loader"
)

func request(service string, durMs int64, phases map[correlate.Phase]int64) *correlate.Request {
	r := &correlate.Request{Service: service, DurationNs: durMs * 1e6, TraceID: correlate.TraceID(mustHex("0af7651916cd43dd8448eb211c80319c")), SpanID: correlate.SpanID(mustHex("00f067aa0ba902b7"))}
	for p, v := range phases {
		r.Phases.Set(p, v)
	}
	return r
}

// TestMetricsRequests: measured phases are observed under their own
// label, absent ones are not, and a traced request leaves an exemplar.
func TestMetricsRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewRequests(reg)
	m.Observe(request("api", 30, map[correlate.Phase]int64{correlate.App: 20e6, correlate.Runqueue: 2e6, correlate.RecvQueue: 0}), true)
	m.Observe(request("api", 70, map[correlate.Phase]int64{correlate.App: 60e6}), false)
	m.Observe(request("db", 1, nil), false)

	if got := counterValue(t, m.total.WithLabelValues("api")); got != 2 {
		t.Errorf("api requests %v", got)
	}
	count := func(service, phase string) uint64 {
		h := m.phase.WithLabelValues(service, phase).(prometheus.Metric)
		return metricOf(t, h).GetHistogram().GetSampleCount()
	}
	if c := count("api", "app"); c != 2 {
		t.Errorf("app observed %d times", c)
	}
	if c := count("api", "recv_queue"); c != 1 {
		t.Errorf("recv_queue (measured 0) observed %d times", c)
	}
	if c := count("api", "send_queue"); c != 0 {
		t.Errorf("send_queue (not measured) observed %d times", c)
	}
	d := metricOf(t, m.duration.WithLabelValues("api").(prometheus.Metric)).GetHistogram()
	if d.GetSampleSum() < 0.0999 || d.GetSampleSum() > 0.1001 {
		t.Errorf("duration sum %v", d.GetSampleSum())
	}
	exemplars := 0
	for _, b := range d.GetBucket() {
		if e := b.GetExemplar(); e != nil {
			exemplars++
			if e.GetLabel()[0].GetValue() != "0af7651916cd43dd8448eb211c80319c" && e.GetLabel()[1].GetValue() != "0af7651916cd43dd8448eb211c80319c" {
				t.Errorf("exemplar labels %v", e.GetLabel())
			}
		}
	}
	if exemplars != 1 {
		t.Errorf("%d exemplars, want 1 (the traced request)", exemplars)
	}
}

func TestMetricsServiceBound(t *testing.T) {
	m := NewRequests(prometheus.NewRegistry())
	for i := range maxServices + 10 {
		m.Observe(request("svc"+string(rune('a'+i%26))+strings.Repeat("x", i/26), 1, nil), false)
	}
	if len(m.services) != maxServices+1 {
		t.Errorf("%d label values, want %d + other", len(m.services), maxServices)
	}
	if got := counterValue(t, m.total.WithLabelValues("other")); got != 10 {
		t.Errorf("other: %v", got)
	}
}

// TestMetricsServe scrapes the self-metrics over HTTP.
func TestMetricsServe(t *testing.T) {
	reg := Registry()
	NewRequests(reg).Observe(request("api", 5, map[correlate.Phase]int64{correlate.App: 4e6}), false)
	self := NewSelf(reg)
	var fail atomic.Bool
	self.SetSources(Sources{
		Kernel: func() (loader.Counters, error) {
			if fail.Load() {
				return loader.Counters{}, errors.New("map gone")
			}
			return loader.Counters{Records: 10, RingbufDrops: 2, GoDrops: 1, ConnMapFull: 3, ConnsOpen: 25, ConnsMax: 100}, nil
		},
		Read:       func() int64 { return 8 },
		SinkErrors: func() int64 { return 0 },
		OTLP: func() export.OTLPStats {
			return export.OTLPStats{Sampled: [4]int64{5, 2, 1, 3}, SpansExported: 12, SpansDropped: 4, ExportErrors: 1, Exports: 3}
		},
	})
	srv, err := Listen("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`tracerd_request_phase_seconds_count{phase="app",service="api"} 1`,
		`tracerd_requests_total{service="api"} 1`,
		`tracerd_kernel_records_total 10`,
		`tracerd_records_read_total 8`,
		`tracerd_records_lost_total{reason="ringbuf_full"} 2`,
		`tracerd_ringbuf_reserve_failures_total{ringbuf="go"} 1`,
		`tracerd_map_full_total{map="conns"} 3`,
		`tracerd_map_fill_ratio{map="conns"} 0.25`,
		`tracerd_otlp_spans_exported_total 12`,
		`tracerd_otlp_spans_dropped_total 4`,
		`tracerd_otlp_export_errors_total 1`,
		`tracerd_trace_sampling_decisions_total{decision="over_budget"} 2`,
		`tracerd_trace_sampling_decisions_total{decision="not_sampled"} 5`,
		`tracerd_trace_sampling_decisions_total{decision="parent"} 3`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	fail.Store(true)
	if body := scrape(); !strings.Contains(body, "tracerd_kernel_counter_read_errors_total 1") || !strings.Contains(body, "tracerd_records_read_total 8") {
		t.Errorf("a failing kernel source should be counted and the rest still served:\n%s", body)
	}
	if _, err := Listen("127.0.0.1", reg, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("an address without a port was accepted")
	}
	if _, err := Listen(srv.Addr(), reg, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a port in use was accepted")
	}
}

func metricOf(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	return metricOf(t, c).GetCounter().GetValue()
}

// BenchmarkMetricsObserve is the reader goroutine's cost per request.
func BenchmarkMetricsObserve(b *testing.B) {
	m := NewRequests(prometheus.NewRegistry())
	r := request("api", 30, map[correlate.Phase]int64{correlate.App: 20e6, correlate.Runqueue: 2e6, correlate.RecvQueue: 1e6,
		correlate.CFSThrottle: 0, correlate.SendQueue: 0, correlate.AckWait: 1e5, correlate.Softirq: 2e3})
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(r, false)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestMetricsFindings: each finding counts once under its service and
// code, with the time it cost; codes never found have no series.
func TestMetricsFindings(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewRequests(reg)
	r := request("api", 30, map[correlate.Phase]int64{correlate.App: 20e6})
	r.Findings = []correlate.Finding{{Code: correlate.GCPause, LostNs: 8e6}, {Code: correlate.Serialization, LostNs: 7e6}}
	m.Observe(r, false)
	r.Findings = r.Findings[:1]
	m.Observe(r, false)
	m.Observe(request("api", 1, nil), false)
	if got := counterValue(t, m.findings.count.WithLabelValues("api", "gc_pause")); got != 2 {
		t.Errorf("gc_pause findings %v", got)
	}
	if got := counterValue(t, m.findings.lost.WithLabelValues("api", "gc_pause")); got < 0.01599 || got > 0.01601 {
		t.Errorf("gc_pause lost %v s", got)
	}
	if got := counterValue(t, m.findings.count.WithLabelValues("api", "serialization")); got != 1 {
		t.Errorf("serialization findings %v", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tracerd_findings_total" && len(mf.GetMetric()) != 2 { // gc_pause and serialization only
			t.Errorf("%d findings series", len(mf.GetMetric()))
		}
	}
}
