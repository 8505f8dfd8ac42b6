// Command tracerd traces where each request's time goes in the kernel:
// accept queue, softirq, receive queue, run queue, CFS throttling, the
// application and the send queue.
package main

import (
	"fmt"
	"os"
)

// Exit codes: scripts tell a usage mistake from an environment problem.
const (
	exitOK    = 0
	exitFail  = 1 // tracing cannot work here (privileges, kernel) or failed
	exitUsage = 2 // bad flags or targets
)

var version = "dev"

func usage() {
	fmt.Fprint(os.Stderr, `usage: tracerd <command> [flags]

commands:
  snapshot   trace for a while, then write a pprof profile, JSON lines and a summary
  run        trace until stopped (Ctrl-C), writing JSON lines
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
	var code int
	switch os.Args[1] {
	case "snapshot":
		code = snapshotCmd(os.Args[2:])
	case "run":
		code = runCmd(os.Args[2:])
	case "check":
		code = checkCmd(os.Args[2:])
	case "version", "--version", "-version":
		fmt.Println("tracerd", version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "tracerd: unknown command %q\n\n", os.Args[1])
		usage()
		code = exitUsage
	}
	os.Exit(code)
}
