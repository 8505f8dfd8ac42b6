package live

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

// The last request's row is reused only for a request of the same
// service and route: runs of one route, routes that alternate, a
// pattern and a target, TCP ports, services, and rows folded past the
// limit all count where making the route would put them; a route whose
// row expired gets a row again.
func TestLastRowReuse(t *testing.T) {
	a := New(Options{Routes: 4, Start: t0.Add(-time.Minute)})
	at := t0
	add := func(r *correlate.Request, n int) {
		for range n {
			at = at.Add(time.Microsecond)
			c := *r
			c.EndUnixNano = at.UnixNano()
			a.Add(&c)
		}
	}
	tcp := func(service string, port uint16) *correlate.Request {
		r := req(service, "", at, 1000, 500)
		r.HTTP = nil
		r.Conn.Local = netip.AddrPortFrom(r.Conn.Local.Addr(), port)
		return r
	}
	pattern := req("api", "/users/7", at, 1000, 500)
	pattern.HTTP.Pattern = "GET /users/{id}"
	pattern2 := req("api", "/users/8", at, 1000, 500)
	pattern2.HTTP.Pattern = "GET /users/{id}"
	post := req("api", "/a", at, 1000, 500)
	post.HTTP.Method = "POST"
	add(req("api", "/a", at, 1000, 500), 3)
	add(req("api", "/a?x=1", at, 1000, 500), 1) // another target, the same route
	add(req("api", "/b", at, 1000, 500), 2)
	add(req("web", "/b", at, 1000, 500), 1)
	add(req("api", "/a", at, 1000, 500), 1)
	add(post, 1)
	add(pattern, 2)
	add(pattern2, 1)
	add(tcp("api", 9000), 2)
	add(tcp("api", 9001), 1)
	add(tcp("api", 9000), 1)
	v := a.View(at)
	got := map[string]int64{}
	for _, r := range v.Routes {
		got[r.Service+" "+r.Route] += r.Requests
	}
	// Four routes, then "other" for the service.
	want := map[string]int64{"api GET /a": 5, "api GET /b": 2, "web GET /b": 1, "api POST /a": 1, "api other": 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if v.Folded != 7 {
		t.Errorf("folded %d, want 7", v.Folded)
	}

	// Past the window every row expires; the last route counts in a
	// row of its own again.
	at = at.Add(time.Minute)
	add(req("api", "/a", at, 1000, 500), 1)
	at = at.Add(time.Minute)
	add(req("api", "/a", at, 1000, 500), 2)
	v = a.View(at)
	if len(v.Routes) != 1 || v.Routes[0].Route != "GET /a" || v.Routes[0].Requests != 2 {
		t.Errorf("after expiry: %+v", v.Routes)
	}
}

// BenchmarkAddSameRoute: what a request costs the daemon's view when it
// has the route of the one before (one busy endpoint).
func BenchmarkAddSameRoute(b *testing.B) {
	a := New(Options{Start: t0})
	r := req("api", "/users/42", t0, 1e5, 5e4)
	b.ReportAllocs()
	for b.Loop() {
		a.Add(r)
	}
}
