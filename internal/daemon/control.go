package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/outputs"
)

// serveControl opens the control socket unless it is off.
func (d *Daemon) serveControl() (*control.Server, error) {
	p := d.cfg.Control.Socket
	if p == "" || p == "off" {
		return nil, nil
	}
	s, err := control.Listen(p, d, d.log)
	if errors.Is(err, control.ErrUnsafePath) {
		return nil, config.Usage(err)
	}
	if err != nil {
		return nil, err
	}
	d.log.Info("control socket ready", "path", p)
	return s, nil
}

// running is the engine and exporters once attached (nil engine before).
func (d *Daemon) running() (Engine, *outputs.Exporters, config.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng, d.x, d.cfg
}

// Status implements control.Handler.
func (d *Daemon) Status() (control.Status, error) {
	eng, x, cfg := d.running()
	if eng == nil {
		return control.Status{}, errStarting
	}
	c, err := eng.Counters()
	if err != nil {
		return control.Status{}, err
	}
	st := control.Status{
		PID: os.Getpid(), Version: d.opts.Version, UptimeSeconds: int64(time.Since(d.start).Round(time.Second) / time.Second),
		Config: d.opts.ConfigPath, Reloads: d.reloads.Load(), Targets: eng.Targets(),
		Counters: c, Requests: eng.Requests(), SinkErrors: eng.SinkErrors(),
	}
	for _, h := range eng.Hooks() {
		st.Hooks = append(st.Hooks, control.Hook{Name: h.Name, Way: h.WayName(), OK: h.OK, Reason: h.Reason})
	}
	st.GoProbeKind, st.GoProbes = eng.GoProbes()
	if endpoint, s, ok := x.OTLP(); ok {
		st.Exporters.OTLP = &control.OTLP{Endpoint: endpoint, Stats: otlpStats(s)}
	}
	st.Exporters.JSON = cfg.Exporters.JSON
	st.Exporters.MetricsAddr = x.MetricsAddr()
	return st, nil
}

func otlpStats(s export.OTLPStats) control.OTLPStats {
	return control.OTLPStats{
		SpansQueued: s.SpansQueued, SpansExported: s.SpansExported, SpansDropped: s.SpansDropped, SpansFailed: s.SpansFailed,
		Exports: s.Exports, ExportErrors: s.ExportErrors,
		OverBudget: s.Sampled[export.SampledOverBudget], ByParent: s.Sampled[export.SampledByParent],
		ByRatio: s.Sampled[export.SampledByRatio], NotSampled: s.Sampled[export.NotSampled], RateLimited: s.RateLimited,
	}
}

// Snapshot implements control.Handler: the requests of req.Targets seen
// by the running engine for req.Duration.
func (d *Daemon) Snapshot(ctx context.Context, req control.Request, send func(control.Line) error) error {
	if err := config.SnapshotDuration.Check(int64(req.Duration)); err != nil {
		return control.Refuse("--duration: %v", err)
	}
	if err := config.Top.Check(int64(req.Top)); err != nil {
		return control.Refuse("--top: %v", err)
	}
	m, err := req.Targets.Matcher()
	if err != nil {
		return err
	}
	eng, _, _ := d.running()
	if eng == nil {
		return errStarting
	}
	// A snapshot through the daemon sees only what the daemon traces:
	// one it does not cover would record nothing and look fine.
	if traced := eng.Targets(); !traced.Covers(req.Targets) {
		return control.Refuse("the daemon (pid %d) traces %s, which does not cover %s: a snapshot through it would miss requests. Use --standalone to trace on its own",
			os.Getpid(), traced, req.Targets)
	}
	t := newTap(m, req)
	d.taps.register(t)
	send(control.Line{Note: fmt.Sprintf("tracing %s through the daemon (pid %d) for %s", req.Targets, os.Getpid(), req.Duration)})
	timer := time.NewTimer(req.Duration)
	defer timer.Stop()
	for ended := false; !ended; {
		select {
		case b := <-t.ch:
			if err := send(control.Line{Record: b}); err != nil {
				d.taps.remove(t)
				return err
			}
		case <-timer.C:
			ended = true
		case <-ctx.Done():
			ended = true
		case <-t.done:
			ended = true
		}
	}
	d.taps.remove(t)
	for {
		select {
		case b := <-t.ch:
			send(control.Line{Record: b})
			continue
		default:
		}
		break
	}
	end := &control.End{Requests: t.n, Dropped: t.dropped.Load()}
	if req.Profile {
		var buf bytes.Buffer
		if err := t.prof.WriteProfile(&buf); err != nil {
			return err
		}
		end.Profile = buf.Bytes()
	}
	var sb strings.Builder
	t.summary.Write(&sb)
	end.Summary = sb.String()
	if c, err := eng.Counters(); err == nil {
		end.Kernel = &c
	}
	return send(control.Line{End: end})
}
