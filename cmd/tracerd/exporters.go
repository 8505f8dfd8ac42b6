package main

import (
	"context"
	"errors"
	"flag"
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
	"github.com/tracerd/tracerd/internal/pipeline"
)

// boolString is a boolean flag that remembers whether it was given.
type boolString struct{ v *string }

func (b boolString) String() string   { return "" }
func (b boolString) IsBoolFlag() bool { return true }
func (b boolString) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*b.v = strconv.FormatBool(v)
	return nil
}

// rawString is a string flag kept as given ("" is not given); check,
// when set, vets it.
type rawString struct {
	v     *string
	check func(string) error
}

func (r rawString) String() string { return "" }
func (r rawString) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty value")
	}
	if r.check != nil {
		if err := r.check(s); err != nil {
			return err
		}
	}
	*r.v = s
	return nil
}

// inRange vets a flag's value against a setting's range.
func inRange(r config.Range) func(string) error { return r.CheckString }

func sampleRatio(s string) error { _, err := config.ParseSampleRatio(s); return err }

// listenAddr is --metrics-addr: host:port or off.
type listenAddr struct{ v *string }

func (a listenAddr) String() string { return "" }
func (a listenAddr) Set(s string) error {
	if s != "off" {
		if err := config.CheckListenAddr(s); err != nil {
			return err
		}
	}
	*a.v = s
	return nil
}

// exporterFlags are run's output flags.
type exporterFlags struct {
	json            string
	metricsAddr     string
	services        []string
	otlp            export.OTLPFlags
	keepQueryValues bool // query values as sent, in JSON lines and OTLP (default: REDACTED)
}

// register adds the output flags. OTLP flags win over the standard
// OTEL_* environment variables of the same setting.
func (f *exporterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.json, "json", "", "also write one JSON object per request to this file ('-' for stdout)")
	f.metricsAddr = metrics.DefaultAddr
	fs.Var(listenAddr{&f.metricsAddr}, "metrics-addr", fmt.Sprintf("serve Prometheus /metrics on this address, a port from 1 to 65535 ('off' for none; default %s)", metrics.DefaultAddr))
	fs.Var(stringList{vals: &f.services}, "service-name", "name the service of matching requests: pid:N=NAME, port:N=NAME, comm:NAME=NAME or cgroup:PATH=NAME (repeatable; the first match wins; default: the systemd unit, else the process name)")
	o := &f.otlp
	fs.Var(rawString{v: &o.Endpoint}, "otlp-endpoint", "send OTLP traces to this URL, e.g. http://collector:4318 or https://collector:4317 with --otlp-protocol grpc (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; traces are off when neither is set)")
	fs.Var(rawString{v: &o.Protocol}, "otlp-protocol", "grpc or http/protobuf (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL; default http/protobuf)")
	fs.Var(stringList{vals: &o.Headers}, "otlp-header", "send this KEY=VALUE header with each export (repeatable; OTEL_EXPORTER_OTLP_[TRACES_]HEADERS)")
	fs.Var(rawString{&o.Timeout, inRange(config.OTLPTimeout)}, "otlp-timeout", fmt.Sprintf("time one export may take, retries included, %s (OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT in ms; default %s)", config.OTLPTimeout, export.DefaultTimeout))
	fs.Var(boolString{&o.Insecure}, "otlp-insecure", "plaintext gRPC to a host:port endpoint (OTEL_EXPORTER_OTLP_[TRACES_]INSECURE; URLs say it with http:// or https://)")
	fs.Var(rawString{v: &o.Certificate}, "otlp-certificate", "PEM file of the CA that signed the endpoint's certificate (OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE; default: the system's)")
	fs.Var(rawString{v: &o.ClientCertificate}, "otlp-client-certificate", "PEM client certificate for mTLS (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE)")
	fs.Var(rawString{v: &o.ClientKey}, "otlp-client-key", "PEM key of the client certificate (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY)")
	fs.Var(rawString{v: &o.Compression}, "otlp-compression", "gzip or none (OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION; default none)")
	fs.Var(rawString{&o.QueueSize, inRange(config.QueueSize)}, "otlp-queue-size", fmt.Sprintf("spans waiting for export at most, %s; more are dropped and counted (OTEL_BSP_MAX_QUEUE_SIZE; default %d)", config.QueueSize, export.DefaultQueueSpans))
	fs.Var(rawString{&o.BatchSize, inRange(config.BatchSize)}, "otlp-batch-size", fmt.Sprintf("spans per export at most, %s (OTEL_BSP_MAX_EXPORT_BATCH_SIZE; default %d)", config.BatchSize, export.DefaultBatchSpans))
	fs.Var(rawString{&o.BatchDelay, inRange(config.BatchDelay)}, "otlp-batch-delay", fmt.Sprintf("a batch waits at most this long to fill, %s (OTEL_BSP_SCHEDULE_DELAY in ms; default %s)", config.BatchDelay, export.DefaultBatchDelay))
	fs.Var(rawString{&o.LatencyBudget, inRange(config.LatencyBudget)}, "latency-budget", fmt.Sprintf("export every request slower than this as a trace, %s (default %s)", config.LatencyBudget, export.DefaultLatencyBudget))
	fs.Var(rawString{&o.MaxTracesPerSecond, inRange(config.MaxTraces)}, "otlp-max-traces-per-second", fmt.Sprintf("export at most this many traces a second per service, whatever decided them (a caller's sampled flag, the latency budget), %s; the rest are counted (default %d)", config.MaxTraces, export.DefaultMaxTracesPerSecond))
	fs.BoolVar(&f.keepQueryValues, "keep-query-values", false, "write URL query values as the client sent them (JSON lines, OTLP url.query); by default each value is REDACTED, keys kept")
	fs.Var(rawString{&o.SampleRatio, sampleRatio}, "sample-ratio", fmt.Sprintf("and this ratio of the others, chosen by trace id, from %s (OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG; default %g)", config.SampleRatioRange, export.DefaultSampleRatio))
}

// exporters are run's outputs, built before tracing starts so that a
// bad setting costs nothing but an error message.
type exporters struct {
	log      *slog.Logger
	procs    *export.Processes
	otlpSet  export.OTLPSettings
	otlp     *export.OTLP
	requests *metrics.Requests
	self     *metrics.Self
	server   *metrics.Server
	served   chan error
	json     *export.JSONLines
	jsonFile *os.File
}

// build checks every setting, opens the outputs and prints where
// requests go. Mistakes are usage errors (exit 2).
func (f *exporterFlags) build(log *slog.Logger) (*exporters, error) {
	x := &exporters{log: log}
	var rules []export.ServiceRule
	for _, s := range f.services {
		rule, err := export.ParseServiceRule(s)
		if err != nil {
			return nil, usageError{fmt.Errorf("--service-name: %w", err)}
		}
		rules = append(rules, rule)
	}
	x.procs = export.NewProcesses(rules)
	set, err := export.ResolveOTLP(f.otlp, os.Getenv)
	if err != nil {
		return nil, usageError{err}
	}
	if err := checkOTLPRanges(f.otlp, set, os.Getenv); err != nil {
		return nil, usageError{err}
	}
	x.otlpSet = set
	if f.json != "" {
		w := io.Writer(os.Stdout)
		if f.json != "-" {
			file, err := createOutput(f.json, true)
			if err != nil {
				return nil, usageError{fmt.Errorf("--json: %w", err)}
			}
			x.jsonFile, w = file, file
		}
		x.json = export.NewJSONLinesWith(w, export.JSONOptions{KeepQueryValues: f.keepQueryValues})
	}
	if f.metricsAddr != "off" && f.metricsAddr != "" {
		if err := config.CheckListenAddr(f.metricsAddr); err != nil {
			x.close()
			return nil, usageError{fmt.Errorf("--metrics-addr: %w", err)}
		}
		reg := metrics.Registry()
		x.requests = metrics.NewRequests(reg)
		x.self = metrics.NewSelf(reg)
		if x.server, err = metrics.Listen(f.metricsAddr, reg, log); err != nil {
			x.close()
			return nil, err
		}
	}
	if set.Enabled {
		client, err := set.Client()
		if err != nil {
			x.close()
			return nil, usageError{err}
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
			Version:    versionString(),
			Logger:     log,

			KeepQueryValues: f.keepQueryValues,
		})
		if err != nil {
			x.close()
			return nil, err
		}
	}
	x.announce()
	return x, nil
}

func (x *exporters) announce() {
	if x.otlp != nil {
		s := x.otlpSet.Sampler
		sampling := fmt.Sprintf("%g%% of the requests", s.Ratio*100)
		if s.Budget > 0 {
			sampling = fmt.Sprintf("every request over %s and %g%% of the others", s.Budget, s.Ratio*100)
		}
		fmt.Fprintf(os.Stderr, "tracerd: OTLP traces to %s: %s (queue %d spans)\n", x.otlpSet.Endpoint(), sampling, x.otlpSet.QueueSpans)
	} else {
		fmt.Fprintln(os.Stderr, "tracerd: OTLP traces off (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT turns them on)")
	}
	if x.server != nil {
		fmt.Fprintf(os.Stderr, "tracerd: Prometheus metrics at http://%s/metrics\n", x.server.Addr())
	}
}

// sink hands each request to the outputs: the process is identified
// (service name) first, then the trace decision is made, so that the
// metrics carry the trace id of exported requests as an exemplar.
func (x *exporters) sink() pipeline.Sink {
	return pipeline.SinkFunc(func(r *correlate.Request) error {
		p := x.procs.Identify(r)
		traced := false
		if x.otlp != nil {
			traced = x.otlp.Add(r, p) != export.NotSampled
		}
		if x.requests != nil {
			x.requests.Observe(r, traced)
		}
		if x.json != nil {
			if err := x.json.Write(r); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
			// A line per request as it ends: `tail -f` shows it at once.
			if err := x.json.Flush(); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
		}
		return nil
	})
}

// checkOTLPRanges checks the queue, batch, delay, timeout and sampling
// settings against their ranges. Flags and the config file are checked
// as they are read; this catches the OTEL_* variables, which the export
// package takes as they come (a 10^17-span queue panics in makechan, a
// huge number of milliseconds wraps around): their raw values, and the
// resolved ones.
func checkOTLPRanges(f export.OTLPFlags, s export.OTLPSettings, getenv func(string) string) error {
	var errs []error
	bad := func(name string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	// env is the variable a setting comes from ("" when a flag gives it).
	env := func(flagVal string, envs ...string) (name, val string) {
		if flagVal != "" {
			return "", ""
		}
		for _, e := range envs {
			if v := strings.TrimSpace(getenv(e)); v != "" {
				return e, v
			}
		}
		return "", ""
	}
	count := func(r config.Range, flagVal string, envs ...string) {
		if name, v := env(flagVal, envs...); name != "" {
			if _, err := r.ParseCount(v); err != nil {
				bad(name, err)
			}
		}
	}
	millis := func(r config.Range, flagVal string, envs ...string) {
		if name, v := env(flagVal, envs...); name != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			switch {
			case err != nil:
				// ResolveOTLP said so.
			case ms > r.Max/int64(time.Millisecond) || ms < r.Min/int64(time.Millisecond):
				bad(name, fmt.Errorf("%s ms is out of range: want %s", v, r))
			}
		}
	}
	count(config.QueueSize, f.QueueSize, "OTEL_BSP_MAX_QUEUE_SIZE")
	count(config.BatchSize, f.BatchSize, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
	millis(config.BatchDelay, f.BatchDelay, "OTEL_BSP_SCHEDULE_DELAY")
	millis(config.OTLPTimeout, f.Timeout, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The resolved values (flags were checked already: this is the
	// last line before an allocation).
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
		if f.SampleRatio == "" {
			name = "OTEL_TRACES_SAMPLER_ARG"
		}
		bad(name, err)
	}
	return errors.Join(errs...)
}

// started connects the self-metrics to the running session and starts
// serving /metrics.
func (x *exporters) started(tr *tracing) {
	if x.server == nil {
		return
	}
	src := metrics.Sources{
		Kernel:     tr.tracer.Counters,
		Read:       tr.sess.Requests,
		SinkErrors: tr.sess.SinkErrors,
	}
	if x.otlp != nil {
		src.OTLP = x.otlp.Stats
	}
	x.self.SetSources(src)
	x.served = make(chan error, 1)
	go func() { x.served <- x.server.Serve() }()
}

// shutdownGrace bounds how long the spans still queued at the end may
// take to go out.
const shutdownGrace = 5 * time.Second

// shutdown flushes what is queued and stops serving.
func (x *exporters) shutdown() { x.shutdownBy(time.Now().Add(shutdownGrace)) }

// shutdownBy flushes what is queued, giving up at deadline, and stops serving.
func (x *exporters) shutdownBy(deadline time.Time) {
	if x.otlp != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := x.otlp.Shutdown(ctx); err != nil {
			x.log.Warn("OTLP shutdown", "error", err)
		}
		cancel()
	}
	x.close()
}

// close releases what build opened.
func (x *exporters) close() {
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

// printStats says what the exporters did.
func (x *exporters) printStats(w io.Writer) {
	if x.otlp == nil {
		return
	}
	st := x.otlp.Stats()
	fmt.Fprintf(w, "otlp: %d spans exported, %d dropped (queue full), %d failed (%d of %d exports failed); requests: %d over the latency budget, %d sampled by their caller, %d by ratio, %d not sampled\n",
		st.SpansExported, st.SpansDropped, st.SpansFailed, st.ExportErrors, st.Exports,
		st.Sampled[export.SampledOverBudget], st.Sampled[export.SampledByParent], st.Sampled[export.SampledByRatio], st.Sampled[export.NotSampled])
}
