package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/config/flags"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/pipeline"
)

// topCmd shows the live view: through the running daemon when there is
// one, else tracing here.
func topCmd(args []string) int {
	cfg, o, err := flags.Top(args)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	screen := !o.Plain && term.IsTerminal(int(os.Stdout.Fd()))
	if !o.Standalone {
		err := topViaDaemon(ctx, cfg, o, screen)
		if !errors.Is(err, control.ErrNoDaemon) && !errors.Is(err, control.ErrDenied) {
			return fail0(err)
		}
	}
	return fail0(topHere(ctx, cfg, o, screen))
}

// show draws the views until the user quits or they end.
func show(ctx context.Context, source string, views <-chan live.Update, screen bool) error {
	if screen {
		return live.RunScreen(ctx, source, views)
	}
	return live.RunPlain(ctx, os.Stdout, views)
}

// topViaDaemon shows the daemon's view (of cfg.Targets when set).
// control.ErrNoDaemon when none runs.
func topViaDaemon(ctx context.Context, cfg config.Config, o flags.TopOptions, screen bool) error {
	if err := cfg.Targets.Validate(); err != nil {
		return config.Usage(err)
	}
	c, err := control.Dial(o.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, quit := context.WithCancel(ctx)
	defer quit()
	views := make(chan live.Update, 1)
	// started gets nil at the first view, or the error that came
	// before it (a refusal): said without a screen.
	started := make(chan error, 1)
	streamErr := make(chan error, 1)
	go func() {
		defer close(views)
		first := true
		err := c.Top(control.Request{Targets: cfg.Targets}, func(v live.View) error {
			if first {
				first = false
				started <- nil
			}
			select {
			case views <- live.Update{View: v}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if first {
			started <- err
		}
		streamErr <- err
	}()
	if err := <-started; err != nil {
		if errors.Is(err, control.ErrRefused) {
			return config.Usage(err)
		}
		return err
	}
	source := fmt.Sprintf("%s through the daemon (%s)", describe(cfg), o.Socket)
	if err := show(ctx, source, views, screen); err != nil || ctx.Err() != nil {
		return err
	}
	// The views ended without the user (the daemon stopped), or the
	// user quit.
	select {
	case err := <-streamErr:
		return err
	default:
		return nil
	}
}

// topHere traces in this process for the view.
func topHere(ctx context.Context, cfg config.Config, o flags.TopOptions, screen bool) error {
	agg := live.New(live.Options{})
	// On the screen the log would scribble over the view: it is kept
	// and printed once the terminal is back.
	var logs logBuffer
	log := newLogger("text", cfg.Log.SlogLevel())
	if screen {
		log = newLoggerTo(&logs, cfg.Log.SlogLevel())
	}
	defer func() { os.Stderr.Write(logs.Bytes()) }()
	engCtx, endTracing := context.WithCancel(context.Background())
	defer endTracing()
	s, err := startEngine(engCtx, cfg, log, func() ([]pipeline.Sink, error) {
		return []pipeline.Sink{pipeline.SinkFunc(func(r *correlate.Request) error { agg.Add(r); return nil })}, nil
	})
	if err != nil {
		if o.Standalone {
			return fmt.Errorf("top traces on its own (--standalone): %w", err)
		}
		return fmt.Errorf("no daemon answers at %s, so top traces on its own: %w", o.Socket, err)
	}
	defer s.Close()
	views := make(chan live.Update, 1)
	go func() {
		defer close(views)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case views <- live.Update{View: agg.View(time.Now())}:
			case <-ctx.Done():
				return
			case <-s.Done():
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			case <-s.Done():
				return
			}
		}
	}()
	showErr := show(ctx, describe(cfg)+" traced here", views, screen)
	endTracing()
	runErr := s.Wait()
	s.Report(&logs)
	return errors.Join(showErr, runErr)
}

// describe names the selection.
func describe(cfg config.Config) string {
	if cfg.Targets.Empty() {
		return "everything"
	}
	return cfg.Targets.String()
}

// logBuffer holds log lines while the screen is up.
type logBuffer struct {
	mu sync.Mutex
	b  []byte
}

// logBufferMax bounds what is kept; later lines are dropped.
const logBufferMax = 1 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b)+len(p) <= logBufferMax {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *logBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b
}
