//go:build e2e

package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tracerd/tracerd/internal/export"
)

// Binaries built once by TestMain.
var bin struct {
	dir, tracerd, testserver string
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// run builds tracerd and testserver into a scratch directory, or, when
// TRACERD_E2E_PREBUILT names a directory, uses the ones already built
// there: a guest booted by tests/kernels has no Go toolchain.
func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "tracerd-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin.dir = dir
	if pre := os.Getenv("TRACERD_E2E_PREBUILT"); pre != "" {
		bin.tracerd = filepath.Join(pre, "tracerd")
		bin.testserver = filepath.Join(pre, "testserver")
		for _, p := range []string{bin.tracerd, bin.testserver} {
			if _, err := os.Stat(p); err != nil {
				return 0, fmt.Errorf("TRACERD_E2E_PREBUILT: %w", err)
			}
		}
		return m.Run(), nil
	}
	bin.tracerd = filepath.Join(dir, "tracerd")
	bin.testserver = filepath.Join(dir, "testserver")
	for out, pkg := range map[string]string{bin.tracerd: "../cmd/tracerd", bin.testserver: "./testserver"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	return m.Run(), nil
}

// needRoot skips tests that load BPF programs when not root. CI is root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and changes cgroups/nftables")
	}
}

// skipRefusedPrivileges skips, when not root, a test of a setting
// tracerd checks after its privileges, which it refused with out.
func skipRefusedPrivileges(t *testing.T, out string) {
	t.Helper()
	if os.Geteuid() != 0 && strings.Contains(out, "not enough privileges") {
		t.Skip("needs root: tracerd checks its privileges before this setting")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tracerdProc is a tracerd process under test: the command, its log
// and its exit.
type tracerdProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// launch starts cmd with its stderr (and stdout, unless set) going to a
// log, and waits up to wait for "tracerd: tracing"; the process is
// killed at the test's end if it still runs.
func launch(t *testing.T, cmd *exec.Cmd, wait time.Duration) *tracerdProc {
	t.Helper()
	p := &tracerdProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if cmd.Stdout == nil {
		cmd.Stdout = p.stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	eventually(t, wait, func() error {
		if strings.Contains(p.stderr.String(), "tracerd: tracing") {
			return nil
		}
		select {
		case err := <-p.done:
			t.Fatalf("%s exited before tracing: %v\n%s", p.name(), err, p.stderr)
		default:
		}
		return fmt.Errorf("%s did not start tracing:\n%s", p.name(), p.stderr)
	})
	return p
}

// waitLog waits up to within for s to be in the process's log n times.
func (p *tracerdProc) waitLog(t *testing.T, s string, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		if got := strings.Count(p.stderr.String(), s); got < n {
			return fmt.Errorf("%q %d times in the log of %s, want %d:\n%s", s, got, p.name(), n, p.stderr)
		}
		return nil
	})
}

// name is how messages call the process: "tracerd run", "tracerd snapshot".
func (p *tracerdProc) name() string { return "tracerd " + p.cmd.Args[1] }

// stopWith sends sig and waits up to 20 s for a clean exit.
func (p *tracerdProc) stopWith(t *testing.T, sig os.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s failed: %v\n%s", p.name(), err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s of %v:\n%s", p.name(), sig, p.stderr)
	}
}

// Tracer is a running `tracerd snapshot`.
type Tracer struct {
	*tracerdProc
	stdout   *syncBuffer
	JSONPath string
	Profile  string
}

// startTracer runs tracerd snapshot with args (target selection) and
// waits until it says it is tracing.
func startTracer(t *testing.T, args ...string) *Tracer {
	t.Helper()
	return startTracerEnv(t, nil, args...)
}

// startTracerEnv is startTracer with variables added to tracerd's
// environment.
func startTracerEnv(t *testing.T, env []string, args ...string) *Tracer {
	t.Helper()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "requests.json")
	profile := filepath.Join(dir, "cut.pb.gz")
	// --standalone: the engine under test, never a daemon that may run.
	full := append([]string{"snapshot", "--standalone", "--duration", "5m", "--json", jsonPath, "-o", profile}, args...)
	cmd := exec.Command(bin.tracerd, full...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	tr := startTracerCmd(t, cmd, jsonPath, 10*time.Second)
	tr.Profile = profile
	return tr
}

// startTracerCmd starts a prepared tracerd command (a snapshot writing
// JSON lines to jsonPath) and waits up to wait for it to say it traces.
func startTracerCmd(t *testing.T, cmd *exec.Cmd, jsonPath string, wait time.Duration) *Tracer {
	t.Helper()
	stdout := &syncBuffer{}
	cmd.Stdout = stdout // the summary, apart from the log
	return &Tracer{tracerdProc: launch(t, cmd, wait), stdout: stdout, JSONPath: jsonPath}
}

// Stop ends the snapshot (as Ctrl-C does) and returns its records.
func (tr *Tracer) Stop(t *testing.T) []export.JSONRecord {
	t.Helper()
	tr.stopWith(t, os.Interrupt)
	t.Logf("tracerd summary:\n%s%s", tr.stdout, tr.stderr)
	return readRecords(t, tr.JSONPath)
}

func readRecords(t *testing.T, path string) []export.JSONRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseRecords(data)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func parseRecords(data []byte) ([]export.JSONRecord, error) {
	var recs []export.JSONRecord
	for line := range bytes.Lines(data) {
		var r export.JSONRecord
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("bad JSON line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// flushedRecordsOn returns the records on port in the JSON lines at
// path once n are there, or what is there after a second: a record read
// reaches the file at tracerd's next periodic look (every 150 ms), and
// a second allows for a loaded machine.
func flushedRecordsOn(t *testing.T, path string, port, n int) []export.JSONRecord {
	t.Helper()
	var recs []export.JSONRecord
	_ = waitFor(time.Second, func() error {
		recs = recordsOn(readRecords(t, path), port)
		if len(recs) < n {
			return fmt.Errorf("%d records", len(recs))
		}
		return nil
	})
	return recs
}

// waitRecords waits until the JSON lines at path, which a tracerd run
// writes a record at a time as each request ends, hold a record of each
// target, and returns the records then.
func waitRecords(t *testing.T, path string, within time.Duration, targets ...string) []export.JSONRecord {
	t.Helper()
	var recs []export.JSONRecord
	eventually(t, within, func() error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// A line still being written is not a record yet.
		if recs, err = parseRecords(data[:bytes.LastIndexByte(data, '\n')+1]); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range recs {
			if r.HTTP != nil {
				seen[r.HTTP.Target] = true
			}
		}
		var missing []string
		for _, tg := range targets {
			if !seen[tg] {
				missing = append(missing, tg)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no record of %v in %s; its %d records are of %v", missing, path, len(recs), keys(seen))
		}
		return nil
	})
	return recs
}

// RunTracer is a running `tracerd run`.
type RunTracer struct {
	*tracerdProc
	JSONPath    string
	MetricsAddr string
}

// startRun runs tracerd run with JSON lines to a file and /metrics on a
// free port, plus args; env is added to the environment. It returns
// once tracerd says it is tracing.
func startRun(t *testing.T, env []string, args ...string) *RunTracer {
	t.Helper()
	rt := &RunTracer{
		JSONPath:    filepath.Join(t.TempDir(), "requests.json"),
		MetricsAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	full := append([]string{"run", "--json", rt.JSONPath, "--metrics-addr", rt.MetricsAddr}, args...)
	cmd := exec.Command(bin.tracerd, full...)
	cmd.Env = append(os.Environ(), env...)
	rt.tracerdProc = launch(t, cmd, 10*time.Second)
	return rt
}

// Stop sends SIGINT (spans still queued are flushed) and returns the
// JSON records.
func (rt *RunTracer) Stop(t *testing.T) []export.JSONRecord {
	t.Helper()
	rt.stopWith(t, os.Interrupt)
	t.Logf("tracerd run output:\n%s", rt.stderr)
	return readRecords(t, rt.JSONPath)
}

// Metrics scrapes /metrics into name{labels} → value.
func (rt *RunTracer) Metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + rt.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// waitMetric polls /metrics until cond holds for name.
func waitMetric(t *testing.T, rt *RunTracer, name string, cond func(float64) bool) map[string]float64 {
	t.Helper()
	var m map[string]float64
	eventually(t, 20*time.Second, func() error {
		if m = rt.Metrics(t); !cond(m[name]) {
			return fmt.Errorf("%s = %v\n%s", name, m[name], rt.stderr)
		}
		return nil
	})
	return m
}

// Truth is what testserver measured for one request (see testserver).
type Truth struct {
	Conn           int    `json:"conn"`
	Index          int    `json:"index"`
	TID            int    `json:"tid"`
	AcceptUnixNano int64  `json:"accept_unix_nano"`
	ReadUnixNano   int64  `json:"read_unix_nano"`
	WriteStartNano int64  `json:"write_start_unix_nano"`
	WriteEndNano   int64  `json:"write_end_unix_nano"`
	RunDelayNs     int64  `json:"run_delay_ns"`
	CPUNs          int64  `json:"cpu_ns"`
	RetransAtRead  uint32 `json:"retrans_at_read"`
	DialError      string `json:"dial_error"`
	EAddrNotAvail  bool   `json:"eaddrnotavail"`
	Call           *Call  `json:"call"` // the downstream call (testserver -call)
}

// Call is testserver's own view of its downstream call (httptrace).
type Call struct {
	StartUnixNano int64  `json:"start_unix_nano"`
	ConnectStart  int64  `json:"connect_start_unix_nano"`
	ConnectDone   int64  `json:"connect_done_unix_nano"`
	WroteRequest  int64  `json:"wrote_request_unix_nano"`
	FirstByte     int64  `json:"first_byte_unix_nano"`
	EndUnixNano   int64  `json:"end_unix_nano"`
	Reused        bool   `json:"reused"`
	Local         string `json:"local"`
	Status        int    `json:"status"`
	Error         string `json:"error"`
	HandlerTID    int    `json:"handler_tid"`
	Method        string `json:"method"`
	Target        string `json:"target"`
	TLSStart      int64  `json:"tls_start_unix_nano"`
	TLSDone       int64  `json:"tls_done_unix_nano"`
	TLSVersion    uint16 `json:"tls_version"`
	TLSCipher     uint16 `json:"tls_cipher"`
	TLSResumed    bool   `json:"tls_resumed"`
}

// Server is a running testserver.
type Server struct {
	cmd    *exec.Cmd
	PID    int
	Addr   string
	Port   int
	mu     sync.Mutex
	truths []Truth
	stderr *syncBuffer
}

// startServer runs testserver with args, optionally under a command
// prefix (e.g. taskset), and returns once it listens.
func startServer(t *testing.T, prefix []string, args ...string) *Server {
	t.Helper()
	argv := append(append([]string{}, prefix...), bin.testserver)
	argv = append(argv, args...)
	s := &Server{cmd: exec.Command(argv[0], argv[1:]...), stderr: &syncBuffer{}}
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			if first {
				first = false
				var hello struct {
					Listen string `json:"listen"`
					PID    int    `json:"pid"`
				}
				err := json.Unmarshal(sc.Bytes(), &hello)
				s.Addr, s.PID = hello.Listen, hello.PID
				ready <- err
				continue
			}
			var tr Truth
			if json.Unmarshal(sc.Bytes(), &tr) == nil {
				s.mu.Lock()
				s.truths = append(s.truths, tr)
				s.mu.Unlock()
			}
		}
		if first {
			ready <- errors.New("testserver exited before listening")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v: %s", err, s.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("testserver did not start")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	s.Port, _ = strconv.Atoi(port)
	return s
}

// Truths waits until the server reported n requests.
func (s *Server) Truths(t *testing.T, n int) []Truth {
	t.Helper()
	var got []Truth
	eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		got = append([]Truth(nil), s.truths...)
		s.mu.Unlock()
		if len(got) < n {
			return fmt.Errorf("server reported %d of %d requests: %s", len(got), n, s.stderr)
		}
		return nil
	})
	return got
}

// Exchange is the client's view of one request.
type Exchange struct {
	Sent      time.Time // request written
	FirstByte time.Time // first byte of the answer read
	LastByte  time.Time // last byte of the answer read
	Status    int
	BodyBytes int
}

// request sends one GET on c and reads the whole answer. pauseAfter,
// when set, stops reading for that long after the first read.
func request(c net.Conn, path string, pauseAfter time.Duration) (Exchange, error) {
	var ex Exchange
	ex.Sent = time.Now()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		return ex, err
	}
	buf := make([]byte, 64<<10)
	var acc []byte
	want := -1
	total := 0
	for want < 0 || total < want {
		n, err := c.Read(buf)
		if n > 0 && ex.FirstByte.IsZero() {
			ex.FirstByte = time.Now()
			if pauseAfter > 0 {
				time.Sleep(pauseAfter)
			}
		}
		total += n
		if want < 0 {
			acc = append(acc, buf[:n]...)
			if i := bytes.Index(acc, []byte("\r\n\r\n")); i >= 0 {
				head := string(acc[:i])
				fmt.Sscanf(head, "HTTP/1.1 %d", &ex.Status)
				for _, line := range strings.Split(head, "\r\n") {
					if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
						ex.BodyBytes, _ = strconv.Atoi(v)
					}
				}
				want = i + 4 + ex.BodyBytes
				acc = nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && want >= 0 && total >= want {
				break
			}
			return ex, err
		}
	}
	ex.LastByte = time.Now()
	return ex, nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// within checks measured against truth: ±5 % or ±1 ms, whichever is larger.
func within(t *testing.T, what string, measured, truth int64) {
	t.Helper()
	tol := max(truth/20, int64(time.Millisecond))
	diff := measured - truth
	if diff < 0 {
		diff = -diff
	}
	if diff > tol {
		t.Errorf("%s: tracerd measured %s, truth %s (off by %s, allowed %s)",
			what, time.Duration(measured), time.Duration(truth), time.Duration(diff), time.Duration(tol))
	} else {
		t.Logf("%s: tracerd measured %s, truth %s (off by %s)", what, time.Duration(measured), time.Duration(truth), time.Duration(diff))
	}
}

// phase returns a measured phase, failing when it is absent.
func phase(t *testing.T, r export.JSONRecord, name string) int64 {
	t.Helper()
	v, ok := r.Phases[name]
	if !ok {
		t.Fatalf("record has no %s phase: %+v", name, r.Phases)
	}
	return v
}

// recordsOn keeps the records of connections to port, in order of start.
func recordsOn(recs []export.JSONRecord, port int) []export.JSONRecord {
	var out []export.JSONRecord
	suffix := ":" + strconv.Itoa(port)
	for _, r := range recs {
		if strings.HasSuffix(r.Conn.Local, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// waitInFlight waits until a tracerd has a request in flight whose
// head (request line) is head: the server read it, and the BPF programs
// took it in (their connections map holds it).
func waitInFlight(t *testing.T, head string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if !bytes.Contains(bpfMapBytes(t, "conns")["conns"], []byte(head)) {
			return fmt.Errorf("no request %q in a tracerd's connections map", head)
		}
		return nil
	})
}

// bpfMapBytes returns every value of the loaded BPF maps of these names
// (any program's), concatenated per map.
func bpfMapBytes(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]byte{}
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if err != nil {
			break
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		info, err := m.Info()
		if err != nil || !want[info.Name] {
			m.Close()
			continue
		}
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			out[info.Name] = append(out[info.Name], v...)
		}
		m.Close()
	}
	return out
}

// serverSocket returns the inode of the server's end of c, a TCP
// connection over IPv4, from /proc/net/tcp.
func serverSocket(t *testing.T, c net.Conn) string {
	t.Helper()
	local, peer := procNetAddr(t, c.RemoteAddr()), procNetAddr(t, c.LocalAddr())
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[2] == peer && f[9] != "0" {
			return f[9]
		}
	}
	t.Fatalf("no accepted socket %s ← %s in /proc/net/tcp", c.RemoteAddr(), c.LocalAddr())
	return ""
}

// procNetAddr spells an IPv4 address and port as /proc/net/tcp does:
// the address's bytes as a little-endian number, in hex.
func procNetAddr(t *testing.T, a net.Addr) string {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || !ap.Addr().Is4() {
		t.Fatalf("%s: not an IPv4 address and port (%v)", a, err)
	}
	b := ap.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], ap.Port())
}

// holdsSocket says whether process pid has a descriptor of the socket.
func holdsSocket(t *testing.T, pid int, inode string) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, _ := os.Readlink(filepath.Join(dir, fd.Name())); l == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s does not listen: %v", addr, err)
		}
		c.Close()
		return nil
	})
}

// waitServes waits until GET url answers 200 OK, and fails at once
// when the process serving it ends (done closes); log is its output.
func waitServes(t *testing.T, name, url string, done <-chan struct{}, log *syncBuffer, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		select {
		case <-done:
			t.Fatalf("%s exited at start:\n%s", name, log)
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, log)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: GET %s: %s\n%s", name, url, resp.Status, log)
		}
		return nil
	})
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pollEvery is how often eventually looks again: often enough for the
// tests that time an event (READY against "tracerd: tracing").
const pollEvery = 10 * time.Millisecond

// waitFor calls check until it returns nil or within has passed, and
// returns check's last error.
func waitFor(within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollEvery)
	}
}

// eventually waits until check returns nil, and fails the test with
// check's last error when within passes first. check may end the test
// itself (t.Fatal) when what it waits for can no longer happen.
func eventually(t testing.TB, within time.Duration, check func() error) {
	t.Helper()
	if err := waitFor(within, check); err != nil {
		t.Fatalf("not within %s: %v", within, err)
	}
}
