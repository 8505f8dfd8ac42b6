// Package config reads tracerd's YAML configuration file (tracerd run
// --config). Every key is documented in deploy/tracerd.yaml; an unknown
// key, a wrong type or a bad value is an error naming the file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/targets"
)

// DefaultPath is where the packaged unit looks for the file.
const DefaultPath = "/etc/tracerd/tracerd.yaml"

// DefaultSocket is the control socket of a running daemon.
const DefaultSocket = "/run/tracerd/control.sock"

// Config is the whole file. Flags of `tracerd run` override it.
type Config struct {
	Targets   targets.Targets `yaml:"targets"`
	Engine    Engine          `yaml:"engine"`
	Exporters Exporters       `yaml:"exporters"`
	Findings  Findings        `yaml:"findings"`
	Log       Log             `yaml:"log"`
	Control   Control         `yaml:"control"`
}

// Engine holds the kernel engine's limits.
type Engine struct {
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	MaxConns        uint32        `yaml:"max_conns"`
	RingBufferBytes uint32        `yaml:"ring_buffer_bytes"`
	SkipHooks       []string      `yaml:"skip_hooks"`
	Go              bool          `yaml:"go"`
	// GoMaxCallsPerSecond: a probed Go function firing more often than
	// this in one process has its probes switched off (0: no bound).
	GoMaxCallsPerSecond int `yaml:"go_max_calls_per_second"`
}

// Findings says when a cause of lost time is named on a request
// (docs/findings.md): it cost at least MinLost and MinSharePct percent
// of the request's duration.
type Findings struct {
	Enabled     bool          `yaml:"enabled"`
	MinLost     time.Duration `yaml:"min_lost"`
	MinSharePct int           `yaml:"min_share_percent"`
}

// Exporters says where requests go.
type Exporters struct {
	JSON         string   `yaml:"json"`
	MetricsAddr  string   `yaml:"metrics_addr"`
	ServiceNames []string `yaml:"service_names"`
	OTLP         OTLP     `yaml:"otlp"`
	Sampling     Sampling `yaml:"sampling"`
	// KeepQueryValues writes URL query values as sent (JSON lines, OTLP
	// url.query); by default each is REDACTED, keys kept.
	KeepQueryValues bool `yaml:"keep_query_values"`
}

// OTLP is the trace exporter, as the file and the flags give it: text,
// "" when not given. Empty values fall back to the OTEL_* environment
// variables, then to the defaults; export.ResolveOTLP resolves and
// checks them. The type is here, not in export, so that reading the
// configuration does not pull in the OpenTelemetry and gRPC clients.
type OTLP struct {
	Endpoint          string   `yaml:"endpoint"`
	Protocol          string   `yaml:"protocol"` // grpc or http/protobuf
	Headers           []string `yaml:"headers"`  // KEY=VALUE
	Timeout           string   `yaml:"timeout"`  // Go duration
	Insecure          string   `yaml:"insecure"` // "true" or "false"
	Certificate       string   `yaml:"certificate"`
	ClientCertificate string   `yaml:"client_certificate"`
	ClientKey         string   `yaml:"client_key"`
	Compression       string   `yaml:"compression"`
	QueueSize         string   `yaml:"queue_size"`
	BatchSize         string   `yaml:"batch_size"`
	BatchDelay        string   `yaml:"batch_delay"` // Go duration
}

// Sampling is the tail-aware trace sampling.
type Sampling struct {
	LatencyBudget string `yaml:"latency_budget"` // Go duration
	Ratio         string `yaml:"ratio"`
	// MaxTracesPerSecond caps exported traces per service, whatever
	// decided them (0: no cap).
	MaxTracesPerSecond string `yaml:"max_traces_per_second"`
}

// Log configures the structured log on stderr.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // text or json
}

// SlogLevel is Level as slog's (info when it does not parse: Parse
// and the flags check it).
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	if lv.UnmarshalText([]byte(l.Level)) != nil {
		return slog.LevelInfo
	}
	return lv
}

// Control is the control socket (tracerd status, tracerd snapshot).
type Control struct {
	Socket string `yaml:"socket"` // "" or "off" for none
}

// Default is the configuration without a file.
func Default() Config {
	d := loader.DefaultConfig()
	return Config{
		Engine: Engine{
			IdleTimeout:         d.IdleTimeout,
			MaxConns:            d.MaxConns,
			RingBufferBytes:     d.RingBytes,
			Go:                  true,
			GoMaxCallsPerSecond: goprobe.DefaultMaxCallsPerSecond,
		},
		Exporters: Exporters{MetricsAddr: "127.0.0.1:9464"},
		Findings:  Findings{Enabled: true, MinLost: time.Millisecond, MinSharePct: 20},
		Log:       Log{Level: "info", Format: "text"},
		Control:   Control{Socket: DefaultSocket},
	}
}

// UsageError is a mistake that is the user's to fix (flags, file,
// targets, output paths): tracerd exits 2 on it, 1 on anything else.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usage marks err as the user's to fix (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return UsageError{err}
}

// Error is a mistake in the file; Line is 0 when it is not about a line.
type Error struct {
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Load reads path over the defaults.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Config{}, &Error{Path: path, Msg: "no such file (the shipped default is deploy/tracerd.yaml; make install puts it at " + DefaultPath + ")"}
		}
		return Config{}, &Error{Path: path, Msg: err.Error()}
	}
	return Parse(path, data)
}

var (
	lineRe    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	typeRe    = regexp.MustCompile("^cannot unmarshal (!!\\w+) `(.*)` into (.+)$")
)

// Parse decodes data (named path in errors) over the defaults and checks it.
func Parse(path string, data []byte) (Config, error) {
	cfg := Default()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // empty file: defaults
		}
		return cfg, syntaxError(path, err)
	}
	if len(root.Content) == 0 {
		return cfg, nil
	}
	doc := root.Content[0]
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return cfg, nil
	}
	// KnownFields is a decoder option: decode the bytes again through one.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&cfg); err != nil {
		return cfg, decodeError(path, err)
	}
	if err := cfg.check(path, doc); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func syntaxError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		var n int
		fmt.Sscan(m[1], &n)
		return &Error{Path: path, Line: n, Msg: "syntax error: " + m[2]}
	}
	return &Error{Path: path, Msg: "syntax error: " + msg}
}

// decodeError turns yaml's messages into one per line, in tracerd's words.
func decodeError(path string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(path, err)
	}
	var errs []error
	for _, e := range te.Errors {
		m := lineRe.FindStringSubmatch(e)
		if m == nil {
			errs = append(errs, &Error{Path: path, Msg: e})
			continue
		}
		var n int
		fmt.Sscan(m[1], &n)
		msg := m[2]
		if u := unknownRe.FindStringSubmatch(msg); u != nil {
			msg = fmt.Sprintf("unknown key %q in %s (see deploy/tracerd.yaml for the keys)", u[1], section(u[2]))
		} else if t := typeRe.FindStringSubmatch(msg); t != nil {
			msg = fmt.Sprintf("wrong type: %s %q where %s is expected", strings.TrimPrefix(t[1], "!!"), t[2], typeName(t[3]))
		}
		errs = append(errs, &Error{Path: path, Line: n, Msg: msg})
	}
	return errors.Join(errs...)
}

func section(goType string) string {
	switch goType {
	case "config.Config":
		return "the top level"
	case "targets.Targets":
		return "targets"
	case "config.Engine":
		return "engine"
	case "config.Exporters":
		return "exporters"
	case "config.OTLP":
		return "exporters.otlp"
	case "config.Sampling":
		return "exporters.sampling"
	case "config.Findings":
		return "findings"
	case "config.Log":
		return "log"
	case "config.Control":
		return "control"
	}
	return goType
}

func typeName(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration (e.g. 500ms, 2s)"
	case strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "int"):
		return "a whole number (" + goType + ")"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "config."), strings.HasPrefix(goType, "targets."):
		return "a mapping (" + section(goType) + ")"
	}
	return goType
}

// lineOf finds the line of a key path in the document (0 when absent).
func lineOf(doc *yaml.Node, keys ...string) int {
	n := doc
	line := 0
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// check validates values the types alone do not.
func (c *Config) check(path string, doc *yaml.Node) error {
	var errs []error
	bad := func(msg string, keys ...string) {
		errs = append(errs, &Error{Path: path, Line: lineOf(doc, keys...), Msg: strings.Join(keys, ".") + ": " + msg})
	}
	for _, p := range c.Targets.PIDs {
		if p == 0 {
			bad("0 is not a process", "targets", "pids")
		}
	}
	for _, p := range c.Targets.Ports {
		if p == 0 {
			bad("0 is not a port", "targets", "ports")
		}
	}
	for _, s := range c.Targets.Comms {
		if s == "" {
			bad("empty process name", "targets", "comms")
		}
	}
	if err := IdleTimeout.Check(int64(c.Engine.IdleTimeout)); err != nil {
		bad(err.Error(), "engine", "idle_timeout")
	}
	if err := MaxConns.CheckUint(uint64(c.Engine.MaxConns)); err != nil {
		bad(err.Error(), "engine", "max_conns")
	}
	if err := CheckRingBufferBytes(uint64(c.Engine.RingBufferBytes)); err != nil {
		bad(err.Error(), "engine", "ring_buffer_bytes")
	}
	for _, h := range c.Engine.SkipHooks {
		if err := CheckSkipHook(h); err != nil {
			bad(err.Error(), "engine", "skip_hooks")
		}
	}
	if err := GoMaxCalls.Check(int64(c.Engine.GoMaxCallsPerSecond)); err != nil {
		bad(err.Error(), "engine", "go_max_calls_per_second")
	}
	if err := FindingMinLost.Check(int64(c.Findings.MinLost)); err != nil {
		bad(err.Error(), "findings", "min_lost")
	}
	if err := FindingMinShare.Check(int64(c.Findings.MinSharePct)); err != nil {
		bad(err.Error(), "findings", "min_share_percent")
	}
	if a := c.Exporters.MetricsAddr; a != "" && a != "off" {
		if err := CheckListenAddr(a); err != nil {
			bad(err.Error(), "exporters", "metrics_addr")
		}
	}
	// The exporters' values are strings ("" falls back to the OTEL_*
	// variable, then the default): checked here when given.
	o, smp := c.Exporters.OTLP, c.Exporters.Sampling
	for _, v := range []struct {
		val  string
		keys []string
		r    Range
	}{
		{o.QueueSize, []string{"otlp", "queue_size"}, QueueSize},
		{o.BatchSize, []string{"otlp", "batch_size"}, BatchSize},
		{o.BatchDelay, []string{"otlp", "batch_delay"}, BatchDelay},
		{o.Timeout, []string{"otlp", "timeout"}, OTLPTimeout},
		{smp.LatencyBudget, []string{"sampling", "latency_budget"}, LatencyBudget},
		{smp.MaxTracesPerSecond, []string{"sampling", "max_traces_per_second"}, MaxTraces},
	} {
		if v.val == "" {
			continue
		}
		if err := v.r.CheckString(v.val); err != nil {
			bad(err.Error(), append([]string{"exporters"}, v.keys...)...)
		}
	}
	if r := c.Exporters.Sampling.Ratio; r != "" {
		if _, err := ParseSampleRatio(r); err != nil {
			bad(err.Error(), "exporters", "sampling", "ratio")
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		bad(err.Error(), "log", "level")
	}
	if f := c.Log.Format; f != "text" && f != "json" {
		bad(fmt.Sprintf("%q: want text or json", f), "log", "format")
	}
	return errors.Join(errs...)
}

// LoaderConfig returns the loader's configuration.
func (c *Config) LoaderConfig() loader.Config {
	return loader.Config{
		Targets:     c.Targets,
		IdleTimeout: c.Engine.IdleTimeout,
		MaxConns:    c.Engine.MaxConns,
		RingBytes:   c.Engine.RingBufferBytes,
		SkipHooks:   c.Engine.SkipHooks,
	}
}

// Marshal renders the configuration as YAML (--print-config).
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}
