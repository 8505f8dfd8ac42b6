package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tracerProc is one running `tracerd snapshot`.
type tracerProc struct {
	cmd        *exec.Cmd
	args       []string
	jsonPath   string
	stdout     bytes.Buffer
	stderr     lockedBuffer
	attached   chan struct{}
	exited     chan error
	Attach     time.Duration // start → "tracerd: tracing" on stderr
	attachedAt time.Time     // when "tracerd: tracing" came
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tracerdArgs is the command line the benchmark measures, as a user
// would run it: a pprof profile, and with json per-request JSON lines.
func tracerdArgs(port int, dir string, json bool) []string {
	args := []string{"snapshot", "--duration", "10m", "--port", strconv.Itoa(port)}
	if json {
		args = append(args, "--json", filepath.Join(dir, "requests.jsonl"))
	}
	return append(args, "-o", filepath.Join(dir, "cut.pb.gz"))
}

// startTracer starts tracerd and waits until it says it is tracing.
func startTracer(tracerd string, args []string, jsonPath string) (*tracerProc, error) {
	return startTracerEnv(tracerd, args, jsonPath, nil)
}

// startTracerEnv is startTracer with env as tracerd's environment (nil:
// this process's).
func startTracerEnv(tracerd string, args []string, jsonPath string, env []string) (*tracerProc, error) {
	t := &tracerProc{args: args, jsonPath: jsonPath, attached: make(chan struct{}), exited: make(chan error, 1)}
	t.cmd = exec.Command(tracerd, args...)
	t.cmd.Env = env
	t.cmd.Stdout = &t.stdout
	t.cmd.SysProcAttr = childAttr()
	pr, err := t.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting tracerd: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			t.stderr.Write([]byte(line + "\n"))
			if !once && strings.HasPrefix(line, "tracerd: tracing") {
				once = true
				t.attachedAt = time.Now()
				t.Attach = t.attachedAt.Sub(start)
				close(t.attached)
			}
		}
		io.Copy(&t.stderr, pr)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		t.exited <- t.cmd.Wait()
	}()
	select {
	case <-t.attached:
		return t, nil
	case err := <-t.exited:
		return nil, fmt.Errorf("tracerd exited before tracing (%v):\n%s", err, t.stderr.String())
	case <-time.After(15 * time.Second):
		t.cmd.Process.Kill()
		<-t.exited
		return nil, fmt.Errorf("tracerd did not say \"tracerd: tracing\" within 15 s:\n%s", t.stderr.String())
	}
}

// waitStderr waits for tracerd to write sub on stderr, at most limit; it
// returns how long after "tracing" it came, -1 when it did not.
func (t *tracerProc) waitStderr(ctx context.Context, sub string, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for !strings.Contains(t.stderr.String(), sub) {
		if !time.Now().Before(deadline) {
			return -1, nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return -1, err
		}
	}
	return time.Since(t.attachedAt), nil
}

// Kill ends tracerd without waiting for its output (error paths).
func (t *tracerProc) Kill() {
	if t != nil && t.cmd.ProcessState == nil {
		t.cmd.Process.Kill()
	}
}

// traceOutput is what tracerd reported at its end.
type traceOutput struct {
	SummaryRequests int64  // "N requests" of the summary (stdout); -1 for `run`, which has none
	JSONLines       int64  // lines in the --json file, -1 without --json
	KernelLine      string // the "kernel:" line (stderr)
	Kernel          kernelCounters
}

// Stop sends SIGINT, waits for tracerd to write everything and exit,
// and reads what it reported.
func (t *tracerProc) Stop() (traceOutput, error) {
	var out traceOutput
	t.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-t.exited:
		if err != nil {
			return out, fmt.Errorf("tracerd failed after SIGINT (%v):\n%s", err, t.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.cmd.Process.Kill()
		<-t.exited
		return out, fmt.Errorf("tracerd did not exit within 60 s of SIGINT:\n%s", t.stderr.String())
	}
	// `tracerd run` prints no summary.
	out.SummaryRequests = -1
	if t.args[0] != "run" {
		m := regexp.MustCompile(`(?m)^(\d+) requests$`).FindStringSubmatch(t.stdout.String())
		if m == nil {
			return out, fmt.Errorf("no \"N requests\" line in tracerd's summary:\n%s", t.stdout.String())
		}
		out.SummaryRequests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, line := range strings.Split(t.stderr.String(), "\n") {
		if strings.HasPrefix(line, "kernel:") {
			out.KernelLine = line
		}
	}
	if out.KernelLine == "" {
		return out, fmt.Errorf("no \"kernel:\" line on tracerd's stderr:\n%s", t.stderr.String())
	}
	var err error
	if out.Kernel, err = parseKernelLine(out.KernelLine); err != nil {
		return out, err
	}
	out.JSONLines = -1
	if t.jsonPath != "" {
		if out.JSONLines, err = countLines(t.jsonPath); err != nil {
			return out, fmt.Errorf("tracerd's --json file: %w", err)
		}
	}
	return out, nil
}

// kernelCounters are the numbers on tracerd's "kernel:" line.
type kernelCounters struct {
	Conns, Records             int64
	RingbufLost, ConnsUntraced int64
	ConnsInUse, ConnsMax       int64
	ThreadsUntimed, SweepFails int64
	OutputErrors               int64
}

// Lost is every counted loss: records, connections, timing.
func (k kernelCounters) Lost() int64 {
	return k.RingbufLost + k.ConnsUntraced + k.ThreadsUntimed + k.SweepFails + k.OutputErrors
}

var kernelCounterREs = []struct {
	re  *regexp.Regexp
	dst func(*kernelCounters) *int64
}{
	{regexp.MustCompile(`(\d+) connections traced`), func(k *kernelCounters) *int64 { return &k.Conns }},
	{regexp.MustCompile(`(\d+) records`), func(k *kernelCounters) *int64 { return &k.Records }},
	{regexp.MustCompile(`(\d+) \(ring buffer full\)`), func(k *kernelCounters) *int64 { return &k.RingbufLost }},
	{regexp.MustCompile(`(\d+) connections untraced`), func(k *kernelCounters) *int64 { return &k.ConnsUntraced }},
	{regexp.MustCompile(`(\d+)/\d+ in use`), func(k *kernelCounters) *int64 { return &k.ConnsInUse }},
	{regexp.MustCompile(`\d+/(\d+) in use`), func(k *kernelCounters) *int64 { return &k.ConnsMax }},
	{regexp.MustCompile(`(\d+) threads untimed`), func(k *kernelCounters) *int64 { return &k.ThreadsUntimed }},
	{regexp.MustCompile(`(\d+) idle sweeps failed`), func(k *kernelCounters) *int64 { return &k.SweepFails }},
	{regexp.MustCompile(`(\d+) output errors`), func(k *kernelCounters) *int64 { return &k.OutputErrors }},
}

// parseKernelLine reads tracerd's "kernel: N connections traced, N
// records; lost: ..." line. Every counter must be there: a changed
// format must not pass as zero losses.
func parseKernelLine(line string) (kernelCounters, error) {
	var k kernelCounters
	var missing []string
	for _, c := range kernelCounterREs {
		m := c.re.FindStringSubmatch(line)
		if m == nil {
			missing = append(missing, c.re.String())
			continue
		}
		*c.dst(&k), _ = strconv.ParseInt(m[1], 10, 64)
	}
	if len(missing) > 0 {
		return k, fmt.Errorf("tracerd's kernel line changed format, cannot find %s in:\n%s\n(update tests/bench/tracer.go)", strings.Join(missing, ", "), line)
	}
	return k, nil
}

func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		c, err := f.Read(buf)
		n += int64(bytes.Count(buf[:c], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// childAttr kills children with the benchmark, so that no server,
// tracerd or wrk outlives an interrupted run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// serverProc is the benchmark's HTTP server.
type serverProc struct {
	cmd  *exec.Cmd
	Addr string
	Port int
}

func startServer(ctx context.Context, bin string, args ...string) (*serverProc, error) {
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	pr, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting bench server: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, pr)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	addr, ok := strings.CutPrefix(l, "listening on ")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("bench server did not start (said %q)", l)
	}
	_, p, _ := strings.Cut(addr, ":")
	port, err := strconv.Atoi(p)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("bench server: bad address %q", addr)
	}
	return &serverProc{cmd: cmd, Addr: addr, Port: port}, nil
}

func (s *serverProc) Pid() int { return s.cmd.Process.Pid }

func (s *serverProc) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}
