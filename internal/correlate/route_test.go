package correlate

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"", ""},
		{"/api/x", "/api/x"},
		{"/users/42", "/users/{id}"},
		{"/users/42/orders/7/", "/users/{id}/orders/{id}/"},
		{"/files/3F2504E0-4F89-11D3-9A0C-0305E82C3301", "/files/{uuid}"},
		{"/files/3f2504e0-4f89-11d3-9a0c-0305e82c3301/raw", "/files/{uuid}/raw"},
		{"/blob/9f1c2e3d", "/blob/{hash}"},
		{"/commit/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commit/{hash}"},
		{"/reset/dGhpcyBpcyBhIHNlY3JldDEy", "/reset/{token}"},
		{"/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", "/t/{token}"},
		// Words stay: no digit, too short, or not an identifier's alphabet.
		{"/deadbeef", "/deadbeef"},
		{"/v2/users", "/v2/users"},
		{"/2fa", "/2fa"},
		{"/abc1234", "/abc1234"},
		{"/static/app.css", "/static/app.css"},
		{"/user@example.com", "/user@example.com"},
		{"/pkg.Service/Method", "/pkg.Service/Method"},
		{"/a//b", "/a//b"},
	} {
		if got := NormalizePath(tc.in); got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := string(AppendNormalizedPath(nil, tc.in)); got != tc.want {
			t.Errorf("AppendNormalizedPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRoute(t *testing.T) {
	port := netip.MustParseAddrPort("127.0.0.1:6379")
	for _, tc := range []struct {
		http *HTTP
		want string
	}{
		{nil, "tcp:6379"},
		{&HTTP{Method: "GET", Target: "/api/x?password=hunter2#f"}, "GET /api/x"},
		{&HTTP{Method: "GET", Target: "/users/123?page=2"}, "GET /users/{id}"},
		{&HTTP{Method: "GET", Target: "http://user:pw@example.com/users/123?x"}, "GET /users/{id}"},
		{&HTTP{Method: "OPTIONS", Target: "*"}, "OPTIONS *"},
		{&HTTP{Method: "BREW", Target: "/pot"}, "_OTHER /pot"},
		{&HTTP{Method: "xyz123", Target: "/pot"}, "_OTHER /pot"},
		// The server's template wins; the request's method is the route's.
		{&HTTP{Method: "GET", Target: "/items/abc", Pattern: "GET /items/{name}"}, "GET /items/{name}"},
		{&HTTP{Method: "HEAD", Target: "/items/abc", Pattern: "GET /items/{name}"}, "HEAD /items/{name}"},
		{&HTTP{Method: "POST", Target: "/x/y", Pattern: "/x/"}, "POST /x/"},
		{&HTTP{Method: "GET", Target: "/x", Pattern: "example.com/x"}, "GET example.com/x"},
	} {
		r := Request{HTTP: tc.http, Conn: Conn{Local: port}}
		if got := r.Route(); got != tc.want {
			t.Errorf("route of %+v = %q, want %q", tc.http, got, tc.want)
		}
	}
}

// 60,000 distinct ids make one route; building it costs nothing but the
// caller's buffer.
func TestRouteBounded(t *testing.T) {
	routes := map[string]bool{}
	for i := range 60_000 {
		r := Request{HTTP: &HTTP{Method: "GET", Target: fmt.Sprintf("/users/%d/files/1%08xf?sig=%d", i, uint32(i*2654435761), i)}}
		routes[r.Route()] = true
	}
	if len(routes) != 1 || !routes["GET /users/{id}/files/{hash}"] {
		t.Errorf("routes: %v", routes)
	}
	r := Request{HTTP: &HTTP{Method: "GET", Target: "/users/123/orders/9f1c2e3d4b?x=1"}}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendRoute(buf[:0]) }); n != 0 {
		t.Errorf("AppendRoute allocates %v times", n)
	}
}
