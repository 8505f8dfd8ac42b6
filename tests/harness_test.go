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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	deadline := time.Now().Add(wait)
	for !strings.Contains(p.stderr.String(), "tracerd: tracing") {
		select {
		case err := <-p.done:
			t.Fatalf("%s exited before tracing: %v\n%s", p.name(), err, p.stderr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start tracing within %s:\n%s", p.name(), wait, p.stderr)
		}
	}
	return p
}

// waitStderr waits up to d for s in a tracerd's log.
func waitStderr(t *testing.T, p *tracerdProc, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%q not in the log after %s:\n%s", s, d, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []export.JSONRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r export.JSONRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := append([]Truth(nil), s.truths...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("server reported %d of %d requests: %s", len(got), n, s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
