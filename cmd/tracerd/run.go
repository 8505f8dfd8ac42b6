package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/pipeline"
)

// runCmd traces in the foreground until SIGINT/SIGTERM. OTLP and
// Prometheus exporters are not built yet; JSON lines are.
func runCmd(args []string) int {
	cfg := loader.DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	jsonOut := fs.String("json", "-", "write one JSON object per request to this file ('-' for stdout)")
	targetFlags(fs, &cfg.Targets)
	engineFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	w := io.Writer(os.Stdout)
	if *jsonOut != "-" {
		f, err := os.OpenFile(*jsonOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fail(usageError{fmt.Errorf("--json: %w", err)})
		}
		defer f.Close()
		w = f
	}
	jl := export.NewJSONLines(w)
	t, err := openTracer(cfg)
	if err != nil {
		return fail(err)
	}
	defer t.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sess := pipeline.New(t, cfg.IdleTimeout+2*time.Second, pipeline.SinkFunc(func(r *correlate.Request) error {
		if err := jl.Write(r); err != nil {
			return err
		}
		return jl.Flush()
	}))
	err = sess.Run(ctx)
	printCounters(os.Stderr, t, sess.SinkErrors())
	return fail0(err)
}
