package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/metrics"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/sdnotify"
)

// logFormat is "text" or "json" (log.format, --log-format).
var logFormat = "text"

// newLogger is tracerd's structured log on stderr: one line per state
// change (hooks, targets, exporters), never one per request.
func newLogger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevel}
	if logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// SIGTERM → exit must stay under 5 s (the bound; systemd's
// default TimeoutStopSec is far above it) even with a collector that
// accepts connections and never answers. The OTLP flush may run until
// otlpStopBudget after the signal (plenty for a collector that answers);
// the exporter then takes up to 1 s more to abandon the export in
// flight and stop its client, and the counters and the detach follow:
// ≈ 2 s with a silent collector here, 3.2 s at worst, not 5.
const otlpStopBudget = 2 * time.Second

// stopBudget bounds the flush of exporters replaced by a reload.
const stopBudget = 4 * time.Second

// daemon is a running `tracerd run`: tracing, exporters, control
// socket, systemd notifications, reload on SIGHUP.
type daemon struct {
	args   []string
	opts   runOptions
	log    *slog.Logger
	notify *sdnotify.Notifier
	start  time.Time

	cfg      config.Config // effective; changed by reload (main goroutine, under mu)
	cur      atomic.Pointer[tracing]
	trCancel context.CancelFunc
	reloads  atomic.Int64

	// mu serializes sink calls (two tracers run during a swap) and the
	// exporters' replacement.
	mu   sync.Mutex
	x    *exporters
	sink pipeline.Sink
	taps taps
	// retiring counts exporters replaced by a reload, still flushing.
	retiring sync.WaitGroup
}

func runDaemon(cfg config.Config, args []string, opts runOptions) error {
	logFormat = cfg.Log.Format
	log := newLogger()
	d := &daemon{args: args, opts: opts, log: log, cfg: cfg, start: time.Now()}
	notify, err := sdnotify.New()
	if err != nil {
		log.Warn("systemd notification socket unusable", "error", err)
	}
	d.notify = notify
	defer notify.Close()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(sigs)
	defer signal.Stop(hup)

	// The exporters (and the --json file) are made once the engine is
	// attached (d.sinks): a start that fails creates no output. Say early
	// whether the file can be written.
	if j := cfg.Exporters.JSON; j != "" && j != "-" {
		if err := checkWritable(j); err != nil {
			return usageError{fmt.Errorf("--json: %w", err)}
		}
	}
	// The socket exists before tracing is announced; it answers
	// "starting" until the engine is attached.
	ctl, err := d.serveControl()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := startTracing(ctx, cfg.LoaderConfig(), goOptions{Enabled: cfg.Engine.Go, MaxCallsPerSecond: cfg.Engine.GoMaxCallsPerSecond}, d.sinks)
	if err != nil {
		cancel()
		if ctl != nil {
			ctl.Close()
		}
		if d.x != nil {
			d.x.shutdown()
		}
		return err
	}
	d.cur.Store(tr)
	d.trCancel = cancel
	d.wireMetrics(d.x, true)
	log.Info("tracing started", "targets", describeTargets(cfg.Targets), "config", opts.configPath)
	notify.Ready("tracing " + describeTargets(cfg.Targets))
	watchCtx, endWatch := context.WithCancel(context.Background())
	defer endWatch()
	go d.watchdog(watchCtx)
	go d.watchExporters(watchCtx)

	var runErr error
loop:
	for {
		select {
		case <-sigs:
			break loop
		case <-hup:
			d.reload()
		case runErr = <-d.cur.Load().done:
			d.cur.Load().done <- runErr // stop() waits for it too
			log.Error("tracing failed", "error", runErr)
			break loop
		}
	}
	stopAt := time.Now()
	notify.Stopping()
	if ctl != nil {
		ctl.Close()
	}
	endWatch()
	err = d.stop(stopAt)
	log.Info("stopped", "took", time.Since(stopAt).Round(time.Millisecond))
	return errors.Join(runErr, err)
}

// add hands a request to the exporters and the control socket's snapshots.
func (d *daemon) add(r *correlate.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.taps.add(r)
	return d.sink.Add(r)
}

// stop detaches every hook, drains requests in flight, flushes the
// exporters, all within stopBudget of stopAt.
func (d *daemon) stop(stopAt time.Time) error {
	tr := d.cur.Load()
	d.trCancel()
	err := tr.wait()
	d.taps.closeAll()
	d.mu.Lock()
	x := d.x
	d.mu.Unlock()
	// Go probes go (up to seconds with classic uprobes) while the
	// exporters flush.
	probesGone := make(chan struct{})
	go func() {
		if tr.gm != nil {
			tr.gm.Close()
		}
		close(probesGone)
	}()
	x.shutdownBy(stopAt.Add(otlpStopBudget))
	// Exporters replaced by a reload still flushing get what is left.
	retired := make(chan struct{})
	go func() { d.retiring.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-time.After(time.Until(stopAt.Add(otlpStopBudget))):
	}
	<-probesGone
	printCounters(os.Stderr, tr.tracer, tr.sess.SinkErrors())
	x.printStats(os.Stderr)
	tr.tracer.Close()
	return err
}

// wireMetrics points the self-metrics at the current tracer and
// exporters (and starts serving /metrics the first time).
func (d *daemon) wireMetrics(x *exporters, first bool) {
	if x.server == nil {
		return
	}
	src := metrics.Sources{
		Kernel:     func() (loader.Counters, error) { return d.cur.Load().tracer.Counters() },
		Read:       func() int64 { return d.cur.Load().sess.Requests() },
		SinkErrors: func() int64 { return d.cur.Load().sess.SinkErrors() },
	}
	if x.otlp != nil {
		src.OTLP = x.otlp.Stats
	}
	x.self.SetSources(src)
	if first {
		x.served = make(chan error, 1)
		go func() { x.served <- x.server.Serve() }()
	}
}

// watchdog pings systemd while the engine answers.
func (d *daemon) watchdog(ctx context.Context) {
	every := sdnotify.WatchdogInterval()
	if every <= 0 || d.notify == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.cur.Load().tracer.Counters(); err != nil {
				d.log.Error("engine does not answer: no watchdog ping", "error", err)
				continue
			}
			d.notify.Watchdog()
		}
	}
}

// watchExporters logs the OTLP exporter going down and coming back.
func (d *daemon) watchExporters(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last export.OTLPStats
	var lastX *exporters
	up := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		x := d.x
		d.mu.Unlock()
		if x.otlp == nil {
			continue
		}
		st := x.otlp.Stats()
		if x != lastX {
			lastX, last, up = x, st, true
			continue
		}
		switch {
		case up && st.ExportErrors > last.ExportErrors && st.SpansExported == last.SpansExported:
			up = false
			d.log.Warn("exporter down", "exporter", "otlp", "endpoint", x.otlpSet.Endpoint(), "failed_exports", st.ExportErrors-last.ExportErrors)
		case !up && st.SpansExported > last.SpansExported:
			up = true
			d.log.Info("exporter up", "exporter", "otlp", "endpoint", x.otlpSet.Endpoint())
		}
		last = st
	}
}

// reload re-reads the file (and re-applies the command line) on SIGHUP:
// exporters are rebuilt and swapped, targets change in the kernel maps
// in place (the kinds of selection too: one engine throughout, so no
// connection is traced twice and counters go on). log.level applies at
// once; engine limits, the metrics address, log.format and the control
// socket need a restart.
func (d *daemon) reload() {
	d.notify.Reloading()
	n := d.reloads.Add(1)
	cfg, _, err := runConfig(d.args)
	if err != nil {
		d.log.Error("reload failed: keeping the running configuration", "error", err)
		d.notify.Ready("reload failed: " + err.Error())
		return
	}
	var restart []string
	if !reflect.DeepEqual(cfg.Engine, d.cfg.Engine) {
		restart = append(restart, "engine")
	}
	if cfg.Exporters.MetricsAddr != d.cfg.Exporters.MetricsAddr {
		restart = append(restart, "exporters.metrics_addr")
	}
	if cfg.Control != d.cfg.Control {
		restart = append(restart, "control")
	}
	if cfg.Log.Format != d.cfg.Log.Format {
		restart = append(restart, "log.format")
	}
	if len(restart) > 0 {
		d.log.Warn("reload: these changes need a restart and are not applied", "keys", restart)
	}
	// log.level applies at once (runConfig set it); the rest waits.
	cfg.Engine, cfg.Control, cfg.Log.Format = d.cfg.Engine, d.cfg.Control, d.cfg.Log.Format
	cfg.Exporters.MetricsAddr = d.cfg.Exporters.MetricsAddr

	if !reflect.DeepEqual(cfg.Exporters, d.cfg.Exporters) {
		if err := d.reloadExporters(cfg.Exporters); err != nil {
			d.log.Error("reload: exporters unchanged", "error", err)
			cfg.Exporters = d.cfg.Exporters
		}
	}
	if !reflect.DeepEqual(cfg.Targets, d.cfg.Targets) {
		if err := d.reloadTargets(cfg); err != nil {
			d.log.Error("reload: targets unchanged", "error", err)
			cfg.Targets = d.cfg.Targets
		}
	}
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	d.log.Info("reloaded", "reload", n, "targets", describeTargets(cfg.Targets))
	d.notify.Ready("tracing " + describeTargets(cfg.Targets))
}

func (d *daemon) reloadExporters(e config.Exporters) error {
	ef := exporterFlagsOf(e)
	ef.metricsAddr = "off" // the running /metrics server is kept
	nx, err := ef.build(d.log)
	if err != nil {
		return err
	}
	d.mu.Lock()
	ox := d.x
	nx.requests, nx.self, nx.server, nx.served = ox.requests, ox.self, ox.server, ox.served
	ox.requests, ox.self, ox.server = nil, nil, nil
	d.x, d.sink = nx, nx.sink()
	d.mu.Unlock()
	d.wireMetrics(nx, false)
	// The old exporters flush in the background: a collector that does
	// not answer must not hold the signals (SIGTERM) for seconds.
	d.retiring.Add(1)
	go func() {
		defer d.retiring.Done()
		ox.shutdownBy(time.Now().Add(stopBudget))
	}()
	d.log.Info("exporters replaced", "otlp", nx.otlp != nil, "json", e.JSON)
	return nil
}

func (d *daemon) reloadTargets(cfg config.Config) error {
	old := d.cfg.Targets
	tr := d.cur.Load()
	err := tr.tracer.SetTargets(cfg.Targets)
	if err == nil && tr.gm != nil {
		// Probes follow the new selection: off the processes it no longer
		// takes (as far as pid and comm tell), on the new ones.
		attached := map[uint32]bool{}
		for _, pid := range tr.gm.Attached() {
			attached[pid] = true
			if !stillSelected(cfg.Targets, pid) {
				tr.gm.Enqueue(pid, goprobe.Remove)
			}
		}
		for _, pid := range runningTargets(cfg.Targets) {
			if !attached[pid] && stillSelected(cfg.Targets, pid) {
				tr.gm.AttachNow(pid)
			}
		}
	}
	if err != nil {
		return err
	}
	logTargetChanges(d.log, old, cfg.Targets)
	return nil
}

// logTargetChanges writes one line per target attached or detached.
func logTargetChanges(log *slog.Logger, old, cur loader.Targets) {
	diff := func(kind string, a, b []string) {
		for _, v := range b {
			if !slices.Contains(a, v) {
				log.Info("target attached", "kind", kind, "value", v)
			}
		}
		for _, v := range a {
			if !slices.Contains(b, v) {
				log.Info("target detached", "kind", kind, "value", v)
			}
		}
	}
	diff("pid", strs(old.PIDs), strs(cur.PIDs))
	diff("port", strs(old.Ports), strs(cur.Ports))
	diff("comm", old.Comms, cur.Comms)
	diff("cgroup", old.Cgroups, cur.Cgroups)
}

func strs[T uint16 | uint32](v []T) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	return out
}

// sinks is the daemon's one sink: the exporters' fan-out, built the
// first time (once the first engine is attached).
func (d *daemon) sinks() ([]pipeline.Sink, error) {
	if d.x == nil {
		x, err := exporterFlagsOf(d.cfg.Exporters).build(d.log)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.x, d.sink = x, x.sink()
		d.mu.Unlock()
	}
	return []pipeline.Sink{pipeline.SinkFunc(d.add)}, nil
}
