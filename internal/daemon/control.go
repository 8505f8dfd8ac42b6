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
	"github.com/tracerd/tracerd/internal/findings"
	"github.com/tracerd/tracerd/internal/live"
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

// engine is the running engine, nil until attached.
func (d *Daemon) engine() Engine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng
}

// exporters is the current exporters (a reload replaces them).
func (d *Daemon) exporters() *outputs.Exporters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.x
}

// Status implements control.Handler.
func (d *Daemon) Status() (control.Status, error) {
	d.mu.Lock()
	eng, cfg := d.eng, d.cfg
	var exporters control.Exporters
	if eng != nil {
		// Under mu: a reload moves the metrics server off the exporters
		// it replaces.
		exporters = exportersStatus(d.x, cfg.Exporters)
	}
	d.mu.Unlock()
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
		Counters: c, Requests: eng.Requests(), SinkErrors: eng.SinkErrors(), Exporters: exporters,
	}
	for _, h := range eng.Hooks() {
		st.Hooks = append(st.Hooks, control.Hook{Name: h.Name, Way: h.WayName(), OK: h.OK, Reason: h.Reason, Pending: h.Pending})
	}
	st.GoProbeKind, st.GoProbes = eng.GoProbes()
	st.Ports = eng.PortPressure()
	if cfg.Findings.Enabled {
		st.FindingsMinutes = findings.RecentMinutes
		st.Findings = []control.Finding{}
		for _, r := range d.recent.Top(statusFindings) {
			st.Findings = append(st.Findings, control.Finding{Service: r.Service, Route: r.Route, Code: r.Code.String(), Phase: r.Phase.String(),
				Requests: r.Count, LostNs: r.LostNs, Confirm: r.Confirm, Remedy: r.Code.Remedy()})
		}
	}
	return st, nil
}

// statusFindings is how many findings tracerd status shows.
const statusFindings = 10

func exportersStatus(x *outputs.Exporters, e config.Exporters) control.Exporters {
	st := control.Exporters{JSON: e.JSON, MetricsAddr: x.MetricsAddr()}
	if endpoint, s, ok := x.OTLP(); ok {
		st.OTLP = &control.OTLP{Endpoint: endpoint, Stats: otlpStats(s)}
	}
	return st
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
	eng := d.engine()
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

// Bounds of a top request's interval.
const (
	minTopEvery = 100 * time.Millisecond
	maxTopEvery = 10 * time.Second
)

// Top implements control.Handler: the view of the last seconds every
// req.Every until the client goes. Without a selection it is the
// daemon's own view (the last seconds are there at once); with one, a
// view of its own starts empty.
func (d *Daemon) Top(ctx context.Context, req control.Request, send func(control.Line) error) error {
	every := req.Every
	if every == 0 {
		every = time.Second
	}
	if every < minTopEvery || every > maxTopEvery {
		return control.Refuse("top: a view every %s: want %s to %s", every, minTopEvery, maxTopEvery)
	}
	eng := d.engine()
	if eng == nil {
		return errStarting
	}
	agg := d.live
	if !req.Targets.Empty() {
		m, err := req.Targets.Matcher()
		if err != nil {
			return control.Refuse("%v", err)
		}
		if traced := eng.Targets(); !traced.Covers(req.Targets) {
			return control.Refuse("the daemon (pid %d) traces %s, which does not cover %s: its view would miss requests. Use --standalone to trace on its own",
				os.Getpid(), traced, req.Targets)
		}
		t := &liveTap{match: m, agg: live.New(live.Options{})}
		d.taps.registerLive(t)
		defer d.taps.removeLive(t)
		agg = t.agg
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		v := agg.View(time.Now())
		if err := send(control.Line{Live: &v}); err != nil {
			return nil // the client went
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
