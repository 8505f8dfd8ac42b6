//go:build e2e

package tests

// The OTLP collectors the tests export to: a real Jaeger v2 all-in-one
// (built from the Go module proxy by tests/tools/jaeger, cached in the
// machine's Go cache folder) read back through its query API, a fake
// that keeps what it is sent, and one that never answers; and the
// helpers that send traceparents and compare Jaeger's traces with
// tracerd's records.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
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

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
)

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

// jaegerBatchTimeout is how long Jaeger holds spans it received before
// they are in its storage (its batch processor's timeout).
const jaegerBatchTimeout = 50 * time.Millisecond

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
    timeout: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, j.Query, freePort(t), j.GRPC, tlsBlock, j.HTTP, tlsBlock, jaegerBatchTimeout)
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
	waitServes(t, "Jaeger", fmt.Sprintf("http://127.0.0.1:%d/api/services", j.Query), j.done, j.log, 30*time.Second)
	for _, port := range []int{j.GRPC, j.HTTP} {
		waitListening(t, "127.0.0.1:"+strconv.Itoa(port))
	}
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
	var tr *JaegerTrace
	eventually(t, within, func() error {
		if tr = j.trace(t, id); tr == nil {
			return fmt.Errorf("Jaeger has no trace %s", id)
		}
		if len(tr.Spans) < n {
			return fmt.Errorf("Jaeger has %d of %d spans of trace %s", len(tr.Spans), n, id)
		}
		return nil
	})
	return tr
}

// silentCollector is an OTLP endpoint stuck: it accepts connections and
// never reads or answers them.
type silentCollector struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startSilentCollector(t *testing.T) *silentCollector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentCollector{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

// URL is the endpoint to export to.
func (s *silentCollector) URL() string { return "http://" + s.ln.Addr().String() }

// waitStuck waits until an exporter connected: its export hangs.
func (s *silentCollector) waitStuck(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.conns) == 0 {
			return errors.New("no exporter connected to the silent collector")
		}
		return nil
	})
}

// otlpSink is an OTLP/HTTP endpoint that keeps what it is sent: the
// raw bodies (to look for secrets in the bytes) and the SERVER spans.
type otlpSink struct {
	URL    string
	mu     sync.Mutex
	bodies [][]byte
	server []*tracepb.Span
}

func startOTLPSink(t *testing.T) *otlpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &otlpSink{URL: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				if sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
					s.server = append(s.server, sp)
				}
			}
		}
	}
	s.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// serverSpans returns the SERVER spans received so far.
func (s *otlpSink) serverSpans() []*tracepb.Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*tracepb.Span(nil), s.server...)
}

// received says whether any body sent holds b.
func (s *otlpSink) received(b string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, body := range s.bodies {
		if bytes.Contains(body, []byte(b)) {
			return true
		}
	}
	return false
}

func spanAttr(sp *tracepb.Span, key string) (string, bool) {
	for _, kv := range sp.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue(), true
		}
	}
	return "", false
}

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
