//go:build e2e

package tests

// OTLP export end to end: a real Jaeger v2 all-in-one (built from the
// Go module proxy by tests/tools/jaeger, cached in the machine's Go
// cache folder) receives tracerd's spans over gRPC and HTTP, with and
// without mTLS; the tests read them back through Jaeger's query API.
// The collectors and the helpers are in otlp_fixtures_test.go.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// TestOTLPJaeger: requests traced by `tracerd run` reach a real Jaeger
// over gRPC and over HTTP/protobuf; each trace read back through the
// query API has the span tree, attributes and durations of tracerd's
// own record, and requests that carried a traceparent are children of
// the caller's span.
func TestOTLPJaeger(t *testing.T) {
	needRoot(t)
	j := startJaeger(t, "")
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(proto, "/", "_"), func(t *testing.T) {
			const readDelay = 30 * time.Millisecond
			srv := startServer(t, nil, "--read-delay", readDelay.String())
			endpoint := fmt.Sprintf("http://127.0.0.1:%d", j.HTTP)
			if proto == "grpc" {
				endpoint = fmt.Sprintf("http://127.0.0.1:%d", j.GRPC)
			}
			rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--otlp-endpoint", endpoint, "--otlp-protocol", proto,
				"--sample-ratio", "1", "--otlp-batch-delay", "100ms")
			callers := map[string]string{} // trace id → caller span id
			for c := range 2 {
				conn := dialTP(t, srv.Addr)
				for i := range 3 {
					tp, traceID, spanID := "", "", ""
					if (c+i)%2 == 0 {
						tp, traceID, spanID = newTraceParent()
						callers[traceID] = spanID
					}
					conn.get(t, fmt.Sprintf("/api/item?id=%d", i), tp)
				}
				conn.c.Close()
			}
			srv.Truths(t, 6)
			recs := recordsOn(rt.Stop(t), srv.Port)
			if len(recs) != 6 {
				t.Fatalf("tracerd recorded %d requests, want 6", len(recs))
			}
			withParent := 0
			for _, rec := range recs {
				if caller, ok := callers[rec.TraceID]; ok {
					withParent++
					if rec.ParentSpanID != caller {
						t.Errorf("record of trace %s: parent %q, the caller's span is %q", rec.TraceID, rec.ParentSpanID, caller)
					}
				}
				tr := j.waitTrace(t, rec.TraceID, 1+len(rec.Phases)+len(rec.Spans), 10*time.Second)
				checkTree(t, tr, rec, "testserver", srv.PID)
				// The server sleeps before each read; the next request
				// comes a client round trip after the answer.
				if rq, ok := rec.Phases["recv_queue"]; ok && rq < readDelay.Nanoseconds()/2 {
					t.Errorf("recv_queue %s, the server slept %s before reading", time.Duration(rq), readDelay)
				}
			}
			if withParent != len(callers) {
				t.Errorf("%d records carry the callers' trace ids, %d requests sent one", withParent, len(callers))
			}
			t.Logf("Jaeger's tree of trace %s (%s):\n%s", recs[0].TraceID, proto, renderJaeger(j.trace(t, recs[0].TraceID), recs[0].SpanID))
		})
	}
}

// TestOTLPSampling: with no ratio, only the requests over the latency
// budget are exported, and those whose caller's traceparent says
// sampled; the others are counted as not sampled.
func TestOTLPSampling(t *testing.T) {
	needRoot(t)
	j := startJaeger(t, "")
	slow := startServer(t, nil, "--read-delay", "40ms")
	fast := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(slow.Port), "--port", strconv.Itoa(fast.Port),
		"--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.HTTP), "--sample-ratio", "0", "--latency-budget", "20ms",
		"--otlp-batch-delay", "50ms")
	for _, s := range []*Server{slow, fast} {
		c := dialTP(t, s.Addr)
		for range 4 {
			c.get(t, "/", "")
		}
		c.c.Close()
		s.Truths(t, 4)
	}
	// Fast requests whose callers decided: two sampled, two not.
	sampledBy := map[string]bool{}
	c := dialTP(t, fast.Addr)
	for i := range 4 {
		tp, traceID, _ := newTraceParent()
		if i%2 == 1 {
			tp = strings.TrimSuffix(tp, "-01") + "-00"
		}
		sampledBy[traceID] = i%2 == 0
		c.get(t, "/", tp)
	}
	c.c.Close()
	fast.Truths(t, 4)
	m := waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= 12 })
	recs := rt.Stop(t)
	over := 0
	for _, rec := range append(recordsOn(recs, slow.Port), recordsOn(recs, fast.Port)...) {
		if rec.DurationNs > 20e6 {
			over++
			j.waitTrace(t, rec.TraceID, 1+len(rec.Phases), 10*time.Second)
		}
	}
	if over < 4 {
		t.Errorf("%d requests over the budget; the 4 of the slow server should be", over)
	}
	byParent := 0
	for _, rec := range recordsOn(recs, fast.Port) {
		if sampled, ok := sampledBy[rec.TraceID]; ok && sampled && rec.DurationNs <= 20e6 {
			byParent++
			j.waitTrace(t, rec.TraceID, 1+len(rec.Phases), 10*time.Second)
		}
	}
	// Nothing to wait for: a span wrongly exported shows in Jaeger once
	// its batch processor passed it on, which tracerd, stopped with all
	// its exports answered, leaves a few batch timeouts for.
	time.Sleep(4 * jaegerBatchTimeout)
	for _, rec := range recordsOn(recs, fast.Port) {
		if rec.DurationNs <= 20e6 && !sampledBy[rec.TraceID] && j.trace(t, rec.TraceID) != nil {
			t.Errorf("request of %s under the budget was exported with ratio 0 (caller sampled: %v)", time.Duration(rec.DurationNs), sampledBy[rec.TraceID])
		}
	}
	if got := m[`tracerd_trace_sampling_decisions_total{decision="over_budget"}`]; got != float64(over) {
		t.Errorf("over_budget decisions %v, want %d", got, over)
	}
	if got := m[`tracerd_trace_sampling_decisions_total{decision="parent"}`]; got != float64(byParent) || byParent != 2 {
		t.Errorf("parent decisions %v, %d requests under the budget with a sampled caller (want 2)", got, byParent)
	}
	if got := m[`tracerd_trace_sampling_decisions_total{decision="not_sampled"}`]; got != float64(12-over-byParent) {
		t.Errorf("not_sampled decisions %v, want %d", got, 12-over-byParent)
	}
}

// TestOTLPJaegerRestart: Jaeger goes away in the middle of a run and
// comes back. Tracing goes on (every request still has its JSON
// record), what does not fit the queue is dropped and counted, and
// spans flow again once Jaeger is back.
func TestOTLPJaegerRestart(t *testing.T) {
	needRoot(t)
	j := startJaeger(t, "")
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port),
		"--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.GRPC), "--otlp-protocol", "grpc",
		"--sample-ratio", "1", "--otlp-queue-size", "60", "--otlp-batch-size", "20", "--otlp-batch-delay", "50ms", "--otlp-timeout", "1s")
	burst := func(n int) {
		c := dialTP(t, srv.Addr)
		for range n {
			c.get(t, "/", "")
		}
		c.c.Close()
	}
	sent := 0
	burst(5)
	sent += 5
	srv.Truths(t, sent)
	waitMetric(t, rt, "tracerd_otlp_spans_exported_total", func(v float64) bool { return v > 0 })

	j.stop()
	downAt := time.Now()
	// Requests keep coming for longer than two export timeouts.
	for range 10 {
		burst(10)
		sent += 10
		time.Sleep(250 * time.Millisecond)
	}
	srv.Truths(t, sent)
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= float64(sent) })
	waitMetric(t, rt, "tracerd_otlp_spans_dropped_total", func(v float64) bool { return v > 0 })
	m := waitMetric(t, rt, "tracerd_otlp_export_errors_total", func(v float64) bool { return v > 0 })
	t.Logf("Jaeger down %s: %v requests read, %v spans dropped (queue full), %v failed, %v export errors",
		time.Since(downAt).Round(time.Millisecond), m["tracerd_records_read_total"], m["tracerd_otlp_spans_dropped_total"],
		m["tracerd_otlp_spans_failed_total"], m["tracerd_otlp_export_errors_total"])

	j.start(t)
	upAt := time.Now()
	exportedBefore := m["tracerd_otlp_spans_exported_total"]
	// What waited in the queue goes first; then new requests fit again.
	m = waitMetric(t, rt, "tracerd_otlp_spans_exported_total", func(v float64) bool { return v > exportedBefore })
	t.Logf("export resumed %s after Jaeger came back", time.Since(upAt).Round(time.Millisecond))
	waitMetric(t, rt, "tracerd_otlp_queue_spans", func(v float64) bool { return v == 0 })
	dropped := m["tracerd_otlp_spans_dropped_total"]
	burst(5)
	sent += 5
	srv.Truths(t, sent)
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= float64(sent) })
	recs := flushedRecordsOn(t, rt.JSONPath, srv.Port, sent)
	if len(recs) != sent {
		t.Errorf("%d JSON records, %d requests: tracing did not go on", len(recs), sent)
	}
	// The requests sent after the restart are in Jaeger, whole.
	for _, rec := range recs[len(recs)-5:] {
		tr := j.waitTrace(t, rec.TraceID, 1+len(rec.Phases), 10*time.Second)
		checkTree(t, tr, rec, "testserver", srv.PID)
	}
	if d := rt.Metrics(t)["tracerd_otlp_spans_dropped_total"]; d != dropped {
		t.Errorf("%v spans dropped after Jaeger came back", d-dropped)
	}
	rt.Stop(t)
	if !strings.Contains(rt.stderr.String(), "OTLP export resumed") {
		t.Errorf("tracerd did not say export resumed:\n%s", rt.stderr)
	}
}

// TestOTLPmTLS: Jaeger's receivers require a client certificate signed
// by a CA this test makes. With the certificate (given through the
// standard OTEL_* variables) spans arrive; without one every export
// fails and is counted.
func TestOTLPmTLS(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	makePKI(t, dir)
	j := startJaeger(t, dir)
	srv := startServer(t, nil)
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(proto, "/", "_"), func(t *testing.T) {
			port := j.HTTP
			if proto == "grpc" {
				port = j.GRPC
			}
			env := []string{
				fmt.Sprintf("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://127.0.0.1:%d", port),
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + proto,
				"OTEL_EXPORTER_OTLP_CERTIFICATE=" + filepath.Join(dir, "ca.pem"),
				"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + filepath.Join(dir, "client.pem"),
				"OTEL_EXPORTER_OTLP_CLIENT_KEY=" + filepath.Join(dir, "client-key.pem"),
			}
			rt := startRun(t, env, "--port", strconv.Itoa(srv.Port), "--sample-ratio", "1", "--otlp-batch-delay", "50ms")
			if !strings.Contains(rt.stderr.String(), "with a client certificate") {
				t.Errorf("tracerd did not say it uses a client certificate:\n%s", rt.stderr)
			}
			c := dialTP(t, srv.Addr)
			c.get(t, "/secure", "")
			c.c.Close()
			waitMetric(t, rt, "tracerd_otlp_spans_exported_total", func(v float64) bool { return v > 0 })
			recs := recordsOn(rt.Stop(t), srv.Port)
			if len(recs) == 0 {
				t.Fatal("no record")
			}
			rec := recs[len(recs)-1]
			checkTree(t, j.waitTrace(t, rec.TraceID, 1+len(rec.Phases), 10*time.Second), rec, "testserver", srv.PID)

			// The same without a client certificate: refused, counted.
			rt = startRun(t, env[:3], "--port", strconv.Itoa(srv.Port), "--sample-ratio", "1", "--otlp-batch-delay", "50ms", "--otlp-timeout", "1s")
			c = dialTP(t, srv.Addr)
			c.get(t, "/secure", "")
			c.c.Close()
			m := waitMetric(t, rt, "tracerd_otlp_export_errors_total", func(v float64) bool { return v > 0 })
			if m["tracerd_otlp_spans_exported_total"] != 0 {
				t.Errorf("spans exported without a client certificate")
			}
			rt.Stop(t)
		})
	}
}

// TestOTLPBadConfig: a bad endpoint or an unreadable TLS file stops
// tracerd at start with a clear message and exit code 2, before any
// BPF is loaded (not as root, the cases tracerd checks after its
// privileges skip).
func TestOTLPBadConfig(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("garbage"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		msg  string
	}{
		{"no scheme", nil, []string{"--otlp-endpoint", "collector:4318"}, `--otlp-endpoint: "collector:4318" is not a valid OTLP endpoint`},
		{"bad scheme", nil, []string{"--otlp-endpoint", "udp://collector:4318"}, "the scheme must be http or https"},
		{"bad env endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://:4318"}, nil, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"missing CA", nil, []string{"--otlp-endpoint", "https://127.0.0.1:4318", "--otlp-certificate", "/nonexistent/ca.pem"}, "--otlp-certificate: reading the CA certificate: open /nonexistent/ca.pem"},
		{"unreadable client key (env)", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=https://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + garbage, "OTEL_EXPORTER_OTLP_CLIENT_KEY=/nonexistent/key.pem"}, nil, "OTEL_EXPORTER_OTLP_CLIENT_KEY: stat /nonexistent/key.pem"},
		{"garbage certificate", nil, []string{"--otlp-endpoint", "https://127.0.0.1:4318", "--otlp-client-certificate", garbage, "--otlp-client-key", garbage}, "loading the client certificate"},
		{"bad protocol", nil, []string{"--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-protocol", "http/json"}, "http/json is not supported"},
		{"bad ratio", nil, []string{"--sample-ratio", "1.5"}, "--sample-ratio"},
		{"bad service rule", nil, []string{"--service-name", "port:x=api"}, "--service-name"},
		{"bad metrics address", nil, []string{"--metrics-addr", "9464"}, "--metrics-addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin.tracerd, append([]string{"run", "--port", "1"}, c.args...)...)
			cmd.Env = append(os.Environ(), c.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			skipRefusedPrivileges(t, string(out))
			if code != 2 || !strings.Contains(string(out), c.msg) {
				t.Errorf("exit %d, output %q; want exit 2 and %q", code, out, c.msg)
			}
		})
	}
}

// TestOTLPResourceFromCgroup: a server whose cgroups look like a systemd
// service's and a Kubernetes container's gets service.name from the
// unit and container.id / k8s.pod.uid from the paths; --service-name
// overrides per port.
func TestOTLPResourceFromCgroup(t *testing.T) {
	needRoot(t)
	j := startJaeger(t, "")
	srv := startServer(t, nil)
	const (
		pod       = "0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e"
		container = "8f2b9c6e0d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c"
	)
	slice := fmt.Sprintf("tracerd-test-%d.slice", os.Getpid())
	joinCgroup(t, "/sys/fs/cgroup/systemd", filepath.Join(slice, "shop.service"), srv.PID)
	joinCgroup(t, "/sys/fs/cgroup/pids", filepath.Join(slice, "kubepods", "besteffort", "pod"+pod, container), srv.PID)
	other := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--port", strconv.Itoa(other.Port),
		"--service-name", fmt.Sprintf("port:%d=renamed", other.Port),
		"--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.HTTP), "--sample-ratio", "1", "--otlp-batch-delay", "50ms")
	for _, s := range []*Server{srv, other} {
		c := dialTP(t, s.Addr)
		c.get(t, "/", "")
		c.c.Close()
		s.Truths(t, 1)
	}
	recs := rt.Stop(t)
	for _, c := range []struct {
		s       *Server
		service string
		tags    map[string]string
	}{
		{srv, "shop", map[string]string{"container.id": container, "k8s.pod.uid": pod, "process.executable.name": "testserver"}},
		{other, "renamed", map[string]string{"container.id": "", "k8s.pod.uid": ""}},
	} {
		rs := recordsOn(recs, c.s.Port)
		if len(rs) != 1 {
			t.Fatalf("%d records on port %d", len(rs), c.s.Port)
		}
		if rs[0].Service != c.service {
			t.Errorf("JSON service %q, want %q", rs[0].Service, c.service)
		}
		tr := j.waitTrace(t, rs[0].TraceID, 1+len(rs[0].Phases), 10*time.Second)
		checkTree(t, tr, rs[0], c.service, c.s.PID)
		proc := tr.Processes[tr.Spans[0].ProcessID]
		for k, want := range c.tags {
			if got, _ := tag(proc.Tags, k); got != want {
				t.Errorf("%s: resource %s=%q, want %q", c.service, k, got, want)
			}
		}
	}
}

// TestOTLPSlowEndpoint: an endpoint that accepts connections and never
// answers. Every request is still read and written out at once, exports
// time out and are counted, spans over the queue bound are dropped and
// counted, and tracerd still stops promptly.
func TestOTLPSlowEndpoint(t *testing.T) {
	needRoot(t)
	silent := startSilentCollector(t)
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--otlp-endpoint", silent.URL(),
		"--sample-ratio", "1", "--otlp-queue-size", "40", "--otlp-batch-size", "20", "--otlp-batch-delay", "20ms", "--otlp-timeout", "500ms")
	const n = 50
	c := dialTP(t, srv.Addr)
	start := time.Now()
	for range n {
		c.get(t, "/", "")
	}
	c.c.Close()
	srv.Truths(t, n)
	// The reader does not wait for the exporter: every record is read
	// and written to the JSON lines while the first export still hangs.
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= n })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("reading %d requests took %s with the endpoint stuck", n, d)
	}
	if got := len(flushedRecordsOn(t, rt.JSONPath, srv.Port, n)); got != n {
		t.Errorf("%d JSON records, want %d", got, n)
	}
	m := waitMetric(t, rt, "tracerd_otlp_export_errors_total", func(v float64) bool { return v > 0 })
	if m["tracerd_otlp_spans_dropped_total"] == 0 {
		t.Error("no span dropped though the queue holds 40 and 50 requests came")
	}
	if m["tracerd_otlp_spans_exported_total"] != 0 {
		t.Error("spans exported to an endpoint that never answers")
	}
	stopAt := time.Now()
	rt.Stop(t)
	if d := time.Since(stopAt); d > 10*time.Second {
		t.Errorf("stopping took %s", d)
	}
}

// TestOTLPGoSpans: a Go net/http server (tests/goserver) answering with
// encoding/json. Its Go spans reach Jaeger under app, json.Marshal inside
// ServeHTTP, next to the serialize phase; the caller's traceparent makes
// the request a child of the caller's span.
func TestOTLPGoSpans(t *testing.T) {
	needRoot(t)
	j := startJaeger(t, "")
	path := filepath.Join(bin.dir, "goserver-otlp")
	build := exec.Command("go", "build", "-o", path, ".")
	build.Dir = "goserver"
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building goserver: %v\n%s", err, out)
	}
	srv := exec.Command(path, "--heap", "1000")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	var hello struct {
		Listen string `json:"listen"`
		PID    int    `json:"pid"`
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &hello) != nil {
		t.Fatalf("goserver did not start: %v %q", err, line)
	}
	rt := startRun(t, nil, "--pid", strconv.Itoa(hello.PID), "--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.GRPC),
		"--otlp-protocol", "grpc", "--sample-ratio", "1", "--otlp-batch-delay", "50ms")
	tp, traceID, caller := newTraceParent()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+hello.Listen+"/json?n=5000", nil)
	req.Header.Set("traceparent", tp)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= 1 })
	var rec *export.JSONRecord
	for _, r := range rt.Stop(t) {
		if r.TraceID == traceID {
			rec = &r
		}
	}
	if rec == nil {
		t.Fatalf("no record of trace %s", traceID)
	}
	if rec.ParentSpanID != caller {
		t.Errorf("parent %q, the caller's span is %q", rec.ParentSpanID, caller)
	}
	if len(rec.Spans) == 0 {
		t.Fatalf("the record has no Go spans (Go probes not attached?): %+v", rec)
	}
	tr := j.waitTrace(t, traceID, 1+len(rec.Phases)+len(rec.Spans), 10*time.Second)
	checkTree(t, tr, *rec, "goserver-otlp", hello.PID)
	byName := map[string]JaegerSpan{}
	for _, s := range tr.Spans {
		byName[s.OperationName] = s
	}
	serve, marshal := byName["net/http.serverHandler.ServeHTTP"], byName["encoding/json.Marshal"]
	if serve.parent() != byName["app"].SpanID {
		t.Errorf("ServeHTTP is under %q, not app", serve.parent())
	}
	if marshal.SpanID == "" || marshal.parent() != serve.SpanID {
		t.Errorf("json.Marshal is not inside ServeHTTP: %+v", marshal)
	}
	if byName["serialize"].parent() != byName["app"].SpanID {
		t.Error("serialize is not under app")
	}
	for _, s := range tr.Spans {
		if strings.HasPrefix(s.OperationName, "runtime.GC ") && s.parent() != byName["gc_stw"].SpanID {
			t.Errorf("GC pause %s is not under gc_stw", s.OperationName)
		}
	}
	t.Logf("Jaeger's tree of a Go request:\n%s", renderJaeger(tr, rec.SpanID))
}
