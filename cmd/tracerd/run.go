package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tracerd/tracerd/internal/loader"
)

// runCmd traces in the foreground until SIGINT/SIGTERM, exporting OTLP
// traces, Prometheus metrics and, when asked, JSON lines.
func runCmd(args []string) int {
	cfg := loader.DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var ef exporterFlags
	ef.register(fs)
	targetFlags(fs, &cfg.Targets)
	engineFlags(fs, &cfg)
	goAware := goFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tracerd run [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [--otlp-endpoint URL] [--metrics-addr HOST:PORT|off] [--json FILE|-] ...")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	if err := cfg.Targets.Validate(); err != nil {
		return fail(usageError{err})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	x, err := ef.build(log)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr, err := startTracing(ctx, cfg, *goAware, x.sink())
	if err != nil {
		x.shutdown()
		return fail(err)
	}
	defer tr.close()
	x.started(tr)
	err = tr.wait()
	x.shutdown()
	printCounters(os.Stderr, tr.tracer, tr.sess.SinkErrors())
	x.printStats(os.Stderr)
	return fail0(err)
}
