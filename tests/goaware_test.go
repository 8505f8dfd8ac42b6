//go:build e2e

package tests

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// olderGo is the older toolchain the Go test servers are also built
// with (fetched through the module proxy, cached in GOMODCACHE).
const olderGo = "go1.22.12"

// goBuild is one build of tests/goserver.
type goBuild struct {
	name      string
	toolchain string // GOTOOLCHAIN value ("local" or a version)
	stripped  bool
	modfile   string // another go.mod (other dependency versions), "" for go.mod
}

// goBuilds: go.mod has grpc-go v1.70 (whose stream embeds a *Stream);
// go.grpclatest.mod the newest grpc-go (a Stream by value).
var goBuilds = []goBuild{
	{"local", "local", false, ""},
	{"local-stripped", "local", true, ""},
	{olderGo, olderGo, false, ""},
	{olderGo + "-stripped", olderGo, true, ""},
}

var grpcLatestBuilds = []goBuild{
	{"local-grpclatest", "local", false, "go.grpclatest.mod"},
	{"local-grpclatest-stripped", "local", true, "go.grpclatest.mod"},
}

var (
	builtMu sync.Mutex
	built   = map[string]string{}
)

// buildGoServer builds tests/goserver with b's toolchain, once per run.
// With TRACERD_E2E_PREBUILT (a guest without Go) it takes
// goserver-<name> from that directory, and skips the builds not there.
func buildGoServer(t *testing.T, b goBuild) string {
	t.Helper()
	if pre := os.Getenv("TRACERD_E2E_PREBUILT"); pre != "" {
		p := filepath.Join(pre, "goserver-"+b.name)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("goserver build %s not prebuilt for this guest", b.name)
		}
		return p
	}
	builtMu.Lock()
	defer builtMu.Unlock()
	if p, ok := built[b.name]; ok {
		return p
	}
	out := filepath.Join(bin.dir, "goserver-"+b.name)
	args := []string{"build", "-o", out}
	if b.stripped {
		args = append(args, "-ldflags=-s -w")
	}
	if b.modfile != "" {
		args = append(args, "-modfile="+b.modfile)
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = "goserver"
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+b.toolchain, "GOFLAGS=-mod=mod")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building goserver with %s: %v\n%s", b.toolchain, err, msg)
	}
	built[b.name] = out
	return out
}

// GoServer is a running goserver.
type GoServer struct {
	PID      int
	Addr     string
	GRPCAddr string // with -grpc
	Go       string
}

func startGoServer(t *testing.T, path string, args ...string) *GoServer {
	t.Helper()
	cmd := exec.Command(path, args...)
	// No background GC: every cycle is one a handler forced, whole inside
	// the window its MemStats truth covers. One P: restarting the world
	// then never starts an extra thread after Go has read its clock
	// (wakep → newm), time our RET probe would count and Go would not.
	cmd.Env = append(os.Environ(), "GOGC=off", "GOMAXPROCS=1")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("goserver did not start: %v %s", err, stderr)
	}
	var s GoServer
	var hello struct {
		Listen string `json:"listen"`
		GRPC   string `json:"grpc"`
		PID    int    `json:"pid"`
		Go     string `json:"go"`
	}
	if err := json.Unmarshal([]byte(line), &hello); err != nil {
		t.Fatal(err)
	}
	s.Addr, s.GRPCAddr, s.PID, s.Go = hello.Listen, hello.GRPC, hello.PID, hello.Go
	return &s
}

// get does one request and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func headerNs(t *testing.T, resp *http.Response, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(resp.Header.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s: %v", name, err)
	}
	return v
}

// withinPct checks measured against truth with a relative tolerance
// (and an absolute floor for tiny values).
func withinPct(t *testing.T, what string, measured, truth int64, pct float64, floor time.Duration) {
	t.Helper()
	tol := max(int64(float64(truth)*pct/100), floor.Nanoseconds())
	diff := measured - truth
	if diff < 0 {
		diff = -diff
	}
	msg := fmt.Sprintf("%s: tracerd %s, truth %s (off by %s, allowed %s)", what, time.Duration(measured), time.Duration(truth), time.Duration(diff), time.Duration(tol))
	if diff > tol {
		t.Error(msg)
	} else {
		t.Log(msg)
	}
}

func hasSpan(r export.JSONRecord, name string) bool {
	for _, s := range r.Spans {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestGoAwareness: JSON and protobuf serialization, GC pauses and
// net/http facts, for Go test servers built by two Go versions,
// stripped and not.
func TestGoAwareness(t *testing.T) {
	needRoot(t)
	for _, b := range goBuilds {
		t.Run(b.name, func(t *testing.T) {
			srv := startGoServer(t, buildGoServer(t, b))
			tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
			if !strings.Contains(tr.stderr.String(), "Go probes on 1 processes") {
				t.Fatalf("Go probes not attached:\n%s", tr.stderr)
			}
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
			base := "http://" + srv.Addr
			var jsonTruth, protoTruth, gcTruth, gcCycles []int64
			// GC first: after the JSON and protobuf requests the heap holds
			// much garbage (GOGC=off), and Go's own clock then stops before
			// bookkeeping the world still waits for (see docs/go.md).
			for i := 0; i < 3; i++ {
				resp, _ := get(t, client, base+"/gc?n=5")
				if resp.StatusCode != http.StatusAccepted {
					t.Fatalf("/gc: %d", resp.StatusCode)
				}
				gcTruth = append(gcTruth, headerNs(t, resp, "X-GC-Pause-Ns"))
				gcCycles = append(gcCycles, headerNs(t, resp, "X-GC-Cycles"))
				t.Logf("gc request %d: runtime.GC window %s", i, resp.Header.Get("X-GC-Window"))
			}
			for i := 0; i < 3; i++ {
				resp, _ := get(t, client, base+"/json?n=20000")
				jsonTruth = append(jsonTruth, headerNs(t, resp, "X-Serialize-Ns"))
			}
			for i := 0; i < 3; i++ {
				resp, _ := get(t, client, base+"/proto?n=20000")
				protoTruth = append(protoTruth, headerNs(t, resp, "X-Serialize-Ns"))
			}
			get(t, client, base+"/teapot")
			recs := tr.Stop(t)
			var jsonRecs, protoRecs, gcRecs []export.JSONRecord
			var teapot *export.JSONRecord
			for i, r := range recs {
				if r.HTTP == nil {
					continue
				}
				switch {
				case strings.HasPrefix(r.HTTP.Target, "/json"):
					jsonRecs = append(jsonRecs, r)
				case strings.HasPrefix(r.HTTP.Target, "/proto"):
					protoRecs = append(protoRecs, r)
				case strings.HasPrefix(r.HTTP.Target, "/gc"):
					gcRecs = append(gcRecs, r)
				case r.HTTP.Target == "/teapot":
					teapot = &recs[i]
				}
			}
			// Records come out when requests end, not in start order.
			for _, rs := range [][]export.JSONRecord{jsonRecs, protoRecs, gcRecs} {
				sort.Slice(rs, func(i, j int) bool { return rs[i].StartUnixNano < rs[j].StartUnixNano })
			}
			if len(jsonRecs) != 3 || len(protoRecs) != 3 || len(gcRecs) != 3 || teapot == nil {
				for _, r := range recs {
					t.Logf("%+v %+v %+v", r.HTTP, r.Phases, r.Spans)
				}
				t.Fatalf("records: %d json, %d proto, %d gc, teapot %v of %d", len(jsonRecs), len(protoRecs), len(gcRecs), teapot != nil, len(recs))
			}
			for i, r := range jsonRecs {
				withinPct(t, fmt.Sprintf("json %d serialize", i), phase(t, r, "serialize"), jsonTruth[i], 5, time.Millisecond)
				if !hasSpan(r, "encoding/json.Marshal") || !hasSpan(r, "net/http.serverHandler.ServeHTTP") {
					t.Errorf("json %d spans: %+v", i, r.Spans)
				}
				if app := phase(t, r, "app"); phase(t, r, "serialize") > app {
					t.Errorf("serialize > app")
				}
			}
			for i, r := range protoRecs {
				withinPct(t, fmt.Sprintf("proto %d serialize", i), phase(t, r, "serialize"), protoTruth[i], 5, time.Millisecond)
				if !hasSpan(r, "google.golang.org/protobuf/proto.Marshal") {
					t.Errorf("proto %d spans: %+v", i, r.Spans)
				}
			}
			// Each GC request within ±10 % (floor: 25 µs per pause, two per
			// cycle: the probes sit at function entries and also see the
			// wait for sched.lock the runtime leaves out of its clock). One
			// of the three may miss: a sweep-termination pause ends at
			// startTheWorldWithSema's RET, after wakep(), which now and then
			// creates an OS thread (≈ 1 ms here) that Go's clock leaves out.
			misses := 0
			for i, r := range gcRecs {
				floor := time.Duration(gcCycles[i]) * 2 * 25 * time.Microsecond
				tol := max(gcTruth[i]/10, floor.Nanoseconds())
				got := phase(t, r, "gc_stw")
				diff := got - gcTruth[i]
				if diff < 0 {
					diff = -diff
				}
				t.Logf("gc %d gc_stw (%d cycles): tracerd %s, truth %s (off by %s, allowed %s)", i, gcCycles[i],
					time.Duration(got), time.Duration(gcTruth[i]), time.Duration(diff), time.Duration(tol))
				if diff > tol {
					misses++
					t.Logf("gc %d pauses: %+v", i, r.Spans)
				}
				if r.HTTP.Status != http.StatusAccepted {
					t.Errorf("gc %d: status %d, want 202 (set by WriteHeader)", i, r.HTTP.Status)
				}
			}
			switch {
			case misses > 1 && os.Getenv("TRACERD_E2E_EMULATED") != "":
				// Each pause has work Go's clock leaves out (sched.lock,
				// the probes' traps): ≈ 5 µs on a real CPU, ≈ 12× that
				// emulated, past the floor above.
				t.Logf("gc_stw off the truth in %d of 3 requests: not checked on an emulated CPU", misses)
			case misses > 1:
				t.Errorf("gc_stw off the truth in %d of 3 requests", misses)
			}
			if teapot.HTTP.Status != http.StatusTeapot || teapot.HTTP.Method != "GET" {
				t.Errorf("teapot: %+v", teapot.HTTP)
			}
		})
	}
}

// TestGoFirstRequestByPort: selected by port alone, a Go server that
// already listens gets its probes before tracing is announced, so its
// very first request carries its Go phases (before, they came at its
// first traced accept, too late for that request's serialize).
func TestGoFirstRequestByPort(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	_, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := startTracer(t, "--port", port)
	if !strings.Contains(tr.stderr.String(), "Go probes on 1 processes") {
		t.Fatalf("Go probes not attached at start by --port:\n%s", tr.stderr)
	}
	resp, _ := get(t, http.DefaultClient, "http://"+srv.Addr+"/json?n=20000")
	truth := headerNs(t, resp, "X-Serialize-Ns")
	recs := tr.Stop(t)
	var first *export.JSONRecord
	for i, r := range recs {
		if r.HTTP != nil && strings.HasPrefix(r.HTTP.Target, "/json") {
			first = &recs[i]
		}
	}
	if first == nil {
		t.Fatalf("no record of the first request among %d", len(recs))
	}
	withinPct(t, "first request's serialize", phase(t, *first, "serialize"), truth, 5, time.Millisecond)
	if !hasSpan(*first, "encoding/json.Marshal") || !hasSpan(*first, "net/http.serverHandler.ServeHTTP") {
		t.Errorf("first request's spans: %+v", first.Spans)
	}
}

// TestGoFlushBeforeReturn: a handler that sends its whole answer and
// then keeps running. The client's next request ends the kernel's record
// before ServeHTTP returns, and net/http's background read takes that
// request's first byte on another goroutine: each record must still be
// joined with its own ServeHTTP (one record per request, none as a
// separate "stream").
func TestGoFlushBeforeReturn(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]))
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	const n = 6
	for i := 0; i < n; i++ {
		resp, body := get(t, client, fmt.Sprintf("http://%s/flushsleep?n=%d", srv.Addr, 20+i))
		if resp.StatusCode != 200 || string(body) != "flushed\n" {
			t.Fatalf("/flushsleep: %d %q", resp.StatusCode, body)
		}
	}
	recs := tr.Stop(t)
	joined, streams := 0, 0
	for _, r := range recs {
		if r.HTTP == nil || !strings.HasPrefix(r.HTTP.Target, "/flushsleep") {
			if r.EndReason != "stream" && !hasSpan(r, "net/http.serverHandler.ServeHTTP") {
				t.Logf("record without its ServeHTTP: %+v %s", r.HTTP, r.EndReason)
			}
			continue
		}
		if r.EndReason == "stream" {
			streams++
			continue
		}
		if hasSpan(r, "net/http.serverHandler.ServeHTTP") && r.HTTP.Method == "GET" && r.HTTP.Status == 200 {
			joined++
		}
	}
	if joined != n || streams != 0 {
		for _, r := range recs {
			t.Logf("%+v %s %v", r.HTTP, r.EndReason, r.Spans)
		}
		t.Errorf("%d records joined with their ServeHTTP (GET, 200), %d ServeHTTP as separate streams; want %d and 0", joined, streams, n)
	}
}

// TestGoHTTP2TLS: over TLS the bytes are unreadable and HTTP/2 multiplexes
// streams; net/http's own view gives one record per stream.
func TestGoHTTP2TLS(t *testing.T) {
	needRoot(t)
	srv := startGoServer(t, buildGoServer(t, goBuilds[0]), "-tls")
	tr := startTracer(t, "--pid", strconv.Itoa(srv.PID))
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	base := "https://" + srv.Addr
	paths := map[string]int{"/teapot": 418, "/json?n=100": 200, "/hello/a": 200, "/gc?n=1": 202}
	var wg sync.WaitGroup
	for p := range paths {
		wg.Add(1)
		go func(p string) {
			defer wg.Done()
			resp, err := client.Get(base + p)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("%s: HTTP/%d, want HTTP/2", p, resp.ProtoMajor)
			}
		}(p)
	}
	wg.Wait()
	recs := tr.Stop(t)
	got := map[string]export.JSONRecord{}
	for _, r := range recs {
		if r.HTTP != nil && r.EndReason == "stream" {
			path, _, _ := strings.Cut(r.HTTP.Target, "?") // the query is checked elsewhere
			got[path] = r
		}
	}
	for p, status := range paths {
		path, _, _ := strings.Cut(p, "?")
		r, ok := got[path]
		if !ok {
			t.Errorf("no stream record for %s (have %v)", path, keys(got))
			continue
		}
		if r.HTTP.Method != "GET" || r.HTTP.Status != status {
			t.Errorf("%s: %+v, want GET %d", path, r.HTTP, status)
		}
		phase(t, r, "app")
	}
	if len(got) != len(paths) {
		t.Errorf("%d stream records, want %d: %v", len(got), len(paths), keys(got))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCaddy traces Debian's caddy, a stripped Go binary built by someone
// else, serving files; a non-Go nginx traced alongside is unaffected.
func TestCaddy(t *testing.T) {
	needRoot(t)
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Fatal("caddy is not installed: run tests/tools/install-deps.sh test")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from caddy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(caddy, "file-server", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--root", dir)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	nginxPort := startNginx(t)
	tr := startTracer(t, "--comm", "caddy", "--comm", "nginx", "--log-level", "info")
	if !strings.Contains(tr.stderr.String(), "Go probes attached") {
		t.Fatalf("no Go probes on caddy:\n%s", tr.stderr)
	}
	// One connection per request: on a keep-alive connection net/http's
	// background read may take the next request's first bytes on another
	// goroutine, and the kernel record then misses its Go join (known
	// limitation, see docs/go.md).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	want := []struct {
		sent, path string // path: as recorded (query values redacted)
		status     int
	}{{"/hello.txt", "/hello.txt", 200}, {"/missing.txt", "/missing.txt", 404}, {"/hello.txt?v=2", "/hello.txt?v=REDACTED", 200}}
	for _, w := range want {
		resp, _ := get(t, client, base+w.sent)
		if resp.StatusCode != w.status {
			t.Fatalf("%s: caddy answered %d", w.path, resp.StatusCode)
		}
	}
	resp, _ := get(t, client, fmt.Sprintf("http://127.0.0.1:%d/index.html", nginxPort))
	if resp.StatusCode != 200 {
		t.Fatalf("nginx: %s", resp.Status)
	}
	all := tr.Stop(t)
	// nginx, traced alongside, is not Go: kernel phases and HTTP from the
	// bytes, no Go phase, no Go span.
	ng := recordsOn(all, nginxPort)
	if len(ng) != 1 || ng[0].HTTP == nil || ng[0].HTTP.Status != 200 || ng[0].HTTP.Target != "/index.html" {
		t.Errorf("nginx records: %+v", ng)
	}
	for _, r := range ng {
		for _, p := range []string{"gc_stw", "serialize"} {
			if _, ok := r.Phases[p]; ok {
				t.Errorf("nginx record has a Go phase %s", p)
			}
		}
		if len(r.Spans) != 0 {
			t.Errorf("nginx record has Go spans: %+v", r.Spans)
		}
		phase(t, r, "app")
	}
	recs := recordsOn(all, port)
	// Records come out when connections close, not in start order.
	sort.Slice(recs, func(i, j int) bool { return recs[i].StartUnixNano < recs[j].StartUnixNano })
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v\n%s", len(recs), len(want), recs, logs)
	}
	for i, r := range recs {
		if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != want[i].path || r.HTTP.Status != want[i].status {
			t.Errorf("request %d: %+v, want GET %s %d", i, r.HTTP, want[i].path, want[i].status)
		}
		if !hasSpan(r, "net/http.serverHandler.ServeHTTP") {
			t.Errorf("request %d: no ServeHTTP span: Go probes did not see it: %+v", i, r.Spans)
		}
		phase(t, r, "gc_stw")
	}
}

// TestGoProcessLifecycle: a Go process started after tracerd gets its
// probes within 1 s; they go when it exits, leaving no link behind. With
// uprobe_multi links (one per program) and with classic uprobes (one per
// address, TRACERD_CLASSIC_UPROBES=1).
func TestGoProcessLifecycle(t *testing.T) {
	needRoot(t)
	path := buildGoServer(t, goBuilds[0])
	for _, mode := range []struct {
		name string
		env  []string
	}{{"uprobe_multi", nil}, {"classic", []string{"TRACERD_CLASSIC_UPROBES=1"}}} {
		t.Run(mode.name, func(t *testing.T) { goProcessLifecycle(t, path, mode.env) })
	}
}

func goProcessLifecycle(t *testing.T, path string, env []string) {
	before := uprobeLinks(t)
	tr := startTracerEnv(t, env, "--comm", "goserver-local", "--log-level", "info")
	started := time.Now()
	srv := startGoServer(t, path)
	attached := fmt.Sprintf("pid=%d", srv.PID)
	tr.waitLog(t, "msg=\"Go probes attached\" "+attached, 1, time.Second-time.Since(started))
	t.Logf("Go probes attached %s after the process started", time.Since(started))
	if n := uprobeLinks(t); n <= before {
		t.Fatalf("uprobe links: %d before, %d now", before, n)
	}
	resp, _ := get(t, http.DefaultClient, "http://"+srv.Addr+"/json?n=100")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	p, _ := os.FindProcess(srv.PID)
	_ = p.Kill()
	killed := time.Now()
	// The kernel takes ≈ 90 ms to remove each uprobe, one at a time
	// (≈ 3 s for the 32 of a goserver); the BPF side ignores the pid at
	// once.
	tr.waitLog(t, "msg=\"Go probes detached\" "+attached, 1, 10*time.Second)
	t.Logf("Go probes removed %s after the process was killed", time.Since(killed))
	// A closed link's kernel object goes a moment later (deferred free).
	waitLinks(t, before, 12*time.Second-time.Since(killed))
	recs := tr.Stop(t)
	found := false
	for _, r := range recs {
		if r.PID == uint32(srv.PID) && hasSpan(r, "encoding/json.Marshal") {
			found = true
		}
	}
	if !found {
		t.Errorf("no record with Go spans from the process started after tracerd: %+v", recs)
	}
}

// uprobeLinks counts the links of tracerd's Go uprobe programs.
func uprobeLinks(t *testing.T) int {
	t.Helper()
	return progLinks(t, "go_")
}
