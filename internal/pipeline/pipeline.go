// Package pipeline runs a tracing session: it reads records from the
// kernel engine, correlates them into Requests and hands each one to the
// sinks, and at the end drains what is still in flight so nothing is lost.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
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
}

// New wraps an opened tracer.
func New(t *loader.Tracer, sinks ...Sink) *Session {
	return &Session{tracer: t, corr: correlate.New(), sinks: sinks}
}

// Requests is the number of requests handed to the sinks so far.
func (s *Session) Requests() int64 { return s.requests.Load() }

// SinkErrors is the number of failed sink calls; LastSinkError the last one.
func (s *Session) SinkErrors() int64 { return s.sinkErrs.Load() }

func (s *Session) dispatch(ev *loader.Event) {
	switch ev.Kind {
	case loader.KindRequest:
		s.handle(&ev.Request)
	}
}

func (s *Session) handle(rec *loader.Record) {
	r := s.corr.Request(rec)
	for _, sink := range s.sinks {
		if err := sink.Add(&r); err != nil {
			s.sinkErrs.Add(1)
			s.lastErr.Store(err)
		}
	}
	s.requests.Add(1)
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
		for {
			err := s.tracer.Read(&ev)
			switch {
			case err == nil:
				s.dispatch(&ev)
			case errors.Is(err, os.ErrDeadlineExceeded):
				if stopping.Load() {
					done <- nil // hooks detached and buffer empty
					return
				}
				s.tracer.SetDeadline(time.Now().Add(pollEvery))
			default:
				done <- fmt.Errorf("reading records: %w", err)
				return
			}
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-done:
	}
	detachErr := s.tracer.Detach()
	if runErr == nil {
		stopping.Store(true)
		runErr = <-done
	}
	drainErr := s.tracer.Drain(func(rec *loader.Record) { s.handle(rec) })
	return errors.Join(runErr, detachErr, drainErr)
}
