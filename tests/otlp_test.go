//go:build e2e

package tests

// OTLP export end to end: a real Jaeger v2 all-in-one (built from the
// Go module proxy by tests/tools/jaeger, cached in the machine's Go
// cache folder) receives tracerd's spans over gRPC and HTTP, with and
// without mTLS; the tests read them back through Jaeger's query API.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
)

// ---- Jaeger ----

var jaegerBuild struct {
	once sync.Once
	path string
	err  error
}

// jaegerBinary returns the Jaeger v2 binary, building it when the cache
// lacks it: in $(go env GOCACHE)/../tracerd-tools, named after the hash
// of the tools module's go.sum (tests/tools/install-test-services.sh
// builds the same file ahead of the tests).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	jaegerBuild.once.Do(func() {
		sum, err := os.ReadFile("tools/jaeger/go.sum")
		if err != nil {
			jaegerBuild.err = err
			return
		}
		out, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil {
			jaegerBuild.err = fmt.Errorf("go env GOCACHE: %w", err)
			return
		}
		h := sha256.Sum256(sum)
		dir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "tracerd-tools")
		path := filepath.Join(dir, "jaeger-"+hex.EncodeToString(h[:6]))
		if _, err := os.Stat(path); err == nil {
			jaegerBuild.path = path
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			jaegerBuild.err = err
			return
		}
		t.Logf("building Jaeger into %s (once per machine; minutes)", path)
		start := time.Now()
		tmp := path + ".tmp"
		cmd := exec.Command("go", "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
		cmd.Dir = "tools/jaeger"
		if msg, err := cmd.CombinedOutput(); err != nil {
			jaegerBuild.err = fmt.Errorf("building Jaeger: %v\n%s", err, msg)
			return
		}
		if err := os.Rename(tmp, path); err != nil {
			jaegerBuild.err = err
			return
		}
		t.Logf("built Jaeger in %s", time.Since(start).Round(time.Second))
		// Builds of older go.sum files are of no use any more.
		if old, _ := filepath.Glob(filepath.Join(dir, "jaeger-*")); len(old) > 0 {
			for _, o := range old {
				if o != path {
					_ = os.Remove(o)
				}
			}
		}
		jaegerBuild.path = path
	})
	if jaegerBuild.err != nil {
		t.Fatal(jaegerBuild.err)
	}
	return jaegerBuild.path
}

// Jaeger is an all-in-one Jaeger on loopback with in-memory storage.
type Jaeger struct {
	bin, config       string
	GRPC, HTTP, Query int
	cmd               *exec.Cmd
	log               *syncBuffer
	done              chan struct{}
}

// startJaeger starts Jaeger; with tlsDir set, both OTLP receivers
// require TLS with a client certificate signed by tlsDir/ca.pem.
func startJaeger(t *testing.T, tlsDir string) *Jaeger {
	t.Helper()
	j := &Jaeger{bin: jaegerBinary(t), GRPC: freePort(t), HTTP: freePort(t), Query: freePort(t)}
	dir := t.TempDir()
	tlsBlock := ""
	if tlsDir != "" {
		tlsBlock = fmt.Sprintf(`
        tls:
          cert_file: %s
          key_file: %s
          client_ca_file: %s`, filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server-key.pem"), filepath.Join(tlsDir, "ca.pem"))
	}
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d%s
      http:
        endpoint: 127.0.0.1:%d%s
processors:
  batch:
    timeout: 50ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, j.Query, freePort(t), j.GRPC, tlsBlock, j.HTTP, tlsBlock)
	j.config = filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(j.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	j.start(t)
	t.Cleanup(j.stop)
	return j
}

// start runs Jaeger and waits until its query API and receivers answer.
func (j *Jaeger) start(t *testing.T) {
	t.Helper()
	j.log = &syncBuffer{}
	j.cmd = exec.Command(j.bin, "--config", "file:"+j.config)
	j.cmd.Stdout, j.cmd.Stderr = j.log, j.log
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	j.done = make(chan struct{})
	go func() { _ = j.cmd.Wait(); close(j.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/services", j.Query))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && listening(j.GRPC) && listening(j.HTTP) {
				return
			}
		}
		select {
		case <-j.done:
			t.Fatalf("Jaeger exited at start:\n%s", j.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger did not start within 30s:\n%s", j.log)
		}
	}
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// stop ends Jaeger (its in-memory traces go with it).
func (j *Jaeger) stop() {
	if j.cmd == nil || j.cmd.Process == nil {
		return
	}
	select {
	case <-j.done:
		return
	default:
	}
	// Killed, not asked: its traces are in memory anyway, and an
	// endpoint that vanishes at once is the harder case for tracerd.
	_ = j.cmd.Process.Kill()
	<-j.done
}

// JaegerTrace is a trace as Jaeger's query API (/api/traces/ID) gives it.
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
}

type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64       `json:"startTime"` // µs
	Duration  int64       `json:"duration"`  // µs
	Tags      []JaegerTag `json:"tags"`
	ProcessID string      `json:"processID"`
}

type JaegerTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type JaegerProcess struct {
	ServiceName string      `json:"serviceName"`
	Tags        []JaegerTag `json:"tags"`
}

func tag(tags []JaegerTag, key string) (string, bool) {
	for _, tg := range tags {
		if tg.Key == key {
			switch v := tg.Value.(type) {
			case string:
				return v, true
			case float64:
				return strconv.FormatInt(int64(v), 10), true
			default:
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

func (s JaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// trace fetches a trace; nil when Jaeger does not have it.
func (j *Jaeger) trace(t *testing.T, id string) *JaegerTrace {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/traces/%s", j.Query, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decoding trace %s: %v", id, err)
	}
	if len(body.Data) == 0 {
		return nil
	}
	return &body.Data[0]
}

// waitTrace waits until Jaeger holds a trace with at least n spans.
func (j *Jaeger) waitTrace(t *testing.T, id string, n int, within time.Duration) *JaegerTrace {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tr := j.trace(t, id)
		if tr != nil && len(tr.Spans) >= n {
			return tr
		}
		if time.Now().After(deadline) {
			got := 0
			if tr != nil {
				got = len(tr.Spans)
			}
			t.Fatalf("Jaeger has %d of %d spans of trace %s after %s", got, n, id, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- tracerd run ----

// RunTracer is a running `tracerd run`.
type RunTracer struct {
	*tracerdProc
	JSONPath    string
	MetricsAddr string
}

// startRun runs tracerd run with JSON lines to a file and /metrics on a
// free port, plus args; env is added to the environment. It returns
// once tracerd says it is tracing.
func startRun(t *testing.T, env []string, args ...string) *RunTracer {
	t.Helper()
	rt := &RunTracer{
		JSONPath:    filepath.Join(t.TempDir(), "requests.json"),
		MetricsAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	full := append([]string{"run", "--json", rt.JSONPath, "--metrics-addr", rt.MetricsAddr}, args...)
	cmd := exec.Command(bin.tracerd, full...)
	cmd.Env = append(os.Environ(), env...)
	rt.tracerdProc = launch(t, cmd, 10*time.Second)
	return rt
}

// Stop sends SIGINT (spans still queued are flushed) and returns the
// JSON records.
func (rt *RunTracer) Stop(t *testing.T) []export.JSONRecord {
	t.Helper()
	rt.stopWith(t, os.Interrupt)
	t.Logf("tracerd run output:\n%s", rt.stderr)
	return readRecords(t, rt.JSONPath)
}

// Metrics scrapes /metrics into name{labels} → value.
func (rt *RunTracer) Metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + rt.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// ---- requests ----

// tpConn is a keep-alive client connection that can send a traceparent.
type tpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialTP(t *testing.T, addr string) *tpConn {
	c := dial(t, addr)
	return &tpConn{c: c, r: bufio.NewReader(c)}
}

// get sends GET path, with a traceparent header when tp is set, and
// reads the answer.
func (tc *tpConn) get(t *testing.T, path, tp string) {
	t.Helper()
	head := "GET " + path + " HTTP/1.1\r\nHost: test\r\n"
	if tp != "" {
		head += "traceparent: " + tp + "\r\n"
	}
	if _, err := io.WriteString(tc.c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(tc.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// newTraceParent makes a sampled W3C traceparent: trace id, caller span.
func newTraceParent() (tp, traceID, spanID string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// ---- checks ----

// checkTree compares a trace from Jaeger with tracerd's own JSON record
// of the request: one SERVER span with the request's ids, times and
// attributes, a child per measured phase (nested ones under app) with
// the measured duration, and the Go spans under app.
func checkTree(t *testing.T, tr *JaegerTrace, rec export.JSONRecord, wantService string, wantPID int) {
	t.Helper()
	byID := map[string]JaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	if rec.HTTP == nil {
		t.Fatalf("record of trace %s has no HTTP facts", rec.TraceID)
	}
	root, ok := byID[rec.SpanID]
	if !ok {
		t.Fatalf("trace %s has no span %s (the request's)", rec.TraceID, rec.SpanID)
	}
	if kind, _ := tag(root.Tags, "span.kind"); kind != "server" {
		t.Errorf("request span kind %q", kind)
	}
	if got := root.parent(); got != rec.ParentSpanID {
		t.Errorf("request span's parent %q, traceparent said %q", got, rec.ParentSpanID)
	}
	if root.OperationName != "GET" {
		t.Errorf("request span named %q", root.OperationName)
	}
	// Jaeger keeps microseconds.
	if d := root.Duration - rec.DurationNs/1000; d < -1 || d > 1 {
		t.Errorf("request span lasts %dµs, tracerd measured %dns", root.Duration, rec.DurationNs)
	}
	if d := root.StartTime - rec.StartUnixNano/1000; d < -1 || d > 1 {
		t.Errorf("request span starts at %dµs, tracerd says %dns", root.StartTime, rec.StartUnixNano)
	}
	_, lport, _ := net.SplitHostPort(rec.Conn.Local)
	_, pport, _ := net.SplitHostPort(rec.Conn.Peer)
	for k, want := range map[string]string{
		"http.request.method":        rec.HTTP.Method,
		"url.path":                   strings.SplitN(rec.HTTP.Target, "?", 2)[0],
		"http.response.status_code":  strconv.Itoa(rec.HTTP.Status),
		"server.port":                lport,
		"client.port":                pport,
		"client.address":             "127.0.0.1",
		"network.transport":          "tcp",
		"tracerd.conn.request_index": strconv.Itoa(int(rec.Conn.RequestIndex)),
		"tracerd.tcp.retransmits":    strconv.Itoa(int(rec.TCP.Retransmits)),
		"tracerd.tcp.nagle":          strconv.FormatBool(rec.TCP.Nagle),
	} {
		if got, _ := tag(root.Tags, k); got != want {
			t.Errorf("request span %s=%q, want %q", k, got, want)
		}
	}
	if rec.TCP.SrttUs != nil {
		if got, _ := tag(root.Tags, "tracerd.tcp.srtt_us"); got != strconv.Itoa(int(*rec.TCP.SrttUs)) {
			t.Errorf("tracerd.tcp.srtt_us=%q, record says %d", got, *rec.TCP.SrttUs)
		}
	}
	proc := tr.Processes[root.ProcessID]
	if proc.ServiceName != wantService {
		t.Errorf("service.name %q, want %q", proc.ServiceName, wantService)
	}
	host, _ := os.Hostname()
	if got, _ := tag(proc.Tags, "host.name"); got != host {
		t.Errorf("host.name %q, want %q", got, host)
	}
	if got, _ := tag(proc.Tags, "process.pid"); got != strconv.Itoa(wantPID) {
		t.Errorf("process.pid %q, want %d", got, wantPID)
	}

	// Children: exactly the measured phases (and Go spans), in the right
	// places, with the measured durations.
	phaseSpans := map[string]JaegerSpan{}
	var goSpans []JaegerSpan
	var walk func(id string)
	walk = func(id string) {
		for _, s := range tr.Spans {
			if s.parent() != id || s.SpanID == id {
				continue
			}
			if _, ok := correlate.PhaseByName(s.OperationName); ok {
				if _, dup := phaseSpans[s.OperationName]; dup {
					t.Errorf("two %s spans", s.OperationName)
				}
				phaseSpans[s.OperationName] = s
			} else {
				goSpans = append(goSpans, s)
			}
			walk(s.SpanID)
		}
	}
	walk(root.SpanID)
	for name, ns := range rec.Phases {
		s, ok := phaseSpans[name]
		if !ok {
			t.Errorf("no %s span for a measured phase", name)
			continue
		}
		p, _ := correlate.PhaseByName(name)
		wantParent := root.SpanID
		if p.Nested() {
			wantParent = phaseSpans[p.Parent().String()].SpanID
		}
		if s.parent() != wantParent {
			t.Errorf("%s is under %s", name, byID[s.parent()].OperationName)
		}
		// A zero-length span comes back 1µs long at most.
		if d := s.Duration - ns/1000; d < -1 || d > 1 {
			t.Errorf("%s span lasts %dµs, measured %dns", name, s.Duration, ns)
		}
	}
	for name := range phaseSpans {
		if _, ok := rec.Phases[name]; !ok {
			t.Errorf("span %s for a phase that was not measured", name)
		}
	}
	if len(goSpans) != len(rec.Spans) {
		t.Errorf("%d Go spans in Jaeger, %d in the record", len(goSpans), len(rec.Spans))
	}
	if a, ok := phaseSpans["app"]; ok {
		for _, g := range goSpans {
			if g.StartTime < a.StartTime-1 || g.StartTime+g.Duration > a.StartTime+a.Duration+1 {
				t.Errorf("Go span %s lies outside app", g.OperationName)
			}
		}
	}
	if len(tr.Spans) != 1+len(rec.Phases)+len(rec.Spans) {
		t.Errorf("trace has %d spans, want %d", len(tr.Spans), 1+len(rec.Phases)+len(rec.Spans))
	}
}

// renderJaeger draws the tree under span id with durations, as the
// Jaeger UI would list it.
func renderJaeger(tr *JaegerTrace, id string) string {
	var b strings.Builder
	byID := map[string]JaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	root := byID[id]
	var walk func(s JaegerSpan, depth int)
	walk = func(s JaegerSpan, depth int) {
		fmt.Fprintf(&b, "%s%-*s +%-9s %s\n", strings.Repeat("  ", depth), 34-2*depth, s.OperationName,
			time.Duration(s.StartTime-root.StartTime)*time.Microsecond, time.Duration(s.Duration)*time.Microsecond)
		var kids []JaegerSpan
		for _, c := range tr.Spans {
			if c.parent() == s.SpanID && c.SpanID != s.SpanID {
				kids = append(kids, c)
			}
		}
		slices.SortFunc(kids, func(x, y JaegerSpan) int { return int(x.StartTime - y.StartTime) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	walk(root, 0)
	return b.String()
}

// ---- tests ----

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
	time.Sleep(200 * time.Millisecond)
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
	recs := recordsOn(readRecords(t, rt.JSONPath), srv.Port)
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

// waitMetric polls /metrics until cond holds for name.
func waitMetric(t *testing.T, rt *RunTracer, name string, cond func(float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := rt.Metrics(t)
		if cond(m[name]) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 20s\n%s", name, m[name], rt.stderr)
		}
		time.Sleep(50 * time.Millisecond)
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

// makePKI writes ca.pem, server.pem/server-key.pem (for 127.0.0.1) and
// client.pem/client-key.pem, all signed by the CA.
func makePKI(t *testing.T, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	writePEM := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tracerd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(k)
		writePEM(name+".pem", "CERTIFICATE", der)
		writePEM(name+"-key.pem", "PRIVATE KEY", kder)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
}

// TestOTLPBadConfig: a bad endpoint or an unreadable TLS file stops
// tracerd at start with a clear message and exit code 2 (before any
// BPF is loaded, so this needs no root).
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
			if code != 2 || !strings.Contains(string(out), c.msg) {
				t.Errorf("exit %d, output %q; want exit 2 and %q", code, out, c.msg)
			}
		})
	}
}

// joinCgroup moves pid into rel (created) under a cgroup v1 hierarchy;
// at cleanup the pid goes back to the hierarchy's root and the
// directories are removed.
func joinCgroup(t *testing.T, hierarchy, rel string, pid int) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(hierarchy, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup hierarchy at %s: %v", hierarchy, err)
	}
	dir := filepath.Join(hierarchy, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(hierarchy, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		for d := dir; d != hierarchy && d != "/"; d = filepath.Dir(d) {
			_ = os.Remove(d)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--otlp-endpoint", "http://"+ln.Addr().String(),
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
	if got := len(recordsOn(readRecords(t, rt.JSONPath), srv.Port)); got != n {
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
