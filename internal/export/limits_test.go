package export

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
)

// The cap is per service and counted; MaxRoutes is the exporter's option.
func TestProfileMaxRoutes(t *testing.T) {
	p := NewProfileWith(ProfileOptions{MaxRoutes: 3})
	add := func(service, target string) {
		r := distinctRequests(1, false)[0]
		r.Service = service
		r.HTTP.Target = target
		p.Add(&r)
	}
	for i := range 5 {
		add("a", fmt.Sprintf("/page-%c", 'a'+i))
		add("b", fmt.Sprintf("/page-%c", 'a'+i))
	}
	add("a", "/page-a") // an old route is still its own
	add("c", "/users/1")
	add("c", "/users/2")
	add("b", "/page-e") // the same request again: counted again
	add("b", "/page-e")
	if got := p.OtherRequests(); got != 6 {
		t.Errorf("OtherRequests = %d, want 2 of a and 4 of b", got)
	}
	routes, prof, _ := profileRoutes(t, p)
	if routes["service a;GET /page-a"] != 2 || routes["service a;other"] != 2 || routes["service b;other"] != 4 ||
		routes["service c;GET /users/{id}"] != 2 || len(routes) != 9 {
		t.Errorf("routes %v", routes)
	}
	if len(prof.Comments) != 2 || !strings.Contains(prof.Comments[0], "service a had more than 3 routes: 2 requests") ||
		!strings.Contains(prof.Comments[1], "service b had more than 3 routes: 4 requests") {
		t.Errorf("comments %q", prof.Comments)
	}
}

// Requests with the strings of the one before but another process, or
// another port without HTTP, have samples of their own.
func TestProfileRouteKeys(t *testing.T) {
	p := NewProfile()
	r := distinctRequests(1, false)[0]
	p.Add(&r)
	r.PID++
	p.Add(&r)
	tcp := r
	tcp.HTTP = nil
	p.Add(&tcp)
	tcp.Conn.Local = netip.AddrPortFrom(tcp.Conn.Local.Addr(), tcp.Conn.Local.Port()+1)
	p.Add(&tcp)
	p.Add(&tcp)
	if n := len(p.routes); n != 4 {
		t.Errorf("%d routes, want 4", n)
	}
	for k, rs := range p.routes {
		if want := map[bool]int64{false: 1, true: 2}[k.route == fmt.Sprintf("tcp:%d", tcp.Conn.Local.Port())]; requestsOf(rs) != want {
			t.Errorf("%+v: %d requests, want %d", k, requestsOf(rs), want)
		}
	}
}

func requestsOf(rs *routeSamples) int64 {
	var n int64
	for _, v := range rs.v {
		n += v[0]
	}
	return n
}

// One route more costs the reader nothing once the route is known.
func TestProfileAddAllocs(t *testing.T) {
	reqs := distinctRequests(2, true)
	p := NewProfile()
	p.Add(&reqs[0])
	if n := testing.AllocsPerRun(100, func() { p.Add(&reqs[0]) }); n != 0 {
		t.Errorf("Add of a known route: %v allocations", n)
	}
	p = NewProfileWith(ProfileOptions{MaxRoutes: 1})
	p.Add(&reqs[0])
	p.Add(&reqs[1])
	if n := testing.AllocsPerRun(100, func() { p.Add(&reqs[1]) }); n != 0 {
		t.Errorf("Add past the cap: %v allocations", n)
	}
}

// A token bucket per service: one second's worth at once, then the rate.
func TestTraceLimiter(t *testing.T) {
	if newTraceLimiter(0) != nil {
		t.Error("0 is no cap")
	}
	l := newTraceLimiter(10)
	allowed := func(service string, at time.Duration, n int) int {
		ok := 0
		for range n {
			if l.allowAt(service, at.Nanoseconds()) {
				ok++
			}
		}
		return ok
	}
	if got := allowed("a", 0, 100); got != 10 {
		t.Errorf("burst: %d, want 10", got)
	}
	if got := allowed("b", 0, 100); got != 10 {
		t.Errorf("another service has its own bucket: %d", got)
	}
	if got := allowed("a", 500*time.Millisecond, 100); got != 5 {
		t.Errorf("after 0.5 s: %d, want 5", got)
	}
	if got := allowed("a", 10*time.Second, 100); got != 10 {
		t.Errorf("after a quiet spell: %d, want one second's worth", got)
	}
	if got := allowed("a", 9*time.Second, 100); got != 0 {
		t.Errorf("time going back gives nothing: %d", got)
	}
	// Over a long run the rate holds: 60 s at 10/s, asked 1000 times a second.
	total := 0
	for ms := range 60_000 {
		total += allowed("c", time.Duration(ms)*time.Millisecond, 1)
	}
	if total < 600 || total > 610 {
		t.Errorf("%d traces in 60 s at 10/s", total)
	}
}

// The cap's default and its flag.
func TestResolveMaxTracesPerSecond(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want float64
		err  bool
	}{{"", DefaultMaxTracesPerSecond, false}, {"0", 0, false}, {"12.5", 12.5, false}, {"-1", 0, true}, {"lots", 0, true}, {"+Inf", 0, true}} {
		s, err := ResolveOTLP(config.OTLP{}, config.Sampling{MaxTracesPerSecond: tc.flag}, envOf())
		if (err != nil) != tc.err || (!tc.err && s.Sampler.MaxPerSecond != tc.want) {
			t.Errorf("--otlp-max-traces-per-second %q: %v, %v", tc.flag, s.Sampler.MaxPerSecond, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--otlp-max-traces-per-second") {
			t.Errorf("error does not name the flag: %v", err)
		}
	}
}

// Every decision that exports is capped, the budget's too: a client can
// make its requests slow.
func TestOTLPCapAppliesToEveryDecision(t *testing.T) {
	client := &fakeClient{}
	e, err := NewOTLP(OTLPOptions{Client: client, Sampler: Sampler{Budget: 50 * time.Millisecond, Ratio: 1, MaxPerSecond: 5},
		QueueSpans: 1 << 16, BatchSpans: 512, BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	slow := otlpRequests()[0]
	slow.ParentSpanID = correlate.SpanID{}
	fast := otlpRequests()[1]
	other := fast
	other.Service = "other"
	var exported [3]int
	for range 20 {
		for i, r := range []*correlate.Request{&slow, &fast, &other} {
			if e.Add(r, &Process{PID: r.PID}) != NotSampled {
				exported[i]++
			}
		}
	}
	// api's 5 go to its first requests, slow or fast; other has its own 5.
	if exported[0]+exported[1] != 5 || exported[2] != 5 {
		t.Errorf("exported %v", exported)
	}
	if st := e.Stats(); st.RateLimited != 50 || st.Sampled[SampledOverBudget] != 20 || st.Sampled[SampledByRatio] != 40 {
		t.Errorf("stats %+v", st)
	}
	_ = e.Shutdown(t.Context())
}

// BenchmarkOTLPAddCapped is Add for a service over its cap: the reader's
// cost of a request the limiter keeps out (no allocation).
func BenchmarkOTLPAddCapped(b *testing.B) {
	e, _ := NewOTLP(OTLPOptions{Client: &fakeClient{}, Sampler: Sampler{Ratio: 1, MaxPerSecond: 1},
		QueueSpans: 1 << 20, BatchSpans: 512, BatchDelay: time.Millisecond})
	defer e.Shutdown(context.Background())
	r := otlpRequests()[1]
	p := &Process{PID: r.PID}
	e.Add(&r, p) // the one token
	b.ReportAllocs()
	for b.Loop() {
		e.Add(&r, p)
	}
}
