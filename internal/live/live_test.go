package live

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

var t0 = time.Unix(1_800_000_000, 0)

// req is a request of service and path that ended at end, with app
// taking appNs and recv_queue the rest of dur.
func req(service, path string, end time.Time, dur, appNs int64) *correlate.Request {
	r := &correlate.Request{Service: service, PID: 42, EndUnixNano: end.UnixNano(), DurationNs: dur,
		HTTP: &correlate.HTTP{Method: "GET", Target: path},
		Conn: correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:40000")}}
	r.Phases.Set(correlate.App, appNs)
	r.Phases.Set(correlate.RecvQueue, dur-appNs)
	return r
}

func TestViewRatesQuantilesShares(t *testing.T) {
	a := New(Options{Window: 10 * time.Second, Start: t0.Add(-time.Minute)})
	// 10 s of /fast: 100 a second, 1..100 µs, app 3/4 of each.
	for s := 0; s < 10; s++ {
		for i := 1; i <= 100; i++ {
			d := int64(i) * 1000
			a.Add(req("api", "/fast", t0.Add(time.Duration(s)*time.Second+time.Duration(i)*time.Millisecond), d, d*3/4))
		}
	}
	// /slow: 5 requests of 100 ms, the last second only.
	for i := 0; i < 5; i++ {
		a.Add(req("api", "/slow/"+fmt.Sprint(i+1), t0.Add(9*time.Second+time.Duration(i)*time.Millisecond), 100e6, 100e6))
	}
	v := a.View(t0.Add(9*time.Second + 999*time.Millisecond))
	if len(v.Routes) != 2 || v.Routes[0].Route != "GET /fast" || v.Routes[1].Route != "GET /slow/{id}" {
		t.Fatalf("routes %+v", v.Routes)
	}
	fast := v.Routes[0]
	if fast.Requests != 1000 || fast.PerSecond < 99 || fast.PerSecond > 101 {
		t.Errorf("fast: %d requests, %.1f/s", fast.Requests, fast.PerSecond)
	}
	// 16 buckets per power of two: within 1/32 of the truth.
	near := func(what string, got, want int64) {
		if d := got - want; d*32 > want || -d*32 > want {
			t.Errorf("%s %d, want %d ±3%%", what, got, want)
		}
	}
	near("p50", fast.P50Ns, 50_000)
	near("p99", fast.P99Ns, 99_000)
	if fast.MaxNs != 100_000 {
		t.Errorf("max %d", fast.MaxNs)
	}
	if len(fast.Phases) != 2 || fast.Phases[0].Phase != "app" || fast.Phases[0].Share < 0.74 || fast.Phases[0].Share > 0.76 {
		t.Errorf("shares %+v", fast.Phases)
	}
	if got := SharesText(fast.Phases); !strings.HasPrefix(got, "app 75.0% recv_queue 25.0%") {
		t.Errorf("shares text %q", got)
	}
	if v.Slowest[0].DurationNs != 100e6 || v.Slowest[0].Route != "GET /slow/{id}" || len(v.Slowest) != DefaultSlowest {
		t.Errorf("slowest %+v", v.Slowest)
	}
	// Ten seconds later /fast is gone, /slow too once out of the window.
	later := a.View(t0.Add(19*time.Second + 500*time.Millisecond))
	if len(later.Routes) != 0 || later.Requests != 0 || len(later.Slowest) != 0 {
		t.Errorf("stale view %+v", later)
	}
}

func TestFindingsRanked(t *testing.T) {
	a := New(Options{Start: t0.Add(-time.Minute)})
	for i := 0; i < 4; i++ {
		r := req("api", "/sleep", t0, 60e6, 60e6)
		r.Findings = []correlate.Finding{{Code: correlate.SlowHandler, Phase: correlate.App, LostNs: 55e6}}
		a.Add(r)
	}
	r := req("api", "/json", t0, 30e6, 30e6)
	r.Findings = []correlate.Finding{{Code: correlate.Serialization, Phase: correlate.Serialize, LostNs: 25e6}, {Code: correlate.GCPause, Phase: correlate.GCSTW, LostNs: 2e6}}
	a.Add(r)
	v := a.View(t0.Add(500 * time.Millisecond))
	if len(v.Findings) != 3 {
		t.Fatalf("findings %+v", v.Findings)
	}
	f := v.Findings[0]
	if f.Code != "slow_handler" || f.Requests != 4 || f.LostNs != 220e6 || f.Route != "GET /sleep" || !strings.HasPrefix(f.Confirm, "perf top -p 42") || f.Remedy == "" {
		t.Errorf("first finding %+v", f)
	}
	if v.Findings[1].Code != "serialization" || v.Findings[2].Code != "gc_pause" {
		t.Errorf("order %+v", v.Findings)
	}
	if s := v.Slowest[0]; s.Route != "GET /sleep" || len(s.Findings) != 1 || s.Findings[0] != "slow_handler" {
		t.Errorf("slowest %+v", s)
	}
	// Nested phases after app, those that took no time left out.
	sl := req("api", "/q", t0, 5e6, 4e6)
	sl.Phases.Set(correlate.Runqueue, 1e6)
	sl.Phases.Set(correlate.CFSThrottle, 0)
	sl.Phases.Set(correlate.AckWait, 0)
	if got := Breakdown(Slow{Phases: breakdown(sl.Phases)}); got != "recv_queue=1.00ms app=4.00ms [runqueue=1.00ms] ack_wait=0ns" {
		t.Errorf("breakdown %q", got)
	}
	if s := v.Slowest[len(v.Slowest)-1]; s.Route != "GET /json" || strings.Join(s.Findings, ",") != "serialization,gc_pause" {
		t.Errorf("slowest last %+v", s)
	}
}

func TestRoutesFolded(t *testing.T) {
	a := New(Options{Routes: 16, Start: t0.Add(-time.Minute)})
	for i := 0; i < 100; i++ {
		a.Add(req("api", fmt.Sprintf("/page-%c%c", 'a'+i/26, 'a'+i%26), t0, 1e6, 1e6))
	}
	for i := 0; i < 10; i++ {
		a.Add(req(fmt.Sprint("svc", i), "/x", t0, 1e6, 1e6))
	}
	v := a.View(t0.Add(100 * time.Millisecond))
	if len(a.rows) > 16+2 {
		t.Errorf("%d rows, limit 16 plus a reserve of 2", len(a.rows))
	}
	var total int64
	for _, r := range v.Routes {
		total += r.Requests
	}
	if total != 110 || v.Requests != 110 || v.Folded != 110-16 {
		t.Errorf("requests %d/%d, folded %d", total, v.Requests, v.Folded)
	}
	if v.Routes[0].Route != OtherRoute || v.Routes[0].Service != "api" {
		t.Errorf("busiest %+v", v.Routes[0])
	}
	// Once quiet, rows go: new routes get their place.
	a.Add(req("api", "/new", t0.Add(20*time.Second), 1e6, 1e6))
	if len(a.rows) != 1 {
		t.Errorf("%d rows after the window passed", len(a.rows))
	}
}

func TestLateAndRateWhileStarting(t *testing.T) {
	a := New(Options{Start: t0})
	a.Add(req("api", "/a", t0.Add(20*time.Second), 1e6, 1e6))
	a.Add(req("api", "/a", t0.Add(5*time.Second), 1e6, 1e6)) // before the window
	v := a.View(t0.Add(20*time.Second + 500*time.Millisecond))
	if v.Late != 1 || v.Requests != 1 {
		t.Errorf("late %d, requests %d", v.Late, v.Requests)
	}
	b := New(Options{Start: t0})
	for i := 0; i < 20; i++ {
		b.Add(req("api", "/a", t0.Add(time.Duration(i)*100*time.Millisecond), 1e6, 1e6))
	}
	// Two seconds after the start: 10 a second, not 2.
	if v := b.View(t0.Add(2 * time.Second)); v.Routes[0].PerSecond != 10 {
		t.Errorf("rate while starting %.1f", v.Routes[0].PerSecond)
	}
}

func TestAddAllocatesNothing(t *testing.T) {
	a := New(Options{Start: t0})
	r := req("api", "/users/42", t0, 1e6, 1e6)
	r.Findings = []correlate.Finding{{Code: correlate.SlowHandler, Phase: correlate.App, LostNs: 1e6}}
	a.Add(r)
	n := testing.AllocsPerRun(1000, func() { a.Add(r) })
	if n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

func TestScreenFits(t *testing.T) {
	a := New(Options{Start: t0.Add(-time.Minute)})
	for i := 0; i < 50; i++ {
		r := req(strings.Repeat("s", 40), fmt.Sprintf("/p%d/%s", i, strings.Repeat("x", 60)), t0, int64(i+1)*1e6, 1e6)
		r.Findings = []correlate.Finding{{Code: correlate.SlowHandler, Phase: correlate.App, LostNs: 1e6}}
		a.Add(r)
	}
	v := a.View(t0.Add(time.Second))
	for _, size := range [][2]int{{200, 50}, {80, 24}, {20, 5}} {
		lines := Screen(v, "tracing here", size[0], size[1])
		if len(lines) > size[1] {
			t.Errorf("%v: %d lines", size, len(lines))
		}
		for _, l := range lines {
			if n := len([]rune(l.Text)); n > size[0] {
				t.Errorf("%v: a line of %d: %q", size, n, l.Text)
			}
		}
	}
	lines := Screen(v, "daemon", 200, 50)
	text := ""
	for _, l := range lines {
		text += l.Text + "\n"
	}
	for _, want := range []string{"SERVICE", "REQ/S", "app ", "FINDINGS", "slow_handler (app) on 1 requests", "SLOWEST REQUESTS", "recv_queue="} {
		if !strings.Contains(text, want) {
			t.Errorf("screen lacks %q:\n%s", want, text)
		}
	}
	var b strings.Builder
	WritePlain(&b, v)
	if n := strings.Count(b.String(), "\n"); n != 1+50+10+3 {
		t.Errorf("%d plain lines:\n%s", n, b.String())
	}
}

// BenchmarkAdd: what a request costs the daemon's view.
func BenchmarkAdd(b *testing.B) {
	a := New(Options{Start: t0})
	rs := make([]*correlate.Request, 64)
	for i := range rs {
		rs[i] = req("api", fmt.Sprintf("/r%d/%d", i%16, i), t0.Add(time.Duration(i)*time.Millisecond), int64(i+1)*1e5, int64(i+1)*5e4)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.Add(rs[i%len(rs)])
	}
}

// TestSharesOutside: ack_wait and softirq are shares on top of the
// duration, after those inside it.
func TestSharesOutside(t *testing.T) {
	a := New(Options{Start: t0.Add(-time.Minute)})
	r := req("api", "/a", t0, 10e6, 8e6)
	r.Phases.Set(correlate.AckWait, 20e6)
	r.Phases.Set(correlate.Softirq, 1e4)
	a.Add(r)
	v := a.View(t0.Add(time.Second))
	if got := SharesText(v.Routes[0].Phases); got != "app 80.0% recv_queue 20.0% +ack_wait 200.0% +softirq 0.1%" {
		t.Errorf("shares %q", got)
	}
}
