package main

// The outbound arm: what a traced server's outbound calls cost. The
// bench server (the front) is traced; GET /call makes it fetch from a
// second, untraced bench server (the downstream) on a pooled
// connection before answering, GET / does not. Both loads run against
// the same tracerd, one after the other; the difference per request is
// the outbound path: the call's record (its client connection's events,
// on the hooks the served requests use) plus, on loopback, the untraced
// downstream's events passing tracerd's programs. With -outbound-former
// another build (one before outbound calls) runs the same rounds,
// interleaved: GET / under both is what a server without calls pays
// more than before, GET /call under both what the calls' records cost.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const partOutbound = "outbound"

var (
	outRate   = flag.Float64("outbound-rate", 2000, "outbound arm: requests/s of each load")
	outConns  = flag.Int("outbound-conns", 16, "outbound arm: open-loop connections")
	outRound  = flag.Duration("outbound-round", 5*time.Second, "outbound arm: length of a round")
	outRounds = flag.Int("outbound-rounds", 5, "outbound arm: rounds of each load")
	outFormer = flag.String("outbound-former", "", "outbound arm: another tracerd build (one without outbound calls) "+
		"run as a second arm, rounds interleaved: what a server without calls paid before")
)

// outResult is one round of one load.
type outResult struct {
	Arm       string // "this build" or "former"
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
	arms := []struct{ name, bin string }{{armThis, b.tracerd}}
	if *outFormer != "" {
		arms = append(arms, struct{ name, bin string }{armFormer, *outFormer})
	}
	if b.idleBusy, err = waitQuiet(ctx, b.quietWait); err != nil {
		return err
	}
	var rs []outResult
	for i := 0; i < *outRounds; i++ {
		for _, a := range arms {
			r, err := b.outboundArm(ctx, a.name, a.bin, serverBin)
			if err != nil {
				return fmt.Errorf("outbound, %s, round %d: %w", a.name, i+1, err)
			}
			rs = append(rs, r...)
		}
	}
	sec := b.outboundReport(rs)
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

const (
	armThis   = "this build"
	armFormer = "former"
)

// outboundArm starts the two servers and tracerd (bin) as the traced
// rounds run it (JSON lines and the profile), runs one round of each
// load under it and stops them. The servers are new each time: a
// tracerd does not see connections opened before it started, and the
// front's pooled connections would be such.
func (b *bench) outboundArm(ctx context.Context, name, bin, serverBin string) ([]outResult, error) {
	down, err := startServer(ctx, serverBin)
	if err != nil {
		return nil, err
	}
	defer down.Stop()
	front, err := startServer(ctx, serverBin, "-call", "http://"+down.Addr+"/")
	if err != nil {
		return nil, err
	}
	defer front.Stop()
	jsonPath := filepath.Join(b.dir, "requests.jsonl")
	tr, err := startTracer(bin, tracerdArgs(front.Port, b.dir, true), jsonPath)
	if err != nil {
		return nil, err
	}
	defer tr.Kill()
	pid := tr.cmd.Process.Pid
	if _, err := tr.waitStderr(ctx, startupDone, connsStartupMax); err != nil {
		return nil, err
	}
	w, err := watchPrograms(pid)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var rs []outResult
	for _, path := range []string{"/", "/call"} {
		r, err := b.outboundRound(ctx, w, pid, front.Addr, path)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		r.Arm = name
		if name == armThis && path == "/call" && r.per(float64(r.Records)) < 1.95 {
			logf("WARNING: %.2f records per GET /call under this build, want 2 (the request and its call)", r.per(float64(r.Records)))
		}
		logf("outbound %-10s %-5s: %7.0f req/s, BPF %.2f runs %s/req, tracerd %s/req, %.2f records/req", name, path,
			r.Load.RPS, r.per(float64(r.BPFRuns)), fmtNs(r.per(float64(r.BPFTime))), fmtNs(r.per(float64(r.TracerCPU))),
			r.per(float64(r.Records)))
		rs = append(rs, r)
	}
	out, err := tr.Stop()
	if err != nil {
		return nil, err
	}
	if lost := out.Kernel.Lost(); lost > 0 {
		logf("WARNING: tracerd (%s) lost %d records", name, lost)
	}
	return rs, nil
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

// outboundReport is the markdown section: medians and ranges of the
// rounds per arm and load, the call's cost per arm, and (with a former
// build) what a server without calls pays more than before.
func (b *bench) outboundReport(rs []outResult) string {
	vals := func(arm, path string, f func(outResult) float64) []float64 {
		var v []float64
		for _, r := range rs {
			if r.Arm == arm && r.Path == path {
				v = append(v, f(r))
			}
		}
		return v
	}
	med := func(arm, path string, f func(outResult) float64) float64 { return median(vals(arm, path, f)) }
	cell := func(arm, path string, f func(outResult) float64, fmtv func(float64) string) string {
		v := vals(arm, path, f)
		return fmt.Sprintf("%s (%s – %s)", fmtv(median(v)), fmtv(slices.Min(v)), fmtv(slices.Max(v)))
	}
	runs := func(r outResult) float64 { return r.per(float64(r.BPFRuns)) }
	bpf := func(r outResult) float64 { return r.per(float64(r.BPFTime)) }
	cpu := func(r outResult) float64 { return r.per(float64(r.TracerCPU)) }
	recs := func(r outResult) float64 { return r.per(float64(r.Records)) }
	rps := func(r outResult) float64 { return r.Load.RPS }
	num := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	arms := []string{armThis}
	if *outFormer != "" {
		arms = append(arms, armFormer)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n## Outbound calls: what a call costs, and what a server without calls pays\n\n")
	fmt.Fprintf(&sb, "`go run ./tests/bench -only outbound -tracerd bin/tracerd -out BENCHMARKS.md` (part of `make bench`)%s, %s. "+
		"A traced bench server (tests/bench/server, `tracerd snapshot --port P --json … -o …`) at %.0f requests/s "+
		"(%d keep-alive connections, open loop, %s a round), %d rounds of each load, arms interleaved (tracerd restarted for each): "+
		"GET / answers at once; GET /call first fetches `/` from a second, untraced bench server over net/http's pool "+
		"(one outbound call per request, on reused connections). "+
		"BPF: tracerd's kernel programs (bpf_stats), all their runs on the host, per request of the load "+
		"(on loopback the untraced downstream's own reads and writes pass the programs too); "+
		"tracerd: its threads' CPU (schedstat) per request; records: written to the ring buffer per request "+
		"(a call is one record of its own). Medians, ranges over rounds in parentheses. "+
		"This build: `%s`; the machine was %.0f %% busy before the rounds (it is shared).\n\n",
		formerCmd(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), *outRate, *outConns, *outRound, *outRounds,
		binVersion(b.tracerd), b.idleBusy)
	fmt.Fprintf(&sb, "| tracerd | load | req/s | BPF runs/req | BPF time/req | tracerd CPU/req | records/req |\n|---|---|---|---|---|---|---|\n")
	for _, a := range arms {
		for _, p := range []string{"/", "/call"} {
			fmt.Fprintf(&sb, "| %s | GET %s | %.0f | %s | %s | %s | %s |\n", a, p, med(a, p, rps), cell(a, p, runs, num),
				cell(a, p, bpf, fmtNs), cell(a, p, cpu, fmtNs), cell(a, p, recs, num))
		}
	}
	fmt.Fprintf(&sb, "\n| difference of medians | BPF runs/req | BPF time/req | tracerd CPU/req | BPF + tracerd |\n|---|---|---|---|---|\n")
	diff := func(label, a1, p1, a0, p0 string) {
		d := func(f func(outResult) float64) float64 { return med(a1, p1, f) - med(a0, p0, f) }
		fmt.Fprintf(&sb, "| %s | %+.2f | %s | %s | %s |\n", label, d(runs), fmtNs(d(bpf)), fmtNs(d(cpu)), fmtNs(d(bpf)+d(cpu)))
	}
	for _, a := range arms {
		diff(fmt.Sprintf("%s: GET /call − GET / (a request's one outbound call)", a), a, "/call", a, "/")
	}
	if *outFormer != "" {
		diff("GET /: this build − former (a server without calls)", armThis, "/", armFormer, "/")
		diff("GET /call: this build − former (the calls' records)", armThis, "/call", armFormer, "/call")
	}
	return sb.String()
}

func formerCmd() string {
	if *outFormer == "" {
		return ""
	}
	return fmt.Sprintf(" with `-outbound-former %s` (`make bench OUTBOUND_FORMER=%s`; `%s`)", *outFormer, *outFormer,
		binVersion(*outFormer))
}

// binVersion is what a tracerd build says of itself.
func binVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
