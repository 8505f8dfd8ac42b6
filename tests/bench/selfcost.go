package main

// The self-cost sweep (-only selfcost): tracerd's own CPU per record
// (docs/design.md: ≤ 1 µs at every load) at fixed open-loop rates and at
// saturation, for `tracerd run` (OTLP and metrics off, JSON lines on)
// and `tracerd snapshot --json -o`, and its peak RSS at max throughput
// (≤ 64 MiB). With -selfcost-base, a second binary (the one before a
// change) runs the same rounds, interleaved with the first: before →
// after in one run, under the same noise.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// partSelfCost is the -only name of the sweep.
const partSelfCost = "selfcost"

// Budgets from docs/design.md.
const (
	budgetSelfNs     = 1000.0 // tracerd's own CPU per record
	budgetPeakRSSMiB = 64.0   // at max throughput
)

var (
	selfRates  = flag.String("selfcost-rates", "1000,3000,8000,20000", "self-cost sweep: fixed rates (requests/s), comma-separated; saturation (wrk) is always added")
	selfRounds = flag.Int("selfcost-rounds", 3, "self-cost sweep: rounds of each load, mode and binary")
	selfRoundD = flag.Duration("selfcost-round", 10*time.Second, "self-cost sweep: length of a round")
	selfConns  = flag.Int("selfcost-conns", 32, "self-cost sweep: keep-alive connections of the fixed-rate and wrk loads")
	selfModesF = flag.String("selfcost-modes", "run,snapshot", "self-cost sweep: how tracerd runs (run, snapshot)")
	selfBase   = flag.String("selfcost-base", "", "self-cost sweep: a second tracerd binary (before a change), measured in the same rounds, interleaved")
	selfProf   = flag.String("selfcost-profile", "", "self-cost sweep: a directory where each tracerd writes its CPU profile (TRACERD_CPUPROFILE)")
)

// selfPath is what the sweep's load asks for: a small JSON answer made
// by encoding/json, so that Go awareness has calls to time.
const selfPath = "/json"

// selfMode is one way of running tracerd.
type selfMode struct {
	Name string
	args func(port int, dir, jsonPath string) []string
}

// Go probes stay on whatever the rate (--go-max-calls 0): the budget
// holds with the Go view on, and a bound switching them off in the
// middle of a round would change what a record costs.
var selfModes = []selfMode{
	{"run", func(port int, dir, jsonPath string) []string {
		return []string{"run", "--port", strconv.Itoa(port), "--metrics-addr", "off", "--json", jsonPath, "--go-max-calls", "0"}
	}},
	{"snapshot", func(port int, dir, jsonPath string) []string {
		return []string{"snapshot", "--duration", "10m", "--port", strconv.Itoa(port), "--json", jsonPath,
			"-o", filepath.Join(dir, "self.pb.gz"), "--go-max-calls", "0"}
	}},
}

// modeCommand is how a mode's command line reads in the report.
func modeCommand(m selfMode) string {
	return "tracerd " + strings.Join(m.args(0, "DIR", "FILE"), " ")
}

// selfLoad is a fixed rate, or saturation (Rate 0: wrk, closed loop).
type selfLoad struct {
	Rate float64
}

func (l selfLoad) String() string {
	if l.Rate == 0 {
		return "saturation"
	}
	return fmtRPS(l.Rate) + "/s"
}

// selfResult is one round of the sweep.
type selfResult struct {
	Mode, Bin string // Bin: "after" (-tracerd) or "before" (-selfcost-base)
	Load      selfLoad
	Index     int
	LoadRes   loadResult
	CPU       procCPU // tracerd over load + drain
	Wall      time.Duration
	Records   int64 // records the kernel wrote in the window
	Lines     int64 // JSON lines written for them
	Wakeups   int64 // tracerd's voluntary context switches in the window
	IRQWork   int64 // IRQ work interrupts on the machine in the window
	RSSKiB    int64 // VmRSS after the load
	PeakKiB   int64 // VmHWM over the load (reset just before it)
	LifeKiB   int64 // VmHWM over tracerd's life, start-up included
	GoProbes  bool  // the server had its Go probes attached before the load
	GoOff     bool  // tracerd switched them off during the round
	Out       traceOutput
}

func (x selfResult) perRecord() float64 {
	return float64(x.CPU.Exec) / float64(max(1, x.Records))
}

// selfCost runs the sweep and appends its section to the report.
func (b *bench) selfCost(ctx context.Context) error {
	var loads []selfLoad
	for _, f := range strings.Split(*selfRates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("-selfcost-rates: bad rate %q", f)
		}
		loads = append(loads, selfLoad{Rate: v})
	}
	loads = append(loads, selfLoad{}) // saturation
	var modes []selfMode
	for _, name := range strings.Split(*selfModesF, ",") {
		found := false
		for _, m := range selfModes {
			if m.Name == strings.TrimSpace(name) {
				modes, found = append(modes, m), true
			}
		}
		if !found {
			return fmt.Errorf("-selfcost-modes: unknown mode %q (run, snapshot)", name)
		}
	}
	if *selfRounds < 1 || *selfRoundD < time.Second || *selfConns < 1 {
		return fmt.Errorf("need -selfcost-rounds ≥ 1, -selfcost-round ≥ 1s, -selfcost-conns ≥ 1")
	}
	bins := []struct{ label, path string }{{"after", b.tracerd}}
	if *selfBase != "" {
		p, err := filepath.Abs(*selfBase)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("-selfcost-base: %w", err)
		}
		bins = append([]struct{ label, path string }{{"before", p}}, bins...)
	}
	if *selfProf != "" {
		if err := os.MkdirAll(*selfProf, 0o755); err != nil {
			return err
		}
	}
	var err error
	if b.idleBusy, err = waitQuiet(ctx, b.quietWait); err != nil {
		return err
	}
	var results []selfResult
	for i := 0; i < *selfRounds; i++ {
		for _, l := range loads {
			for _, m := range modes {
				for _, bin := range bins {
					r, err := b.selfRound(ctx, bin.path, bin.label, m, l, i)
					if err != nil {
						return fmt.Errorf("self-cost %s %s %s round %d: %w", m.Name, l, bin.label, i+1, err)
					}
					results = append(results, r)
				}
			}
		}
	}
	sec := selfReport(b, loads, modes, len(bins) > 1, results)
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
	if _, err := f.WriteString(sec); err != nil {
		return err
	}
	logf("appended the self-cost section to %s in %s", path, time.Since(b.start).Round(time.Second))
	return nil
}

// tracerEnv is tracerd's environment: this process's without OTEL_*
// (OTLP stays off), with TRACERD_CPUPROFILE when asked.
func tracerEnv(profile string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "TRACERD_CPUPROFILE=") {
			env = append(env, kv)
		}
	}
	if profile != "" {
		env = append(env, "TRACERD_CPUPROFILE="+profile)
	}
	return env
}

// selfRound starts tracerd, waits for its start-up work and for the
// server's Go probes (one request), then measures it over a load.
func (b *bench) selfRound(ctx context.Context, bin, label string, m selfMode, l selfLoad, idx int) (r selfResult, err error) {
	r = selfResult{Mode: m.Name, Bin: label, Load: l, Index: idx}
	if _, err := waitQuiet(ctx, b.roundQuietWait); err != nil {
		return r, err
	}
	jsonPath := filepath.Join(b.dir, "self.jsonl")
	os.Remove(jsonPath) // run appends to an existing file
	defer os.Remove(jsonPath)
	defer os.Remove(filepath.Join(b.dir, "self.pb.gz"))
	prof := ""
	if *selfProf != "" {
		name := fmt.Sprintf("%s-%s-%s-%d.pprof", m.Name, strings.ReplaceAll(strings.TrimSuffix(l.String(), "/s"), ",", ""), label, idx+1)
		prof = filepath.Join(*selfProf, name)
	}
	tr, err := startTracerEnv(bin, m.args(b.server.Port, b.dir, jsonPath), jsonPath, tracerEnv(prof))
	if err != nil {
		return r, err
	}
	defer tr.Kill()
	pid := tr.cmd.Process.Pid
	if _, err := tr.waitStderr(ctx, startupDone, connsStartupMax); err != nil {
		return r, err
	}
	// With --port, the server's Go probes attach at its first traced
	// accept: have it before the load, outside the measurement.
	req := []byte("GET " + selfPath + " HTTP/1.1\r\nHost: " + b.server.Addr + "\r\nUser-Agent: tracerd-bench\r\n\r\n")
	c, err := oneRequest(ctx, b.server.Addr, req)
	if err != nil {
		return r, fmt.Errorf("warm-up request: %w", err)
	}
	c.Close()
	d, err := tr.waitStderr(ctx, "Go probes attached", connsStartupMax)
	if err != nil {
		return r, err
	}
	r.GoProbes = d >= 0
	// The warm-up's record (its connection closed) is written before
	// the window opens.
	var k0 kernelSide
	for deadline := time.Now().Add(2 * time.Second); ; {
		if k0, err = readKernelSide(pid); err != nil {
			return r, err
		}
		if k0.Records > 0 || !time.Now().Before(deadline) {
			break
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return r, err
		}
	}
	if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
		return r, err
	}
	_, r.LifeKiB = memKiB(pid)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return r, fmt.Errorf("resetting tracerd's VmHWM: %w", err)
	}
	cpu0, err := readProcCPU(pid)
	if err != nil {
		return r, err
	}
	wake0, iwi0 := wakeups(pid), irqWork()
	t0 := time.Now()
	if l.Rate > 0 {
		r.LoadRes, err = openLoopPath(ctx, b.server.Addr, selfPath, l.Rate, *selfConns, *selfRoundD)
	} else {
		r.LoadRes, err = runWrk(ctx, b.wrk, wrkArgs(1, *selfConns, *selfRoundD), "http://"+b.server.Addr+selfPath, nil)
	}
	if err != nil {
		return r, err
	}
	if err := sleepCtx(ctx, b.drain); err != nil {
		return r, err
	}
	r.Wall = time.Since(t0)
	cpu1, err := readProcCPU(pid)
	if err != nil {
		return r, err
	}
	r.CPU = cpu1.sub(cpu0)
	r.Wakeups, r.IRQWork = wakeups(pid)-wake0, irqWork()-iwi0
	r.RSSKiB, r.PeakKiB = memKiB(pid)
	r.LifeKiB = max(r.LifeKiB, r.PeakKiB)
	if r.Out, err = tr.Stop(); err != nil {
		return r, err
	}
	r.GoOff = strings.Contains(tr.stderr.String(), "Go probes switched off")
	r.Records = r.Out.Kernel.Records - k0.Records
	r.Lines = r.Out.JSONLines - k0.Records
	logf("self %-8s %-6s %-10s %d: %7.0f req/s, %d records, tracerd %s/record (%.3f wake-ups/record), RSS %.1f MiB, peak %.1f MiB (life %.1f), lost %d%s",
		m.Name, label, l, idx+1, r.LoadRes.RPS, r.Records, fmtNs(r.perRecord()), float64(r.Wakeups)/float64(max(1, r.Records)),
		kiBToMiB(r.RSSKiB), kiBToMiB(r.PeakKiB), kiBToMiB(r.LifeKiB), r.Out.Kernel.Lost(), goNote(r))
	return r, nil
}

func goNote(r selfResult) string {
	switch {
	case !r.GoProbes:
		return " (no Go probes)"
	case r.GoOff:
		return " (Go probes switched off)"
	}
	return ""
}

// selfReport is the sweep's section of BENCHMARKS.md.
func selfReport(b *bench, loads []selfLoad, modes []selfMode, ab bool, rs []selfResult) string {
	var sb strings.Builder
	p := func(format string, args ...any) {
		fmt.Fprintf(&sb, format, args...)
		sb.WriteByte('\n')
	}
	pick := func(mode, bin string, l selfLoad) []selfResult {
		var out []selfResult
		for _, x := range rs {
			if x.Mode == mode && x.Bin == bin && x.Load == l {
				out = append(out, x)
			}
		}
		return out
	}
	vals := func(xs []selfResult, f func(selfResult) float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = f(x)
		}
		return out
	}
	perRec := func(x selfResult) float64 { return x.perRecord() }
	medRange := func(v []float64, f func(float64) string) string {
		return fmt.Sprintf("%s (%s)", f(median(v)), rangeOf(v, f))
	}
	mib := func(k float64) string { return fmtMiB(k/1024) + " MiB" }
	ratio := func(v float64) string { return fmt.Sprintf("%.3f", v) }

	cmd := "go run ./tests/bench -only selfcost -tracerd " + relToRoot(b.tracerd) + " -out BENCHMARKS.md"
	if ab {
		cmd = "go run ./tests/bench -only selfcost -tracerd " + relToRoot(b.tracerd) + " -selfcost-base BEFORE -out BENCHMARKS.md"
	}
	p("")
	p("## tracerd's own CPU per record, from 1,000 requests/s to saturation")
	p("")
	p("`%s` (part of `make bench`), %s, %d rounds of %s per load, mode and binary, interleaved; tracerd %s, source tree %s.", cmd,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), *selfRounds, *selfRoundD, relToRoot(b.tracerd), gitTree())
	p("")
	p("- Server: `tests/bench/server` answering `GET %s` (a small JSON object from encoding/json.Marshal; net/http, HTTP/1.1 keep-alive), on 127.0.0.1. Fixed rates: the open-loop generator of section 4 over %d connections; saturation: `wrk -t1 -c%d -d%s`.", selfPath, *selfConns, *selfConns, strconv.Itoa(int(selfRoundD.Seconds()))+"s")
	for _, m := range modes {
		p("- `%s`: `%s`%s.", m.Name, modeCommand(m), map[bool]string{true: " (OTLP off: no endpoint, OTEL_* removed from its environment; metrics off)", false: ""}[m.Name == "run"])
	}
	p("- Each round starts its own tracerd, waits for its start-up work (`%s…` on stderr) and for one warm-up request to have the server's Go probes attached (with `--port` they attach at its first traced accept), then measures over the load and %s of drain: tracerd's CPU is the sum of its threads' `sum_exec_runtime` (schedstat), divided by the records the kernel wrote in that window (its record counter); the idle ticks, sweeps and flushes of the window are in it, as they are in a service's day.", startupDone, b.drain)
	p("- Peak RSS: VmHWM, reset (`/proc/PID/clear_refs` 5) just before the load and read after it; the life column is the peak since start, start-up included. Of VmRSS, the ring buffer's pages are mapped from the start.")
	if ab {
		p("- `before`: `-selfcost-base`, the binary before the change; `after`: `-tracerd`.")
	}
	p("")
	p("| load | mode | budget | tracerd CPU per record, median (range) | verdict |")
	p("|---|---|---|---|---|")
	for _, l := range loads {
		for _, m := range modes {
			v := vals(pick(m.Name, "after", l), perRec)
			p("| %s | %s | ≤ %s | %s | %s |", l, m.Name, fmtNs(budgetSelfNs), medRange(v, fmtNs), passFail(median(v) <= budgetSelfNs))
		}
	}
	for _, m := range modes {
		v := vals(pick(m.Name, "after", selfLoad{}), func(x selfResult) float64 { return float64(x.PeakKiB) })
		p("| saturation | %s: peak RSS over the load (VmHWM) | ≤ %.0f MiB | %s | %s |", m.Name, budgetPeakRSSMiB, medRange(v, mib), passFail(len(v) > 0 && slicesMax(v)/1024 <= budgetPeakRSSMiB))
	}
	p("")
	hdr := "| load | mode |"
	sep := "|---|---|"
	if ab {
		hdr += " binary |"
		sep += "---|"
	}
	p("%s requests/s | records | tracerd CPU per record | wake-ups per record | IRQ work per record | RSS after | peak RSS (load) | peak RSS (life) | lost |", hdr)
	p("%s---|---|---|---|---|---|---|---|---|", sep)
	bins := []string{"after"}
	if ab {
		bins = []string{"before", "after"}
	}
	for _, l := range loads {
		for _, m := range modes {
			for _, bin := range bins {
				xs := pick(m.Name, bin, l)
				if len(xs) == 0 {
					continue
				}
				line := fmt.Sprintf("| %s | %s |", l, m.Name)
				if ab {
					line += " " + bin + " |"
				}
				var recs, lost int64
				note := ""
				for _, x := range xs {
					recs += x.Records
					lost += x.Out.Kernel.Lost() + max(0, x.Records-x.Lines)
					if n := goNote(x); n != "" && note == "" {
						note = n
					}
				}
				line += fmt.Sprintf(" %s | %s | %s | %s | %s | %s | %s | %s | %d%s |",
					fmtRPS(median(vals(xs, func(x selfResult) float64 { return x.LoadRes.RPS }))),
					fmtInt(recs),
					medRange(vals(xs, perRec), fmtNs),
					ratio(median(vals(xs, func(x selfResult) float64 { return float64(x.Wakeups) / float64(max(1, x.Records)) }))),
					ratio(median(vals(xs, func(x selfResult) float64 { return float64(x.IRQWork) / float64(max(1, x.Records)) }))),
					mib(median(vals(xs, func(x selfResult) float64 { return float64(x.RSSKiB) }))),
					mib(slicesMax(vals(xs, func(x selfResult) float64 { return float64(x.PeakKiB) }))),
					mib(slicesMax(vals(xs, func(x selfResult) float64 { return float64(x.LifeKiB) }))),
					lost, note)
				p("%s", line)
			}
		}
	}
	p("")
	p("Records: over all rounds of the row. Lost: counted losses (tracerd's `kernel:` line) plus records without their JSON line. Peak RSS columns: the largest over the rounds.")
	return sb.String()
}

func slicesMax(v []float64) float64 {
	_, hi := spread(v)
	return hi
}

// relToRoot names a path relative to the module root when it is inside it.
func relToRoot(path string) string {
	root, err := moduleRoot()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func gitTree() string {
	root, err := moduleRoot()
	if err != nil {
		return "unknown"
	}
	return gitDescribe(root)
}
