package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/config/flags"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/portpressure"
)

// statusCmd shows what a running daemon traces and how it is doing.
func statusCmd(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	socket := fs.String("control-socket", config.DefaultSocket, "the running daemon's control socket")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tracerd status [--json] [--control-socket PATH]")
		fs.PrintDefaults()
	}
	if err := flags.Parse(fs, args); err != nil {
		return fail(err)
	}
	c, err := control.Dial(*socket)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		b, err := json.Marshal(st)
		if err != nil {
			return fail(err)
		}
		os.Stdout.Write(append(b, '\n'))
		return exitOK
	}
	printStatus(os.Stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st control.Status) {
	fmt.Fprintf(w, "tracerd %s, pid %d, up %s, config %s, %d reloads\n", st.Version, st.PID, time.Duration(st.UptimeSeconds)*time.Second, orNone(st.Config), st.Reloads)
	fmt.Fprintf(w, "targets: %s\n", st.Targets)
	ok, missing, pending := 0, []string{}, []string{}
	for _, h := range st.Hooks {
		switch {
		case h.Pending:
			pending = append(pending, h.Name)
		case h.OK:
			ok++
		default:
			missing = append(missing, h.Name+" ("+h.Reason+")")
		}
	}
	fmt.Fprintf(w, "hooks: %d/%d attached", ok, len(st.Hooks))
	if len(pending) > 0 {
		fmt.Fprintf(w, "; waiting for a CPU quota on a traced thread: %s", strings.Join(pending, ", "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "; missing: %s", strings.Join(missing, ", "))
	}
	fmt.Fprintln(w)
	if st.GoProbeKind == "" {
		fmt.Fprintln(w, "go probes: off")
	} else {
		fmt.Fprintf(w, "go probes (%s links): %d processes\n", st.GoProbeKind, len(st.GoProbes))
	}
	for _, p := range st.GoProbes {
		fmt.Fprintf(w, "  pid %d (%s): %s", p.PID, p.Go, strings.Join(p.On, ", "))
		if len(p.Off) > 0 {
			fmt.Fprintf(w, "; switched off, firing too often: %s", strings.Join(p.Off, ", "))
		}
		fmt.Fprintf(w, " (%d links)", p.Links)
		if len(p.HTTPStatus) > 0 {
			fmt.Fprintf(w, "; statuses: %s", strings.Join(p.HTTPStatus, ", "))
		}
		fmt.Fprintln(w)
	}
	c := st.Counters
	fmt.Fprintf(w, "requests: %d exported, %d output errors\n", st.Requests, st.SinkErrors)
	fmt.Fprintf(w, "kernel: %d connections traced, %d records, %d/%d connections open; lost: %d (ring buffer full), %d (connection map full), %d threads untimed\n",
		c.ConnsTraced, c.Records, c.ConnsOpen, c.ConnsMax, c.RingbufDrops, c.ConnMapFull, c.TaskMapFull)
	if o := st.Exporters.OTLP; o != nil {
		health := "up"
		if o.Stats.Down() {
			health = "down"
		}
		fmt.Fprintf(w, "otlp: %s, %s: %d spans exported, %d dropped, %d failed (%d of %d exports failed), %d queued\n",
			o.Endpoint, health, o.Stats.SpansExported, o.Stats.SpansDropped, o.Stats.SpansFailed, o.Stats.ExportErrors, o.Stats.Exports, o.Stats.SpansQueued)
	} else {
		fmt.Fprintln(w, "otlp: off")
	}
	fmt.Fprintf(w, "json: %s\nmetrics: %s\n", orNone(st.Exporters.JSON), orNone(st.Exporters.MetricsAddr))
	printFindings(w, st)
	printPorts(w, st.Ports)
}

// printPorts shows the port pressure of the traced processes'
// namespaces: the destinations holding most local ports.
func printPorts(w io.Writer, r *portpressure.Report) {
	if r == nil || r.At.IsZero() {
		return
	}
	if len(r.Namespaces) == 0 {
		fmt.Fprintln(w, "ports: no traced process seen yet")
		return
	}
	for _, n := range r.Namespaces {
		var procs []string
		for _, p := range n.Processes {
			procs = append(procs, fmt.Sprintf("%s[%d]", p.Comm, p.PID))
		}
		rng := "port range unknown"
		if n.RangeSize > 0 {
			rng = fmt.Sprintf("port range %d-%d (%d ports a destination)", n.PortLow, n.PortHigh, n.RangeSize)
		}
		fmt.Fprintf(w, "ports, netns %d (%s): %s, %d sockets on them, %d in TIME_WAIT in all\n",
			n.NetNS, orNone(strings.Join(procs, " ")), rng, n.EphemeralInUse, n.TimeWait)
		if n.Error != "" {
			fmt.Fprintf(w, "  not read: %s\n", n.Error)
		}
		for _, d := range n.Destinations {
			fmt.Fprintf(w, "  %s: %d ports in use (%d TIME_WAIT, %d established), %d left", d.Address, d.InUse, d.TimeWait, d.Established, d.Available)
			if f := d.FailureCount(); f > 0 {
				fmt.Fprintf(w, "; %d connect() failed with EADDRNOTAVAIL", f)
			}
			fmt.Fprintln(w)
			if f := d.Finding; f != nil {
				fmt.Fprintf(w, "    finding %s: %d connects failed in the last %d minutes, the last at %s\n    confirm: %s\n    remedy: %s\n",
					f.Code, f.RecentFailures, int(portpressure.FindingWindow/time.Minute), f.LastFailure.Format(time.TimeOnly), f.Confirm, f.Remedy)
			}
		}
		if n.DestinationsOmitted > 0 {
			fmt.Fprintf(w, "  and %d more destinations\n", n.DestinationsOmitted)
		}
	}
	if r.FailuresUncounted > 0 {
		fmt.Fprintf(w, "ports: %d EADDRNOTAVAIL failures not counted per destination (map full)\n", r.FailuresUncounted)
	}
}

// printFindings shows the causes that cost requests most time lately.
func printFindings(w io.Writer, st control.Status) {
	if st.FindingsMinutes == 0 {
		fmt.Fprintln(w, "findings: off")
		return
	}
	if len(st.Findings) == 0 {
		fmt.Fprintf(w, "findings (last %d minutes): none\n", st.FindingsMinutes)
		return
	}
	fmt.Fprintf(w, "findings (last %d minutes, most time lost first):\n", st.FindingsMinutes)
	for _, f := range st.Findings {
		fmt.Fprintf(w, "  %s %s: %s (%s) on %d requests, %s lost\n    confirm: %s\n    remedy: %s\n",
			f.Service, f.Route, f.Code, f.Phase, f.Requests, time.Duration(f.LostNs).Round(10*time.Microsecond), f.Confirm, f.Remedy)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
