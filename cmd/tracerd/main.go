// Command tracerd traces where each request's time goes in the kernel:
// accept queue, softirq, receive queue, run queue, CFS throttling, the
// application and the send queue.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/outputs"
)

// Exit codes: scripts tell a usage mistake from an environment problem.
const (
	exitOK    = 0
	exitFail  = 1 // tracing cannot work here (privileges, kernel) or failed
	exitUsage = 2 // bad flags or targets
)

// version is stamped by `make build` (-X main.version=$(git describe));
// otherwise the commit Go recorded, if any (see versionString).
var version = "dev"

// versionString is version, or for a plain `go build` the commit and
// whether the tree was modified, from the build info.
func versionString() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: tracerd <command> [flags]

commands:
  snapshot   trace for a while, then write a pprof profile, JSON lines and a summary
  run        trace until stopped (the daemon: config file, systemd, control socket, SIGHUP reload)
  top        a live view of the last seconds: routes, phases, findings, slowest requests
  status     show what the running daemon traces, its hooks, counters and exporters
  check      show what this kernel supports and what tracing would miss
  version    print the version

Run 'tracerd <command> -h' for a command's flags.
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitUsage)
	}
	// TRACERD_CPUPROFILE=FILE profiles tracerd itself (for its developers):
	// created like every output (0600, no symbolic link followed).
	if path := os.Getenv("TRACERD_CPUPROFILE"); path != "" {
		if f, err := outputs.Create(path, false); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		} else {
			fmt.Fprintln(os.Stderr, "tracerd: TRACERD_CPUPROFILE:", err, "(not profiling)")
		}
	}
	code := run(os.Args[1:])
	pprof.StopCPUProfile()
	os.Exit(code)
}

func run(args []string) int {
	var code int
	switch args[0] {
	case "snapshot":
		code = snapshotCmd(os.Args[2:])
	case "run":
		code = runCmd(os.Args[2:])
	case "status":
		code = statusCmd(os.Args[2:])
	case "top":
		code = topCmd(os.Args[2:])
	case "check":
		code = checkCmd(os.Args[2:])
	case "version", "--version", "-version":
		fmt.Println("tracerd", versionString())
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "tracerd: unknown command %q\n\n", args[0])
		usage()
		code = exitUsage
	}
	return code
}

// fail prints err and returns its exit code.
func fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "tracerd:", err)
	var ue config.UsageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

func fail0(err error) int {
	if err == nil {
		return exitOK
	}
	return fail(err)
}

// newLogger is tracerd's structured log on stderr (log.format text or
// json): one line per state change (hooks, targets, exporters), never
// one per request.
func newLogger(format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return newLoggerTo(os.Stderr, level)
}

// newLoggerTo is the text log on w.
func newLoggerTo(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
