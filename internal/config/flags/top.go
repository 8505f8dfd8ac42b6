package flags

import (
	"flag"
	"fmt"

	"github.com/tracerd/tracerd/internal/config"
)

// TopOptions are top's flags that are not configuration.
type TopOptions struct {
	Standalone bool   // trace alone even when a daemon runs
	Socket     string // the running daemon's control socket
	Plain      bool   // plain lines even on a terminal
}

// Top parses top's flags over the defaults (snapshot's selection and
// engine flags). Mistakes are config.UsageErrors; -h is flag.ErrHelp.
func Top(args []string) (config.Config, TopOptions, error) {
	c := config.Default()
	o := TopOptions{}
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	Targets(fs, &c.Targets)
	Engine(fs, &c.Engine, &c.Log)
	Go(fs, &c.Engine)
	Findings(fs, &c.Findings)
	fs.BoolVar(&o.Standalone, "standalone", false, "load tracerd's own BPF programs even when a daemon runs (default: use the running daemon through its control socket)")
	fs.StringVar(&o.Socket, "control-socket", config.DefaultSocket, "the running daemon's control socket")
	fs.BoolVar(&o.Plain, "plain", false, "print plain lines every second even on a terminal (the default when stdout is not one)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tracerd top [--standalone] [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [--plain]\n\nA live view of the last 10 s, refreshed every second: per service and route, requests/s,\np50/p99 and each phase's share of the time; the findings; the slowest requests. q or Ctrl-C quits.")
		fs.PrintDefaults()
	}
	return c, o, Parse(fs, args)
}
