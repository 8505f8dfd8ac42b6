// Package daemon is `tracerd run`: one tracing engine feeding the
// exporters until it is stopped, reloading its configuration on SIGHUP
// (exporters swapped, targets changed in place), answering `tracerd
// status` and `tracerd snapshot` on its control socket, and keeping
// systemd informed (readiness, reloads, watchdog).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/findings"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/metrics"
	"github.com/tracerd/tracerd/internal/outputs"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/portpressure"
	"github.com/tracerd/tracerd/internal/targets"
	"github.com/tracerd/tracerd/internal/ticker"
)

// Engine is a running tracing session as the daemon uses it;
// engine.Session is the real one.
type Engine interface {
	Done() <-chan struct{} // closed when the session ended
	Wait() error           // waits for the end; why it ended
	Hooks() []loader.HookStatus
	Counters() (loader.Counters, error)
	Requests() int64
	SinkErrors() int64
	Targets() targets.Targets
	SetTargets(targets.Targets) error
	GoProbes() (kind string, procs []goprobe.ProcessState)
	PortPressure() *portpressure.Report
	Report(w io.Writer) // what was lost, at stop
	CloseProbes()
	Close()
}

// Notifier tells the service manager how the daemon is;
// *sdnotify.Notifier is the real one.
type Notifier interface {
	Ready(status string) error
	Reloading() error
	Stopping() error
	Watchdog() error
}

// Options wire a daemon.
type Options struct {
	Config     config.Config // effective at start
	ConfigPath string        // the file it came from; "" without one
	// Reread reads the file and the command line again, on reload.
	Reread func() (config.Config, error)
	// Start starts the engine; openSinks gives it the daemon's sink once
	// it is attached.
	Start func(ctx context.Context, cfg config.Config, openSinks func() ([]pipeline.Sink, error)) (Engine, error)
	Log   *slog.Logger
	// Level is the log's level, which a reload changes (nil: none).
	Level         *slog.LevelVar
	Notify        Notifier      // nil: none
	WatchdogEvery time.Duration // how often to ping the watchdog; 0: never
	Version       string
	// Stderr gets the exporters' announcements and the final counts.
	Stderr io.Writer
	Getenv func(string) string // the OTEL_* variables (os.Getenv)
}

// SIGTERM → exit must stay under 5 s (systemd's default TimeoutStopSec
// is far above it) even with a collector that accepts connections and
// never answers. The OTLP flush may run until otlpStopBudget after the
// signal (plenty for a collector that answers); the exporter then takes
// up to 1 s more to abandon the export in flight and stop its client,
// and the counters and the detach follow: ≈ 2 s with a silent collector
// here, 3.2 s at worst, not 5.
const otlpStopBudget = 2 * time.Second

// stopBudget bounds the flush of exporters replaced by a reload.
const stopBudget = 4 * time.Second

// Daemon is a running `tracerd run`.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	notify  Notifier
	start   time.Time
	reloads atomic.Int64

	// mu guards what a reload or the start changes while the pipeline
	// (add), the control socket and the watchers read it.
	mu   sync.Mutex
	cfg  config.Config // effective; changed by reload (Run's goroutine)
	eng  Engine        // nil until attached
	x    *outputs.Exporters
	taps taps
	// recent sums the findings of the last minutes (tracerd status).
	recent findings.Recent
	// live is the view of the last seconds that tracerd top shows.
	live *live.Aggregator
	// retiring counts exporters replaced by a reload, still flushing.
	retiring sync.WaitGroup
	// xChanged tells watchExporters that a reload replaced x.
	xChanged chan struct{}
}

type noNotifier struct{}

func (noNotifier) Ready(string) error { return nil }
func (noNotifier) Reloading() error   { return nil }
func (noNotifier) Stopping() error    { return nil }
func (noNotifier) Watchdog() error    { return nil }

// New makes a daemon of opts; Run runs it.
func New(opts Options) *Daemon {
	if opts.Notify == nil {
		opts.Notify = noNotifier{}
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: opts.Log, notify: opts.Notify, cfg: opts.Config, start: time.Now(), live: live.New(live.Options{}), xChanged: make(chan struct{}, 1)}
	d.setLevel(opts.Config.Log)
	return d
}

// Run starts tracing and traces until ctx ends (SIGINT, SIGTERM) or
// tracing fails; each signal on reload (SIGHUP) reloads the
// configuration. It returns once everything is detached and flushed.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	cfg := d.cfg
	// The exporters (and the --json file) are made once the engine is
	// attached (sinks): a start that fails creates no output. Say early
	// whether the file can be written.
	if j := cfg.Exporters.JSON; j != "" && j != "-" {
		if err := outputs.CheckWritable(j); err != nil {
			return config.Usage(fmt.Errorf("--json: %w", err))
		}
	}
	// The socket exists before tracing is announced; it answers
	// "starting" until the engine is attached.
	ctl, err := d.serveControl()
	if err != nil {
		return err
	}
	// Not ctx: the engine stops when Run says, after the signal.
	trCtx, endTracing := context.WithCancel(context.Background())
	defer endTracing()
	eng, err := d.opts.Start(trCtx, cfg, d.sinks)
	if err != nil {
		if ctl != nil {
			ctl.Close()
		}
		if d.x != nil {
			d.x.Shutdown()
		}
		return err
	}
	d.mu.Lock()
	d.eng = eng
	d.mu.Unlock()
	d.wireMetrics(d.x)
	d.x.ServeMetrics()
	d.log.Info("tracing started", "targets", cfg.Targets.String(), "config", d.opts.ConfigPath)
	d.notify.Ready("tracing " + cfg.Targets.String())
	watchCtx, endWatch := context.WithCancel(context.Background())
	defer endWatch()
	go d.watchdog(watchCtx)
	go d.watchExporters(watchCtx)

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-reload:
			d.reload()
		case <-eng.Done():
			d.log.Error("tracing failed", "error", eng.Wait())
			break loop
		}
	}
	stopAt := time.Now()
	d.notify.Stopping()
	if ctl != nil {
		ctl.Close()
	}
	endWatch()
	endTracing()
	err = d.stop(stopAt)
	d.log.Info("stopped", "took", time.Since(stopAt).Round(time.Millisecond))
	return err
}

// sinks is the daemon's one sink, handed to the engine once it is
// attached: the exporters are built then.
func (d *Daemon) sinks() ([]pipeline.Sink, error) {
	x, err := outputs.Build(d.cfg.Exporters, d.outputOptions())
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.x = x
	d.mu.Unlock()
	return []pipeline.Sink{daemonSink{d}}, nil
}

// daemonSink is the daemon as the pipeline's sink: add, and flush at
// each periodic look.
type daemonSink struct{ d *Daemon }

func (s daemonSink) Add(r *correlate.Request) error { return s.d.add(r) }

func (s daemonSink) Flush() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.d.x.Flush()
}

func (d *Daemon) outputOptions() outputs.Options {
	return outputs.Options{Log: d.log, Version: d.opts.Version, Stderr: d.opts.Stderr, Getenv: d.opts.Getenv}
}

// add hands a request to the exporters and the running snapshots.
func (d *Daemon) add(r *correlate.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.taps.add(r)
	err := d.x.Add(r) // names the service first
	d.taps.addLive(r)
	d.recent.Add(r)
	d.live.Add(r)
	return err
}

// stop waits for the engine's last requests (it was told to stop), then
// flushes the exporters within otlpStopBudget of stopAt while the Go
// probes go, and says what was lost.
func (d *Daemon) stop(stopAt time.Time) error {
	eng := d.eng
	err := eng.Wait()
	d.taps.closeAll()
	x := d.exporters()
	// Go probes go (up to seconds with classic uprobes) while the
	// exporters flush.
	probesGone := make(chan struct{})
	go func() {
		eng.CloseProbes()
		close(probesGone)
	}()
	x.ShutdownBy(stopAt.Add(otlpStopBudget))
	// Exporters replaced by a reload still flushing get what is left.
	retired := make(chan struct{})
	go func() { d.retiring.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-time.After(time.Until(stopAt.Add(otlpStopBudget))):
	}
	<-probesGone
	eng.Report(d.opts.Stderr)
	x.PrintStats(d.opts.Stderr)
	eng.Close()
	return err
}

// wireMetrics points the self-metrics at the engine and x.
func (d *Daemon) wireMetrics(x *outputs.Exporters) {
	eng := d.eng
	x.SetMetricsSources(metrics.Sources{Kernel: eng.Counters, Read: eng.Requests, SinkErrors: eng.SinkErrors, Ports: eng.PortPressure})
}

// watchdog pings systemd while the engine answers.
func (d *Daemon) watchdog(ctx context.Context) {
	if d.opts.WatchdogEvery <= 0 {
		return
	}
	ticker.Run(ctx, d.opts.WatchdogEvery, func() {
		if _, err := d.eng.Counters(); err != nil {
			d.log.Error("engine does not answer: no watchdog ping", "error", err)
			return
		}
		d.notify.Watchdog()
	})
}

// exporterWatchEvery is how often watchExporters looks.
var exporterWatchEvery = 2 * time.Second

// watchExporters logs the OTLP exporter going down and coming back.
// Without an OTLP exporter it does not tick (a wake-up every
// exporterWatchEvery for nothing: ≈ 1/9 of an idle tracerd's wake-ups)
// but waits for a reload to bring one (xChanged).
func (d *Daemon) watchExporters(ctx context.Context) {
	var health otlpHealth
	for ctx.Err() == nil {
		if _, _, ok := d.exporters().OTLP(); !ok {
			select {
			case <-ctx.Done():
			case <-d.xChanged:
			}
			continue
		}
		tctx, stop := context.WithCancel(ctx)
		ticker.Run(tctx, exporterWatchEvery, func() {
			x := d.exporters()
			endpoint, st, ok := x.OTLP()
			if !ok {
				stop() // back to waiting for a reload
				return
			}
			switch change, failed := health.next(x, st); change {
			case wentDown:
				d.log.Warn("exporter down", "exporter", "otlp", "endpoint", endpoint, "failed_exports", failed)
			case cameBack:
				d.log.Info("exporter up", "exporter", "otlp", "endpoint", endpoint)
			}
		})
		stop()
	}
}

// otlpHealth follows the OTLP exporter from one look to the next: down
// when exports failed and no span went out since the last look, up
// again once spans go out.
type otlpHealth struct {
	x    *outputs.Exporters // whose counts prev are: a reload replaces them
	prev export.OTLPStats
	down bool
}

type healthChange int

const (
	unchanged healthChange = iota
	wentDown
	cameBack
)

// next takes a look at x's counts st; failed is the exports that failed
// since the last look.
func (h *otlpHealth) next(x *outputs.Exporters, st export.OTLPStats) (change healthChange, failed int64) {
	prev, same := h.prev, h.x == x
	h.x, h.prev = x, st
	if !same {
		h.down = false
		return unchanged, 0
	}
	switch {
	case !h.down && st.ExportErrors > prev.ExportErrors && st.SpansExported == prev.SpansExported:
		h.down = true
		return wentDown, st.ExportErrors - prev.ExportErrors
	case h.down && st.SpansExported > prev.SpansExported:
		h.down = false
		return cameBack, 0
	}
	return unchanged, 0
}

// errStarting: asked before the engine is attached.
var errStarting = errors.New("tracerd is starting: the engine is not attached yet")
