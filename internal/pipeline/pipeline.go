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

// Source is what a session reads and controls: the kernel engine
// (*loader.Tracer).
type Source interface {
	// Read blocks for the next event, until the deadline set last
	// (then os.ErrDeadlineExceeded).
	Read(ev *loader.Event) error
	SetDeadline(t time.Time)
	// SweepIdle ends the requests of connections quiet for the idle timeout.
	SweepIdle() error
	// Detach stops new records; Read still returns those already made.
	Detach() error
	// Drain hands over the requests in progress (END_FLUSH).
	Drain(fn func(*loader.Record)) error
}

// goProbes is what a session needs of the Go probes (*goprobe.Manager).
type goProbes interface {
	Updates() <-chan goprobe.Update
	Enqueue(pid uint32, what goprobe.Job)
	Observe(ev *loader.GoEvent) bool
	Enforce()
}

// Session owns a source for the duration of a run.
type Session struct {
	src      Source
	corr     *correlate.Correlator
	sinks    []Sink
	requests atomic.Int64
	sinkErrs atomic.Int64
	gm       goProbes // nil: not Go-aware
	drained  atomic.Int64
	idle     time.Duration // the kernel engine's idle timeout
	log      *slog.Logger
}

// New wraps an opened source whose idle timeout is idle. goRetain is how
// long Go events wait to be joined with the kernel's record of their
// request (more than the idle timeout).
func New(src Source, idle, goRetain time.Duration, sinks ...Sink) *Session {
	s := &Session{src: src, sinks: sinks, idle: idle, log: slog.Default()}
	s.corr = correlate.New(goRetain, s.emit)
	return s
}

// SetLogger sets where the session logs (default: slog's default).
func (s *Session) SetLogger(l *slog.Logger) { s.log = l }

// SetGo makes the session Go-aware: process notes attach and detach
// probes, Go events feed the rate bound, calibration and the correlator.
func (s *Session) SetGo(gm *goprobe.Manager) {
	if gm != nil { // a nil *Manager in s.gm would not be nil
		s.gm = gm
	}
}

// Drained is the number of in-flight requests drained at stop (records
// the kernel did not count as written to the ring buffer).
func (s *Session) Drained() int64 { return s.drained.Load() }

// Requests is the number of requests handed to the sinks so far.
func (s *Session) Requests() int64 { return s.requests.Load() }

// SinkErrors is the number of failed sink calls.
func (s *Session) SinkErrors() int64 { return s.sinkErrs.Load() }

// emit hands a finished request to every sink: the correlator's one way out.
func (s *Session) emit(r *correlate.Request) {
	for _, sink := range s.sinks {
		if err := sink.Add(r); err != nil {
			s.sinkErrs.Add(1)
		}
	}
	s.requests.Add(1)
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
		default:
			return
		}
	}
}

// procJobs says what a process note asks of its Go probes.
var procJobs = map[loader.TracerdProcWhat]goprobe.Job{
	loader.TracerdProcWhatPROC_TRACED: goprobe.AttachIfNew,
	loader.TracerdProcWhatPROC_EXEC:   goprobe.Reattach,
	loader.TracerdProcWhatPROC_EXIT:   goprobe.Remove,
}

func (s *Session) dispatch(ev *loader.Event) {
	// Probe changes first: a record is judged by what probes its
	// process had (held for its ServeHTTP only once they were all on).
	s.applyGoUpdates()
	switch ev.Kind {
	case loader.KindRequest:
		s.corr.AddRecord(&ev.Request)
	case loader.KindGo:
		if s.gm == nil || s.gm.Observe(&ev.Go) {
			s.corr.AddGo(&ev.Go)
		}
	case loader.KindProc:
		if job, ok := procJobs[loader.TracerdProcWhat(ev.Proc.What)]; ok && s.gm != nil {
			s.gm.Enqueue(ev.Proc.Pid, job)
		}
	}
}

// tick runs the session's periodic work: probe updates, the Go probes'
// rate bound (once a second), requests whose join horizon passed.
func (s *Session) tick(lastEnforce *time.Time) {
	s.applyGoUpdates()
	if s.gm != nil && time.Since(*lastEnforce) >= time.Second {
		s.gm.Enforce()
		*lastEnforce = time.Now()
	}
	s.corr.Expire(time.Now().UnixNano())
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
			if err := s.src.SweepIdle(); err != nil && !logged {
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
		s.src.SetDeadline(time.Now().Add(pollEvery))
		lastFlush, lastEnforce := time.Now(), time.Now()
		for n := 0; ; n++ {
			err := s.src.Read(&ev)
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
				s.src.SetDeadline(time.Now().Add(pollEvery))
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
	detachErr := s.src.Detach()
	if runErr == nil {
		stopping.Store(true)
		runErr = <-done
	}
	s.applyGoUpdates()
	drainErr := s.src.Drain(func(rec *loader.Record) {
		s.drained.Add(1)
		s.corr.AddRecord(rec)
	})
	s.corr.Flush(time.Now().UnixNano())
	return errors.Join(runErr, detachErr, drainErr)
}
