package daemon

import (
	"reflect"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/outputs"
	"github.com/tracerd/tracerd/internal/targets"
)

// reloadPlan is what a reload from one configuration to the next does.
type reloadPlan struct {
	// cfg is the configuration to run: the next one, less what needs a
	// restart (kept as it runs).
	cfg config.Config
	// restart names the keys changed that need a restart: they are not
	// applied.
	restart   []string
	exporters bool // the exporters are rebuilt and swapped
	targets   bool // the selection changes in the kernel maps, in place
}

// planReload decides what a reload applies: exporters are rebuilt and
// swapped, targets change in place (the kinds of selection too: one
// engine throughout, so no connection is traced twice and counters go
// on), log.level applies at once; the engine's limits, the metrics
// address, log.format and the control socket need a restart.
func planReload(cur, next config.Config) reloadPlan {
	p := reloadPlan{cfg: next}
	if !reflect.DeepEqual(next.Engine, cur.Engine) {
		p.restart = append(p.restart, "engine")
	}
	if next.Exporters.MetricsAddr != cur.Exporters.MetricsAddr {
		p.restart = append(p.restart, "exporters.metrics_addr")
	}
	if next.Findings != cur.Findings {
		p.restart = append(p.restart, "findings")
	}
	if next.Control != cur.Control {
		p.restart = append(p.restart, "control")
	}
	if next.Log.Format != cur.Log.Format {
		p.restart = append(p.restart, "log.format")
	}
	p.cfg.Engine, p.cfg.Control, p.cfg.Log.Format, p.cfg.Findings = cur.Engine, cur.Control, cur.Log.Format, cur.Findings
	p.cfg.Exporters.MetricsAddr = cur.Exporters.MetricsAddr
	p.exporters = !reflect.DeepEqual(p.cfg.Exporters, cur.Exporters)
	p.targets = !reflect.DeepEqual(p.cfg.Targets, cur.Targets)
	return p
}

// reload re-reads the file and the command line (SIGHUP) and applies
// what planReload says; a configuration that does not read, or a part
// that fails to apply, leaves that part running as it was.
func (d *Daemon) reload() {
	d.notify.Reloading()
	n := d.reloads.Add(1)
	next, err := d.opts.Reread()
	if err != nil {
		d.log.Error("reload failed: keeping the running configuration", "error", err)
		d.notify.Ready("reload failed: " + err.Error())
		return
	}
	cur := d.cfg // only Run's goroutine changes it
	p := planReload(cur, next)
	if len(p.restart) > 0 {
		d.log.Warn("reload: these changes need a restart and are not applied", "keys", p.restart)
	}
	cfg := p.cfg
	d.setLevel(cfg.Log)
	if p.exporters {
		if err := d.reloadExporters(cfg.Exporters); err != nil {
			d.log.Error("reload: exporters unchanged", "error", err)
			cfg.Exporters = cur.Exporters
		}
	}
	if p.targets {
		if err := d.reloadTargets(cur.Targets, cfg.Targets); err != nil {
			d.log.Error("reload: targets unchanged", "error", err)
			cfg.Targets = cur.Targets
		}
	}
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	d.log.Info("reloaded", "reload", n, "targets", cfg.Targets.String())
	d.notify.Ready("tracing " + cfg.Targets.String())
}

// setLevel applies log.level.
func (d *Daemon) setLevel(l config.Log) {
	if d.opts.Level != nil {
		d.opts.Level.Set(l.SlogLevel())
	}
}

// reloadExporters builds the new exporters, keeping the running
// /metrics server, and swaps them in; the old ones flush in the
// background: a collector that does not answer must not hold the
// signals (SIGTERM) for seconds.
func (d *Daemon) reloadExporters(e config.Exporters) error {
	e.MetricsAddr = "off" // the running server moves over
	nx, err := outputs.Build(e, d.outputOptions())
	if err != nil {
		return err
	}
	d.mu.Lock()
	ox := d.x
	nx.TakeMetrics(ox)
	d.x = nx
	d.mu.Unlock()
	select {
	case d.xChanged <- struct{}{}:
	default: // one pending is enough: the watch looks at d.x
	}
	d.wireMetrics(nx)
	d.retiring.Add(1)
	go func() {
		defer d.retiring.Done()
		ox.ShutdownBy(time.Now().Add(stopBudget))
	}()
	_, _, otlp := nx.OTLP()
	d.log.Info("exporters replaced", "otlp", otlp, "json", e.JSON)
	return nil
}

// reloadTargets changes the engine's selection and logs one line per
// target attached or detached.
func (d *Daemon) reloadTargets(old, cur targets.Targets) error {
	if err := d.eng.SetTargets(cur); err != nil {
		return err
	}
	for _, c := range targets.Diff(old, cur) {
		msg := "target detached"
		if c.Added {
			msg = "target attached"
		}
		d.log.Info(msg, "kind", c.Kind, "value", c.Value)
	}
	return nil
}
