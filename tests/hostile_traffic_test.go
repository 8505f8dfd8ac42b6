//go:build e2e

package tests

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
	waitInFlight(t, "GET /sleep?n=300 ")
	served := serverSocket(t, c)
	_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	peer := c.LocalAddr().String()
	c.Close()
	// Another request afterwards; then the handler returns and the
	// server closes the connection.
	get(t, http.DefaultClient, "http://"+srv.Addr+"/teapot")
	eventually(t, 5*time.Second, func() error {
		if holdsSocket(t, srv.PID, served) {
			return errors.New("the server still holds the reset connection (its handler has not returned)")
		}
		return nil
	})
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

// TestReloadKindsStorm: SIGHUPs that switch between kinds of selection
// (port only, port + comm), 50 in 5 s under load, trace every request
// once (no duplicate, no phantom, none lost), and the kernel counters go
// on across them.
func TestReloadKindsStorm(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	cfgPath := filepath.Join(t.TempDir(), "tracerd.yaml")
	writeCfg := func(targets string) {
		cfg := "targets:\n" + targets + "exporters:\n  metrics_addr: \"off\"\ncontrol:\n  socket: \"off\"\nengine:\n  go: false\n"
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	portOnly := fmt.Sprintf("  ports: [%d]\n", srv.Port)
	writeCfg(portOnly)
	jsonPath := filepath.Join(t.TempDir(), "requests.jsonl")
	d := startDaemon(t, nil, "--config", cfgPath, "--json", jsonPath)

	// The load: connections of 3 keep-alive requests each, until stopped.
	stop := make(chan struct{})
	sent := make(chan []string, 1)
	var conns int
	go func() {
		var targets []string
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent <- targets
				return
			default:
			}
			c, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Error(err)
				sent <- targets
				return
			}
			conns++
			for j := 0; j < 3; j++ {
				target := fmt.Sprintf("/storm/%d/%d", i, j)
				if _, err := request(c, target, 0); err != nil {
					t.Error(err)
				}
				targets = append(targets, target)
			}
			c.Close()
		}
	}()
	for i := 0; i < 50; i++ {
		if i%2 == 0 {
			writeCfg(portOnly + "  comms: [testserver]\n")
		} else {
			writeCfg(portOnly)
		}
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		d.waitLog(t, "msg=reloaded", i+1, 10*time.Second)
		time.Sleep(100 * time.Millisecond) // traffic between two reloads
	}
	close(stop)
	targets := <-sent
	if len(targets) > 0 {
		// The last request's record is out (its connection closed), so
		// are those of the connections closed before.
		waitRecords(t, jsonPath, 10*time.Second, targets[len(targets)-1])
	}
	d.stop(t, syscall.SIGTERM)

	want := map[string]bool{}
	for _, tg := range targets {
		want[tg] = true
	}
	got := map[string]int{}
	for _, r := range readRecords(t, jsonPath) {
		if r.HTTP == nil || !strings.HasPrefix(r.HTTP.Target, "/storm/") {
			t.Errorf("phantom record: %+v", r)
			continue
		}
		got[r.HTTP.Target]++
		if !want[r.HTTP.Target] {
			t.Errorf("phantom record for %s", r.HTTP.Target)
		}
	}
	dups, lost := 0, 0
	for tg := range want {
		switch got[tg] {
		case 1:
		case 0:
			lost++
		default:
			dups++
		}
	}
	t.Logf("%d requests on %d connections, %d records; %d duplicated, %d lost", len(targets), conns, len(got), dups, lost)
	if dups > 0 || lost > 0 {
		t.Errorf("%d requests recorded more than once, %d not at all", dups, lost)
	}
	// Counters are the kernel's since start: every connection counted.
	m := regexp.MustCompile(`kernel: (\d+) connections traced`).FindStringSubmatch(d.stderr.String())
	if m == nil {
		t.Fatalf("no kernel counters in the log:\n%s", d.stderr)
	}
	if n, _ := strconv.Atoi(m[1]); n != conns {
		t.Errorf("kernel counted %d connections traced, the client made %d (counters restarted?)", n, conns)
	}
}
