package main

// The outbound arm: what a traced server's outbound calls cost. The
// bench server (the front) is traced; GET /call makes it fetch from a
// second, untraced bench server (the downstream) on a pooled
// connection before answering, GET / does not. Both loads run against
// the same tracerd, alternating; the difference per request is the
// outbound path: the call's record (its client connection's events, on
// the hooks the served requests use) plus, on loopback, the untraced
// downstream's events passing tracerd's programs.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const partOutbound = "outbound"

var (
	outRate   = flag.Float64("outbound-rate", 2000, "outbound arm: requests/s of each load")
	outConns  = flag.Int("outbound-conns", 16, "outbound arm: open-loop connections")
	outRound  = flag.Duration("outbound-round", 5*time.Second, "outbound arm: length of a round")
	outRounds = flag.Int("outbound-rounds", 3, "outbound arm: rounds of each load")
)

// outResult is one round of one load.
type outResult struct {
	Path      string
	Load      loadResult
	BPFRuns   uint64
	BPFTime   time.Duration
	TracerCPU time.Duration
	Records   int64
}

func (r outResult) per(v float64) float64 { return v / float64(max(r.Load.Requests, 1)) }

func (b *bench) outbound(ctx context.Context, serverBin string) error {
	if *outRate <= 0 || *outConns < 1 || *outRound < time.Second || *outRounds < 1 {
		return fmt.Errorf("need -outbound-rate > 0, -outbound-conns ≥ 1, -outbound-round ≥ 1s, -outbound-rounds ≥ 1")
	}
	restore, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer restore()
	down, err := startServer(ctx, serverBin)
	if err != nil {
		return err
	}
	defer down.Stop()
	front, err := startServer(ctx, serverBin, "-call", "http://"+down.Addr+"/")
	if err != nil {
		return err
	}
	defer front.Stop()
	// As the traced rounds run it: JSON lines and the profile.
	jsonPath := filepath.Join(b.dir, "requests.jsonl")
	tr, err := startTracer(b.tracerd, tracerdArgs(front.Port, b.dir, true), jsonPath)
	if err != nil {
		return err
	}
	defer tr.Kill()
	pid := tr.cmd.Process.Pid
	if _, err := tr.waitStderr(ctx, startupDone, connsStartupMax); err != nil {
		return err
	}
	w, err := watchPrograms(pid)
	if err != nil {
		return err
	}
	defer w.Close()
	if b.idleBusy, err = waitQuiet(ctx, b.quietWait); err != nil {
		return err
	}
	var rs []outResult
	for i := 0; i < *outRounds; i++ {
		for _, path := range []string{"/", "/call"} {
			r, err := b.outboundRound(ctx, w, pid, front.Addr, path)
			if err != nil {
				return fmt.Errorf("outbound %s round %d: %w", path, i+1, err)
			}
			logf("outbound %-5s %d: %7.0f req/s, BPF %.2f runs %s/req, tracerd %s/req, %.2f records/req", path, i+1,
				r.Load.RPS, r.per(float64(r.BPFRuns)), fmtNs(r.per(float64(r.BPFTime))), fmtNs(r.per(float64(r.TracerCPU))),
				r.per(float64(r.Records)))
			rs = append(rs, r)
		}
	}
	out, err := tr.Stop()
	if err != nil {
		return err
	}
	if lost := out.Kernel.Lost(); lost > 0 {
		logf("WARNING: tracerd lost %d records", lost)
	}
	sec := outboundReport(rs)
	path := b.report()
	if path == "" {
		_, err := os.Stdout.WriteString(sec)
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(sec)
	return err
}

// outboundRound runs one open-loop load of path and reads what tracerd's
// programs and process spent on it.
func (b *bench) outboundRound(ctx context.Context, w *progWatch, pid int, addr, path string) (r outResult, err error) {
	r.Path = path
	if _, err := waitQuiet(ctx, b.roundQuietWait); err != nil {
		return r, err
	}
	k0, err := readKernelSide(pid)
	if err != nil {
		return r, err
	}
	p0, err := w.Snapshot()
	if err != nil {
		return r, err
	}
	c0, err := readProcCPU(pid)
	if err != nil {
		return r, err
	}
	if r.Load, err = openLoopPath(ctx, addr, path, *outRate, *outConns, *outRound); err != nil {
		return r, err
	}
	// The last requests end (their connections close with the load),
	// tracerd reads them.
	if err := sleepCtx(ctx, b.drain); err != nil {
		return r, err
	}
	p1, err := w.Snapshot()
	if err != nil {
		return r, err
	}
	c1, err := readProcCPU(pid)
	if err != nil {
		return r, err
	}
	k1, err := readKernelSide(pid)
	if err != nil {
		return r, err
	}
	r.BPFTime, r.BPFRuns, _ = progTotals(progDeltas(p0, p1))
	r.TracerCPU = c1.sub(c0).Exec
	r.Records = k1.Records - k0.Records
	return r, nil
}

// outboundReport is the markdown section: medians of the rounds per
// load, and their difference.
func outboundReport(rs []outResult) string {
	med := func(path string, f func(outResult) float64) float64 {
		var v []float64
		for _, r := range rs {
			if r.Path == path {
				v = append(v, f(r))
			}
		}
		return median(v)
	}
	runs := func(r outResult) float64 { return r.per(float64(r.BPFRuns)) }
	bpf := func(r outResult) float64 { return r.per(float64(r.BPFTime)) }
	cpu := func(r outResult) float64 { return r.per(float64(r.TracerCPU)) }
	recs := func(r outResult) float64 { return r.per(float64(r.Records)) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n## Outbound calls\n\n")
	fmt.Fprintf(&sb, "A traced bench server at %.0f requests/s (%d connections, open loop), medians of %d rounds of each load: "+
		"GET / answers at once; GET /call first fetches from an untraced bench server on a pooled connection. "+
		"BPF: tracerd's kernel programs (bpf_stats), all their runs on the host, per request of the load; "+
		"tracerd: its process's CPU per request.\n\n", *outRate, *outConns, *outRounds)
	fmt.Fprintf(&sb, "| load | BPF runs/req | BPF time/req | tracerd CPU/req | records/req |\n|---|---|---|---|---|\n")
	for _, p := range []string{"/", "/call"} {
		fmt.Fprintf(&sb, "| GET %s | %.2f | %s | %s | %.2f |\n", p, med(p, runs), fmtNs(med(p, bpf)), fmtNs(med(p, cpu)), med(p, recs))
	}
	fmt.Fprintf(&sb, "| **the call's cost** | %+.2f | %s | %s | %+.2f |\n", med("/call", runs)-med("/", runs),
		fmtNs(med("/call", bpf)-med("/", bpf)), fmtNs(med("/call", cpu)-med("/", cpu)), med("/call", recs)-med("/", recs))
	return sb.String()
}
