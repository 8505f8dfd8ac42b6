package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/loader"
)

// runCmd traces until SIGINT/SIGTERM, exporting OTLP traces, Prometheus
// metrics and, when asked, JSON lines; see daemon.go.
func runCmd(args []string) int {
	cfg, opts, err := runConfig(args)
	if err != nil {
		return fail(err)
	}
	if opts.printConfig {
		out, err := cfg.Marshal()
		if err != nil {
			return fail(err)
		}
		os.Stdout.Write(out)
		return exitOK
	}
	return fail0(runDaemon(cfg, args, opts))
}

type runOptions struct {
	configPath  string
	printConfig bool
}

// configArg finds --config before the flags are parsed: the file is read
// first and the flags override it.
func configArg(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"--config", "-config"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}

// runConfig reads the configuration file (--config) and applies the
// command-line flags over it. A list flag replaces the file's list.
func runConfig(args []string) (config.Config, runOptions, error) {
	var opts runOptions
	opts.configPath = configArg(args)
	c := config.Default()
	if opts.configPath != "" {
		var err error
		if c, err = config.Load(opts.configPath); err != nil {
			return c, opts, usageError{err}
		}
	} else {
		// Without a config file (a one-off run from a shell) no control
		// socket unless asked: only the service answers snapshots.
		c.Control.Socket = "off"
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.String("config", "", "read the configuration from this YAML file (flags override it; see deploy/tracerd.yaml)")
	fs.BoolVar(&opts.printConfig, "print-config", false, "print the effective configuration (file and flags) as YAML and exit")
	var ef exporterFlags
	ef.register(fs)
	targetFlags(fs, &c.Targets)
	lc := c.LoaderConfig()
	engineFlags(fs, &lc)
	goOpts := goFlags(fs, goOptions{Enabled: c.Engine.Go, MaxCallsPerSecond: c.Engine.GoMaxCallsPerSecond})
	fs.StringVar(&c.Control.Socket, "control-socket", c.Control.Socket, "serve tracerd status and snapshot on this unix socket, 'off' for none (default: control.socket of --config, off without a config file)")
	fs.Func("log-format", "text (default) or json", func(s string) error {
		if s != "text" && s != "json" {
			return fmt.Errorf("%q: want text or json", s)
		}
		c.Log.Format = s
		return nil
	})
	// The file's values are the flags' starting points.
	ef.fromConfig(c.Exporters)
	if err := logLevel.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return c, opts, usageError{err}
	}
	for _, name := range []string{"pid", "port", "comm", "cgroup", "skip-hook", "service-name", "otlp-header"} {
		f := fs.Lookup(name)
		f.Value = &replaceList{Value: f.Value, clear: clearList(name, &c, &lc, &ef)}
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tracerd run [--config FILE] [--print-config] [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [--otlp-endpoint URL] [--metrics-addr HOST:PORT|off] [--json FILE|-] ...")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return c, opts, err
	}
	c.Engine.IdleTimeout, c.Engine.MaxConns, c.Engine.SkipHooks = lc.IdleTimeout, lc.MaxConns, lc.SkipHooks
	c.Engine.Go, c.Engine.GoMaxCallsPerSecond = goOpts.Enabled, goOpts.MaxCallsPerSecond
	c.Exporters = ef.toConfig(c.Exporters)
	lvl, _ := logLevel.Level().MarshalText()
	c.Log.Level = strings.ToLower(string(lvl))
	if !opts.printConfig {
		if err := c.Targets.Validate(); err != nil {
			return c, opts, usageError{err}
		}
	}
	return c, opts, nil
}

// replaceList makes a repeatable flag replace the file's list at its
// first use instead of adding to it.
type replaceList struct {
	flag.Value
	clear func()
	used  bool
}

// String is the wrapped flag's; flag.PrintDefaults calls it on a zero
// replaceList (no Value) to learn the default, which must not panic.
func (r *replaceList) String() string {
	if r == nil || r.Value == nil {
		return ""
	}
	return r.Value.String()
}

func (r *replaceList) Set(s string) error {
	if !r.used {
		r.used = true
		r.clear()
	}
	return r.Value.Set(s)
}

func clearList(name string, c *config.Config, lc *loader.Config, ef *exporterFlags) func() {
	return func() {
		switch name {
		case "pid":
			c.Targets.PIDs = nil
		case "port":
			c.Targets.Ports = nil
		case "comm":
			c.Targets.Comms = nil
		case "cgroup":
			c.Targets.Cgroups = nil
		case "skip-hook":
			lc.SkipHooks = nil
		case "service-name":
			ef.services = nil
		case "otlp-header":
			ef.otlp.Headers = nil
		}
	}
}

// fromConfig starts the exporter flags at the file's values.
func (f *exporterFlags) fromConfig(e config.Exporters) {
	f.json, f.metricsAddr, f.services = e.JSON, e.MetricsAddr, e.ServiceNames
	o := e.OTLP
	f.otlp.Endpoint, f.otlp.Protocol, f.otlp.Headers = o.Endpoint, o.Protocol, o.Headers
	f.otlp.Timeout, f.otlp.Insecure, f.otlp.Certificate = o.Timeout, o.Insecure, o.Certificate
	f.otlp.ClientCertificate, f.otlp.ClientKey, f.otlp.Compression = o.ClientCertificate, o.ClientKey, o.Compression
	f.otlp.QueueSize, f.otlp.BatchSize, f.otlp.BatchDelay = o.QueueSize, o.BatchSize, o.BatchDelay
	f.otlp.LatencyBudget, f.otlp.SampleRatio = e.Sampling.LatencyBudget, e.Sampling.Ratio
	f.otlp.MaxTracesPerSecond, f.keepQueryValues = e.Sampling.MaxTracesPerSecond, e.KeepQueryValues
}

// toConfig is the inverse of fromConfig.
func (f *exporterFlags) toConfig(e config.Exporters) config.Exporters {
	e.JSON, e.MetricsAddr, e.ServiceNames = f.json, f.metricsAddr, f.services
	o := &e.OTLP
	o.Endpoint, o.Protocol, o.Headers = f.otlp.Endpoint, f.otlp.Protocol, f.otlp.Headers
	o.Timeout, o.Insecure, o.Certificate = f.otlp.Timeout, f.otlp.Insecure, f.otlp.Certificate
	o.ClientCertificate, o.ClientKey, o.Compression = f.otlp.ClientCertificate, f.otlp.ClientKey, f.otlp.Compression
	o.QueueSize, o.BatchSize, o.BatchDelay = f.otlp.QueueSize, f.otlp.BatchSize, f.otlp.BatchDelay
	e.Sampling.LatencyBudget, e.Sampling.Ratio = f.otlp.LatencyBudget, f.otlp.SampleRatio
	e.Sampling.MaxTracesPerSecond, e.KeepQueryValues = f.otlp.MaxTracesPerSecond, f.keepQueryValues
	return e
}

// exporterFlagsOf gives the exporter settings of a configuration.
func exporterFlagsOf(e config.Exporters) *exporterFlags {
	f := &exporterFlags{}
	f.fromConfig(e)
	return f
}
