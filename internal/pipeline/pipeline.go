// Package pipeline runs a tracing session: it reads records from the
// kernel engine, correlates them into Requests and hands each one to the
// sinks, and at the end drains what is still in flight so nothing is lost.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// Sink consumes finished requests. Calls come from one goroutine.
type Sink interface {
	Add(r *correlate.Request) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *correlate.Request) error

func (f SinkFunc) Add(r *correlate.Request) error { return f(r) }

// Session owns a tracer for the duration of a run.
type Session struct {
	tracer   *loader.Tracer
	corr     *correlate.Correlator
	sinks    []Sink
	requests atomic.Int64
	sinkErrs atomic.Int64
	lastErr  atomic.Value
	onProc   func(*loader.ProcNote)
	gm       *goprobe.Manager
	drained  atomic.Int64
	idle     time.Duration // the kernel engine's idle timeout
	log      *slog.Logger
}

// SetLogger sets where the session logs (default: slog's default).
func (s *Session) SetLogger(l *slog.Logger) { s.log = l }

// Drained is the number of in-flight requests drained at stop (records
// the kernel did not count as written to the ring buffer).
func (s *Session) Drained() int64 { return s.drained.Load() }

// SetGo makes the session Go-aware: process notes attach and detach
// probes, Go events feed the rate bound, calibration and the correlator.
func (s *Session) SetGo(gm *goprobe.Manager) {
	s.gm = gm
	s.onProc = func(n *loader.ProcNote) {
		switch loader.TracerdProcWhat(n.What) {
		case loader.TracerdProcWhatPROC_TRACED:
			gm.Enqueue(n.Pid, goprobe.AttachIfNew)
		case loader.TracerdProcWhatPROC_EXEC:
			gm.Enqueue(n.Pid, goprobe.Reattach)
		case loader.TracerdProcWhatPROC_EXIT:
			gm.Enqueue(n.Pid, goprobe.Remove)
		}
	}
}

// applyGoUpdates hands probe changes to the correlator (its goroutine).
func (s *Session) applyGoUpdates() {
	if s.gm == nil {
		return
	}
	for {
		select {
		case u := <-s.gm.Updates():
			s.corr.SetGoProbes(u.PID, u.Probes, u.OK)
			for _, r := range s.corr.Released() {
				s.emit(&r)
			}
		default:
			return
		}
	}
}

// New wraps an opened tracer whose idle timeout is idle. goRetain is how
// long Go events wait to be joined with the kernel's record of their
// request (more than the idle timeout).
func New(t *loader.Tracer, idle, goRetain time.Duration, sinks ...Sink) *Session {
	return &Session{tracer: t, corr: correlate.New(goRetain), sinks: sinks, idle: idle, log: slog.Default()}
}

// OnProc is called (from the reading goroutine) for process lifecycle
// notes; Go probes attach and detach there.
func (s *Session) OnProc(fn func(note *loader.ProcNote)) { s.onProc = fn }

// Correlator gives access to the correlator from OnProc callbacks.
func (s *Session) Correlator() *correlate.Correlator { return s.corr }

// Requests is the number of requests handed to the sinks so far.
func (s *Session) Requests() int64 { return s.requests.Load() }

// SinkErrors is the number of failed sink calls; LastSinkError the last one.
func (s *Session) SinkErrors() int64 { return s.sinkErrs.Load() }

func (s *Session) dispatch(ev *loader.Event) {
	// Probe changes first: a record is judged by what probes its
	// process had (held for its ServeHTTP only once they were all on).
	s.applyGoUpdates()
	switch ev.Kind {
	case loader.KindRequest:
		if r, ok := s.corr.Request(&ev.Request); ok {
			s.emit(&r)
		}
	case loader.KindGo:
		if s.gm != nil {
			if correlate.GoFunc(ev.Go.Func) == correlate.GoCalibrate {
				s.gm.CalibrationSample(&ev.Go)
				return
			}
			s.gm.Count(ev.Go.Pid, correlate.GoFunc(ev.Go.Func))
		}
		s.corr.AddGo(&ev.Go)
		for _, r := range s.corr.Released() {
			s.emit(&r)
		}
	case loader.KindProc:
		if s.onProc != nil {
			s.onProc(&ev.Proc)
		}
	}
}

// tick runs the session's periodic work: probe updates, the Go probes'
// rate bound (once a second), expired Go-only requests.
func (s *Session) tick(lastEnforce *time.Time) {
	s.applyGoUpdates()
	if s.gm != nil && time.Since(*lastEnforce) >= time.Second {
		s.gm.Enforce()
		*lastEnforce = time.Now()
	}
	s.flushStreams(false)
}

// flushStreams emits Go-only requests (HTTP/2 streams, gRPC calls) and
// held kernel records whose join horizon passed.
func (s *Session) flushStreams(all bool) {
	for _, r := range s.corr.Streams(time.Now().UnixNano(), all) {
		s.emit(&r)
	}
}

func (s *Session) emit(r *correlate.Request) {
	for _, sink := range s.sinks {
		if err := sink.Add(r); err != nil {
			s.sinkErrs.Add(1)
			s.lastErr.Store(err)
		}
	}
	s.requests.Add(1)
}

// sweepIdle ends requests of connections quiet for the idle timeout,
// every loader.IdleSweepEvery, until ctx is done (then Drain takes what
// is left). A failing sweep is logged once: quiet requests then end
// with their connection's next event instead.
func (s *Session) sweepIdle(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(loader.IdleSweepEvery(s.idle))
	defer t.Stop()
	logged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.tracer.SweepIdle(); err != nil && !logged {
				s.log.Warn("idle sweep failed: quiet keep-alive requests end with their next request or the close", "error", err)
				logged = true
			}
		}
	}
}

// pollEvery bounds how long the reader blocks before it looks at
// whether the session is stopping (the reader's lock forbids changing
// its deadline from another goroutine while it blocks).
const pollEvery = 100 * time.Millisecond

// Run reads until ctx is done, then detaches the hooks, reads what the
// ring buffer still holds and drains requests in progress.
func (s *Session) Run(ctx context.Context) error {
	var stopping atomic.Bool
	done := make(chan error, 1)
	go func() {
		var ev loader.Event
		s.tracer.SetDeadline(time.Now().Add(pollEvery))
		lastFlush, lastEnforce := time.Now(), time.Now()
		for n := 0; ; n++ {
			err := s.tracer.Read(&ev)
			switch {
			case err == nil:
				s.dispatch(&ev)
				// Under steady load reads never time out: look at the
				// clock now and then.
				if n%256 == 0 && time.Since(lastFlush) > pollEvery {
					s.tick(&lastEnforce)
					lastFlush = time.Now()
				}
			case errors.Is(err, os.ErrDeadlineExceeded):
				if stopping.Load() {
					done <- nil // hooks detached and buffer empty
					return
				}
				s.tick(&lastEnforce)
				s.tracer.SetDeadline(time.Now().Add(pollEvery))
			default:
				done <- fmt.Errorf("reading records: %w", err)
				return
			}
		}
	}()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go s.sweepIdle(sweepCtx, sweepDone)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-done:
	}
	stopSweep()
	<-sweepDone
	detachErr := s.tracer.Detach()
	if runErr == nil {
		stopping.Store(true)
		runErr = <-done
	}
	s.applyGoUpdates()
	drainErr := s.tracer.Drain(func(rec *loader.Record) {
		s.drained.Add(1)
		if r, ok := s.corr.Request(rec); ok {
			s.emit(&r)
		}
	})
	s.flushStreams(true)
	return errors.Join(runErr, detachErr, drainErr)
}
