package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/pipeline"
)

func snapshotCmd(args []string) int {
	cfg := loader.DefaultConfig()
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	duration := new(30 * time.Second)
	fs.Func("duration", fmt.Sprintf("how long to trace, %s (Ctrl-C ends early and still writes everything; default %s)", config.SnapshotDuration, *duration), func(s string) error {
		d, err := config.SnapshotDuration.ParseDuration(s)
		*duration = d
		return err
	})
	out := fs.String("o", "", "write a pprof profile (gzipped protobuf) to this file (created 0600)")
	jsonOut := fs.String("json", "", "write one JSON object per request to this file ('-' for stdout; created 0600)")
	top := new(10)
	fs.Func("top", fmt.Sprintf("show the N slowest requests in the summary, %s (default %d)", config.Top, *top), func(s string) error {
		n, err := config.Top.ParseCount(s)
		*top = int(n)
		return err
	})
	targetFlags(fs, &cfg.Targets)
	engineFlags(fs, &cfg)
	goOpts := goFlags(fs, defaultGo)
	standalone := fs.Bool("standalone", false, "load tracerd's own BPF programs even when a daemon runs (default: use the running daemon through its control socket)")
	socket := fs.String("control-socket", config.DefaultSocket, "the running daemon's control socket")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tracerd snapshot [--standalone] [--duration 30s] [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [-o cut.pb.gz] [--json FILE|-] [--top N]")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	if !*standalone {
		// No daemon, or one this user may not use (then tracing alone
		// says which privileges are missing).
		err := snapshotViaDaemon(*socket, cfg.Targets, *duration, *out, *jsonOut, *top)
		if !errors.Is(err, control.ErrNoDaemon) && !errors.Is(err, control.ErrDenied) {
			return fail0(err)
		}
	}
	return fail0(snapshot(cfg, *goOpts, *duration, *out, *jsonOut, *top))
}

func fail0(err error) int {
	if err == nil {
		return exitOK
	}
	return fail(err)
}

func snapshot(cfg loader.Config, goOpts goOptions, duration time.Duration, out, jsonOut string, top int) error {
	if err := checkSnapshotOutputs(out, jsonOut); err != nil {
		return err
	}
	var o *snapshotOutputs
	defer func() {
		if o != nil {
			o.close()
		}
	}()
	var jl *export.JSONLines
	prof := export.NewProfile()
	summary := export.NewSummary(top)
	openSinks := func() ([]pipeline.Sink, error) {
		var err error
		if o, err = openSnapshotOutputs(out, jsonOut); err != nil {
			return nil, err
		}
		var sinks []pipeline.Sink
		if o.json != nil {
			jl = export.NewJSONLines(o.json)
			sinks = append(sinks, pipeline.SinkFunc(jl.Write))
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
	tr, err := startTracing(ctx, cfg, goOpts, openSinks)
	if err != nil {
		return err
	}
	defer tr.close()
	t, sess := tr.tracer, tr.sess
	time.AfterFunc(duration, endSession)
	go progress(ctx, sess, duration)

	runErr := tr.wait()
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
	if err := o.writeProfile(prof.WriteProfile); err != nil {
		errs = append(errs, err)
	}
	summary.Write(o.summary)
	printCounters(os.Stderr, t, sess.SinkErrors(), sess.Drained())
	if n := prof.OtherRequests(); n > 0 {
		fmt.Fprintf(os.Stderr, "routes: %d requests under route \"other\" (more than %d routes in one service)\n", n, export.DefaultMaxRoutes)
	}
	o.sayProfile()
	return errors.Join(errs...)
}

// progress shows elapsed time and requests seen: one rewritten line on a
// terminal, a line every 5 s otherwise.
func progress(ctx context.Context, sess *pipeline.Session, total time.Duration) {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			line := fmt.Sprintf("tracerd: %s/%s elapsed, %d requests", time.Since(start).Truncate(time.Second), total, sess.Requests())
			if tty {
				fmt.Fprint(os.Stderr, "\r\033[K"+line)
			} else {
				fmt.Fprintln(os.Stderr, line)
			}
		}
	}
}
