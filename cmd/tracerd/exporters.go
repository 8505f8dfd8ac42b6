package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

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

type rawString struct{ v *string }

func (r rawString) String() string { return "" }
func (r rawString) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty value")
	}
	*r.v = s
	return nil
}

// exporterFlags are run's output flags.
type exporterFlags struct {
	json        string
	metricsAddr string
	services    []string
	otlp        export.OTLPFlags
}

// register adds the output flags. OTLP flags win over the standard
// OTEL_* environment variables of the same setting.
func (f *exporterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.json, "json", "", "also write one JSON object per request to this file ('-' for stdout)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", metrics.DefaultAddr, "serve Prometheus /metrics on this address ('off' for none)")
	fs.Var(stringList{&f.services}, "service-name", "name the service of matching requests: pid:N=NAME, port:N=NAME, comm:NAME=NAME or cgroup:PATH=NAME (repeatable; the first match wins; default: the systemd unit, else the process name)")
	o := &f.otlp
	fs.Var(rawString{&o.Endpoint}, "otlp-endpoint", "send OTLP traces to this URL, e.g. http://collector:4318 or https://collector:4317 with --otlp-protocol grpc (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; traces are off when neither is set)")
	fs.Var(rawString{&o.Protocol}, "otlp-protocol", "grpc or http/protobuf (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL; default http/protobuf)")
	fs.Var(stringList{&o.Headers}, "otlp-header", "send this KEY=VALUE header with each export (repeatable; OTEL_EXPORTER_OTLP_[TRACES_]HEADERS)")
	fs.Var(rawString{&o.Timeout}, "otlp-timeout", fmt.Sprintf("time one export may take, retries included (OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT in ms; default %s)", export.DefaultTimeout))
	fs.Var(boolString{&o.Insecure}, "otlp-insecure", "plaintext gRPC to a host:port endpoint (OTEL_EXPORTER_OTLP_[TRACES_]INSECURE; URLs say it with http:// or https://)")
	fs.Var(rawString{&o.Certificate}, "otlp-certificate", "PEM file of the CA that signed the endpoint's certificate (OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE; default: the system's)")
	fs.Var(rawString{&o.ClientCertificate}, "otlp-client-certificate", "PEM client certificate for mTLS (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE)")
	fs.Var(rawString{&o.ClientKey}, "otlp-client-key", "PEM key of the client certificate (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY)")
	fs.Var(rawString{&o.Compression}, "otlp-compression", "gzip or none (OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION; default none)")
	fs.Var(rawString{&o.QueueSize}, "otlp-queue-size", fmt.Sprintf("spans waiting for export at most; more are dropped and counted (OTEL_BSP_MAX_QUEUE_SIZE; default %d)", export.DefaultQueueSpans))
	fs.Var(rawString{&o.BatchSize}, "otlp-batch-size", fmt.Sprintf("spans per export at most (OTEL_BSP_MAX_EXPORT_BATCH_SIZE; default %d)", export.DefaultBatchSpans))
	fs.Var(rawString{&o.BatchDelay}, "otlp-batch-delay", fmt.Sprintf("a batch waits at most this long to fill (OTEL_BSP_SCHEDULE_DELAY in ms; default %s)", export.DefaultBatchDelay))
	fs.Var(rawString{&o.LatencyBudget}, "latency-budget", fmt.Sprintf("export every request slower than this as a trace; 0 for none (default %s)", export.DefaultLatencyBudget))
	fs.Var(rawString{&o.SampleRatio}, "sample-ratio", fmt.Sprintf("and this ratio of the others, chosen by trace id (OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG; default %g)", export.DefaultSampleRatio))
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
	x.otlpSet = set
	if f.json != "" {
		w := io.Writer(os.Stdout)
		if f.json != "-" {
			file, err := os.OpenFile(f.json, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, usageError{fmt.Errorf("--json: %w", err)}
			}
			x.jsonFile, w = file, file
		}
		x.json = export.NewJSONLines(w)
	}
	if f.metricsAddr != "off" && f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			x.close()
			return nil, usageError{fmt.Errorf("--metrics-addr %q: want host:port (or off)", f.metricsAddr)}
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
			Version:    version,
			Logger:     log,
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
