package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/outputs"
	"github.com/tracerd/tracerd/internal/targets"
)

// TestPlanReload: what a reload applies, and what waits for a restart.
func TestPlanReload(t *testing.T) {
	cur := testConfig()
	for _, tc := range []struct {
		name               string
		edit               func(*config.Config)
		restart            []string
		exporters, targets bool
	}{
		{name: "nothing changed", edit: func(*config.Config) {}},
		{name: "targets", edit: func(c *config.Config) { c.Targets.Comms = []string{"nginx"} }, targets: true},
		{name: "json", edit: func(c *config.Config) { c.Exporters.JSON = "/x" }, exporters: true},
		{name: "otlp", edit: func(c *config.Config) { c.Exporters.OTLP.Headers = []string{"a=b"} }, exporters: true},
		{name: "sampling", edit: func(c *config.Config) { c.Exporters.Sampling.Ratio = "0.5" }, exporters: true},
		{name: "log level", edit: func(c *config.Config) { c.Log.Level = "debug" }},
		{name: "engine", edit: func(c *config.Config) { c.Engine.IdleTimeout = time.Second }, restart: []string{"engine"}},
		{name: "go", edit: func(c *config.Config) { c.Engine.Go = !c.Engine.Go }, restart: []string{"engine"}},
		{name: "findings", edit: func(c *config.Config) { c.Findings.MinSharePct = 50 }, restart: []string{"findings"}},
		{name: "metrics", edit: func(c *config.Config) { c.Exporters.MetricsAddr = "127.0.0.1:1" }, restart: []string{"exporters.metrics_addr"}},
		{name: "all that needs a restart, and targets", edit: func(c *config.Config) {
			c.Engine.SkipHooks = []string{"sched_switch"}
			c.Exporters.MetricsAddr = "127.0.0.1:1"
			c.Control.Socket = "/run/x.sock"
			c.Log.Format = "json"
			c.Targets.Ports = []uint16{81}
		}, restart: []string{"engine", "exporters.metrics_addr", "control", "log.format"}, targets: true},
	} {
		next := testConfig()
		tc.edit(&next)
		p := planReload(cur, next)
		if !slices.Equal(p.restart, tc.restart) || p.exporters != tc.exporters || p.targets != tc.targets {
			t.Errorf("%s: restart %v exporters %v targets %v, want %v %v %v", tc.name, p.restart, p.exporters, p.targets, tc.restart, tc.exporters, tc.targets)
		}
		// What needs a restart runs on as it is; the rest is the next.
		want := next
		want.Engine, want.Control, want.Log.Format, want.Exporters.MetricsAddr, want.Findings = cur.Engine, cur.Control, cur.Log.Format, cur.Exporters.MetricsAddr, cur.Findings
		if !reflect.DeepEqual(p.cfg, want) {
			t.Errorf("%s: runs %+v\nwant %+v", tc.name, p.cfg, want)
		}
	}
}

// TestReloadRefusesOutOfRange: a reload whose file holds a value out of
// range is refused and the running configuration kept (the same file
// killed a running daemon: makechan panic while building exporters).
func TestReloadRefusesOutOfRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tracerd.yaml")
	good := "exporters:\n  metrics_addr: \"off\"\n  otlp:\n    endpoint: http://127.0.0.1:1\ncontrol:\n  socket: \"off\"\n"
	os.WriteFile(path, []byte(good), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, cfg, func(o *Options) { o.Reread = func() (config.Config, error) { return config.Load(path) } })
	x := h.exporters()
	for _, bad := range []string{
		"    queue_size: \"99999999999999999\"\n",
		"    queue_size: \"10000000000\"\n",
		"    batch_size: \"0\"\n",
		"  sampling:\n    ratio: NaN\n",
	} {
		os.WriteFile(path, []byte(strings.Replace(good, "control:", bad+"control:", 1)), 0o600)
		if said := h.reload(t, config.Config{}, nil); !strings.HasPrefix(said, "reload failed: ") || !strings.Contains(said, "is out of range") {
			t.Errorf("reload with %q: told systemd %q", bad, said)
		}
		if !strings.Contains(h.log.String(), "reload failed: keeping the running configuration") {
			t.Errorf("reload with %q: log %q", bad, h.log.String())
		}
		if c := h.config(); h.exporters() != x || c.Exporters.OTLP.QueueSize != "" || c.Exporters.Sampling.Ratio != "" {
			t.Errorf("reload with %q changed the running configuration: %+v", bad, c.Exporters)
		}
	}
}

// TestReloadSwapsExporters: requests after a reload go to the new
// exporters; the old ones are flushed and closed; /metrics keeps
// serving from the same address; a bad new setting keeps the old ones.
func TestReloadSwapsExporters(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	cfg := testConfig()
	cfg.Exporters.JSON = a
	cfg.Exporters.MetricsAddr = freeAddr(t)
	h := start(t, cfg, nil)
	h.eng.add(t, request(1, 80, "/before"))
	old := h.exporters()

	next := cfg
	next.Exporters.JSON = b
	next.Exporters.OTLP.Endpoint = "http://127.0.0.1:1"
	next.Log.Level = "debug"
	h.reload(t, next, nil)
	h.eng.add(t, request(1, 80, "/after"))
	if got := lines(t, a); len(got) != 1 || !strings.Contains(got[0], "/before") {
		t.Errorf("old file: %q", got)
	}
	if got := lines(t, b); len(got) != 1 || !strings.Contains(got[0], "/after") {
		t.Errorf("new file: %q", got)
	}
	if nx := h.exporters(); nx == old || nx.MetricsAddr() != cfg.Exporters.MetricsAddr {
		t.Errorf("metrics at %q after the swap, want %q", nx.MetricsAddr(), cfg.Exporters.MetricsAddr)
	}
	if _, _, on := h.exporters().OTLP(); !on || h.level.Level() != -4 {
		t.Errorf("OTLP on %v, log level %v: the reload did not apply", on, h.level.Level())
	}
	if !strings.Contains(h.log.String(), `msg="exporters replaced" otlp=true json=`+b) {
		t.Errorf("log: %s", h.log.String())
	}
	waitFor(t, "the old exporters to close", func() bool { return old.MetricsAddr() == "" })

	bad := next
	bad.Exporters.ServiceNames = []string{"nonsense"}
	bad.Targets.Ports = []uint16{81}
	x := h.exporters()
	h.reload(t, bad, nil)
	if c := h.config(); h.exporters() != x || c.Exporters.ServiceNames != nil || !slices.Equal(c.Targets.Ports, []uint16{81}) {
		t.Errorf("a bad service name: exporters replaced %v, running %+v", h.exporters() != x, c)
	}
	if !strings.Contains(h.log.String(), "reload: exporters unchanged") {
		t.Errorf("log: %s", h.log.String())
	}
}

// TestReloadTargets: the selection changes in the engine, one log line
// per target; one the engine refuses is kept as it was; what needs a
// restart is said and not applied.
func TestReloadTargets(t *testing.T) {
	h := start(t, testConfig(), nil)
	next := testConfig()
	next.Targets = targets.Targets{Ports: []uint16{81}, Comms: []string{"nginx"}}
	next.Engine.IdleTimeout = time.Minute
	if said := h.reload(t, next, nil); said != "tracing port [81] and comm [nginx]" {
		t.Errorf("told systemd %q", said)
	}
	log := h.log.String()
	for _, want := range []string{
		`msg="target attached" kind=port value=81`, `msg="target detached" kind=port value=80`, `msg="target attached" kind=comm value=nginx`,
		`msg="reload: these changes need a restart and are not applied" keys=[engine]`, `msg=reloaded reload=1 targets="port [81] and comm [nginx]"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if c := h.config(); !reflect.DeepEqual(c.Targets, next.Targets) || c.Engine.IdleTimeout == time.Minute {
		t.Errorf("running %+v", c)
	}

	h.eng.mu.Lock()
	h.eng.setErr = errors.New("map full")
	h.eng.mu.Unlock()
	refused := testConfig()
	refused.Targets = targets.Targets{PIDs: []uint32{1}}
	h.reload(t, refused, nil)
	if c := h.config(); !reflect.DeepEqual(c.Targets, next.Targets) || !strings.Contains(h.log.String(), `msg="reload: targets unchanged" error="map full"`) {
		t.Errorf("refused targets: running %+v", c.Targets)
	}
	if h.d.reloads.Load() != 2 || h.notify.reloading != 2 {
		t.Errorf("%d reloads, told systemd of %d", h.d.reloads.Load(), h.notify.reloading)
	}
}

// TestOTLPHealth: down once exports fail with nothing going out, up
// again when spans go out; counts of replaced exporters start afresh.
func TestOTLPHealth(t *testing.T) {
	var h otlpHealth
	x, y := &outputs.Exporters{}, &outputs.Exporters{}
	for i, step := range []struct {
		x           *outputs.Exporters
		errs, spans int64
		want        healthChange
		failed      int64
	}{
		{x, 0, 0, unchanged, 0},
		{x, 0, 10, unchanged, 0},
		{x, 2, 10, wentDown, 2},
		{x, 5, 10, unchanged, 0},
		{x, 5, 12, cameBack, 0},
		{x, 6, 13, unchanged, 0}, // a failure while spans go out
		{y, 9, 0, unchanged, 0},  // other exporters: their first look
		{y, 10, 0, wentDown, 1},
	} {
		change, failed := h.next(step.x, export.OTLPStats{ExportErrors: step.errs, SpansExported: step.spans})
		if change != step.want || failed != step.failed {
			t.Errorf("look %d: %v %d, want %v %d", i, change, failed, step.want, step.failed)
		}
	}
}

// TestWatchExportersWaitsWithoutOTLP: without an OTLP exporter the
// watch does not tick; it looks again when a reload replaces the
// exporters, and ends with its context.
func TestWatchExportersWaitsWithoutOTLP(t *testing.T) {
	d := New(Options{Config: testConfig()})
	d.x = &outputs.Exporters{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.watchExporters(ctx)
		close(done)
	}()
	for range 3 { // reloads that bring no OTLP exporter: it waits again
		d.mu.Lock()
		d.x = &outputs.Exporters{}
		d.mu.Unlock()
		d.xChanged <- struct{}{}
	}
	select {
	case <-done:
		t.Fatal("the watch ended before its context")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
}
