package export

// What a hostile or careless client can make tracerd write (security
// review, issue 10): every test here provokes the defect through the
// exporters' plain API.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
)

// secretTarget carries secrets in query values, and a bare token.
const secretTarget = "/login?password=hunter2&token=s3cr3t-t0k3n&page=2&empty=&&eyJhbGciOiJIUzI1NiJ9"

// Query values are secrets as often as not: the JSON lines show keys
// only, in AppendJSON (the JSON-lines writer) and ToJSON (the daemon's
// snapshots) alike.
func TestJSONRedactsQueryValues(t *testing.T) {
	r := fixedRequests()[0]
	r.HTTP = &correlate.HTTP{Method: "GET", Target: secretTarget, Status: 200}
	const want = "/login?password=REDACTED&token=REDACTED&page=REDACTED&empty=&&REDACTED"
	line := AppendJSON(nil, &r)
	var rec JSONRecord
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.HTTP == nil || rec.HTTP.Target != want {
		t.Errorf("JSON target %+v, want %q", rec.HTTP, want)
	}
	if j := ToJSON(&r); j.HTTP == nil || j.HTTP.Target != want {
		t.Errorf("ToJSON target %+v, want %q", j.HTTP, want)
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "eyJhbGci"} {
		if bytes.Contains(line, []byte(secret)) {
			t.Errorf("JSON line shows %q: %s", secret, line)
		}
	}
}

// url.query follows the same rule; url.path is the target's path.
func TestOTLPRedactsQueryValues(t *testing.T) {
	r := otlpRequests()[0]
	r.HTTP = &correlate.HTTP{Method: "GET", Target: "http://user:pw@example.com" + secretTarget + "#frag", Status: 200}
	attrs := map[string]string{}
	for _, kv := range RequestSpans(&r)[0].Attributes {
		attrs[kv.Key] = kv.Value.GetStringValue()
	}
	if got, want := attrs["url.query"], "password=REDACTED&token=REDACTED&page=REDACTED&empty=&&REDACTED"; got != want {
		t.Errorf("url.query %q, want %q", got, want)
	}
	if got := attrs["url.path"]; got != "/login" {
		t.Errorf("url.path %q, want /login", got)
	}
	for k, v := range attrs {
		for _, secret := range []string{"hunter2", "s3cr3t", "eyJhbGci", "pw@", "frag"} {
			if strings.Contains(v, secret) {
				t.Errorf("%s=%q shows %q", k, v, secret)
			}
		}
	}
}

// profileRoutes parses a written profile: requests per route frame of
// each service ("service;route").
func profileRoutes(t testing.TB, p *Profile) (map[string]int64, *profile.Profile, int) {
	t.Helper()
	var buf bytes.Buffer
	if err := p.WriteProfile(&buf); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]int64{}
	for _, s := range prof.Sample {
		n := len(s.Location)
		svc := s.Location[n-1].Line[0].Function.Name
		route := s.Location[n-2].Line[0].Function.Name
		routes[svc+";"+route] += s.Value[0]
	}
	return routes, prof, size
}

// 60,000 distinct paths: those with ids fold into one route, words
// (which no rule recognises) fill the service's 1000 routes and the rest
// is counted under "other"; every request is still in the profile.
func TestProfileRoutesBounded(t *testing.T) {
	p := NewProfile()
	ids := distinctRequests(60_000, false)
	words := distinctRequests(60_000, true)
	for i := range words {
		words[i].Service = "wiki"
	}
	for _, reqs := range [][]correlate.Request{ids, words} {
		for i := range reqs {
			p.Add(&reqs[i])
		}
	}
	routes, prof, size := profileRoutes(t, p)
	perService := map[string]int{}
	var total int64
	for k, n := range routes {
		perService[strings.SplitN(k, ";", 2)[0]]++
		total += n
	}
	if total != 120_000 {
		t.Errorf("%d requests in the profile, want 120000", total)
	}
	if got := routes["service api;GET /users/{id}/orders"]; got != 60_000 || perService["service api"] != 1 {
		t.Errorf("ids: %d routes, %d requests on GET /users/{id}/orders", perService["service api"], got)
	}
	if n := perService["service wiki"]; n != 1001 {
		t.Errorf("words: %d routes, want 1000 and other", n)
	}
	if got := routes["service wiki;other"]; got != 59_000 {
		t.Errorf("words: %d requests under other, want 59000", got)
	}
	if len(prof.Comments) != 1 || !strings.Contains(prof.Comments[0], "59000 requests") {
		t.Errorf("comments %q", prof.Comments)
	}
	if size > 1<<20 {
		t.Errorf("profile of 2 services is %d bytes", size)
	}
	t.Logf("profile: %d bytes, %d samples", size, len(prof.Sample))
}

// A client that marks every request sampled (traceparent …-01) does not
// get them all exported: the default settings cap each service at
// DefaultMaxTracesPerSecond, and what the cap keeps out is counted.
func TestOTLPCapsCallerSampledTraces(t *testing.T) {
	set, err := ResolveOTLP(config.OTLP{Endpoint: "http://127.0.0.1:4318"}, config.Sampling{}, envOf())
	if err != nil {
		t.Fatal(err)
	}
	client := &fakeClient{}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: set.Sampler, QueueSpans: 1 << 20, BatchSpans: 512, BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := otlpRequests()[1] // fast, no Go spans
	r.ParentSpanID = correlate.SpanID(mustHex("b7ad6b7169203331"))
	r.TraceFlags = 1
	const n = 5000
	start := time.Now()
	for range n {
		e.Add(&r, &Process{PID: r.PID})
	}
	elapsed := time.Since(start)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	traces := client.spans() / int(SpanCount(&r))
	// A second's burst, plus what refilled while the loop ran.
	limit := DefaultMaxTracesPerSecond * (1 + int(elapsed/time.Second) + 1)
	if traces > limit {
		t.Errorf("%d of %d caller-sampled requests exported in %s; want at most %d", traces, n, elapsed, limit)
	}
	st := e.Stats()
	if st.Sampled[SampledByParent] != n {
		t.Errorf("%d parent decisions, want %d", st.Sampled[SampledByParent], n)
	}
	if st.RateLimited+int64(traces) != n {
		t.Errorf("rate limited %d + exported %d ≠ %d", st.RateLimited, traces, n)
	}
}
