package outputs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/metrics"
)

// Options are what building the exporters takes besides the configuration.
type Options struct {
	Log     *slog.Logger        // nil: none
	Version string              // tracerd's, sent with the OTLP resource
	Stderr  io.Writer           // where they say where requests go; nil: os.Stderr
	Getenv  func(string) string // the OTEL_* variables; nil: os.Getenv
}

// Exporters are the daemon's outputs: OTLP traces, Prometheus metrics
// and JSON lines. Each request goes to all of them (Add).
type Exporters struct {
	log      *slog.Logger
	procs    *export.Processes
	otlpSet  export.OTLPSettings
	otlp     *export.OTLP
	requests *metrics.Requests
	self     *metrics.Self
	server   *metrics.Server
	json     *export.JSONLines
	jsonFile *os.File
}

// Build checks every setting, opens the outputs and says where requests
// go. Mistakes are config.UsageErrors. The /metrics server is bound but
// not serving until ServeMetrics.
func Build(e config.Exporters, opts Options) (*Exporters, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	x := &Exporters{log: opts.Log}
	var rules []export.ServiceRule
	for _, s := range e.ServiceNames {
		rule, err := export.ParseServiceRule(s)
		if err != nil {
			return nil, config.Usage(fmt.Errorf("--service-name: %w", err))
		}
		rules = append(rules, rule)
	}
	x.procs = export.NewProcesses(rules)
	set, err := export.ResolveOTLP(e.OTLP, e.Sampling, opts.Getenv)
	if err != nil {
		return nil, config.Usage(err)
	}
	if err := checkOTLPRanges(e.OTLP, e.Sampling, set, opts.Getenv); err != nil {
		return nil, config.Usage(err)
	}
	x.otlpSet = set
	if e.JSON != "" {
		w := io.Writer(os.Stdout)
		if e.JSON != "-" {
			file, err := Create(e.JSON, true)
			if err != nil {
				return nil, config.Usage(fmt.Errorf("--json: %w", err))
			}
			x.jsonFile = file
			if w, err = FileWriter(file); err != nil {
				x.close()
				return nil, fmt.Errorf("--json: %w", err)
			}
		}
		x.json = export.NewJSONLinesWith(w, export.JSONOptions{KeepQueryValues: e.KeepQueryValues})
	}
	if e.MetricsAddr != "off" && e.MetricsAddr != "" {
		if err := config.CheckListenAddr(e.MetricsAddr); err != nil {
			x.close()
			return nil, config.Usage(fmt.Errorf("--metrics-addr: %w", err))
		}
		reg := metrics.Registry()
		x.requests = metrics.NewRequests(reg)
		x.self = metrics.NewSelf(reg)
		if x.server, err = metrics.Listen(e.MetricsAddr, reg, opts.Log); err != nil {
			x.close()
			return nil, err
		}
	}
	if set.Enabled {
		client, err := set.Client()
		if err != nil {
			x.close()
			return nil, config.Usage(err)
		}
		host, _ := os.Hostname()
		x.otlp, err = export.NewOTLP(export.OTLPOptions{
			Client:     client,
			Sampler:    set.Sampler,
			QueueSpans: set.QueueSpans,
			BatchSpans: set.BatchSpans,
			BatchDelay: set.BatchDelay,
			Host:       host,
			Resource:   set.Resource,
			Version:    opts.Version,
			Logger:     opts.Log,

			KeepQueryValues: e.KeepQueryValues,
		})
		if err != nil {
			x.close()
			return nil, err
		}
	}
	x.announce(opts.Stderr)
	return x, nil
}

func (x *Exporters) announce(w io.Writer) {
	if x.otlp != nil {
		s := x.otlpSet.Sampler
		sampling := fmt.Sprintf("%g%% of the requests", s.Ratio*100)
		if s.Budget > 0 {
			sampling = fmt.Sprintf("every request over %s and %g%% of the others", s.Budget, s.Ratio*100)
		}
		fmt.Fprintf(w, "tracerd: OTLP traces to %s: %s (queue %d spans)\n", x.otlpSet.Endpoint(), sampling, x.otlpSet.QueueSpans)
	} else {
		fmt.Fprintln(w, "tracerd: OTLP traces off (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT turns them on)")
	}
	if x.server != nil {
		fmt.Fprintf(w, "tracerd: Prometheus metrics at http://%s/metrics\n", x.server.Addr())
	}
}

// Add hands a request to the outputs (it makes Exporters a
// pipeline.Sink): the process is identified (service name) first, then
// the trace decision is made, so that the metrics carry the trace id of
// exported requests as an exemplar.
func (x *Exporters) Add(r *correlate.Request) error {
	p := x.procs.Identify(r)
	traced := false
	if x.otlp != nil {
		traced = x.otlp.Add(r, p) != export.NotSampled
	}
	if x.requests != nil && r.Direction == correlate.DirServer {
		x.requests.Observe(r, traced)
	} else if x.requests != nil {
		// The request metrics are the served requests': of an outbound
		// call only its findings are counted.
		x.requests.ObserveFindings(r)
	}
	if x.json != nil {
		if err := x.json.Write(r); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	return nil
}

// Flush writes the JSON lines buffered since the last call: the
// pipeline calls it at each periodic look (pipeline.Flusher), so that
// `tail -f` shows a request within 200 ms of its record, for one write
// per look.
func (x *Exporters) Flush() error {
	if x.json == nil {
		return nil
	}
	if err := x.json.Flush(); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}

// OTLP is the trace exporter's endpoint and counts; ok is false when
// traces are off.
func (x *Exporters) OTLP() (endpoint string, st export.OTLPStats, ok bool) {
	if x.otlp == nil {
		return "", st, false
	}
	return x.otlpSet.Endpoint(), x.otlp.Stats(), true
}

// MetricsAddr is where /metrics is served, "" when nowhere.
func (x *Exporters) MetricsAddr() string {
	if x.server == nil {
		return ""
	}
	return x.server.Addr()
}

// SetMetricsSources points the self-metrics at the running engine (and
// at these exporters' OTLP counts).
func (x *Exporters) SetMetricsSources(src metrics.Sources) {
	if x.self == nil {
		return
	}
	if x.otlp != nil {
		src.OTLP = x.otlp.Stats
	}
	x.self.SetSources(src)
}

// ServeMetrics starts serving /metrics (when asked for).
func (x *Exporters) ServeMetrics() {
	if x.server == nil {
		return
	}
	srv, log := x.server, x.log
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error("metrics server stopped", "error", err)
		}
	}()
}

// TakeMetrics moves the /metrics server and its collectors from the
// exporters these replace (which were built without one), so that a
// reload neither rebinds the address nor resets the counters.
func (x *Exporters) TakeMetrics(old *Exporters) {
	x.requests, x.self, x.server = old.requests, old.self, old.server
	old.requests, old.self, old.server = nil, nil, nil
}

// shutdownGrace bounds how long the spans still queued at the end may
// take to go out.
const shutdownGrace = 5 * time.Second

// Shutdown flushes what is queued and stops serving.
func (x *Exporters) Shutdown() { x.ShutdownBy(time.Now().Add(shutdownGrace)) }

// ShutdownBy flushes what is queued, giving up at deadline, and stops serving.
func (x *Exporters) ShutdownBy(deadline time.Time) {
	if x.otlp != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := x.otlp.Shutdown(ctx); err != nil {
			x.log.Warn("OTLP shutdown", "error", err)
		}
		cancel()
	}
	x.close()
}

// close releases what Build opened.
func (x *Exporters) close() {
	if x.server != nil {
		_ = x.server.Close()
		x.server = nil
	}
	if x.json != nil {
		_ = x.json.Flush()
	}
	if x.jsonFile != nil {
		_ = x.jsonFile.Close()
		x.jsonFile = nil
	}
}

// PrintStats says what the OTLP exporter did.
func (x *Exporters) PrintStats(w io.Writer) {
	if x.otlp == nil {
		return
	}
	st := x.otlp.Stats()
	fmt.Fprintf(w, "otlp: %d spans exported, %d dropped (queue full), %d failed (%d of %d exports failed); requests: %d over the latency budget, %d sampled by their caller, %d by ratio, %d not sampled\n",
		st.SpansExported, st.SpansDropped, st.SpansFailed, st.ExportErrors, st.Exports,
		st.Sampled[export.SampledOverBudget], st.Sampled[export.SampledByParent], st.Sampled[export.SampledByRatio], st.Sampled[export.NotSampled])
}

// checkOTLPRanges checks the queue, batch, delay, timeout and sampling
// settings against their ranges. Flags and the config file are checked
// as they are read; this catches the OTEL_* variables, which the export
// package takes as they come (a 10^17-span queue panics in makechan, a
// huge number of milliseconds wraps around): their raw values, and the
// resolved ones.
func checkOTLPRanges(o config.OTLP, smp config.Sampling, s export.OTLPSettings, getenv func(string) string) error {
	var errs []error
	bad := func(name string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	// env is the variable a setting comes from ("" when configured).
	env := func(configured string, envs ...string) (name, val string) {
		if configured != "" {
			return "", ""
		}
		for _, e := range envs {
			if v := strings.TrimSpace(getenv(e)); v != "" {
				return e, v
			}
		}
		return "", ""
	}
	count := func(r config.Range, configured string, envs ...string) {
		if name, v := env(configured, envs...); name != "" {
			if _, err := r.ParseCount(v); err != nil {
				bad(name, err)
			}
		}
	}
	millis := func(r config.Range, configured string, envs ...string) {
		if name, v := env(configured, envs...); name != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			switch {
			case err != nil:
				// ResolveOTLP said so.
			case ms > r.Max/int64(time.Millisecond) || ms < r.Min/int64(time.Millisecond):
				bad(name, fmt.Errorf("%s ms is out of range: want %s", v, r))
			}
		}
	}
	count(config.QueueSize, o.QueueSize, "OTEL_BSP_MAX_QUEUE_SIZE")
	count(config.BatchSize, o.BatchSize, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
	millis(config.BatchDelay, o.BatchDelay, "OTEL_BSP_SCHEDULE_DELAY")
	millis(config.OTLPTimeout, o.Timeout, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The resolved values (configured ones were checked already: this is
	// the last line before an allocation).
	for _, c := range []struct {
		name string
		r    config.Range
		v    int64
	}{
		{"otlp queue size", config.QueueSize, int64(s.QueueSpans)},
		{"otlp batch size", config.BatchSize, int64(s.BatchSpans)},
		{"otlp batch delay", config.BatchDelay, int64(s.BatchDelay)},
		{"otlp timeout", config.OTLPTimeout, int64(s.Timeout)},
		{"--latency-budget", config.LatencyBudget, int64(s.Sampler.Budget)},
	} {
		if err := c.r.Check(c.v); err != nil {
			bad(c.name, err)
		}
	}
	if err := config.CheckSampleRatio(s.Sampler.Ratio); err != nil {
		name := "--sample-ratio"
		if smp.Ratio == "" {
			name = "OTEL_TRACES_SAMPLER_ARG"
		}
		bad(name, err)
	}
	return errors.Join(errs...)
}
