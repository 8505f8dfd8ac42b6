//go:build e2e

package tests

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracerd/tracerd/internal/export"
)

// TestGoStatusAtExit: where the binary's offsets are known, the response
// status is read at ServeHTTP's exit and no WriteHeader probe is
// attached (one uprobe hit less per request). Over TLS, where the bytes
// cannot say, the statuses come out right for HTTP/1.1 and HTTP/2: 200
// for a handler that only writes (implicit), 201 and 404 set by
// WriteHeader, 418 by WriteHeader alone, 200 for a handler that writes
// nothing (net/http sends it after ServeHTTP returned); a hijacked
// HTTP/1 connection (its own 202 written raw) has none when DWARF tells
// it was hijacked, 200 from a stripped binary (docs/go.md). Both Go
// versions, stripped (table offsets) and not (DWARF).
func TestGoStatusAtExit(t *testing.T) {
	needRoot(t)
	for _, b := range goBuilds {
		t.Run(b.name, func(t *testing.T) { goStatusAtExit(t, b) })
	}
}

func goStatusAtExit(t *testing.T, b goBuild) {
	before := progLinks(t, "go_write_header")
	srv := startGoServer(t, buildGoServer(t, b), "-tls")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID), "--log-level", "info")
	tr.waitLog(t, fmt.Sprintf("msg=\"Go probes attached\" pid=%d", srv.PID), 1, 10*time.Second)
	if n := progLinks(t, "go_write_header"); n != before {
		t.Errorf("WriteHeader probes attached: %d links of go_write_header, %d before tracerd", n, before)
	}
	if n := progLinks(t, "go_return"); n == 0 {
		t.Fatal("no go_return link: ServeHTTP's exits are not probed")
	}

	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	hijackWant := 0
	if b.stripped {
		hijackWant = 200 // hijacking cannot be told without DWARF
	}
	type want struct {
		path   string
		client *http.Client
		proto  int
		sent   int // what the client got
		status int // what the record says
	}
	var cases []want
	for _, c := range []struct {
		path string
		sent int
	}{{"/hello/x", 200}, {"/status/201", 201}, {"/status/404", 404}, {"/teapot", 418}, {"/empty", 200}} {
		cases = append(cases, want{c.path, h1, 1, c.sent, c.sent}, want{c.path, h2, 2, c.sent, c.sent})
	}
	cases = append(cases, want{"/hijack", h1, 1, 202, hijackWant})
	base := "https://" + srv.Addr
	for _, c := range cases {
		resp, err := c.client.Get(base + c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.sent || resp.ProtoMajor != c.proto {
			t.Fatalf("%s: HTTP/%d %d, want HTTP/%d %d", c.path, resp.ProtoMajor, resp.StatusCode, c.proto, c.sent)
		}
	}
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	recs := tr.Stop(t)

	// HTTP/2 streams are records of their own (end_reason stream).
	key := func(path string, proto int) string { return fmt.Sprintf("HTTP/%d %s", proto, path) }
	got := map[string]export.JSONRecord{}
	for _, r := range recs {
		if r.HTTP != nil && r.PID == uint32(srv.PID) {
			proto := 1
			if r.EndReason == "stream" {
				proto = 2
			}
			got[key(r.HTTP.Target, proto)] = r
		}
	}
	for _, c := range cases {
		r, ok := got[key(c.path, c.proto)]
		if !ok {
			t.Errorf("%s: no record (targets %v)", c.path, keys(got))
			for _, r := range recs {
				t.Logf("record: pid %d http %+v end %s peer %s #%d", r.PID, r.HTTP, r.EndReason, r.Conn.Peer, r.Conn.RequestIndex)
			}
			continue
		}
		if r.HTTP.Status != c.status || r.HTTP.Method != "GET" {
			t.Errorf("%s (HTTP/%d): record %+v end %s, want status %d", c.path, c.proto, r.HTTP, r.EndReason, c.status)
		} else {
			t.Logf("%s (HTTP/%d): status %d (end %s)", c.path, c.proto, r.HTTP.Status, r.EndReason)
		}
	}
}

// progLinks counts the links of the BPF programs whose name begins with
// prefix (uprobe_multi: one a program and process; classic: one an
// address).
func progLinks(t *testing.T, prefix string) int {
	t.Helper()
	n := 0
	it := new(link.Iterator)
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		l.Close()
		if err != nil {
			continue
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		pi, err := p.Info()
		p.Close()
		if err == nil && strings.HasPrefix(pi.Name, prefix) {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
