package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// notifyListener is a NOTIFY_SOCKET as systemd makes it: a unix
// datagram socket collecting the service's notifications.
type notifyListener struct {
	Path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{Path: path, conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	return n
}

// wait returns the time of the first message holding assignment.
func (n *notifyListener) wait(t *testing.T, assignment string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		for _, m := range n.msgs {
			if slices.Contains(strings.Split(m.text, "\n"), assignment) {
				n.mu.Unlock()
				return m.at
			}
		}
		n.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s notification within %s; got %q", assignment, within, n.texts())
	return time.Time{}
}

func (n *notifyListener) count(assignment string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if slices.Contains(strings.Split(m.text, "\n"), assignment) {
			c++
		}
	}
	return c
}

func (n *notifyListener) texts() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, m := range n.msgs {
		out = append(out, m.text)
	}
	return out
}

// Daemon is a running `tracerd run`.
type Daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
	// tracingAt is when "tracerd: tracing" appeared on stderr.
	tracingAt time.Time
}

// startDaemon runs `tracerd run` with args and extra environment, and
// waits until it says it is tracing.
func startDaemon(t *testing.T, env []string, args ...string) *Daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(bin.tracerd, append([]string{"run"}, args...)...), env)
}

func startDaemonCmd(t *testing.T, cmd *exec.Cmd, env []string) *Daemon {
	t.Helper()
	d := &Daemon{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr, d.cmd.Stdout = d.stderr, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.stderr.String(), "tracerd: tracing") {
		select {
		case err := <-d.done:
			t.Fatalf("tracerd run exited before tracing: %v\n%s", err, d.stderr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracerd run did not start tracing within 15s:\n%s", d.stderr)
		}
	}
	d.tracingAt = time.Now()
	return d
}

// stop sends sig and waits for the exit; it returns how long that took.
func (d *Daemon) stop(t *testing.T, sig os.Signal) time.Duration {
	t.Helper()
	start := time.Now()
	_ = d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("tracerd run failed: %v\n%s", err, d.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tracerd run did not stop within 20s of %v:\n%s", sig, d.stderr)
	}
	return time.Since(start)
}

// TestSystemdNotify runs tracerd as systemd would (Type=notify,
// WatchdogSec): READY once the probes are attached, WATCHDOG pings, and
// on SIGTERM STOPPING, every probe detached, the request in flight
// flushed to the exporters and exit within 5 s.
func TestSystemdNotify(t *testing.T) {
	needRoot(t)
	// Answers in two writes 3 s apart, and no idle timeout: a request
	// stays in flight.
	srv := startServer(t, nil, "--chunks", "2", "--chunk-gap", "3s", "--resp-size", "64")
	n := listenNotify(t)
	jsonPath := filepath.Join(t.TempDir(), "requests.jsonl")
	d := startDaemon(t, []string{"NOTIFY_SOCKET=" + n.Path, "WATCHDOG_USEC=400000"},
		"--port", fmt.Sprint(srv.Port), "--json", jsonPath, "--metrics-addr", "off", "--control-socket", "off", "--go=false", "--idle-timeout", "30s")
	ready := n.wait(t, "READY=1", 5*time.Second)
	if ready.Before(d.tracingAt.Add(-50 * time.Millisecond)) {
		// READY must not come before the probes are attached, which
		// "tracerd: tracing" announces.
		t.Errorf("READY=1 came %s before tracerd said it was tracing", d.tracingAt.Sub(ready))
	}
	// One whole request, then one left in flight.
	c := dial(t, srv.Addr)
	if _, err := request(c, "/done", 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := dial(t, srv.Addr)
	if _, err := fmt.Fprintf(c2, "GET /inflight HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the server read it and wrote the first chunk
	pings := n.count("WATCHDOG=1")
	if pings < 3 { // every 200 ms for at least 1 s since READY
		t.Errorf("%d WATCHDOG=1 pings in the first second (WATCHDOG_USEC=400000 asks one per 200 ms)", pings)
	}
	took := d.stop(t, syscall.SIGTERM)
	n.wait(t, "STOPPING=1", time.Second)
	t.Logf("READY %s after tracing was announced; %d watchdog pings; SIGTERM → exit in %s", ready.Sub(d.tracingAt), pings, took)
	if took > 5*time.Second {
		t.Errorf("SIGTERM → exit took %s, want ≤ 5s", took)
	}
	recs := recordsOn(readRecords(t, jsonPath), srv.Port)
	var done, flushed bool
	for _, r := range recs {
		if r.HTTP != nil && r.HTTP.Target == "/done" {
			done = true
		}
		if r.HTTP != nil && r.HTTP.Target == "/inflight" && r.EndReason == "flush" {
			flushed = true
		}
	}
	if !done || !flushed {
		t.Errorf("want the finished request and the in-flight one (end_reason flush) in the JSON lines; got %+v\n%s", recs, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), "msg=stopped") {
		t.Errorf("no 'stopped' log line:\n%s", d.stderr)
	}
}
