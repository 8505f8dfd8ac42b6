package flags

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tracerd/tracerd/internal/config"
)

// SnapshotOptions are snapshot's flags that are not configuration.
type SnapshotOptions struct {
	Duration   time.Duration
	Out        string // -o: the pprof profile; "" for none
	JSON       string // --json: the JSON lines, "-" for stdout; "" for none
	Top        int    // the slowest requests in the summary
	Standalone bool   // trace alone even when a daemon runs
	Socket     string // the running daemon's control socket
}

// Snapshot parses snapshot's flags over the defaults. Mistakes are
// config.UsageErrors; -h is flag.ErrHelp.
func Snapshot(args []string) (config.Config, SnapshotOptions, error) {
	c := config.Default()
	o := SnapshotOptions{Duration: 30 * time.Second, Top: 10}
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.Func("duration", fmt.Sprintf("how long to trace, %s (Ctrl-C ends early and still writes everything; default %s)", config.SnapshotDuration, o.Duration), func(s string) error {
		d, err := config.SnapshotDuration.ParseDuration(s)
		o.Duration = d
		return err
	})
	fs.StringVar(&o.Out, "o", "", "write a pprof profile (gzipped protobuf) to this file (created 0600)")
	fs.StringVar(&o.JSON, "json", "", "write one JSON object per request to this file ('-' for stdout; created 0600)")
	fs.Func("top", fmt.Sprintf("show the N slowest requests in the summary, %s (default %d)", config.Top, o.Top), func(s string) error {
		n, err := config.Top.ParseCount(s)
		o.Top = int(n)
		return err
	})
	Targets(fs, &c.Targets)
	Engine(fs, &c.Engine, &c.Log)
	Go(fs, &c.Engine)
	Findings(fs, &c.Findings)
	fs.BoolVar(&o.Standalone, "standalone", false, "load tracerd's own BPF programs even when a daemon runs (default: use the running daemon through its control socket)")
	fs.StringVar(&o.Socket, "control-socket", config.DefaultSocket, "the running daemon's control socket")
	fs.Usage = func() {
		// On stderr even for a mistake (run and status say only the mistake).
		fmt.Fprintln(os.Stderr, "usage: tracerd snapshot [--standalone] [--duration 30s] [--pid P] [--port N] [--comm NAME] [--cgroup DIR] [-o cut.pb.gz] [--json FILE|-] [--top N]")
		fs.PrintDefaults()
	}
	return c, o, Parse(fs, args)
}
