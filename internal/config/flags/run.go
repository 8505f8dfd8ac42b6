package flags

import (
	"flag"
	"fmt"
	"strings"

	"github.com/tracerd/tracerd/internal/config"
)

// RunOptions are run's flags that are not configuration.
type RunOptions struct {
	ConfigPath  string // --config, "" without a file
	PrintConfig bool   // --print-config
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

// Run reads the configuration file (--config) and applies run's flags
// over it: a flag replaces the file's value, a list flag the file's
// whole list. Mistakes are config.UsageErrors; -h is flag.ErrHelp.
func Run(args []string) (config.Config, RunOptions, error) {
	var opts RunOptions
	opts.ConfigPath = configArg(args)
	c := config.Default()
	if opts.ConfigPath != "" {
		var err error
		if c, err = config.Load(opts.ConfigPath); err != nil {
			return c, opts, config.Usage(err)
		}
	} else {
		// Without a config file (a one-off run from a shell) no control
		// socket unless asked: only the service answers snapshots.
		c.Control.Socket = "off"
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.String("config", "", "read the configuration from this YAML file (flags override it; see deploy/tracerd.yaml)")
	fs.BoolVar(&opts.PrintConfig, "print-config", false, "print the effective configuration (file and flags) as YAML and exit")
	Exporters(fs, &c.Exporters)
	Targets(fs, &c.Targets)
	Engine(fs, &c.Engine, &c.Log)
	Go(fs, &c.Engine)
	Findings(fs, &c.Findings)
	fs.StringVar(&c.Control.Socket, "control-socket", c.Control.Socket, "serve tracerd status and snapshot on this unix socket, 'off' for none (default: control.socket of --config, off without a config file)")
	fs.Func("log-format", "text (default) or json", func(s string) error {
		if s != "text" && s != "json" {
			return fmt.Errorf("%q: want text or json", s)
		}
		c.Log.Format = s
		return nil
	})
	for name, clear := range map[string]func(){
		"pid":          func() { c.Targets.PIDs = nil },
		"port":         func() { c.Targets.Ports = nil },
		"comm":         func() { c.Targets.Comms = nil },
		"cgroup":       func() { c.Targets.Cgroups = nil },
		"skip-hook":    func() { c.Engine.SkipHooks = nil },
		"service-name": func() { c.Exporters.ServiceNames = nil },
		"otlp-header":  func() { c.Exporters.OTLP.Headers = nil },
	} {
		f := fs.Lookup(name)
		f.Value = &replaceList{Value: f.Value, clear: clear}
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tracerd run [--config FILE] [--print-config] [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [--otlp-endpoint URL] [--metrics-addr HOST:PORT|off] [--json FILE|-] ...")
		fs.PrintDefaults()
	}
	if err := Parse(fs, args); err != nil {
		return c, opts, err
	}
	// The level as slog names it ("INFO" in the file is "info").
	lvl, _ := c.Log.SlogLevel().MarshalText()
	c.Log.Level = strings.ToLower(string(lvl))
	if !opts.PrintConfig {
		if err := c.Targets.Validate(); err != nil {
			return c, opts, config.Usage(err)
		}
	}
	return c, opts, nil
}
