package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/config/flags"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/engine"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/outputs"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/ticker"
)

func snapshotCmd(args []string) int {
	cfg, o, err := flags.Snapshot(args)
	if err != nil {
		return fail(err)
	}
	if !o.Standalone {
		// No daemon, or one this user may not use (then tracing alone
		// says which privileges are missing).
		err := snapshotViaDaemon(cfg, o)
		if !errors.Is(err, control.ErrNoDaemon) && !errors.Is(err, control.ErrDenied) {
			return fail0(err)
		}
	}
	return fail0(snapshot(cfg, o))
}

// snapshot traces on its own for a.Duration.
func snapshot(cfg config.Config, a flags.SnapshotOptions) error {
	if err := outputs.CheckSnapshot(a.Out, a.JSON); err != nil {
		return err
	}
	var o *outputs.Snapshot
	defer func() {
		if o != nil {
			o.Close()
		}
	}()
	var jl *export.JSONLines
	prof := export.NewProfile()
	summary := export.NewSummary(a.Top)
	openSinks := func() ([]pipeline.Sink, error) {
		var err error
		if o, err = outputs.OpenSnapshot(a.Out, a.JSON); err != nil {
			return nil, err
		}
		var sinks []pipeline.Sink
		if o.JSON != nil {
			jl = export.NewJSONLines(o.JSON)
			sinks = append(sinks, jl)
		}
		return append(sinks, pipeline.SinkFunc(func(r *correlate.Request) error {
			prof.Add(r)
			summary.Add(r)
			return nil
		})), nil
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The duration counts from the moment tracing is announced.
	ctx, endSession := context.WithCancel(sigCtx)
	defer endSession()
	s, err := startEngine(ctx, cfg, newLogger("text", cfg.Log.SlogLevel()), openSinks)
	if err != nil {
		return err
	}
	defer s.Close()
	time.AfterFunc(a.Duration, endSession)
	go progress(ctx, s, a.Duration)

	runErr := s.Wait()
	if term.IsTerminal(int(os.Stderr.Fd())) {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if jl != nil {
		if err := jl.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("--json: %w", err))
		}
	}
	if err := o.WriteProfile(prof.WriteProfile); err != nil {
		errs = append(errs, err)
	}
	summary.Write(o.Summary)
	s.Report(os.Stderr)
	if n := prof.OtherRequests(); n > 0 {
		fmt.Fprintf(os.Stderr, "routes: %d requests under route \"other\" (more than %d routes in one service)\n", n, export.DefaultMaxRoutes)
	}
	o.SayProfile(os.Stderr)
	return errors.Join(errs...)
}

// progress shows elapsed time and requests seen: one rewritten line on a
// terminal, a line every 5 s otherwise.
func progress(ctx context.Context, s *engine.Session, total time.Duration) {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	start := time.Now()
	ticker.Run(ctx, every, func() {
		line := fmt.Sprintf("tracerd: %s/%s elapsed, %d requests", time.Since(start).Truncate(time.Second), total, s.Requests())
		if tty {
			fmt.Fprint(os.Stderr, "\r\033[K"+line)
		} else {
			fmt.Fprintln(os.Stderr, line)
		}
	})
}

// snapshotViaDaemon asks the running daemon for the requests of
// cfg.Targets during a.Duration and writes the same outputs as a
// standalone snapshot. control.ErrNoDaemon when none runs.
func snapshotViaDaemon(cfg config.Config, a flags.SnapshotOptions) error {
	if err := cfg.Targets.Validate(); err != nil {
		return config.Usage(err)
	}
	if err := outputs.CheckSnapshot(a.Out, a.JSON); err != nil {
		return err
	}
	c, err := control.Dial(a.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	// Ctrl-C ends early: the daemon then sends what it has and the end.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			c.EndEarly()
		}
	}()
	// The outputs are opened once the daemon took the request: a refusal
	// creates or truncates nothing.
	var o *outputs.Snapshot
	var jw *bufio.Writer
	defer func() {
		if o != nil {
			o.Close()
		}
	}()
	req := control.Request{Duration: a.Duration, Targets: cfg.Targets, Top: a.Top, JSON: a.JSON != "", Profile: a.Out != ""}
	end, err := c.Snapshot(req, func(l control.Line) error {
		if o == nil {
			var err error
			if o, err = outputs.OpenSnapshot(a.Out, a.JSON); err != nil {
				return err
			}
			if o.JSON != nil {
				jw = bufio.NewWriter(o.JSON)
			}
		}
		switch {
		case l.Note != "":
			fmt.Fprintln(os.Stderr, "tracerd:", l.Note)
		case l.Record != nil && jw != nil:
			jw.Write(l.Record)
			jw.WriteByte('\n')
		}
		return nil
	})
	if errors.Is(err, control.ErrRefused) {
		return config.Usage(err)
	}
	if err != nil {
		return err
	}
	var errs []error
	if jw != nil {
		if err := jw.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("--json: %w", err))
		}
	}
	if err := o.WriteProfile(func(w io.Writer) error { _, err := w.Write(end.Profile); return err }); err != nil {
		errs = append(errs, err)
	}
	io.WriteString(o.Summary, end.Summary)
	fmt.Fprintf(os.Stderr, "\n%s\n", daemonTotals(end))
	o.SayProfile(os.Stderr)
	return errors.Join(errs...)
}

// daemonTotals says what the daemon lost, and what this snapshot did
// not get ("" when the daemon could not read its counters).
func daemonTotals(end *control.End) string {
	c := end.Kernel
	if c == nil {
		return ""
	}
	return fmt.Sprintf("daemon kernel totals: %d connections traced, %d records; lost: %d (ring buffer full), %d connections untraced (map full); %d records not sent to this snapshot (it read too slowly)",
		c.ConnsTraced, c.Records, c.RingbufDrops, c.ConnMapFull, end.Dropped)
}
