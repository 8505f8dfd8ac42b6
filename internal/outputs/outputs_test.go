package outputs

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
)

// TestCreateOutput: outputs are created 0600 whatever the umask, never
// through a symbolic link; an existing file of ours is truncated (or
// appended to). Another user's file in a shared sticky directory:
// TestCreateOtherUsersFile (end-to-end, it needs root).
func TestCreateOutput(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}

	p := filepath.Join(dir, "new.json")
	f, err := Create(p, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one\n")
	f.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("new output mode %v under umask 0, want 0600", fi.Mode().Perm())
	}
	f, _ = Create(p, true)
	f.WriteString("two\n")
	f.Close()
	if b, _ := os.ReadFile(p); string(b) != "one\ntwo\n" {
		t.Errorf("append: %q", b)
	}
	f, _ = Create(p, false)
	f.Close()
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("not truncated: %q", b)
	}

	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	link := filepath.Join(dir, "planted")
	os.Symlink(victim, link)
	for _, app := range []bool{false, true} {
		if f, err := Create(link, app); err == nil {
			f.Close()
			t.Errorf("append=%v: wrote through a symbolic link", app)
		} else if !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("append=%v: %v", app, err)
		}
		if err := CheckWritable(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("CheckWritable passed a symbolic link: %v", err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target was changed: %q", b)
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "not-yet"), dangling)
	if f, err := Create(dangling, false); err == nil {
		f.Close()
		t.Error("created a file through a dangling symbolic link")
	}
	if _, err := os.Lstat(filepath.Join(dir, "not-yet")); err == nil {
		t.Error("the dangling link's target was created")
	}

	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	if f, err := Create(fifo, false); err == nil {
		f.Close()
		t.Error("opened a FIFO as an output")
	}

}

// build builds exporters of e with the environment env and no metrics
// server unless e asks for one.
func build(t *testing.T, e config.Exporters, env map[string]string) (*Exporters, string, error) {
	t.Helper()
	var stderr strings.Builder
	x, err := Build(e, Options{Version: "test", Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	if err == nil {
		t.Cleanup(x.Shutdown)
	}
	return x, stderr.String(), err
}

// TestOTLPEnvRanges: the OTEL_* variables are held to the same ranges
// as the flags (a huge OTEL_BSP_MAX_QUEUE_SIZE panicked in makechan).
func TestOTLPEnvRanges(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"OTEL_BSP_MAX_QUEUE_SIZE", "99999999999999999", "OTEL_BSP_MAX_QUEUE_SIZE: 99999999999999999 is out of range"},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 100000 is out of range"},
		{"OTEL_BSP_SCHEDULE_DELAY", "9999999999", "OTEL_BSP_SCHEDULE_DELAY: "},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "9999999999", "OTEL_EXPORTER_OTLP_TIMEOUT: "},
		{"OTEL_TRACES_SAMPLER_ARG", "NaN", "OTEL_TRACES_SAMPLER_ARG: NaN is out of range"},
	} {
		e := config.Exporters{MetricsAddr: "off", OTLP: config.OTLP{Endpoint: "http://127.0.0.1:1"}}
		_, _, err := build(t, e, map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", tc.env: tc.val})
		var ue config.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want a usage error with %q", tc.env, tc.val, err, tc.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		e    config.Exporters
		want string
	}{
		{config.Exporters{ServiceNames: []string{"nonsense"}}, "--service-name: "},
		{config.Exporters{OTLP: config.OTLP{Endpoint: "ftp://c"}}, "--otlp-endpoint"},
		{config.Exporters{JSON: "/proc/nope/x.jsonl"}, "--json: open /proc/nope/x.jsonl"},
		{config.Exporters{MetricsAddr: "127.0.0.1:99999"}, "--metrics-addr: "},
	} {
		_, _, err := build(t, tc.e, nil)
		var ue config.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want a usage error with %q", tc.e, err, tc.want)
		}
	}
}

func request(pid uint32, path string) *correlate.Request {
	return &correlate.Request{PID: pid, Comm: "server", DurationNs: 1e6,
		Conn: correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:40000")},
		HTTP: &correlate.HTTP{Method: "GET", Target: path + "?token=secret", Status: 200}}
}

// TestExportersJSON: each request is one line, in the file once flushed
// (the pipeline flushes after each batch), its query values redacted
// unless kept; the file is appended to, and the service names apply.
func TestExportersJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o600)
	x, said, err := build(t, config.Exporters{JSON: path, ServiceNames: []string{"port:8080=web"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(said, "OTLP traces off") {
		t.Errorf("announcement: %q", said)
	}
	if _, _, ok := x.OTLP(); ok || x.MetricsAddr() != "" {
		t.Error("OTLP or metrics on without being asked for")
	}
	for i, p := range []string{"/a", "/b"} {
		if err := x.Add(request(uint32(10+i), p)); err != nil {
			t.Fatal(err)
		}
		if lines := readLines(t, path); len(lines) != 1+i {
			t.Fatalf("after %d requests, before the flush: %d lines", i+1, len(lines))
		}
		if err := x.Flush(); err != nil {
			t.Fatal(err)
		}
		lines := readLines(t, path)
		if len(lines) != 2+i {
			t.Fatalf("after %d requests: %d lines", i+1, len(lines))
		}
		var rec struct {
			PID     uint32 `json:"pid"`
			Service string `json:"service"`
			HTTP    struct {
				Target string `json:"target"`
			} `json:"http"`
		}
		if err := json.Unmarshal([]byte(lines[1+i]), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.PID != uint32(10+i) || rec.Service != "web" || rec.HTTP.Target != p+"?token=REDACTED" {
			t.Errorf("line %d: %s", i+1, lines[1+i])
		}
	}
	if lines := readLines(t, path); lines[0] != `{"earlier":true}` {
		t.Errorf("the file was not appended to: %q", lines[0])
	}

	keep := filepath.Join(t.TempDir(), "keep.jsonl")
	x, _, _ = build(t, config.Exporters{JSON: keep, KeepQueryValues: true}, nil)
	x.Add(request(1, "/k"))
	x.Flush()
	if lines := readLines(t, keep); len(lines) != 1 || !strings.Contains(lines[0], "token=secret") {
		t.Errorf("keep_query_values: %q", lines)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestExportersOTLPAndMetrics: OTLP traces to an endpoint that refuses
// connections are counted, not fatal; the metrics server serves once
// asked to, and moves to the exporters that replace these.
func TestExportersOTLPAndMetrics(t *testing.T) {
	e := config.Exporters{MetricsAddr: freeAddr(t), OTLP: config.OTLP{Endpoint: "http://127.0.0.1:1"}, Sampling: config.Sampling{Ratio: "1"}}
	x, said, err := build(t, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(said, "tracerd: OTLP traces to http://127.0.0.1:1/v1/traces") || !strings.Contains(said, "100% of the others") ||
		!strings.Contains(said, "tracerd: Prometheus metrics at http://127.0.0.1:") {
		t.Errorf("announcement: %q", said)
	}
	endpoint, _, ok := x.OTLP()
	if !ok || !strings.Contains(endpoint, "127.0.0.1:1") {
		t.Errorf("OTLP %v %q", ok, endpoint)
	}
	addr := x.MetricsAddr()
	x.ServeMetrics()
	x.Add(request(1, "/x"))
	if body := get(t, addr); !strings.Contains(body, "tracerd_requests") {
		t.Errorf("/metrics lacks the request:\n%.500s", body)
	}

	e.MetricsAddr = "off"
	e.OTLP.Endpoint = ""
	nx, _, err := build(t, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	nx.TakeMetrics(x)
	x.Shutdown()
	if nx.MetricsAddr() != addr || x.MetricsAddr() != "" {
		t.Errorf("metrics at %q after the move (old %q), want %q", nx.MetricsAddr(), x.MetricsAddr(), addr)
	}
	if body := get(t, addr); !strings.Contains(body, "tracerd_requests") {
		t.Error("the metrics server stopped with the replaced exporters")
	}
	var stats strings.Builder
	x.PrintStats(&stats)
	if !strings.HasPrefix(stats.String(), "otlp: 0 spans exported") || !strings.Contains(stats.String(), "1 by ratio") {
		t.Errorf("stats: %q", stats.String())
	}
	nx.Shutdown()
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("the metrics server still serves after Shutdown")
	}
}

// freeAddr is a local address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestSnapshotFiles: nothing is created before OpenSnapshot; the summary
// moves to stderr when the JSON lines take stdout.
func TestSnapshotFiles(t *testing.T) {
	dir := t.TempDir()
	prof, jl := filepath.Join(dir, "cut.pb.gz"), filepath.Join(dir, "cut.jsonl")
	if err := CheckSnapshot(prof, jl); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(prof); err == nil {
		t.Error("CheckSnapshot created the profile")
	}
	var ue config.UsageError
	if err := CheckSnapshot("/proc/nope/p", ""); !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "-o: ") {
		t.Errorf("unwritable -o: %v", err)
	}
	o, err := OpenSnapshot(prof, jl)
	if err != nil {
		t.Fatal(err)
	}
	if o.Summary != os.Stdout || o.JSON == nil {
		t.Errorf("summary %v, json %v", o.Summary, o.JSON)
	}
	if err := o.WriteProfile(func(w io.Writer) error { _, err := io.WriteString(w, "profile"); return err }); err != nil {
		t.Fatal(err)
	}
	var said strings.Builder
	o.SayProfile(&said)
	o.Close()
	if b, _ := os.ReadFile(prof); string(b) != "profile" || said.String() != "profile: "+prof+" (go tool pprof -http=: "+prof+")\n" {
		t.Errorf("profile %q, said %q", b, said.String())
	}
	o, _ = OpenSnapshot("", "-")
	if o.Summary != os.Stderr || o.JSON != os.Stdout || o.WriteProfile(nil) != nil {
		t.Errorf("--json -: summary %v json %v", o.Summary, o.JSON)
	}
}
