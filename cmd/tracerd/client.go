package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/loader"
)

// snapshotViaDaemon asks the running daemon for the requests of targets
// during duration and writes the same outputs as a standalone snapshot.
// control.ErrNoDaemon when none runs.
func snapshotViaDaemon(socket string, targets loader.Targets, duration time.Duration, out, jsonOut string, top int) error {
	if err := targets.Validate(); err != nil {
		return usageError{err}
	}
	if err := checkSnapshotOutputs(out, jsonOut); err != nil {
		return err
	}
	c, err := control.Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	// The outputs are opened once the daemon took the request: a refusal
	// creates or truncates nothing.
	var o *snapshotOutputs
	var jw *bufio.Writer
	open := func() error {
		if o != nil {
			return nil
		}
		var err error
		if o, err = openSnapshotOutputs(out, jsonOut); err != nil {
			return err
		}
		if o.json != nil {
			jw = bufio.NewWriter(o.json)
		}
		return nil
	}
	defer func() {
		if o != nil {
			o.close()
		}
	}()
	req := control.Request{Op: "snapshot", Duration: duration, Targets: targets, Top: top, JSON: jsonOut != "", Profile: out != ""}
	if err := control.Send(c, req); err != nil {
		return err
	}
	// Ctrl-C ends early: half-close, the daemon then sends the end.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			c.CloseWrite()
		}
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	var end *control.End
	for sc.Scan() {
		var l control.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("control socket: bad answer: %w", err)
		}
		if l.Error != "" {
			if l.Refused {
				return usageError{errors.New(l.Error)}
			}
			return errors.New(l.Error)
		}
		if err := open(); err != nil {
			return err
		}
		switch {
		case l.Note != "":
			fmt.Fprintln(os.Stderr, "tracerd:", l.Note)
		case l.Record != nil:
			if jw != nil {
				jw.Write(l.Record)
				jw.WriteByte('\n')
			}
		case l.End != nil:
			end = l.End
		}
		if end != nil {
			break
		}
	}
	if end == nil {
		if err := sc.Err(); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		return errors.New("control socket: the daemon ended the snapshot without its summary (did it stop?)")
	}
	var errs []error
	if jw != nil {
		if err := jw.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("--json: %w", err))
		}
	}
	if err := o.writeProfile(func(w io.Writer) error { _, err := w.Write(end.Profile); return err }); err != nil {
		errs = append(errs, err)
	}
	io.WriteString(o.summary, end.Summary)
	fmt.Fprintf(os.Stderr, "\n%s\n", end.Counters)
	o.sayProfile()
	return errors.Join(errs...)
}

// statusCmd shows what a running daemon traces and how it is doing.
func statusCmd(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	socket := fs.String("control-socket", config.DefaultSocket, "the running daemon's control socket")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tracerd status [--json] [--control-socket PATH]")
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	c, err := control.Dial(*socket)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := control.Send(c, control.Request{Op: "status"}); err != nil {
		return fail(err)
	}
	var l control.Line
	if err := json.NewDecoder(c).Decode(&l); err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	if l.Error != "" {
		return fail(errors.New(l.Error))
	}
	if *asJSON {
		os.Stdout.Write(append(l.Status, '\n'))
		return exitOK
	}
	var st Status
	if err := json.Unmarshal(l.Status, &st); err != nil {
		return fail(err)
	}
	printStatus(os.Stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st Status) {
	fmt.Fprintf(w, "tracerd %s, pid %d, up %s, config %s, %d reloads\n", st.Version, st.PID, st.Uptime, orNone(st.Config), st.Reloads)
	fmt.Fprintf(w, "targets: %s\n", st.TargetsText)
	ok, missing := 0, []string{}
	for _, h := range st.Hooks {
		if h.OK {
			ok++
		} else {
			missing = append(missing, h.Name+" ("+h.Reason+")")
		}
	}
	fmt.Fprintf(w, "hooks: %d/%d attached", ok, len(st.Hooks))
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
		fmt.Fprintf(w, " (%d links)\n", p.Links)
	}
	c := st.Counters
	fmt.Fprintf(w, "requests: %d exported, %d output errors\n", st.Requests, st.SinkErrors)
	fmt.Fprintf(w, "kernel: %d connections traced, %d records, %d/%d connections open; lost: %d (ring buffer full), %d (connection map full), %d threads untimed\n",
		c.ConnsTraced, c.Records, c.ConnsOpen, c.ConnsMax, c.RingbufDrops, c.ConnMapFull, c.TaskMapFull)
	if o := st.Exporters.OTLP; o != nil {
		health := "up"
		if o.Stats.ExportErrors > 0 && o.Stats.SpansExported == 0 {
			health = "down"
		}
		fmt.Fprintf(w, "otlp: %s, %s: %d spans exported, %d dropped, %d failed (%d of %d exports failed), %d queued\n",
			o.Endpoint, health, o.Stats.SpansExported, o.Stats.SpansDropped, o.Stats.SpansFailed, o.Stats.ExportErrors, o.Stats.Exports, o.Stats.SpansQueued)
	} else {
		fmt.Fprintln(w, "otlp: off")
	}
	fmt.Fprintf(w, "json: %s\nmetrics: %s\n", orNone(st.Exporters.JSON), orNone(st.Exporters.MetricsAddr))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
