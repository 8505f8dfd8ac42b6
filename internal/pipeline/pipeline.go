// Package pipeline runs a tracing session: it reads records from the
// kernel engine, correlates them into Requests and hands each one to the
// sinks, and at the end drains what is still in flight so nothing is lost.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Flusher is a sink that buffers what Add gets: the session calls Flush
// at each periodic look (PollEvery) that follows new requests, and at
// the end, so that a request reaches the sink's output within the bound
// of Run, with one write per look rather than one per request or per
// kernel wake-up.
type Flusher interface {
	Flush() error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *correlate.Request) error

func (f SinkFunc) Add(r *correlate.Request) error { return f(r) }

// Source is what a session reads and controls: the kernel engine
// (*loader.Tracer).
type Source interface {
	// Wait blocks until events may be ready (the kernel woke its
	// reader), the deadline passes or Wake is called.
	Wait(deadline time.Time) error
	// Wake makes a blocked Wait return; safe from any goroutine.
	Wake()
	// ReadBatch hands up to max waiting events to fn, in order (the
	// Event is reused), and says how many there were.
	ReadBatch(max int, fn func(*loader.Event)) (int, error)
	// SweepIdle ends the requests of connections quiet for the idle timeout.
	SweepIdle() error
	// Detach stops new records; Read still returns those already made.
	Detach() error
	// Drain hands over the requests in progress (END_FLUSH).
	Drain(fn func(*loader.Record)) error
}

// goProbes is what a session needs of the Go probes (*goprobe.Manager).
type goProbes interface {
	TakeUpdates() []goprobe.Update
	Enqueue(pid uint32, what goprobe.Job)
	Observe(ev *loader.GoEvent) bool
	Enforce()
}

// Session owns a source for the duration of a run.
type Session struct {
	src      Source
	corr     *correlate.Correlator
	sinks    []Sink
	flushers []Flusher // the sinks that buffer
	unsent   bool      // requests emitted since the last flush
	requests atomic.Int64
	sinkErrs atomic.Int64
	gm       goProbes // nil: not Go-aware
	// dispatchFn is s.dispatch, made once: a method value handed to
	// ReadBatch is a heap object each time it is made.
	dispatchFn func(*loader.Event)
	drained    atomic.Int64
	idle       time.Duration // the kernel engine's idle timeout
	// quietAfter: how long without an event before the session may be
	// quiet (a field for the tests).
	quietAfter time.Duration
	log        *slog.Logger
}

// New wraps an opened source whose idle timeout is idle. goRetain is how
// long Go events wait to be joined with the kernel's record of their
// request (more than the idle timeout).
func New(src Source, idle, goRetain time.Duration, sinks ...Sink) *Session {
	s := &Session{src: src, sinks: sinks, idle: idle, quietAfter: max(minQuietAfter, goRetain), log: slog.Default()}
	for _, sink := range sinks {
		if f, ok := sink.(Flusher); ok {
			s.flushers = append(s.flushers, f)
		}
	}
	s.corr = correlate.New(goRetain, s.emit)
	s.dispatchFn = s.dispatch
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
	s.unsent = true
	s.requests.Add(1)
}

// flush ends a period: buffering sinks write what they got.
func (s *Session) flush() {
	if !s.unsent {
		return
	}
	s.unsent = false
	for _, f := range s.flushers {
		if err := f.Flush(); err != nil {
			s.sinkErrs.Add(1)
		}
	}
}

// applyGoUpdates hands probe changes to the correlator (its goroutine).
func (s *Session) applyGoUpdates() {
	if s.gm == nil {
		return
	}
	for _, u := range s.gm.TakeUpdates() {
		s.corr.SetGoProbes(u.PID, u.Probes, u.OK)
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
	case loader.KindTLSWire:
		s.corr.AddTLSWire(&ev.TLSWire)
	case loader.KindProc:
		if loader.TracerdProcWhat(ev.Proc.What) == loader.TracerdProcWhatPROC_CALLS {
			s.corr.NoteCaller(ev.Proc.Pid)
		}
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

// PollEvery bounds how long records wait in the ring buffer: the kernel
// wakes the reader only once per so many records a CPU writes (up to
// 1/8 of the ring with every CPU there; loader's wakeupEvery), so
// the reader also looks every PollEvery, and ends the idle requests
// then (loader.IdleSweepEvery). The buffering sinks (JSON lines) are
// flushed at these periodic looks only, not at each kernel wake-up: a
// record read at a wake-up waits for the next periodic look, which
// comes within PollEvery of its being written, as the look that would
// have read it. A record reaches the sinks, flushed, within PollEvery of
// being written plus the time to process its batch (tens of ms at
// most): within 200 ms. Each look costs a wake-up (≈ 0.1 ms of CPU on a
// VM): an idle tracerd costs < 1 ms a second.
const PollEvery = 150 * time.Millisecond

// A quiet session looks less often. Quiet: no event read for quietAfter
// and the Go events' join horizon (goRetain: whatever the correlator
// held has come out by then), and the source's idle sweep waits for
// nothing (loader's Quiet: every request the kernel counted as
// answered has ended). Then:
//
//   - the source is asked to wake the reader at the next record
//     (WakeOnNextRecord), so a record after a quiet spell is read and
//     flushed at once (a look then); the session is busy again from
//     it;
//   - the looks, which read the kernel's count of answered requests,
//     come every quietPeriod: the idle timeout less a period, at most
//     maxQuietPeriod. A request answered after a look is seen answered
//     at the next, before its idle timeout can pass, and from then on
//     the session looks every period: it still ends within the idle
//     timeout plus a period of its last activity.
//
// With the default idle timeout (500 ms), an idle tracerd looks every
// 350 ms rather than every 150: 2.9 wake-ups a second rather than 6.7.
const (
	minQuietAfter  = time.Second
	maxQuietPeriod = time.Second
)

// quietPeriod is how often a quiet session looks (see minQuietAfter).
func quietPeriod(idle, period time.Duration) time.Duration {
	return min(max(idle-period, period), maxQuietPeriod)
}

// quietSource is a source that can tell a quiet spell (*loader.Tracer).
type quietSource interface {
	// Quiet says whether no answered request waits to be ended.
	Quiet() bool
	// WakeOnNextRecord makes the next record wake the reader.
	WakeOnNextRecord() error
}

// maxBatch is how many records ReadBatch takes at once; batchesPerLook
// bounds the batches between two looks at the clock and the sinks'
// flush, however fast records come.
const (
	maxBatch       = 1024
	batchesPerLook = 64
)

// Run reads until ctx is done, then detaches the hooks, reads what the
// ring buffer still holds and drains requests in progress.
//
// One goroutine does everything, in batches: it sleeps until the
// kernel wakes it or the next periodic work is due, processes every
// record waiting, and when the periodic work is due runs the idle sweep
// and the correlator's horizon and flushes the sinks. A quiet host
// costs one wake-up per period, a busy one a wake-up per batch and one
// flush (a write of the JSON lines) per period.
func (s *Session) Run(ctx context.Context) error {
	stopWaking := context.AfterFunc(ctx, s.src.Wake)
	defer stopWaking()
	period := min(PollEvery, loader.IdleSweepEvery(s.idle))
	qs, _ := s.src.(quietSource)
	now := time.Now()
	next, lastEnforce, lastEvent := now.Add(period), now, now
	quiet := false
	sweepLogged, quietLogged := false, false
	var runErr error
	for ctx.Err() == nil {
		if err := s.src.Wait(next); err != nil {
			runErr = fmt.Errorf("reading records: %w", err)
			break
		}
		n, err := s.readAll(batchesPerLook)
		if err != nil {
			runErr = err
			break
		}
		now := time.Now()
		if n > 0 {
			lastEvent = now
			if quiet {
				// Woken by the first record after a quiet spell: look
				// now, which flushes it, and at the busy pace from there.
				quiet = false
				next = now
			}
		}
		if !now.Before(next) {
			if err := s.src.SweepIdle(); err != nil && !sweepLogged {
				s.log.Warn("idle sweep failed: quiet keep-alive requests end with their next request or the close", "error", err)
				sweepLogged = true
			}
			// The sweep's records are in the ring now.
			n, err := s.readAll(batchesPerLook)
			if err != nil {
				runErr = err
				break
			}
			if n > 0 {
				lastEvent = now
			}
			s.tick(&lastEnforce)
			s.flush()
			wasQuiet := quiet
			quiet = qs != nil && n == 0 && now.Sub(lastEvent) >= s.quietAfter && qs.Quiet()
			if quiet && !wasQuiet {
				if err := qs.WakeOnNextRecord(); err != nil {
					quiet = false
					if !quietLogged {
						s.log.Warn("the reader cannot ask the kernel for a wake-up at the next record: it looks at the busy pace while idle", "error", err)
						quietLogged = true
					}
				}
			}
			next = now.Add(period)
			if quiet {
				next = now.Add(quietPeriod(s.idle, period))
			}
		}
	}
	detachErr := s.src.Detach()
	if runErr == nil {
		// Records made before the hooks went: all of them.
		_, runErr = s.readAll(-1)
	}
	s.applyGoUpdates()
	drainErr := s.src.Drain(func(rec *loader.Record) {
		s.drained.Add(1)
		s.corr.AddRecord(rec)
	})
	s.corr.Flush(time.Now().UnixNano())
	s.flush()
	return errors.Join(runErr, detachErr, drainErr)
}

// readAll processes the events waiting in the source, in up to batches
// batches (-1: until none waits), and says how many there were.
func (s *Session) readAll(batches int) (int, error) {
	total := 0
	for i := 0; i != batches; i++ {
		n, err := s.src.ReadBatch(maxBatch, s.dispatchFn)
		total += n
		if err != nil {
			return total, fmt.Errorf("reading records: %w", err)
		}
		if n < maxBatch {
			return total, nil
		}
	}
	return total, nil
}
