package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/tracerd/tracerd/internal/loader"
)

// openTracer checks privileges, loads and attaches, and announces on
// stderr that tracing has started (scripts wait for "tracing").
func openTracer(cfg loader.Config) (*loader.Tracer, error) {
	if err := cfg.Targets.Validate(); err != nil {
		return nil, usageError{err}
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t, err := loader.Open(cfg)
	if err != nil {
		return nil, err
	}
	ok := 0
	for _, h := range t.Hooks {
		if h.OK {
			ok++
		}
	}
	fmt.Fprintf(os.Stderr, "tracerd: tracing %s (%d/%d hooks attached)\n", describeTargets(cfg.Targets), ok, len(t.Hooks))
	return t, nil
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

// printCounters says what, if anything, was lost.
func printCounters(w *os.File, t *loader.Tracer, sinkErrors int64) {
	c, err := t.Counters()
	if err != nil {
		fmt.Fprintln(w, "tracerd: reading counters:", err)
		return
	}
	fmt.Fprintf(w, "\nkernel: %d connections traced, %d records; lost: %d (ring buffer full), %d connections untraced (map full, %d/%d in use), %d threads untimed (map full), %d idle timers failed, %d output errors\n",
		c.ConnsTraced, c.Records, c.RingbufDrops, c.ConnMapFull, c.ConnsOpen, c.ConnsMax, c.TaskMapFull, c.TimerFails, sinkErrors)
}
