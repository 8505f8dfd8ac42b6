// Package engine runs a tracing session: the kernel engine loaded and
// attached, the pipeline reading it into the outputs, and the Go probes
// of the selected processes. `tracerd snapshot` runs one for a while,
// the daemon (internal/daemon) until it stops.
package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/findings"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/portpressure"
	"github.com/tracerd/tracerd/internal/privileges"
	"github.com/tracerd/tracerd/internal/targets"
)

// Session is a started tracing session.
type Session struct {
	tracer *loader.Tracer
	sess   *pipeline.Session
	gm     *goprobe.Manager // nil without Go awareness
	ports  *portpressure.Sampler
	// portsOn starts the sampler at the first PortPressure: a snapshot
	// never asks, `tracerd run` does at its first status or scrape.
	portsOn sync.Once
	ctx     context.Context
	done    chan struct{} // closed when the session ended
	err     error         // why it ended; set before done is closed
}

// Start checks the selection and the privileges, loads and attaches
// the kernel engine, starts reading, and attaches Go probes to the
// selected processes that already run. ctx ends the session; Wait
// returns its error.
//
// openSinks runs once the kernel engine is loaded and attached, so that
// no output is created or truncated by a start that fails.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger, openSinks func() ([]pipeline.Sink, error)) (*Session, error) {
	lc := cfg.LoaderConfig()
	if err := lc.Targets.Validate(); err != nil {
		return nil, config.Usage(err)
	}
	if err := privileges.Check(cfg.Engine.Go); err != nil {
		return nil, err
	}
	lc.Logger = log
	// TRACERD_CLASSIC_UPROBES=1: no uprobe_multi links (for its developers).
	lc.ClassicUprobes = os.Getenv("TRACERD_CLASSIC_UPROBES") == "1"
	t, err := loader.Open(lc)
	if err != nil {
		return nil, err
	}
	debug.FreeOSMemory() // the kernel BTF parsed for loading
	sinks, err := openSinks()
	if err != nil {
		t.Close()
		return nil, err
	}
	if f := cfg.Findings; f.Enabled {
		// First: the other sinks see the findings. The sampler reads the
		// host's context once a second, for the processes findings name.
		smp := findings.NewSampler()
		go smp.Run(ctx, time.Second)
		an := findings.New(findings.Config{MinLost: f.MinLost, MinSharePct: f.MinSharePct}, smp)
		sinks = append([]pipeline.Sink{an}, sinks...)
	}
	s := &Session{tracer: t, done: make(chan struct{})}
	s.ports = portpressure.New(portpressure.Sources{PIDs: t.TracedPIDs, Failures: t.ConnectFailures})
	s.ctx = ctx
	// Go events wait this long for their request's kernel record, which
	// comes when the request ends (at worst the idle timeout later).
	s.sess = pipeline.New(t, lc.IdleTimeout, lc.IdleTimeout+2*time.Second, sinks...)
	s.sess.SetLogger(log)
	if cfg.Engine.Go {
		s.gm = goprobe.New(t, log)
		s.gm.SetMaxCallsPerSecond(cfg.Engine.GoMaxCallsPerSecond)
		s.sess.SetGo(s.gm)
	}
	go func() {
		s.err = s.sess.Run(ctx)
		close(s.done)
	}()

	if s.gm != nil {
		// Calibration runs in the background: until it ends, spans use
		// the default probe cost.
		go func() {
			if err := s.gm.StartCalibration(200); err != nil {
				log.Warn("uprobe cost calibration failed: using the default", "error", err, "cost_ns", goprobe.DefaultProbeCostNs)
			}
		}()
		for _, pid := range lc.Targets.Running() {
			s.gm.AttachNow(pid)
		}
		debug.FreeOSMemory() // binary inspection's garbage
	}
	return s, nil
}

// PortPressure is the last sample of the traced processes' port
// pressure (docs/ports.md). Sampling starts at the first call (empty
// until its first sample) and goes on once a second until the session
// ends.
func (s *Session) PortPressure() *portpressure.Report {
	s.portsOn.Do(func() { go s.ports.Run(s.ctx, time.Second) })
	return s.ports.Load()
}

// Started says what is traced, for the line scripts wait for
// ("tracerd: tracing ...").
func (s *Session) Started() string {
	ok, pending := 0, 0
	hooks := s.tracer.HookStatuses()
	for _, h := range hooks {
		switch {
		case h.Pending:
			pending++
		case h.OK:
			ok++
		}
	}
	goNote := "Go probes off"
	if s.gm != nil {
		goNote = fmt.Sprintf("Go probes on %d processes", len(s.gm.Attached()))
	}
	if pending > 0 {
		goNote = fmt.Sprintf("%d scheduler hooks wait for a CPU quota; %s", pending, goNote)
	}
	return fmt.Sprintf("tracing %s (%d/%d hooks attached; %s)", s.tracer.Targets(), ok, len(hooks), goNote)
}

// Done is closed when the session ended: its context is done and
// everything drained, or reading failed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Wait returns when the session ended, with the error that ended it.
func (s *Session) Wait() error {
	<-s.done
	return s.err
}

// Hooks are the kernel hooks, attached or not.
func (s *Session) Hooks() []loader.HookStatus { return s.tracer.HookStatuses() }

// Counters are the kernel engine's counters.
func (s *Session) Counters() (loader.Counters, error) { return s.tracer.Counters() }

// Requests counts the requests handed to the sinks.
func (s *Session) Requests() int64 { return s.sess.Requests() }

// SinkErrors counts the requests a sink failed to take.
func (s *Session) SinkErrors() int64 { return s.sess.SinkErrors() }

// Targets is the selection traced now.
func (s *Session) Targets() targets.Targets { return s.tracer.Targets() }

// SetTargets changes the selection in the kernel maps in place; Go
// probes follow it: off the processes it no longer takes (as far as pid
// and name tell), on the new ones.
func (s *Session) SetTargets(t targets.Targets) error {
	if err := s.tracer.SetTargets(t); err != nil {
		return err
	}
	if s.gm == nil {
		return nil
	}
	attached := map[uint32]bool{}
	for _, pid := range s.gm.Attached() {
		attached[pid] = true
		if !t.StillSelected(pid) {
			s.gm.Enqueue(pid, goprobe.Remove)
		}
	}
	for _, pid := range t.Running() {
		if !attached[pid] && t.StillSelected(pid) {
			s.gm.AttachNow(pid)
		}
	}
	return nil
}

// GoProbes are the probed processes and the kind of links that hold
// their probes ("uprobe_multi" or "classic"); kind is "" without Go
// awareness.
func (s *Session) GoProbes() (kind string, procs []goprobe.ProcessState) {
	if s.gm == nil {
		return "", nil
	}
	kind = "classic"
	if s.tracer.UprobeMulti() {
		kind = "uprobe_multi"
	}
	return kind, s.gm.Processes()
}

// Report says what, if anything, was lost. Records count those read
// from the ring buffer plus those drained in flight at stop.
func (s *Session) Report(w io.Writer) {
	c, err := s.tracer.Counters()
	if err != nil {
		fmt.Fprintln(w, "tracerd: reading counters:", err)
		return
	}
	d := s.sess.Drained()
	fmt.Fprintf(w, "\nkernel: %d connections traced, %d records (%d drained in flight at stop); lost: %d (ring buffer full), %d connections untraced (map full, %d/%d in use), %d threads untimed (map full), %d idle sweeps failed, %d Go events lost, %d output errors\n",
		c.ConnsTraced, c.Records+uint64(d), d, c.RingbufDrops, c.ConnMapFull, c.ConnsOpen, c.ConnsMax, c.TaskMapFull, c.IdleSweepFails, c.GoDrops, s.sess.SinkErrors())
}

// CloseProbes removes the Go probes (up to seconds with classic uprobes).
func (s *Session) CloseProbes() {
	if s.gm != nil {
		s.gm.Close()
	}
}

// Close removes the Go probes and the kernel engine.
func (s *Session) Close() {
	s.CloseProbes()
	s.tracer.Close()
}
