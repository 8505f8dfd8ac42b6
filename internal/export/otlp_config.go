package export

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/tracerd/tracerd/internal/config"
)

// OTLP protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Defaults of the export queue. OTel SDKs default to a 2048-span queue
// flushed every 5 s; an agent exporting for a whole node holds more and
// sends sooner, so that a burst of slow requests is not dropped.
const (
	DefaultQueueSpans = 8192
	DefaultBatchSpans = 512
	DefaultBatchDelay = time.Second
	DefaultTimeout    = 10 * time.Second
)

// OTLPSettings is the resolved OTLP configuration.
type OTLPSettings struct {
	Enabled     bool
	Protocol    string
	URL         *url.URL // for HTTP the full URL of the traces endpoint
	Insecure    bool     // plaintext
	TLS         *tls.Config
	Headers     map[string]string
	Timeout     time.Duration
	Compression string // "gzip" or "none"
	QueueSpans  int
	BatchSpans  int
	BatchDelay  time.Duration
	Sampler     Sampler
	Resource    []*commonpb.KeyValue // OTEL_RESOURCE_ATTRIBUTES
}

// setting looks a value up: the flag, then each environment variable in
// turn (signal-specific first). It says where the value came from.
func setting(getenv func(string) string, flagName, flagVal string, envs ...string) (val, from string) {
	if flagVal != "" {
		return flagVal, "--" + flagName
	}
	for _, e := range envs {
		if v := strings.TrimSpace(getenv(e)); v != "" {
			return v, e
		}
	}
	return "", ""
}

// ResolveOTLP merges the configured values (file and flags; "" is not
// given), the standard OTEL_* environment variables and defaults, reads the TLS files and checks everything, so that a
// mistake is reported at start. OTLP is on when an endpoint is given
// (flag, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT)
// or OTEL_TRACES_EXPORTER=otlp (the default endpoint then);
// OTEL_TRACES_EXPORTER=none turns it off unless the flag is given.
func ResolveOTLP(o config.OTLP, sampling config.Sampling, getenv func(string) string) (OTLPSettings, error) {
	s := OTLPSettings{}
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }

	// Sampling and queue settings apply whether or not OTLP is on
	// (they are checked either way: a typo is an error).
	budget, from := setting(getenv, "latency-budget", sampling.LatencyBudget)
	s.Sampler.Budget = DefaultLatencyBudget
	if budget != "" {
		d, err := time.ParseDuration(budget)
		if err != nil || d < 0 {
			return s, fmt.Errorf("%s: %q is not a duration ≥ 0 (like 50ms)", from, budget)
		}
		s.Sampler.Budget = d
	}
	s.Sampler.Ratio = DefaultSampleRatio
	if ratio, from := setting(getenv, "sample-ratio", sampling.Ratio); ratio != "" {
		v, err := strconv.ParseFloat(ratio, 64)
		if err != nil || v < 0 || v > 1 {
			return s, fmt.Errorf("%s: %q is not a ratio between 0 and 1", from, ratio)
		}
		s.Sampler.Ratio = v
	} else {
		switch sampler := env("OTEL_TRACES_SAMPLER"); sampler {
		case "always_on", "parentbased_always_on":
			s.Sampler.Ratio = 1
		case "always_off", "parentbased_always_off":
			s.Sampler.Ratio = 0
		case "traceidratio", "parentbased_traceidratio":
			if arg := env("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
				v, err := strconv.ParseFloat(arg, 64)
				if err != nil || v < 0 || v > 1 {
					return s, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
				}
				s.Sampler.Ratio = v
			}
		}
	}
	s.Sampler.MaxPerSecond = DefaultMaxTracesPerSecond
	if v, from := setting(getenv, "otlp-max-traces-per-second", sampling.MaxTracesPerSecond); v != "" {
		rate, err := strconv.ParseFloat(v, 64)
		if err != nil || rate < 0 || math.IsInf(rate, 0) {
			return s, fmt.Errorf("%s: %q is not a number of traces per second ≥ 0 (0: no cap)", from, v)
		}
		s.Sampler.MaxPerSecond = rate
	}
	var err error
	if s.QueueSpans, err = positiveInt(getenv, "otlp-queue-size", o.QueueSize, DefaultQueueSpans, "OTEL_BSP_MAX_QUEUE_SIZE"); err != nil {
		return s, err
	}
	if s.BatchSpans, err = positiveInt(getenv, "otlp-batch-size", o.BatchSize, DefaultBatchSpans, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"); err != nil {
		return s, err
	}
	s.BatchSpans = min(s.BatchSpans, s.QueueSpans)
	if s.BatchDelay, err = duration(getenv, "otlp-batch-delay", o.BatchDelay, DefaultBatchDelay, "OTEL_BSP_SCHEDULE_DELAY"); err != nil {
		return s, err
	}
	if s.Timeout, err = duration(getenv, "otlp-timeout", o.Timeout, DefaultTimeout, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); err != nil {
		return s, err
	}

	s.Protocol = ProtocolHTTP
	if p, from := setting(getenv, "otlp-protocol", o.Protocol, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" {
		switch p {
		case ProtocolGRPC, ProtocolHTTP:
			s.Protocol = p
		case "http/json":
			return s, fmt.Errorf("%s: http/json is not supported: use grpc or http/protobuf", from)
		default:
			return s, fmt.Errorf("%s: unknown protocol %q (grpc or http/protobuf)", from, p)
		}
	}

	endpoint, from := setting(getenv, "otlp-endpoint", o.Endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	base := false // OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: /v1/traces is appended
	if endpoint == "" {
		if endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT"); endpoint != "" {
			from, base = "OTEL_EXPORTER_OTLP_ENDPOINT", true
		}
	}
	switch exp := env("OTEL_TRACES_EXPORTER"); {
	case o.Endpoint != "":
		s.Enabled = true
	case exp == "none":
		return s, nil
	case endpoint != "" || exp == "otlp":
		s.Enabled = true
	case exp != "":
		return s, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", exp)
	default:
		return s, nil
	}
	if endpoint == "" {
		endpoint, from = "http://localhost:4318", "the default endpoint"
		base = true
		if s.Protocol == ProtocolGRPC {
			endpoint = "http://localhost:4317"
		}
	}
	insecure, insecureFrom := setting(getenv, "otlp-insecure", o.Insecure, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
	if s.URL, s.Insecure, err = endpointURL(endpoint, from, s.Protocol, base); err != nil {
		return s, err
	}
	if s.URL.Scheme == "" { // gRPC host:port: TLS unless insecure
		if insecure != "" {
			v, err := strconv.ParseBool(insecure)
			if err != nil {
				return s, fmt.Errorf("%s: %q is not true or false", insecureFrom, insecure)
			}
			s.Insecure = v
		}
	}

	if s.Headers, err = headers(getenv, o.Headers); err != nil {
		return s, err
	}
	comp, compFrom := setting(getenv, "otlp-compression", o.Compression, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
	switch comp {
	case "", "none":
		s.Compression = "none"
	case "gzip":
		s.Compression = "gzip"
	default:
		return s, fmt.Errorf("%s: unknown compression %q (gzip or none)", compFrom, comp)
	}
	if ra := env("OTEL_RESOURCE_ATTRIBUTES"); ra != "" {
		if s.Resource, err = ParseResourceAttributes(ra); err != nil {
			return s, err
		}
	}

	ca, caFrom := setting(getenv, "otlp-certificate", o.Certificate, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
	cert, certFrom := setting(getenv, "otlp-client-certificate", o.ClientCertificate, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
	key, keyFrom := setting(getenv, "otlp-client-key", o.ClientKey, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
	if s.Insecure {
		for _, given := range [][2]string{{ca, caFrom}, {cert, certFrom}, {key, keyFrom}} {
			if given[0] != "" {
				return s, fmt.Errorf("%s is set but the endpoint %s is plaintext: use https:// for TLS", given[1], s.URL.Redacted())
			}
		}
		return s, nil
	}
	s.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return s, fmt.Errorf("%s: reading the CA certificate: %w", caFrom, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("%s: %s holds no PEM certificate", caFrom, ca)
		}
		s.TLS.RootCAs = pool
	}
	switch {
	case cert != "" && key != "":
		for _, file := range [][2]string{{cert, certFrom}, {key, keyFrom}} {
			if _, err := os.Stat(file[0]); err != nil {
				return s, fmt.Errorf("%s: %w", file[1], err)
			}
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return s, fmt.Errorf("%s and %s: loading the client certificate: %w", certFrom, keyFrom, err)
		}
		s.TLS.Certificates = []tls.Certificate{pair}
	case cert != "":
		return s, fmt.Errorf("%s is set without a client key (--otlp-client-key or OTEL_EXPORTER_OTLP_CLIENT_KEY)", certFrom)
	case key != "":
		return s, fmt.Errorf("%s is set without a client certificate (--otlp-client-certificate or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)", keyFrom)
	}
	return s, nil
}

// endpointURL checks an endpoint and gives the URL to send to.
// http:// is plaintext, https:// is TLS. For HTTP, a base URL gets
// /v1/traces appended, and so does a URL with no path. For gRPC, a bare
// host:port is accepted too (TLS unless insecure), and a path ignored.
func endpointURL(endpoint, from, protocol string, base bool) (*url.URL, bool, error) {
	bad := func(why string) error {
		return fmt.Errorf("%s: %q is not a valid OTLP endpoint: %s", from, endpoint, why)
	}
	if !strings.Contains(endpoint, "://") {
		if protocol != ProtocolGRPC {
			return nil, false, bad("want a URL like http://collector:4318")
		}
		host, port, err := net.SplitHostPort(endpoint)
		if err != nil || host == "" {
			return nil, false, bad("want http://host:4317, https://host:4317 or host:port")
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, false, bad("bad port")
		}
		return &url.URL{Host: endpoint}, false, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, false, bad(err.Error())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, false, bad("the scheme must be http or https")
	}
	if u.Hostname() == "" {
		return nil, false, bad("no host")
	}
	if u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, false, bad("no query or fragment allowed")
	}
	if p := u.Port(); p != "" {
		if v, err := strconv.ParseUint(p, 10, 16); err != nil || v == 0 {
			return nil, false, bad("bad port")
		}
	} else {
		switch {
		case u.Scheme == "https":
			u.Host = net.JoinHostPort(u.Hostname(), "443")
		case protocol == ProtocolGRPC:
			u.Host = net.JoinHostPort(u.Hostname(), "4317")
		default:
			u.Host = net.JoinHostPort(u.Hostname(), "4318")
		}
	}
	if protocol == ProtocolHTTP {
		switch {
		case base:
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		case u.Path == "" || u.Path == "/":
			u.Path = "/v1/traces"
		}
	} else {
		u.Path = ""
	}
	return u, u.Scheme == "http", nil
}

// headers: --otlp-header key=value (repeatable) wins over
// OTEL_EXPORTER_OTLP_(TRACES_)HEADERS ("k=v,k2=v2", percent-encoded).
func headers(getenv func(string) string, flags []string) (map[string]string, error) {
	h := map[string]string{}
	if len(flags) > 0 {
		for _, kv := range flags {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("--otlp-header: %q is not key=value", kv)
			}
			h[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		return h, nil
	}
	raw, from := setting(getenv, "", "", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
	for part := range strings.SplitSeq(raw, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", from, part)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", from, part, err)
		}
		h[k] = dv
	}
	return h, nil
}

func positiveInt(getenv func(string) string, flagName, flagVal string, def int, envs ...string) (int, error) {
	v, from := setting(getenv, flagName, flagVal, envs...)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive number", from, v)
	}
	return n, nil
}

// duration reads a flag as a Go duration and the environment variables
// as milliseconds (the OTEL_* convention).
func duration(getenv func(string) string, flagName, flagVal string, def time.Duration, envs ...string) (time.Duration, error) {
	v, from := setting(getenv, flagName, flagVal, envs...)
	if v == "" {
		return def, nil
	}
	if from == "--"+flagName {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s: %q is not a positive duration (like 10s)", from, v)
		}
		return d, nil
	}
	ms, err := strconv.ParseUint(v, 10, 63)
	if err != nil || ms == 0 {
		return 0, fmt.Errorf("%s: %q is not a positive number of milliseconds", from, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Endpoint describes where spans go, for the log.
func (s OTLPSettings) Endpoint() string {
	if s.URL == nil {
		return "off"
	}
	u := s.URL.Redacted()
	if s.URL.Scheme == "" {
		u = s.URL.Host
		if s.Insecure {
			u += " (plaintext)"
		} else {
			u += " (TLS)"
		}
	}
	if s.TLS != nil && len(s.TLS.Certificates) > 0 {
		u += " with a client certificate"
	}
	return u + " over " + s.Protocol
}

// reconnect: how fast a gRPC connection to an endpoint that went away
// is tried again (gRPC's own default backs off up to 2 minutes).
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
	MinConnectTimeout: 3 * time.Second,
}

// Client makes the OTLP client the settings describe. Retries stay
// within the export timeout: a batch that cannot go by then is counted
// as failed, and the next batch tries again.
func (s OTLPSettings) Client() (otlptrace.Client, error) {
	if !s.Enabled || s.URL == nil {
		return nil, errors.New("OTLP export is not configured")
	}
	const first, most = 200 * time.Millisecond, time.Second
	hostPort := s.URL.Host
	switch s.Protocol {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(hostPort),
			otlptracegrpc.WithTimeout(s.Timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: first, MaxInterval: most, MaxElapsedTime: s.Timeout}),
			otlptracegrpc.WithDialOption(grpc.WithConnectParams(reconnect)),
		}
		if s.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(s.TLS)))
		}
		if len(s.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(s.Headers))
		}
		if s.Compression == "gzip" {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		return otlptracegrpc.NewClient(opts...), nil
	case ProtocolHTTP:
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(hostPort),
			otlptracehttp.WithURLPath(s.URL.EscapedPath()),
			otlptracehttp.WithTimeout(s.Timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: first, MaxInterval: most, MaxElapsedTime: s.Timeout}),
		}
		if s.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(s.TLS))
		}
		if len(s.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(s.Headers))
		}
		if s.Compression == "gzip" {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		} else {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		return otlptracehttp.NewClient(opts...), nil
	}
	return nil, fmt.Errorf("unknown OTLP protocol %q", s.Protocol)
}
