package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/outputs"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/portpressure"
	"github.com/tracerd/tracerd/internal/targets"
)

// fakeEngine stands for a tracing session: the test hands requests to
// the daemon's sink, the session ends when its context does (or when
// the test fails it).
type fakeEngine struct {
	sink  pipeline.Sink
	done  chan struct{}
	err   error
	ended sync.Once

	mu           sync.Mutex
	targets      targets.Targets
	setTargets   []targets.Targets // each SetTargets call
	setErr       error
	countersErr  error
	probesClosed bool
	closed       bool
}

// end ends the session with err.
func (f *fakeEngine) end(err error) {
	f.ended.Do(func() {
		f.err = err
		close(f.done)
	})
}

func (f *fakeEngine) Done() <-chan struct{} { return f.done }
func (f *fakeEngine) Wait() error           { <-f.done; return f.err }
func (f *fakeEngine) Hooks() []loader.HookStatus {
	return []loader.HookStatus{{Hook: loader.Hook{Name: "accept"}, OK: true}, {Hook: loader.Hook{Name: "softirq"}, Reason: "not here"}}
}
func (f *fakeEngine) Counters() (loader.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return loader.Counters{ConnsTraced: 3, Records: 5, RingbufDrops: 1}, f.countersErr
}
func (f *fakeEngine) Requests() int64   { return 5 }
func (f *fakeEngine) SinkErrors() int64 { return 0 }
func (f *fakeEngine) Targets() targets.Targets {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.targets
}
func (f *fakeEngine) SetTargets(t targets.Targets) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setTargets = append(f.setTargets, t)
	if f.setErr != nil {
		return f.setErr
	}
	f.targets = t
	return nil
}
func (f *fakeEngine) GoProbes() (string, []goprobe.ProcessState) {
	return "classic", []goprobe.ProcessState{{PID: 9, Go: "go1.24.0", On: []string{"gc"}, Links: 2}}
}
func (f *fakeEngine) PortPressure() *portpressure.Report { return &portpressure.Report{} }
func (f *fakeEngine) Report(w io.Writer)                 { fmt.Fprintln(w, "kernel: the fake's report") }
func (f *fakeEngine) CloseProbes() {
	f.mu.Lock()
	f.probesClosed = true
	f.mu.Unlock()
}
func (f *fakeEngine) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

// add hands r to the daemon as the pipeline would (from any
// goroutine), as a batch of its own: added, then flushed.
func (f *fakeEngine) add(t *testing.T, r *correlate.Request) {
	t.Helper()
	if err := f.sink.Add(r); err != nil {
		t.Error(err)
	}
	if err := f.sink.(pipeline.Flusher).Flush(); err != nil {
		t.Error(err)
	}
}

// fakeNotifier records what systemd would be told.
type fakeNotifier struct {
	ready     chan string
	mu        sync.Mutex
	watchdogs int
	reloading int
	stopping  int
}

func (n *fakeNotifier) Ready(s string) error { n.ready <- s; return nil }
func (n *fakeNotifier) Reloading() error     { n.mu.Lock(); n.reloading++; n.mu.Unlock(); return nil }
func (n *fakeNotifier) Stopping() error      { n.mu.Lock(); n.stopping++; n.mu.Unlock(); return nil }
func (n *fakeNotifier) Watchdog() error      { n.mu.Lock(); n.watchdogs++; n.mu.Unlock(); return nil }

// logBuffer is a log safe to write from the daemon's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a daemon running on a fake engine.
type harness struct {
	d      *Daemon
	eng    *fakeEngine
	notify *fakeNotifier
	log    *logBuffer
	stderr *logBuffer
	level  *slog.LevelVar
	hup    chan os.Signal
	stop   context.CancelFunc
	ran    chan error
	// next is what the next reload reads.
	mu   sync.Mutex
	next config.Config
	bad  error
}

// testConfig traces port 80 with metrics and the control socket off.
func testConfig() config.Config {
	c := config.Default()
	c.Targets = targets.Targets{Ports: []uint16{80}}
	c.Exporters.MetricsAddr = "off"
	c.Control.Socket = "off"
	return c
}

// start runs a daemon of cfg until the test ends; it returns once
// tracing started.
func start(t *testing.T, cfg config.Config, edit func(*Options)) *harness {
	t.Helper()
	h := &harness{eng: &fakeEngine{done: make(chan struct{}), targets: cfg.Targets}, notify: &fakeNotifier{ready: make(chan string, 16)},
		log: &logBuffer{}, stderr: &logBuffer{}, level: new(slog.LevelVar), hup: make(chan os.Signal, 1), ran: make(chan error, 1), next: cfg}
	opts := Options{
		Config: cfg, ConfigPath: "/etc/tracerd/test.yaml",
		Reread: func() (config.Config, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.next, h.bad
		},
		Start: func(ctx context.Context, cfg config.Config, openSinks func() ([]pipeline.Sink, error)) (Engine, error) {
			sinks, err := openSinks()
			if err != nil {
				return nil, err
			}
			h.eng.sink = sinks[0]
			go func() {
				<-ctx.Done()
				h.eng.end(nil)
			}()
			return h.eng, nil
		},
		Log:     slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: h.level})),
		Level:   h.level,
		Notify:  h.notify,
		Version: "test",
		Stderr:  h.stderr,
		Getenv:  func(string) string { return "" },
	}
	if edit != nil {
		edit(&opts)
	}
	h.d = New(opts)
	ctx, stop := context.WithCancel(context.Background())
	h.stop = stop
	go func() { h.ran <- h.d.Run(ctx, h.hup) }()
	select {
	case s := <-h.notify.ready:
		if want := "tracing " + cfg.Targets.String(); s != want {
			t.Fatalf("ready %q, want %q", s, want)
		}
	case err := <-h.ran:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not start")
	}
	t.Cleanup(func() { h.shutdown(t) })
	return h
}

// config is the configuration the daemon runs.
func (h *harness) config() config.Config {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return h.d.cfg
}

// exporters are the daemon's exporters now.
func (h *harness) exporters() *outputs.Exporters {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return h.d.x
}

// shutdown stops the daemon (SIGTERM) and returns Run's error.
func (h *harness) shutdown(t *testing.T) error {
	t.Helper()
	h.stop()
	select {
	case err := <-h.ran:
		h.ran <- err // for the next call
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
		return nil
	}
}

// reload rereads next (or fails with bad) and waits for the reload to end.
func (h *harness) reload(t *testing.T, next config.Config, bad error) string {
	t.Helper()
	h.mu.Lock()
	h.next, h.bad = next, bad
	h.mu.Unlock()
	h.hup <- os.Interrupt
	select {
	case s := <-h.notify.ready:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the reload did not end")
		return ""
	}
}

func request(pid uint32, port uint16, path string) *correlate.Request {
	return &correlate.Request{PID: pid, Comm: "server", DurationNs: 2e6,
		Conn: correlate.Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Peer: netip.MustParseAddrPort("127.0.0.1:40000")},
		HTTP: &correlate.HTTP{Method: "GET", Target: path, Status: 200}}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunAndStop: requests reach the exporters; at SIGTERM the engine
// is stopped, its probes and itself closed, and what was lost said.
func TestRunAndStop(t *testing.T) {
	cfg := testConfig()
	cfg.Exporters.JSON = filepath.Join(t.TempDir(), "requests.jsonl")
	h := start(t, cfg, nil)
	if !strings.Contains(h.stderr.String(), "tracerd: OTLP traces off") {
		t.Errorf("the exporters did not say where requests go: %q", h.stderr.String())
	}
	h.eng.add(t, request(1, 80, "/a"))
	if got := lines(t, cfg.Exporters.JSON); len(got) != 1 || !strings.Contains(got[0], `"/a"`) {
		t.Errorf("JSON lines: %q", got)
	}
	if err := h.shutdown(t); err != nil {
		t.Fatal(err)
	}
	if !h.eng.closed || !h.eng.probesClosed || h.notify.stopping != 1 {
		t.Errorf("closed %v, probes closed %v, stopping sent %d times", h.eng.closed, h.eng.probesClosed, h.notify.stopping)
	}
	if !strings.Contains(h.stderr.String(), "kernel: the fake's report") || !strings.Contains(h.log.String(), "msg=stopped") {
		t.Errorf("stderr %q, log %q", h.stderr.String(), h.log.String())
	}
}

// TestEngineFails: tracing that ends by itself ends the daemon with its error.
func TestEngineFails(t *testing.T) {
	h := start(t, testConfig(), nil)
	h.eng.end(errors.New("ring buffer gone"))
	select {
	case err := <-h.ran:
		h.ran <- err
		if err == nil || err.Error() != "ring buffer gone" {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop when tracing failed")
	}
	if !strings.Contains(h.log.String(), `msg="tracing failed" error="ring buffer gone"`) {
		t.Errorf("log: %s", h.log.String())
	}
}

// TestStartFails: a start that fails creates no output and leaves no
// control socket; an unusable --json or control socket is the user's
// to fix before anything starts.
func TestStartFails(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Exporters.JSON = filepath.Join(dir, "requests.jsonl")
	cfg.Control.Socket = filepath.Join(dir, "control.sock")
	d := New(Options{Config: cfg, Start: func(context.Context, config.Config, func() ([]pipeline.Sink, error)) (Engine, error) {
		return nil, errors.New("no BTF")
	}})
	if err := d.Run(context.Background(), nil); err == nil || err.Error() != "no BTF" {
		t.Errorf("Run: %v", err)
	}
	for _, p := range []string{cfg.Exporters.JSON, cfg.Control.Socket} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a failed start left %s", p)
		}
	}

	for _, edit := range []func(*config.Config){
		func(c *config.Config) { c.Exporters.JSON = filepath.Join(dir, "missing", "x.jsonl") },
		func(c *config.Config) {
			c.Control.Socket = filepath.Join(dir, "regular")
			os.WriteFile(c.Control.Socket, nil, 0o600)
		},
	} {
		c := testConfig()
		edit(&c)
		started := false
		d := New(Options{Config: c, Start: func(context.Context, config.Config, func() ([]pipeline.Sink, error)) (Engine, error) {
			started = true
			return nil, errors.New("started")
		}})
		var ue config.UsageError
		if err := d.Run(context.Background(), nil); !errors.As(err, &ue) || started {
			t.Errorf("%+v: %v (started %v), want a usage error before the start", c, err, started)
		}
	}
}

// TestWatchdog: pinged while the engine answers, not once it does not.
func TestWatchdog(t *testing.T) {
	h := start(t, testConfig(), func(o *Options) { o.WatchdogEvery = 5 * time.Millisecond })
	pings := func() int { h.notify.mu.Lock(); defer h.notify.mu.Unlock(); return h.notify.watchdogs }
	waitFor(t, "watchdog pings", func() bool { return pings() >= 2 })
	h.eng.mu.Lock()
	h.eng.countersErr = errors.New("map gone")
	h.eng.mu.Unlock()
	waitFor(t, "the log of a missed ping", func() bool { return strings.Contains(h.log.String(), "engine does not answer: no watchdog ping") })
	n := pings()
	time.Sleep(30 * time.Millisecond)
	if pings() != n {
		t.Errorf("pinged while the engine does not answer")
	}
}
