package goinspect

import "testing"

// The layout DWARF gives bufio.Reader in a real build is the one used
// without DWARF; the client's Request layout is the server's offsets'.
func TestHTTPClientLayouts(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		from  string
		bufio bool // from DWARF
	}{
		{"dwarf", nil, "dwarf", true},
		{"stripped", []string{"-ldflags=-s -w"}, "table", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Open(buildServer(t, "local", c.args...))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.OffsetsFrom != c.from {
				t.Fatalf("offsets from %s, want %s", b.OffsetsFrom, c.from)
			}
			if b.Bufio == nil || *b.Bufio != knownBufioLayout {
				t.Errorf("bufio.Reader layout %+v, want %+v", b.Bufio, knownBufioLayout)
			}
			o := b.Offsets
			want := HTTPClientLayout{o.RequestMethod, o.RequestURL, o.URLPath, o.URLRawQuery}
			if b.HTTPClient == nil || *b.HTTPClient != want {
				t.Errorf("client layout %+v, want the Request's offsets %+v", b.HTTPClient, want)
			}
		})
	}
}

// A binary with net/http's client and no server (no net/http.response
// in DWARF: Offsets has no HTTP) still gets the Request's layout; a
// bufio.Reader whose fields are not all there gets none.
func TestHTTPClientLayoutOf(t *testing.T) {
	types := map[string]map[string]dwarfMember{
		"runtime.g":        {"goid": {off: 152}},
		"net/http.Request": {"Method": {off: 0}, "URL": {off: 16}},
		"net/url.URL":      {"Path": {off: 56}, "RawQuery": {off: 96}},
		"bufio.Reader":     {"buf": {off: 0}, "r": {off: 40}},
	}
	o, err := offsetsOf(types)
	if err != nil || o.HTTP {
		t.Fatalf("offsets %+v, %v: want no HTTP", o, err)
	}
	if l := httpClientLayoutOf(types); l == nil || *l != (HTTPClientLayout{0, 16, 56, 96}) {
		t.Errorf("client layout %+v", l)
	}
	if l, seen := bufioLayoutOf(types); l != nil || !seen {
		t.Errorf("bufio layout %+v (seen %v) without w: want none, seen", l, seen)
	}
	delete(types["net/url.URL"], "RawQuery")
	if l := httpClientLayoutOf(types); l != nil {
		t.Errorf("client layout %+v without RawQuery", l)
	}
}
