// Package flags is tracerd's command line over its configuration: the
// flags of run and snapshot write into a config.Config, so that for
// `tracerd run` the file is read first and the flags override it (Run).
package flags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/metrics"
	"github.com/tracerd/tracerd/internal/targets"
)

// Targets registers the selection flags of run and snapshot.
func Targets(fs *flag.FlagSet, t *targets.Targets) {
	fs.Var(uintList[uint32]{&t.PIDs, 32, "pid"}, "pid", "trace this process (repeatable, or comma-separated)")
	fs.Var(uintList[uint16]{&t.Ports, 16, "port"}, "port", "trace connections accepted on this local port (repeatable)")
	fs.Var(stringList{vals: &t.Comms}, "comm", "trace processes with this name (repeatable)")
	fs.Var(stringList{vals: &t.Cgroups}, "cgroup", "trace processes in this cgroup v1 or v2 directory and below (repeatable)")
}

// Engine registers the kernel engine's limits and the log level.
func Engine(fs *flag.FlagSet, e *config.Engine, l *config.Log) {
	fs.Func("log-level", "debug, info (default), warn or error", func(s string) error {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		l.Level = s
		return nil
	})
	fs.Func("idle-timeout", fmt.Sprintf("a keep-alive request is finished after this long without activity, %s (default %s)", config.IdleTimeout, e.IdleTimeout), func(s string) error {
		d, err := config.IdleTimeout.ParseDuration(s)
		if err != nil {
			return err
		}
		e.IdleTimeout = d
		return nil
	})
	fs.Var(stringList{vals: &e.SkipHooks, check: config.CheckSkipHook}, "skip-hook", "do not attach this optional hook (hook name from 'tracerd check'); its phases go absent")
	fs.Func("max-conns", fmt.Sprintf("traced connections held at once, %s (default %d)", config.MaxConns, e.MaxConns), func(s string) error {
		v, err := config.MaxConns.ParseCount(s)
		if err != nil {
			return err
		}
		e.MaxConns = uint32(v)
		return nil
	})
}

// Go registers --go and --go-max-calls.
func Go(fs *flag.FlagSet, e *config.Engine) {
	fs.BoolVar(&e.Go, "go", e.Go, "attach uprobes to traced Go processes (GC pauses, serialization, net/http, gRPC); --go=false for the kernel engine alone")
	fs.Func("go-max-calls", fmt.Sprintf("a probed Go function firing more than this many times a second in one process has its probes switched off, %s (default %d)", config.GoMaxCalls, e.GoMaxCallsPerSecond), func(s string) error {
		n, err := config.GoMaxCalls.ParseCount(s)
		if err != nil {
			return err
		}
		e.GoMaxCallsPerSecond = int(n)
		return nil
	})
}

// Findings registers when a cause of lost time is named on a request.
func Findings(fs *flag.FlagSet, f *config.Findings) {
	fs.BoolVar(&f.Enabled, "findings", f.Enabled, "name the cause of slow requests (docs/findings.md); --findings=false for none")
	fs.Func("finding-min-lost", fmt.Sprintf("a cause is named when it cost a request at least this long, %s (default %s)", config.FindingMinLost, f.MinLost), func(s string) error {
		d, err := config.FindingMinLost.ParseDuration(s)
		f.MinLost = d
		return err
	})
	fs.Func("finding-min-share", fmt.Sprintf("and at least this percentage of its duration, %s (default %d)", config.FindingMinShare, f.MinSharePct), func(s string) error {
		n, err := config.FindingMinShare.ParseCount(s)
		f.MinSharePct = int(n)
		return err
	})
}

// Exporters registers run's output flags. OTLP flags win over the
// standard OTEL_* environment variables of the same setting.
func Exporters(fs *flag.FlagSet, e *config.Exporters) {
	// Registered with the flag package's own types for their help text,
	// with no default (the file's value is not one), then the file's
	// value put back.
	json, keepQueryValues := e.JSON, e.KeepQueryValues
	fs.StringVar(&e.JSON, "json", "", "also write one JSON object per request to this file ('-' for stdout)")
	fs.BoolVar(&e.KeepQueryValues, "keep-query-values", false, "write URL query values as the client sent them (JSON lines, OTLP url.query); by default each value is REDACTED, keys kept")
	e.JSON, e.KeepQueryValues = json, keepQueryValues
	fs.Var(listenAddr{&e.MetricsAddr}, "metrics-addr", fmt.Sprintf("serve Prometheus /metrics on this address, a port from 1 to 65535 ('off' for none; default %s)", metrics.DefaultAddr))
	fs.Var(stringList{vals: &e.ServiceNames}, "service-name", "name the service of matching requests: pid:N=NAME, port:N=NAME, comm:NAME=NAME or cgroup:PATH=NAME (repeatable; the first match wins; default: the systemd unit, else the process name)")
	o, smp := &e.OTLP, &e.Sampling
	inRange := func(r config.Range) func(string) error { return r.CheckString }
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
	fs.Var(rawString{&smp.LatencyBudget, inRange(config.LatencyBudget)}, "latency-budget", fmt.Sprintf("export every request slower than this as a trace, %s (default %s)", config.LatencyBudget, export.DefaultLatencyBudget))
	fs.Var(rawString{&smp.MaxTracesPerSecond, inRange(config.MaxTraces)}, "otlp-max-traces-per-second", fmt.Sprintf("export at most this many traces a second per service, whatever decided them (a caller's sampled flag, the latency budget), %s; the rest are counted (default %d)", config.MaxTraces, export.DefaultMaxTracesPerSecond))
	sampleRatio := func(s string) error { _, err := config.ParseSampleRatio(s); return err }
	fs.Var(rawString{&smp.Ratio, sampleRatio}, "sample-ratio", fmt.Sprintf("and this ratio of the others, chosen by trace id, from %s (OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG; default %g)", config.SampleRatioRange, export.DefaultSampleRatio))
}

// Parse parses args: -h prints the flags and returns flag.ErrHelp;
// a mistake is a config.UsageError naming the flag as the user spells it.
func Parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(nil) // stderr
		fs.Usage()
		return err
	}
	if err != nil {
		return config.Usage(fmt.Errorf("%s (see 'tracerd %s -h')", flagError(err), fs.Name()))
	}
	if fs.NArg() > 0 {
		return config.Usage(fmt.Errorf("unexpected argument %q (see 'tracerd %s -h')", fs.Arg(0), fs.Name()))
	}
	return nil
}

var invalidValueRe = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -(\S+): (.*)$`)

// flagError names the flag as the user spells it: the flag package's
// 'invalid value "x" for flag -name: why' becomes '--name: why' (with
// the value when why does not already show it).
func flagError(err error) string {
	m := invalidValueRe.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	val, _ := strconv.Unquote(m[1])
	if strings.Contains(m[3], val) {
		return fmt.Sprintf("--%s: %s", m[2], m[3])
	}
	return fmt.Sprintf("--%s %s: %s", m[2], m[1], m[3])
}
