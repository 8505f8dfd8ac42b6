//go:build e2e

package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startNginx runs Debian's nginx serving a static index.html on a free
// loopback port; it returns the port.
func startNginx(t *testing.T) int {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run tests/tools/install-deps.sh test")
	}
	dir := t.TempDir()
	port := freePort(t)
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("tracerd static file\n", 500)
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// nginx workers run as nobody: let them reach the files.
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(dir, 0o755)
	runNginx(t, nginx, dir, port, "  sendfile on;\n", fmt.Sprintf("    listen 127.0.0.1:%d;\n    root %s;\n", port, www))
	return port
}

// runNginx starts nginx with its files in dir (a config of the test's
// own, no other of the host's), the http block's directives httpConf and
// one server block of serverConf, until the test ends; it returns once
// port is listening.
func runNginx(t *testing.T, nginx, dir string, port int, httpConf, serverConf string) {
	t.Helper()
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[2]s  server {
%[3]s  }
}
`, dir, httpConf, serverConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-c", confPath, "-p", dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGQUIT); _ = cmd.Wait() })
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
}

// TestNginx traces a real third-party server (Debian's nginx) serving
// static files: one record per request with the right method, target
// and status, on a keep-alive connection.
func TestNginx(t *testing.T) {
	needRoot(t)
	port := startNginx(t)
	tr := startTracer(t, "--comm", "nginx")
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	type want struct {
		method, sent, target string // target: as recorded (query values redacted)
		status               int
	}
	wants := []want{{"GET", "/index.html", "/index.html", 200}, {"GET", "/missing.txt?q=1", "/missing.txt?q=REDACTED", 404},
		{"HEAD", "/index.html", "/index.html", 200}, {"GET", "/", "/", 200}}
	for _, w := range wants {
		req, _ := http.NewRequest(w.method, fmt.Sprintf("http://127.0.0.1:%d%s", port, w.sent), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != w.status {
			t.Fatalf("%s %s: nginx answered %d, want %d", w.method, w.target, resp.StatusCode, w.status)
		}
	}
	recs := recordsOn(tr.Stop(t), port)
	if len(recs) != len(wants) {
		t.Fatalf("want %d records, got %d: %+v\n(%s)", len(wants), len(recs), recs, "see nginx error.log")
	}
	for i, r := range recs {
		w := wants[i]
		if r.HTTP == nil || r.HTTP.Method != w.method || r.HTTP.Target != w.target || r.HTTP.Status != w.status {
			t.Errorf("request %d: http = %+v, want %+v", i, r.HTTP, w)
		}
		if r.Comm != "nginx" || r.Conn.RequestIndex != uint32(i) {
			t.Errorf("request %d: comm %q index %d", i, r.Comm, r.Conn.RequestIndex)
		}
		for _, p := range []string{"recv_queue", "app", "send_queue"} {
			phase(t, r, p)
		}
	}
}

// TestCgroupV2Selection selects by a cgroup v2 directory: the server
// inside is traced, an identical one outside is not.
func TestCgroupV2Selection(t *testing.T) {
	needRoot(t)
	root := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		root = "/sys/fs/cgroup"
		var fs syscall.Statfs_t
		if syscall.Statfs(root, &fs) != nil || fs.Type != 0x63677270 {
			t.Skip("no cgroup v2 hierarchy mounted")
		}
	}
	dir := filepath.Join(root, fmt.Sprintf("tracerd-e2e-sel-%d", os.Getpid()))
	mkCgroup(t, dir)
	inside := startServer(t, nil)
	outside := startServer(t, nil)
	write(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(inside.PID))
	tr := startTracer(t, "--cgroup", dir)
	for _, s := range []*Server{inside, outside} {
		if _, err := request(dial(t, s.Addr), "/sel", 0); err != nil {
			t.Fatal(err)
		}
	}
	recs := tr.Stop(t)
	if n := len(recordsOn(recs, inside.Port)); n != 1 {
		t.Errorf("server in the cgroup: %d records, want 1", n)
	}
	if n := len(recordsOn(recs, outside.Port)); n != 0 {
		t.Errorf("server outside the cgroup: %d records, want 0", n)
	}
}

// TestIPv6AndEndReasons: IPv6 addresses, and the three ways a request
// ends: the next request, the connection closing, an idle keep-alive.
func TestIPv6AndEndReasons(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil, "-addr", "[::1]:0")
	// tracerd run: its JSON lines show each record as it comes out.
	tr := startRun(t, nil, "--pid", strconv.Itoa(srv.PID), "--idle-timeout", "200ms")
	closing := dial(t, srv.Addr)
	for i := 0; i < 2; i++ {
		if _, err := request(closing, "/v6", 0); err != nil {
			t.Fatal(err)
		}
	}
	closing.Close()
	idle := dial(t, srv.Addr)
	if _, err := request(idle, "/idle", 0); err != nil {
		t.Fatal(err)
	}
	// The connection stays open: the request ends by the idle timeout.
	waitRecords(t, tr.JSONPath, 5*time.Second, "/idle")
	recs := tr.Stop(t)
	got := map[string]string{}
	for _, r := range recs {
		if !strings.HasPrefix(r.Conn.Local, "[::1]:") || !strings.HasPrefix(r.Conn.Peer, "[::1]:") {
			t.Errorf("addresses %s ← %s, want [::1]", r.Conn.Local, r.Conn.Peer)
		}
		got[fmt.Sprintf("%s#%d", r.HTTP.Target, r.Conn.RequestIndex)] = r.EndReason
	}
	want := map[string]string{"/v6#0": "next_request", "/v6#1": "close", "/idle#0": "idle"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s ended by %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// TestIdleEndUnderLoad: with other connections busy (their requests end
// by their next one, so tracerd skips the idle sweep), a request whose
// connection goes quiet still ends by the idle timeout, on time: its
// record is out within the timeout plus the sweep and read periods.
func TestIdleEndUnderLoad(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	const idleTimeout = 300 * time.Millisecond
	tr := startRun(t, nil, "--pid", strconv.Itoa(srv.PID), "--idle-timeout", idleTimeout.String())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, srv.Addr)
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if _, err := request(c, "/busy", 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var once sync.Once
	stopLoad := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopLoad()
	time.Sleep(time.Second) // the busy connections' answers are counted
	for round := range 3 {
		idleEndOnTime(t, srv, tr, fmt.Sprintf("/quiet%d", round), idleTimeout)
	}
	stopLoad()
	for _, r := range tr.Stop(t) {
		if r.HTTP != nil && strings.HasPrefix(r.HTTP.Target, "/quiet") && r.EndReason != "idle" {
			t.Errorf("%s ended by %q, want idle", r.HTTP.Target, r.EndReason)
		}
	}
}

// TestProfileReadBack: the pprof file is read by `go tool pprof` as is.
func TestProfileReadBack(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil, "-read-delay", "30ms")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	c := dial(t, srv.Addr)
	for i := 0; i < 3; i++ {
		if _, err := request(c, "/profiled?x=1", 0); err != nil {
			t.Fatal(err)
		}
	}
	tr.Stop(t)
	// -nodefraction=0: app (≈0.1–0.3 ms a request) is under pprof's
	// default 0.5 % of recv_queue's 30 ms and would be dropped.
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodefraction=0", tr.Profile).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -top: %v\n%s", err, out)
	}
	top := string(out)
	for _, want := range []string{"Type: latency", "recv_queue", "app", "GET /profiled", "service testserver"} {
		if !strings.Contains(top, want) {
			t.Errorf("pprof -top output lacks %q:\n%s", want, top)
		}
	}
	out, err = exec.Command("go", "tool", "pprof", "-top", "-sample_index=requests", tr.Profile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: requests") {
		t.Errorf("go tool pprof -sample_index=requests: %v\n%s", err, out)
	}
	// recv_queue (30 ms) dominates every request: all 3 counted there.
	if !strings.Contains(string(out), "recv_queue") {
		t.Errorf("requests not attributed to their dominant phase:\n%s", out)
	}
}

// TestSkipHook: an optional hook turned off removes only its phases.
func TestSkipHook(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID), "--skip-hook", "sched_switch", "--skip-hook", "softirq_raise")
	c := dial(t, srv.Addr)
	if _, err := request(c, "/skip", 0); err != nil {
		t.Fatal(err)
	}
	r := byPeer(t, tr.Stop(t), c, 1)[0]
	for _, p := range []string{"runqueue", "cfs_throttle", "softirq"} {
		if _, ok := r.Phases[p]; ok {
			t.Errorf("%s present although its hook was skipped", p)
		}
	}
	for _, p := range []string{"accept_queue", "recv_queue", "app", "send_queue"} {
		phase(t, r, p)
	}
	if !strings.Contains(tr.stderr.String(), "skipped by configuration") {
		t.Errorf("the log does not say which hook was skipped:\n%s", tr.stderr)
	}
}
