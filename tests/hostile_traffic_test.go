package tests

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// TestGoClientReset: a client that resets its connection while the Go
// handler still runs gives one record (the kernel's, unanswered), not a
// second Go-only one with a status that was never delivered.
func TestGoClientReset(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET /sleep?n=300 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	peer := c.LocalAddr().String()
	c.Close()
	// Another request afterwards, and time for the handler to return.
	get(t, http.DefaultClient, "http://"+srv.Addr+"/teapot")
	time.Sleep(600 * time.Millisecond)
	recs := tr.Stop(t)
	var mine []export.JSONRecord
	for _, r := range recs {
		if r.EndReason == "stream" {
			t.Errorf("Go-only record for an HTTP/1 request: %+v", r)
		}
		if r.Conn.Peer == peer {
			mine = append(mine, r)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d records for the reset connection, want 1: %+v", len(mine), mine)
	}
}

// TestGoConnsMapFull: with the traced-connections map full, the requests
// of untraced connections are not exported through the Go view.
func TestGoConnsMapFull(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	const traced, conns, perConn = 2, 6, 5
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID), "--max-conns", strconv.Itoa(traced))
	var held []net.Conn
	for i := 0; i < conns; i++ {
		c := dial(t, srv.Addr)
		held = append(held, c)
	}
	for i := 0; i < perConn; i++ {
		for _, c := range held {
			if _, err := fmt.Fprintf(c, "GET /json?n=10 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	recs := tr.Stop(t)
	peers := map[string]int{}
	for _, r := range recs {
		if r.EndReason == "stream" {
			t.Errorf("Go-only record of an untraced connection: %+v", r)
			continue
		}
		peers[r.Conn.Peer]++
	}
	if len(peers) > traced || len(recs) > traced*perConn {
		t.Errorf("%d records from %d connections; at most %d traced connections × %d requests", len(recs), len(peers), traced, perConn)
	}
	if !strings.Contains(tr.stderr.String(), "connections untraced (map full") {
		t.Logf("summary:\n%s", tr.stderr)
	}
}
