package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/pipeline"
)

// tracing is a started session: kernel engine, Go probes, pipeline.
type tracing struct {
	tracer *loader.Tracer
	sess   *pipeline.Session
	gm     *goprobe.Manager
	done   chan error
}

// startTracing checks privileges, loads and attaches, starts reading,
// attaches Go probes to the selected processes that already run, and
// announces on stderr that tracing has started (scripts wait for
// "tracing"). ctx ends the session; wait() returns its error.
//
// openSinks runs once the kernel engine is loaded and attached, so that
// no output is created or truncated by a start that fails.
func startTracing(ctx context.Context, cfg loader.Config, goOpts goOptions, openSinks func() ([]pipeline.Sink, error)) (*tracing, error) {
	goAware := goOpts.Enabled
	if err := cfg.Targets.Validate(); err != nil {
		return nil, usageError{err}
	}
	if err := checkPrivileges(goAware); err != nil {
		return nil, err
	}
	log := newLogger()
	cfg.Logger = log
	// TRACERD_CLASSIC_UPROBES=1: no uprobe_multi links (for its developers).
	cfg.ClassicUprobes = os.Getenv("TRACERD_CLASSIC_UPROBES") == "1"
	t, err := loader.Open(cfg)
	if err != nil {
		return nil, err
	}
	debug.FreeOSMemory() // the kernel BTF parsed for loading
	sinks, err := openSinks()
	if err != nil {
		t.Close()
		return nil, err
	}
	tr := &tracing{tracer: t, done: make(chan error, 1)}
	// Go events wait this long for their request's kernel record, which
	// comes when the request ends (at worst the idle timeout later).
	tr.sess = pipeline.New(t, cfg.IdleTimeout, cfg.IdleTimeout+2*time.Second, sinks...)
	tr.sess.SetLogger(log)
	if goAware {
		tr.gm = goprobe.New(t, log)
		tr.gm.SetMaxCallsPerSecond(goOpts.MaxCallsPerSecond)
		tr.sess.SetGo(tr.gm)
	}
	go func() { tr.done <- tr.sess.Run(ctx) }()

	if tr.gm != nil {
		// Calibration runs in the background: until it ends, spans use
		// the default probe cost.
		go func() {
			if err := tr.gm.StartCalibration(200); err != nil {
				log.Warn("uprobe cost calibration failed: using the default", "error", err, "cost_ns", goprobe.DefaultProbeCostNs)
			}
		}()
		for _, pid := range runningTargets(cfg.Targets) {
			tr.gm.AttachNow(pid)
		}
		debug.FreeOSMemory() // binary inspection's garbage
	}
	ok := 0
	for _, h := range t.Hooks {
		if h.OK {
			ok++
		}
	}
	goNote := "Go probes off"
	if tr.gm != nil {
		goNote = fmt.Sprintf("Go probes on %d processes", len(tr.gm.Attached()))
	}
	fmt.Fprintf(os.Stderr, "tracerd: tracing %s (%d/%d hooks attached; %s)\n", describeTargets(cfg.Targets), ok, len(t.Hooks), goNote)
	return tr, nil
}

// wait returns when the session ended (ctx done and everything drained).
func (tr *tracing) wait() error { return <-tr.done }

// close removes Go probes and the kernel engine.
func (tr *tracing) close() {
	if tr.gm != nil {
		tr.gm.Close()
	}
	tr.tracer.Close()
}

func describeTargets(t loader.Targets) string {
	if t.Empty() {
		return "every accepted TCP connection on this host"
	}
	s := ""
	add := func(kind string, v any) {
		if s != "" {
			s += " and "
		}
		s += fmt.Sprintf("%s %v", kind, v)
	}
	if len(t.PIDs) > 0 {
		add("pid", t.PIDs)
	}
	if len(t.Ports) > 0 {
		add("port", t.Ports)
	}
	if len(t.Comms) > 0 {
		add("comm", t.Comms)
	}
	if len(t.Cgroups) > 0 {
		add("cgroup", t.Cgroups)
	}
	return s
}

// printCounters says what, if anything, was lost. Records count those
// read from the ring buffer plus those drained in flight at stop.
func printCounters(w *os.File, t *loader.Tracer, sinkErrors int64, drained ...int64) {
	c, err := t.Counters()
	if err != nil {
		fmt.Fprintln(w, "tracerd: reading counters:", err)
		return
	}
	var d int64
	for _, v := range drained {
		d += v
	}
	fmt.Fprintf(w, "\nkernel: %d connections traced, %d records (%d drained in flight at stop); lost: %d (ring buffer full), %d connections untraced (map full, %d/%d in use), %d threads untimed (map full), %d idle sweeps failed, %d Go events lost, %d output errors\n",
		c.ConnsTraced, c.Records+uint64(d), d, c.RingbufDrops, c.ConnMapFull, c.ConnsOpen, c.ConnsMax, c.TaskMapFull, c.IdleSweepFails, c.GoDrops, sinkErrors)
}
