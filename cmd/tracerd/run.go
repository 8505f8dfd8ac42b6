package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/config/flags"
	"github.com/tracerd/tracerd/internal/daemon"
	"github.com/tracerd/tracerd/internal/engine"
	"github.com/tracerd/tracerd/internal/pipeline"
	"github.com/tracerd/tracerd/internal/sdnotify"
)

// runCmd traces until SIGINT/SIGTERM, exporting OTLP traces, Prometheus
// metrics and, when asked, JSON lines (internal/daemon).
func runCmd(args []string) int {
	cfg, opts, err := flags.Run(args)
	if err != nil {
		return fail(err)
	}
	if opts.PrintConfig {
		out, err := cfg.Marshal()
		if err != nil {
			return fail(err)
		}
		os.Stdout.Write(out)
		return exitOK
	}
	return fail0(runDaemon(cfg, args, opts))
}

func runDaemon(cfg config.Config, args []string, opts flags.RunOptions) error {
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log.Format, level)
	notify, err := sdnotify.New()
	if err != nil {
		log.Warn("systemd notification socket unusable", "error", err)
	}
	defer notify.Close()
	var watchdog time.Duration
	if notify != nil {
		watchdog = sdnotify.WatchdogInterval()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d := daemon.New(daemon.Options{
		Config:     cfg,
		ConfigPath: opts.ConfigPath,
		Reread: func() (config.Config, error) {
			c, _, err := flags.Run(args)
			return c, err
		},
		Start: func(ctx context.Context, cfg config.Config, openSinks func() ([]pipeline.Sink, error)) (daemon.Engine, error) {
			s, err := startEngine(ctx, cfg, log, openSinks)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		Log:           log,
		Level:         level,
		Notify:        notify,
		WatchdogEvery: watchdog,
		Version:       versionString(),
		Stderr:        os.Stderr,
		Getenv:        os.Getenv,
	})
	return d.Run(ctx, hup)
}

// startEngine starts tracing and says so on stderr: scripts wait for
// "tracerd: tracing".
func startEngine(ctx context.Context, cfg config.Config, log *slog.Logger, openSinks func() ([]pipeline.Sink, error)) (*engine.Session, error) {
	s, err := engine.Start(ctx, cfg, log, openSinks)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "tracerd: "+s.Started())
	return s, nil
}
