//go:build e2e

package tests

// What clients can make tracerd write (security review, issue 10): the
// real tracerd tracing real servers, and what shows in its outputs.

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// hostilePaths is how many distinct paths TestHostileOutputRoutesBounded
// sends; raise it to measure (-args -hostile.paths=60000).
var hostilePaths = flag.Int("hostile.paths", 5000, "distinct paths TestHostileOutputRoutesBounded sends")

// querySecrets are what the requests below carry in their targets.
var querySecrets = []string{"hunter2", "t0k3n", "pw@", "s3ssion"}

// noSecret fails when data shows any of querySecrets.
func noSecret(t *testing.T, what string, data []byte) {
	t.Helper()
	for _, s := range querySecrets {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("%s shows %q", what, s)
		}
	}
}

// TestHostileOutputQueryRedacted (item 14): query values sent to a server do
// not reach tracerd's JSON lines or OTLP spans; keys do, and the path.
func TestHostileOutputQueryRedacted(t *testing.T) {
	needRoot(t)
	sink := startOTLPSink(t)
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--otlp-endpoint", sink.URL, "--otlp-batch-delay", "50ms")
	c := dialTP(t, srv.Addr)
	type sent struct{ target, wantTarget, wantQuery string }
	reqs := []sent{
		{"/login?password=hunter2&page=3", "/login?password=REDACTED&page=REDACTED", "password=REDACTED&page=REDACTED"},
		{"http://user:pw@test/abs?token=t0k3n&empty=", "/abs?token=REDACTED&empty=", "token=REDACTED&empty="},
		{"/s?s3ssion", "/s?REDACTED", "REDACTED"},
	}
	wantByTrace := map[string]sent{}
	for _, r := range reqs {
		tp, traceID, _ := newTraceParent() // sampled: exported
		wantByTrace[traceID] = r
		c.get(t, r.target, tp)
	}
	c.c.Close()
	srv.Truths(t, len(reqs))
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= float64(len(reqs)) })
	recs := recordsOn(rt.Stop(t), srv.Port)

	raw, err := os.ReadFile(rt.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "the JSON lines", raw)
	if len(recs) != len(reqs) {
		t.Fatalf("%d records, want %d", len(recs), len(reqs))
	}
	for _, rec := range recs {
		want, ok := wantByTrace[rec.TraceID]
		if !ok || rec.HTTP == nil || rec.HTTP.Target != want.wantTarget {
			t.Errorf("JSON target %+v, want %q", rec.HTTP, want.wantTarget)
		}
	}

	spans := sink.serverSpans()
	if len(spans) != len(reqs) {
		t.Fatalf("%d SERVER spans exported, want %d", len(spans), len(reqs))
	}
	for _, sp := range spans {
		want := wantByTrace[hex.EncodeToString(sp.TraceId)]
		query, _ := spanAttr(sp, "url.query")
		path, _ := spanAttr(sp, "url.path")
		if query != want.wantQuery || !strings.HasPrefix(want.wantTarget, path+"?") {
			t.Errorf("span url.path %q url.query %q, want the target %q", path, query, want.wantTarget)
		}
	}
	for _, s := range querySecrets {
		if sink.received(s) {
			t.Errorf("OTLP export shows %q", s)
		}
	}
}

// TestHostileOutputQueryRedactedGo (item 14, Go awareness): a Go net/http
// server's targets are path and redacted query too, over HTTP/1 (bytes
// and ServeHTTP) and HTTP/2 under TLS (ServeHTTP alone: its probe reads
// URL.Path and URL.RawQuery).
func TestHostileOutputQueryRedactedGo(t *testing.T) {
	needRoot(t)
	plain := startGoServer(t, buildGoServer(t, goBuilds[0]))
	tlsSrv := startGoServer(t, buildGoServer(t, goBuilds[0]), "-tls")
	// tracerd run: its JSON lines show each record as it comes out.
	tr := startRun(t, nil, "--pid", strconv.Itoa(plain.PID), "--pid", strconv.Itoa(tlsSrv.PID))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get(t, client, "http://"+plain.Addr+"/hello/a?token=t0k3n&page=1")
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	resp, _ := get(t, h2, "https://"+tlsSrv.Addr+"/hello/b?password=hunter2")
	if resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/%d, want 2", resp.ProtoMajor)
	}
	// The HTTP/2 stream's record comes out after the join horizon.
	waitRecords(t, tr.JSONPath, 15*time.Second, "/hello/a?token=REDACTED&page=REDACTED", "/hello/b?password=REDACTED")
	tr.Stop(t)
	raw, err := os.ReadFile(tr.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "the JSON lines", raw)
}

// TestHostileOutputRoutesBounded (item 13): distinct paths by the thousand
// make a bounded profile. Ids fold into one route; words, which nothing
// recognises, fill the service's 1000 routes and the rest is counted
// under "other". tracerd's peak RSS and the profile's size are logged
// (go test -run OutputRoutesBounded -args -hostile.paths=60000 to measure).
func TestHostileOutputRoutesBounded(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	tr := startTracer(t, "--port", strconv.Itoa(srv.Port))
	n := *hostilePaths
	const conns = 4
	ids := n / 4
	var wg sync.WaitGroup
	send := func(from, to int, path func(int) string) {
		defer wg.Done()
		c := dial(t, srv.Addr)
		for i := from; i < to; i++ {
			if _, err := request(c, path(i), 0); err != nil {
				t.Error(err)
				return
			}
		}
	}
	start := time.Now()
	// The ids first, so that their one route is among the 1000.
	wg.Add(1)
	send(0, ids, func(i int) string { return fmt.Sprintf("/users/%d?page=%d", 1_000_000+i, i) })
	for k := range conns {
		wg.Add(1)
		go send(ids+k*(n-ids)/conns, ids+(k+1)*(n-ids)/conns, func(i int) string {
			return "/wiki/page-" + strconv.FormatInt(int64(i), 26) + "x?q=hunter2"
		})
	}
	wg.Wait()
	srv.Truths(t, n)
	t.Logf("%d requests in %s", n, time.Since(start).Round(time.Millisecond))
	recs := recordsOn(tr.Stop(t), srv.Port)
	if len(recs) != n {
		t.Errorf("%d records of %d requests", len(recs), n)
	}
	if ru, ok := tr.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		t.Logf("tracerd peak RSS: %.1f MB", float64(ru.Maxrss)/1024)
	}

	f, err := os.Open(tr.Profile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	prof, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("profile: %d bytes, %d samples, comments %q", st.Size(), len(prof.Sample), prof.Comments)
	routes := map[string]int64{}
	var total int64
	for _, s := range prof.Sample {
		route := s.Location[len(s.Location)-2].Line[0].Function.Name
		routes[route] += s.Value[0]
		total += s.Value[0]
	}
	if total != int64(n) {
		t.Errorf("%d requests in the profile, want %d", total, n)
	}
	if len(routes) != 1001 {
		t.Errorf("%d routes, want 1000 and other", len(routes))
	}
	if routes["GET /users/{id}"] != int64(ids) {
		t.Errorf("GET /users/{id}: %d requests, want %d", routes["GET /users/{id}"], ids)
	}
	if want := int64(n - ids - 999); routes["other"] != want {
		t.Errorf("other: %d requests, want %d", routes["other"], want)
	}
	if len(prof.Comments) != 1 || !strings.Contains(prof.Comments[0], fmt.Sprintf("%d requests", n-ids-999)) {
		t.Errorf("the profile does not say how many requests went to other: %q", prof.Comments)
	}
	if st.Size() > 512<<10 {
		t.Errorf("profile of %d bytes", st.Size())
	}
}

// TestHostileOutputTraceCap (item 15): a client marking every request sampled
// gets at most DefaultMaxTracesPerSecond (200) traces a second exported
// for the service, however many it sends; each one is still decided
// (and counted) as its caller asked.
func TestHostileOutputTraceCap(t *testing.T) {
	needRoot(t)
	sink := startOTLPSink(t)
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--otlp-endpoint", sink.URL,
		"--otlp-batch-delay", "50ms", "--sample-ratio", "0", "--latency-budget", "0")
	const n, conns = 2000, 4
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialTP(t, srv.Addr)
			defer c.c.Close()
			for range n / conns {
				tp, _, _ := newTraceParent()
				c.get(t, "/", tp)
			}
		}()
	}
	wg.Wait()
	m := waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= n })
	elapsed := time.Since(start) // every decision was made within it
	rt.Stop(t)
	exported := len(sink.serverSpans())
	limit := int(200 * (1 + elapsed.Seconds()))
	t.Logf("%d requests sampled by their caller in %s: %d traces exported (cap %d)", n, elapsed.Round(time.Millisecond), exported, limit)
	if exported > limit {
		t.Errorf("%d traces exported in %s, over the 200/s cap (%d)", exported, elapsed, limit)
	}
	if exported < 150 {
		t.Errorf("only %d traces exported: the cap's first second lets 200 through", exported)
	}
	if got := m[`tracerd_trace_sampling_decisions_total{decision="parent"}`]; got != n {
		t.Errorf("parent decisions %v, want %d", got, n)
	}
}

// TestKeepQueryValues: --keep-query-values writes the query as sent.
func TestKeepQueryValues(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port), "--keep-query-values")
	c := dialTP(t, srv.Addr)
	c.get(t, "/login?password=hunter2&page=3", "")
	c.c.Close()
	srv.Truths(t, 1)
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= 1 })
	recs := recordsOn(rt.Stop(t), srv.Port)
	if len(recs) != 1 || recs[0].HTTP == nil || recs[0].HTTP.Target != "/login?password=hunter2&page=3" {
		t.Errorf("records %+v, want the target as sent", recs)
	}
}

// TestHeadSecretsNotInKernel: of a request's head, the kernel keeps only
// the request line and the traceparent header: an Authorization header
// and cookies are in no BPF map while the request is served, and the
// traceparent still reaches the record.
func TestHeadSecretsNotInKernel(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil, "-work", "400ms")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	c := dial(t, srv.Addr)
	const secret = "Bearer s3cr3t-t0ken-XYZZY"
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	head := "GET /secret?q=1 HTTP/1.1\r\nHost: test\r\nAuthorization: " + secret +
		"\r\nCookie: session=c00kie-XYZZY\r\ntraceparent: " + tp + "\r\n\r\n"
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	// The server read the request and works on it: the BPF programs
	// took what they keep of its head.
	waitInFlight(t, "GET /secret?q=1 ")
	for name, b := range bpfMapBytes(t, "conns", "head_scratch") {
		if bytes.Contains(b, []byte("XYZZY")) {
			t.Errorf("BPF map %s holds the request's secret headers", name)
		}
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	recs := byPeer(t, tr.Stop(t), c, 1)
	r := recs[0]
	if r.HTTP == nil || r.HTTP.Method != "GET" || !strings.HasPrefix(r.HTTP.Target, "/secret?q=") {
		t.Errorf("http %+v: the request line was not kept", r.HTTP)
	}
	if r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("trace %s parent %s: the traceparent header was not kept", r.TraceID, r.ParentSpanID)
	}
}

// TestGoRoutePattern: a Go server's requests are grouped by the ServeMux
// pattern that matched (Request.Pattern, Go 1.23+ with DWARF), not by
// their paths: /items/1 … /items/50 are one route.
func TestGoRoutePattern(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0])) // the local toolchain: ≥ 1.23
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for i := 1; i <= 50; i++ {
		get(t, client, fmt.Sprintf("http://%s/items/x%d", srv.Addr, i))
	}
	tr.Stop(t)
	f, err := os.Open(tr.Profile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, fn := range p.Function {
		if strings.Contains(fn.Name, "/items/") {
			routes[fn.Name] = true
		}
	}
	if !routes["GET /items/{id}"] || len(routes) != 1 {
		t.Errorf("routes of /items/*: %v, want only the pattern GET /items/{id}", keys(routes))
	}
}
