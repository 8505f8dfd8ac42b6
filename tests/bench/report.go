package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// Budgets from docs/design.md.
const (
	budgetRPSDrop    = 5.0                    // % fewer requests/s at saturation
	budgetAddedP99   = 100 * time.Microsecond // added p99 at saturation
	budgetEngineCost = 2000.0                 // ns per request, BPF + tracerd CPU
	budgetBPF        = 1000.0                 // ns of BPF run time per request (issue 11)
	budgetServerRuns = 8.0                    // BPF program runs per request on the server side
	budgetAttach     = time.Second
	budgetRSSMiB     = 64.0 // tracerd RSS with budgetConns open traced connections
	budgetConns      = 10000
	emptyHitNs       = 170.0 // an empty tracepoint hit in our VM (docs/design.md)
)

type verdict struct {
	Name, Budget, Measured, Verdict string
}

type report struct {
	b        *bench
	rounds   []roundResult
	conns    []connsResult
	ctxs     []ctxResult
	verdicts []verdict
	sb       strings.Builder
}

func newReport(b *bench, rounds []roundResult, conns []connsResult, ctxs []ctxResult) *report {
	return &report{b: b, rounds: rounds, conns: conns, ctxs: ctxs}
}

func (r *report) failed() bool {
	for _, v := range r.verdicts {
		if v.Verdict == "FAIL" {
			return true
		}
	}
	return false
}

func (r *report) pick(kind string, a arm) []roundResult {
	var out []roundResult
	for _, x := range r.rounds {
		if x.Kind == kind && x.arm == a {
			out = append(out, x)
		}
	}
	return out
}

func (r *report) p(format string, args ...any) {
	fmt.Fprintf(&r.sb, format, args...)
	r.sb.WriteByte('\n')
}

// ---- statistics ----

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	return slices.Min(v), slices.Max(v)
}

func collect(rs []roundResult, f func(roundResult) float64) []float64 {
	out := make([]float64, len(rs))
	for i, x := range rs {
		out[i] = f(x)
	}
	return out
}

func rps(x roundResult) float64  { return x.Load.RPS }
func p50(x roundResult) float64  { return float64(x.Load.P50) }
func p99(x roundResult) float64  { return float64(x.Load.P99) }
func p999(x roundResult) float64 { return float64(x.Load.P999) }

func perReq(x roundResult, d time.Duration) float64 {
	if x.Load.Requests == 0 {
		return 0
	}
	return float64(d) / float64(x.Load.Requests)
}

func machinePerReq(x roundResult) float64 { return perReq(x, x.Machine.Busy) }
func serverPerReq(x roundResult) float64  { return perReq(x, x.ServerCPU.Exec) }
func bpfPerReq(x roundResult) float64 {
	rt, _, _ := progTotals(x.Progs)
	return perReq(x, rt)
}
func iwiPerReq(x roundResult) float64 {
	return float64(x.IRQWork) / float64(max(1, x.Load.Requests))
}
func wakeupsPerReq(x roundResult) float64 {
	return float64(x.Wakeups) / float64(max(1, x.Load.Requests))
}
func fmtRatio(v float64) string               { return fmt.Sprintf("%.2f", v) }
func tracerPerReq(x roundResult) float64      { return perReq(x, x.TracerCPU.Exec) }
func tracerTicksPerReq(x roundResult) float64 { return perReq(x, x.TracerCPU.Ticks) }
func enginePerReq(x roundResult) float64      { return bpfPerReq(x) + tracerPerReq(x) }
func busyPct(x roundResult) float64 {
	if x.Machine.Total == 0 {
		return 0
	}
	return 100 * float64(x.Machine.Busy) / float64(x.Machine.Total)
}

// pooled sums d over rounds and divides by their requests.
func pooled(rs []roundResult, d func(roundResult) time.Duration) float64 {
	var num time.Duration
	var den int64
	for _, x := range rs {
		num += d(x)
		den += x.Load.Requests
	}
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

func bpfTime(x roundResult) time.Duration {
	rt, _, _ := progTotals(x.Progs)
	return rt
}

func bpfHits(rs []roundResult) float64 {
	var hits uint64
	var n int64
	for _, x := range rs {
		_, h, _ := progTotals(x.Progs)
		hits += h
		n += x.Load.Requests
	}
	return float64(hits) / float64(max(1, n))
}

// ---- formatting ----

func fmtDur(d time.Duration) string { return fmtNs(float64(d)) }

func fmtNs(ns float64) string {
	a := ns
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case a >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRPS(v float64) string { return fmtInt(int64(v + 0.5)) }

func rangeOf(v []float64, f func(float64) string) string {
	lo, hi := spread(v)
	return f(lo) + " – " + f(hi)
}

func spreadPct(v []float64) float64 {
	lo, hi := spread(v)
	m := median(v)
	if m == 0 {
		return 0
	}
	return 100 * (hi - lo) / m
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// ---- the report ----

// armLabel is how an arm is named in tables.
func armLabel(a arm) string {
	switch a.Name {
	case "on":
		return "on (`--json` + `-o`)"
	case "pprof":
		return "on, `-o` only"
	case "floor":
		return "floor (empty programs)"
	case "census":
		return "on + census"
	}
	return "off"
}

// othersPct is the share of the machine's CPU that went to processes
// other than the server, tracerd, the load generator and this benchmark
// (irq and softirq time excluded), over the round.
func othersPct(x roundResult) float64 {
	if x.Machine.Total <= 0 {
		return 0
	}
	ours := x.ServerCPU.Exec + x.TracerCPU.Exec + x.Load.CPU + x.BenchCPU.Exec + x.Machine.IRQ
	return max(0, 100*float64(x.Machine.Busy-ours)/float64(x.Machine.Total))
}

// write writes the report to path, or to stdout when path is "".
func (r *report) write(path string) error {
	if r.b.only != "" {
		r.partial()
	} else {
		r.full()
	}
	if path == "" {
		_, err := os.Stdout.WriteString(r.sb.String())
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.sb.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// full is the whole report, BENCHMARKS.md.
func (r *report) full() {
	c := r.b.config
	maxOff, maxOn, maxPprof := r.pick("max", armOff), r.pick("max", armOn), r.pick("max", armPprof)
	rateOff, rateOn := r.pick("rate", armOff), r.pick("rate", armOn)
	tracerExec := func(x roundResult) time.Duration { return x.TracerCPU.Exec }
	engine := func(rs []roundResult) (sum, bpf, user float64) {
		bpf, user = pooled(rs, bpfTime), pooled(rs, tracerExec)
		return bpf + user, bpf, user
	}
	var allOthers []float64
	for _, x := range r.rounds {
		allOthers = append(allOthers, othersPct(x))
	}

	// Verdicts first: they head the report.
	offRPS, onRPS := median(collect(maxOff, rps)), median(collect(maxOn, rps))
	drop := 100 * (offRPS - onRPS) / offRPS
	r.verdicts = append(r.verdicts, verdict{
		"requests/s lost at max throughput (medians)", fmt.Sprintf("≤ %.0f %%", budgetRPSDrop),
		fmt.Sprintf("%.1f %% (%s → %s req/s)", drop, fmtRPS(offRPS), fmtRPS(onRPS)), passFail(drop <= budgetRPSDrop)})
	offP99, onP99 := median(collect(maxOff, p99)), median(collect(maxOn, p99))
	r.verdicts = append(r.verdicts, verdict{
		"p99 added at max throughput (medians)", "≤ " + fmtDur(budgetAddedP99),
		fmt.Sprintf("%s (%s → %s)", fmtNs(onP99-offP99), fmtNs(offP99), fmtNs(onP99)),
		passFail(onP99-offP99 <= float64(budgetAddedP99))})
	sum, bpf, user := engine(maxOn)
	r.verdicts = append(r.verdicts, verdict{
		"kernel engine cost per request at max throughput (BPF run time + tracerd CPU)", "≤ " + fmtNs(budgetEngineCost),
		fmt.Sprintf("%s (BPF %s + tracerd %s)", fmtNs(sum), fmtNs(bpf), fmtNs(user)), passFail(sum <= budgetEngineCost)})
	if len(rateOn) > 0 {
		sum, bpf, user := engine(rateOn)
		r.verdicts = append(r.verdicts, verdict{
			fmt.Sprintf("kernel engine cost per request at %s req/s", fmtRPS(c.rate)), "≤ " + fmtNs(budgetEngineCost),
			fmt.Sprintf("%s (BPF %s + tracerd %s)", fmtNs(sum), fmtNs(bpf), fmtNs(user)), passFail(sum <= budgetEngineCost)})
	}
	if len(maxPprof) > 0 {
		pRPS := median(collect(maxPprof, rps))
		d := 100 * (offRPS - pRPS) / offRPS
		sum, bpf, user := engine(maxPprof)
		r.verdicts = append(r.verdicts, verdict{
			"the same two without `--json` (`-o` only), max throughput", fmt.Sprintf("≤ %.0f %%; ≤ %s", budgetRPSDrop, fmtNs(budgetEngineCost)),
			fmt.Sprintf("%.1f %% fewer requests/s; %s per request (BPF %s + tracerd %s)", d, fmtNs(sum), fmtNs(bpf), fmtNs(user)),
			passFail(d <= budgetRPSDrop && sum <= budgetEngineCost)})
	}
	r.bpfVerdicts(maxOn, rateOn)
	r.verdicts = append(r.verdicts, verdict{
		"BPF program runs per request at max throughput (both sides of loopback and the rest of the host)", fmt.Sprintf("≈ %.0f (2 µs ÷ %.2f µs per empty hit)", budgetEngineCost/emptyHitNs, emptyHitNs/1e3),
		fmt.Sprintf("%.1f", bpfHits(maxOn)), "info"})
	r.censusVerdicts()
	r.floorVerdict(maxOn, r.pick("max", armFloor), maxOff)
	r.ctxVerdict()
	if len(rateOn) > 0 {
		ok, what := r.recordsOK(rateOn, true)
		if got := median(collect(rateOn, rps)); got < 0.95*c.rate {
			what += fmt.Sprintf("; but only %s req/s were achieved (median)", fmtRPS(got))
			ok = false
		}
		r.verdicts = append(r.verdicts, verdict{fmt.Sprintf("lost records at %s req/s", fmtRPS(c.rate)), "0", what, passFail(ok)})
	}
	ok, what := r.recordsOK(append(slices.Clone(maxOn), maxPprof...), false)
	r.verdicts = append(r.verdicts, verdict{"lost records at max throughput", "0", what, passFail(ok)})
	var attach []float64
	for _, x := range r.rounds {
		if x.Traced {
			attach = append(attach, float64(x.Attach))
		}
	}
	r.verdicts = append(r.verdicts, verdict{"attached and tracing after start", "≤ 1 s",
		fmt.Sprintf("max %s over %d starts", fmtNs(slices.Max(attach)), len(attach)), passFail(slices.Max(attach) <= float64(budgetAttach))})
	var hwm []float64
	for _, x := range r.rounds {
		if x.Traced && x.HWMKiB > 0 {
			hwm = append(hwm, float64(x.HWMKiB)/1024)
		}
	}
	if len(hwm) > 0 {
		// The budget's condition is 10k connections (the next row):
		// this is what the load rounds' few connections cost.
		r.verdicts = append(r.verdicts, verdict{fmt.Sprintf("tracerd peak RSS (VmHWM) with %d connections under load", max(c.conns, c.rateConns)),
			"(the budget is for 10k connections: next row)", fmt.Sprintf("max %.1f MiB over %d runs", slices.Max(hwm), len(hwm)), "info"})
	}
	if len(r.conns) > 0 {
		r.verdicts = append(r.verdicts, r.connsVerdict())
	}
	r.verdicts = append(r.verdicts, verdict{"uprobe cost", "reported apart, per probe", r.uprobeNote(), "n/a"})

	// Header.
	r.p("# tracerd benchmarks")
	r.p("")
	r.p("Produced by `make bench` (root; it builds `bin/tracerd`, installs wrk from Debian, then runs `go run ./tests/bench -tracerd bin/tracerd -out BENCHMARKS.md`). Every run rewrites this file completely. Budgets: docs/design.md, \"Budgets\".")
	r.p("")
	r.runInfo()
	r.p("- other load on the machine (it is shared): %.1f %% of its CPU busy just before the run (after waiting up to %s for quiet); during the rounds, processes outside the benchmark used %s %% of it (median %.1f %%)", r.b.idleBusy, c.quietWait, rangeOf(allOthers, func(v float64) string { return fmt.Sprintf("%.1f", v) }), median(allOthers))
	r.p("")

	r.verdictTable()
	if sp := spreadPct(collect(maxOff, rps)); sp > budgetRPSDrop {
		r.p("Noise: the untraced rounds alone spread by %.1f %% in requests/s (max − min over median), more than the %.0f %% budget: a throughput verdict within that margin is not significant.", sp, budgetRPSDrop)
		r.p("")
	}
	if slices.Max(allOthers) > 5 || r.b.idleBusy > 5 {
		r.p("Warning: other processes were using the machine during this run (see \"others\" per round below); their CPU comes out of the server's and wrk's share and blurs the A/B. The per-request BPF and tracerd CPU figures are per-process measurements and are much less affected.")
		r.p("")
	}

	r.p("## How it was measured")
	r.p("")
	r.p("- Server: `tests/bench/server`, Go net/http, HTTP/1.1 keep-alive, answers `GET /` with a %d-byte body; its own process, GOMAXPROCS default (%d), on 127.0.0.1.", len("hello from the tracerd bench server\n"), runtime.NumCPU())
	r.p("- Max throughput: `wrk %s http://127.0.0.1:PORT/` (closed loop; wrk from Debian's package), after a %s untraced warm-up.", strings.Join(wrkArgs(c.threads, c.conns, c.round), " "), c.warmup)
	if c.rate > 0 {
		r.p("- Fixed rate: %s requests/s from an open-loop Go generator inside the benchmark process (wrk2 is not packaged in Debian): %d keep-alive connections, each sending on its own fixed schedule; latency counts from the scheduled send time, so stalls are not hidden (no coordinated omission).", fmtRPS(c.rate), c.rateConns)
	}
	r.p("- tracerd runs as users run it: `tracerd %s` (per-request JSON lines and a pprof profile), started before the load; the benchmark waits for `tracerd: tracing` on stderr, ends it with SIGINT %s after the load, then reads its summary (`N requests`) and `kernel:` line and counts the JSON lines.", strings.Join(tracerdArgs(0, "DIR", true), " "), c.drain)
	if len(maxPprof) > 0 {
		r.p("  A third arm at max throughput runs it without `--json` (`tracerd %s`), to separate the JSON export's cost from the engine's.", strings.Join(tracerdArgs(0, "DIR", false), " "))
	}
	arms := "off, on"
	if len(maxPprof) > 0 {
		arms += ", on `-o` only"
	}
	if len(r.pick("max", armFloor)) > 0 {
		arms += ", floor"
	}
	r.p("- A/B in one run, interleaved (%s, then again, …): %d rounds of each at max throughput (%s each)", arms, c.rounds, c.round)
	if c.rate > 0 {
		r.p("  and %d of each (off, on%s) at the fixed rate (%s each). Tables give medians over rounds and ranges (min – max).", c.rateRounds, map[bool]string{true: ", floor"}[len(r.pick("rate", armFloor)) > 0], c.rateRound)
	} else {
		r.p("  Tables give medians over rounds and ranges (min – max).")
	}
	r.p("- Server, load generator, tracerd and this benchmark share the %d CPUs; nothing is pinned. At max throughput the CPUs are saturated, so whatever tracerd costs is taken from the server and wrk. All of them run at nice %d, so that other work on a shared machine takes less from them; among themselves they compete as at nice 0.", runtime.NumCPU(), c.nice)
	r.p("- BPF cost: `kernel.bpf_stats_enabled=1` during traced rounds only (the previous value is restored after each). tracerd's programs are those whose prog_id its file descriptors hold (/proc/PID/fdinfo), named from their BTF (the kernel keeps 15 bytes of a name) and matched to `internal/loader`'s hooks; run_time_ns and run_cnt are deltas over load + drain. run_time_ns is the programs' own time: the tracepoint dispatch around each run is not in it, nor the interrupt that a ring buffer wake-up raises; the whole-machine CPU per request includes them. The statistics themselves add two clock reads per run to the traced rounds.")
	r.p("- tracerd CPU: the sum of its threads' `sum_exec_runtime` (/proc/PID/task/*/schedstat, ns), delta over load + drain; utime+stime from /proc/PID/stat (10 ms ticks) is shown as a cross-check. Per-request figures divide by the requests the load generator completed.")
	r.p("- \"others\": the machine's busy CPU (/proc/stat) minus irq/softirq time and minus the CPU of the server, tracerd, wrk and this benchmark: what unrelated processes took during the round.")
	if len(r.pick("max", armFloor)) > 0 {
		r.p("- The floor: the benchmark's own empty programs (`return 0`, BPF assembly in tests/bench/bpfarms.go) attached at every attach point tracerd's programs use on this kernel (found by starting tracerd once), nothing else; its BPF run time and runs are read as tracerd's are.")
	}
	if len(r.conns) > 0 {
		r.p("- RSS budget: after these rounds, tracerd's memory with %s open idle connections, each having had one request (\"tracerd memory with open connections\" below).", fmtInt(int64(c.openConns)))
	}
	r.p("")

	// 1. Max throughput.
	armsMax := [][]roundResult{maxOff, maxOn}
	if len(maxPprof) > 0 {
		armsMax = append(armsMax, maxPprof)
	}
	if fl := r.pick("max", armFloor); len(fl) > 0 {
		armsMax = append(armsMax, fl)
	}
	r.p("## 1. Max throughput, without and with tracerd (wrk)")
	r.p("")
	r.cmpTable(armsMax, []cmpRow{
		{"requests/s", rps, fmtRPS, true},
		{"p50 latency", p50, fmtNs, false},
		{"p99 latency", p99, fmtNs, false},
		{"server CPU per request", serverPerReq, fmtNs, false},
		{"whole-machine CPU per request", machinePerReq, fmtNs, false},
		{"machine busy", busyPct, fmtPct, false},
		{"others (unrelated processes)", othersPct, fmtPct, false},
	})
	r.p("Server CPU per request includes the BPF programs that run in the server's own syscalls and scheduler events; whole-machine CPU per request (busy time of all CPUs over the round ÷ requests) includes everything: server, wrk, tracerd, BPF with its dispatch, softirqs, and other processes.")
	r.p("")
	r.p("| round | tracerd | requests/s | p50 | p99 | max | requests | errors | others |")
	r.p("|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.rounds {
		if x.Kind != "max" || x.Census {
			continue
		}
		r.p("| %d | %s | %s | %s | %s | %s | %s | %d | %s |", x.Index+1, armLabel(x.arm), fmtRPS(x.Load.RPS), fmtDur(x.Load.P50), fmtDur(x.Load.P99), fmtDur(x.Load.Max), fmtInt(x.Load.Requests), x.Load.Errors, fmtPct(othersPct(x)))
	}
	r.p("")

	// 2. Engine cost.
	r.p("## 2. Cost per request of the kernel engine")
	r.p("")
	r.p("Pooled over the traced rounds (sum of costs ÷ sum of requests); per-round range in brackets.")
	r.p("")
	type costCol struct {
		name  string
		rs    []roundResult
		off   []roundResult
		floor []roundResult
	}
	cols := []costCol{{"max throughput, " + armLabel(armOn), maxOn, maxOff, r.pick("max", armFloor)}}
	if len(maxPprof) > 0 {
		cols = append(cols, costCol{"max throughput, " + armLabel(armPprof), maxPprof, maxOff, r.pick("max", armFloor)})
	}
	if len(rateOn) > 0 {
		cols = append(cols, costCol{fmtRPS(c.rate) + " req/s, " + armLabel(armOn), rateOn, rateOff, r.pick("rate", armFloor)})
	}
	hdr, sep := "| |", "|---|"
	for _, col := range cols {
		hdr += " " + col.name + " |"
		sep += "---|"
	}
	r.p("%s budget |", hdr)
	r.p("%s---|", sep)
	costRow := func(name, budget string, cell func(costCol) string) {
		line := "| " + name + " |"
		for _, col := range cols {
			line += " " + cell(col) + " |"
		}
		r.p("%s %s |", line, budget)
	}
	pooledCell := func(total func(roundResult) time.Duration, per func(roundResult) float64) func(costCol) string {
		return func(col costCol) string {
			return fmt.Sprintf("%s (%s)", fmtNs(pooled(col.rs, total)), rangeOf(collect(col.rs, per), fmtNs))
		}
	}
	costRow("BPF run time per request", "", pooledCell(bpfTime, bpfPerReq))
	costRow("tracerd user-space CPU per request", "", pooledCell(tracerExec, tracerPerReq))
	costRow("**sum: kernel engine per request**", "≤ "+fmtNs(budgetEngineCost),
		pooledCell(func(x roundResult) time.Duration { return bpfTime(x) + tracerExec(x) }, enginePerReq))
	costRow("tracerd CPU per request from utime+stime (cross-check)", "", pooledCell(func(x roundResult) time.Duration { return x.TracerCPU.Ticks }, tracerTicksPerReq))
	costRow("BPF program runs (hits) per request", fmt.Sprintf("≈ %.0f", budgetEngineCost/emptyHitNs), func(col costCol) string { return fmt.Sprintf("%.1f", bpfHits(col.rs)) })
	costRow("whole-machine CPU per request, on − off (medians; all-in)", "", func(col costCol) string {
		return fmtNs(median(collect(col.rs, machinePerReq)) - median(collect(col.off, machinePerReq)))
	})
	costRow("tracerd wake-ups (voluntary context switches) per request", "", func(col costCol) string {
		return fmt.Sprintf("%.2f (%s)", median(collect(col.rs, wakeupsPerReq)), rangeOf(collect(col.rs, wakeupsPerReq), fmtRatio))
	})
	costRow("IRQ work interrupts per request, on − off (medians)", "", func(col costCol) string {
		return fmt.Sprintf("%.2f", median(collect(col.rs, iwiPerReq))-median(collect(col.off, iwiPerReq)))
	})
	if len(r.pick("max", armFloor)) > 0 {
		floorCell := func(f func(col costCol) string) func(costCol) string {
			return func(col costCol) string {
				if len(col.floor) == 0 {
					return "–"
				}
				return f(col)
			}
		}
		costRow("floor: BPF run time per request of empty programs on the same hooks", "", floorCell(func(col costCol) string {
			return fmt.Sprintf("%s (%s)", fmtNs(pooled(col.floor, bpfTime)), rangeOf(collect(col.floor, bpfPerReq), fmtNs))
		}))
		costRow("floor: program runs per request", "", floorCell(func(col costCol) string { return fmt.Sprintf("%.1f", bpfHits(col.floor)) }))
		costRow("tracerd's BPF run time ÷ the floor's", "", floorCell(func(col costCol) string {
			return fmt.Sprintf("%.1f×", pooled(col.rs, bpfTime)/pooled(col.floor, bpfTime))
		}))
		costRow("floor: whole-machine CPU per request, floor − off (medians; all-in)", "", floorCell(func(col costCol) string {
			return fmtNs(median(collect(col.floor, machinePerReq)) - median(collect(col.off, machinePerReq)))
		}))
		costRow("tracerd's whole-machine CPU added ÷ the floor's", "", floorCell(func(col costCol) string {
			off := median(collect(col.off, machinePerReq))
			fl := median(collect(col.floor, machinePerReq)) - off
			if fl <= 0 {
				return "– (the floor's added CPU is within noise)"
			}
			return fmt.Sprintf("%.1f×", (median(collect(col.rs, machinePerReq))-off)/fl)
		}))
	}
	r.p("")
	r.p("The all-in row is the extra CPU the whole machine spent per request with tracerd attached (server, wrk, tracerd, BPF with its dispatch and wake-up interrupts, caches); at max throughput it also absorbs the noise of other processes. A BPF ring buffer output that finds tracerd waiting wakes it through an IRQ work interrupt (a self-IPI, which in a VM is an exit to the hypervisor), counted in the last row.")
	r.p("")

	r.p("### Per program")
	r.p("")
	r.p("Hits (program runs) and run time per request, pooled over the traced rounds with `--json`; ns/hit is run_time_ns ÷ run_cnt. A program runs for every matching kernel event on the host (the load generator's sockets and every context switch included) and returns after its filter lookup when the event is not traced.")
	r.p("")
	maxProgs := sumProgs(collectProgs(maxOn)...)
	rateProgs := sumProgs(collectProgs(rateOn)...)
	nMax, nRate := totalRequests(maxOn), totalRequests(rateOn)
	if len(rateOn) > 0 {
		rt := fmtRPS(c.rate)
		r.p("| program | attach point | type | hits/req | ns/hit | ns/req | hits/req @%s | ns/hit @%s | ns/req @%s | missed runs |", rt, rt, rt)
		r.p("|---|---|---|---|---|---|---|---|---|---|")
	} else {
		r.p("| program | attach point | type | hits/req | ns/hit | ns/req | missed runs |")
		r.p("|---|---|---|---|---|---|---|")
	}
	byName := map[string]progStat{}
	for _, p := range rateProgs {
		byName[p.Name] = p
	}
	for _, p := range maxProgs {
		if p.Uprobe {
			continue
		}
		line := fmt.Sprintf("| %s | %s | %s | %.2f | %s | %s |", p.Name, p.Hook, p.Type,
			float64(p.RunCount)/float64(max(1, nMax)), nsPerHit(p), fmtNs(float64(p.Runtime)/float64(max(1, nMax))))
		misses := p.Misses
		if len(rateOn) > 0 {
			q := byName[p.Name]
			line += fmt.Sprintf(" %.2f | %s | %s |", float64(q.RunCount)/float64(max(1, nRate)), nsPerHit(q), fmtNs(float64(q.Runtime)/float64(max(1, nRate))))
			misses += q.Misses
		}
		r.p("%s %d |", line, misses)
	}
	rt, hits, _ := progTotals(maxProgs)
	line := fmt.Sprintf("| **total** | | | %.2f | %s | %s |", float64(hits)/float64(max(1, nMax)), fmtNs(float64(rt)/float64(max(1, hits))), fmtNs(float64(rt)/float64(max(1, nMax))))
	if len(rateOn) > 0 {
		rt2, hits2, _ := progTotals(rateProgs)
		line += fmt.Sprintf(" %.2f | %s | %s |", float64(hits2)/float64(max(1, nRate)), fmtNs(float64(rt2)/float64(max(1, hits2))), fmtNs(float64(rt2)/float64(max(1, nRate))))
	}
	r.p("%s |", line)
	r.p("")
	r.uprobeTable(maxOn, rateOn)
	r.censusSection()
	var missing []string
	for _, x := range r.rounds {
		missing = append(missing, x.Missing...)
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	if len(missing) > 0 {
		r.p("Declared in `internal/loader` but not loaded by this tracerd binary: %s.", strings.Join(missing, ", "))
		r.p("")
	}

	// 3. Records.
	r.p("## 3. Records: requests tracerd saw vs requests sent, and losses")
	r.p("")
	r.p("Requests = what the load generator completed (wrk) or sent (fixed rate). tracerd may see up to one request per connection more than wrk counts: wrk stops with requests in flight that the server still answers. Records = the kernel's record counter; JSON = lines in the `--json` file; summary = the summary's `N requests`. Losses from the `kernel:` line. No loss means: nothing counted lost, and the outputs hold every kernel record (they may hold a few more: requests seen by the Go probes alone, such as a handler's call whose kernel record came before its probes were all on).")
	r.p("")
	r.p("| round | load | tracerd | requests | records | JSON lines | summary | records − requests | ring buffer lost | conns untraced | threads untimed | idle timers failed | output errors |")
	r.p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.rounds {
		if !x.Traced || x.Census {
			continue
		}
		req := x.Load.Requests
		load := "wrk"
		if x.Kind == "rate" {
			req = x.Load.Sent
			load = fmtRPS(c.rate) + "/s"
		}
		k := x.Out.Kernel
		jl := "–"
		if x.Out.JSONLines >= 0 {
			jl = fmtInt(x.Out.JSONLines)
		}
		r.p("| %d | %s | %s | %s | %s | %s | %s | %+d | %d | %d | %d | %d | %d |", x.Index+1, load, armLabel(x.arm), fmtInt(req), fmtInt(k.Records), jl, fmtInt(x.Out.SummaryRequests),
			k.Records-req, k.RingbufLost, k.ConnsUntraced, k.ThreadsUntimed, k.SweepFails, k.OutputErrors)
	}
	r.p("")
	if len(maxOn) > 0 {
		r.p("tracerd's `kernel:` line in max-throughput round %d:", maxOn[len(maxOn)-1].Index+1)
		r.p("")
		r.p("```")
		r.p("%s", maxOn[len(maxOn)-1].Out.KernelLine)
		r.p("```")
		r.p("")
	}

	// 4. Fixed rate.
	if len(rateOn) > 0 {
		r.p("## 4. Fixed rate: %s requests/s (open loop)", fmtRPS(c.rate))
		r.p("")
		armsRate := [][]roundResult{rateOff, rateOn}
		if fl := r.pick("rate", armFloor); len(fl) > 0 {
			armsRate = append(armsRate, fl)
		}
		r.cmpTable(armsRate, []cmpRow{
			{"achieved requests/s", rps, fmtRPS, true},
			{"p50 latency", p50, fmtNs, false},
			{"p99 latency", p99, fmtNs, false},
			{"p99.9 latency", p999, fmtNs, false},
			{"server CPU per request", serverPerReq, fmtNs, false},
			{"whole-machine CPU per request", machinePerReq, fmtNs, false},
			{"machine busy", busyPct, fmtPct, false},
			{"others (unrelated processes)", othersPct, fmtPct, false},
		})
		r.p("Below saturation the latency change is what tracing adds to each request's path, and the change of whole-machine CPU per request is its all-in CPU cost. Tail latencies at a fixed rate are sensitive to any stall on the machine (a few ms of CPU taken by another process queues requests on every connection).")
		r.p("")
		r.p("| round | tracerd | sent | answered | errors | requests/s | p50 | p99 | p99.9 | max | others |")
		r.p("|---|---|---|---|---|---|---|---|---|---|---|")
		for _, x := range r.rounds {
			if x.Kind != "rate" || x.Census {
				continue
			}
			r.p("| %d | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |", x.Index+1, armLabel(x.arm), fmtInt(x.Load.Sent), fmtInt(x.Load.Requests), x.Load.Errors,
				fmtRPS(x.Load.RPS), fmtDur(x.Load.P50), fmtDur(x.Load.P99), fmtDur(x.Load.P999), fmtDur(x.Load.Max), fmtPct(othersPct(x)))
		}
		r.p("")
	}

	r.ctxSection()

	// tracerd itself.
	r.p("## tracerd process")
	r.p("")
	r.p("| round | load | tracerd | attached after | RSS at end | peak RSS (VmHWM) | tracerd CPU (schedstat) | (utime+stime) |")
	r.p("|---|---|---|---|---|---|---|---|")
	for _, x := range r.rounds {
		if !x.Traced || x.Census {
			continue
		}
		load := "wrk"
		if x.Kind == "rate" {
			load = fmtRPS(c.rate) + "/s"
		}
		r.p("| %d | %s | %s | %s | %.1f MiB | %.1f MiB | %s | %s |", x.Index+1, load, armLabel(x.arm), fmtDur(x.Attach), float64(x.RSSKiB)/1024, float64(x.HWMKiB)/1024, fmtDur(x.TracerCPU.Exec), fmtDur(x.TracerCPU.Ticks))
	}
	r.p("")
	if len(r.conns) > 0 {
		r.p("These rounds hold %d connections; the RSS budget (≤ %.0f MiB with %s open traced connections) is measured in the next section.", max(c.conns, c.rateConns), budgetRSSMiB, fmtInt(budgetConns))
		r.p("")
		r.connsSection()
	} else {
		r.p("(The RSS budget, ≤ %.0f MiB with %s open traced connections, is not measured in this run (-open-conns 0): these rounds hold %d connections.)", budgetRSSMiB, fmtInt(budgetConns), max(c.conns, c.rateConns))
	}
}

// partial is the report of a run of some parts (-only): their verdicts
// and sections, not BENCHMARKS.md.
func (r *report) partial() {
	r.censusVerdicts()
	r.ctxVerdict()
	if len(r.conns) > 0 {
		r.verdicts = append(r.verdicts, r.connsVerdict())
	}
	r.p("# tracerd benchmarks: %s only (partial run)", r.b.only)
	r.p("")
	r.p("Produced by `go run ./tests/bench -only %s`: part of `make bench`, whose full report is BENCHMARKS.md. Budgets: docs/design.md, \"Budgets\".", r.b.only)
	r.p("")
	r.runInfo()
	r.p("")
	r.verdictTable()
	r.censusSection()
	r.ctxSection()
	if len(r.conns) > 0 {
		r.connsSection()
	}
}

// runInfo says when, where and what was measured.
func (r *report) runInfo() {
	c := r.b.config
	m := readMachineInfo()
	root, _ := moduleRoot()
	version := "?"
	if out, err := exec.Command(c.tracerd, "version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	tracerdRel := c.tracerd
	if rel, err := filepath.Rel(root, c.tracerd); err == nil && !strings.HasPrefix(rel, "..") {
		tracerdRel = rel
	}
	r.p("- date: %s (the run took %s)", r.b.start.UTC().Format("2006-01-02 15:04 MST"), time.Since(r.b.start).Round(time.Second))
	r.p("- machine: %d CPUs (nproc), %s, kernel %s, %s RAM", runtime.NumCPU(), m.CPUModel, m.Kernel, m.MemTotal)
	r.p("- tracerd: `%s` (`%s`), source tree %s; Go %s", tracerdRel, version, gitDescribe(root), runtime.Version())
}

func (r *report) verdictTable() {
	r.p("## Verdict")
	r.p("")
	r.p("| budget | limit | measured | verdict |")
	r.p("|---|---|---|---|")
	for _, v := range r.verdicts {
		r.p("| %s | %s | %s | %s |", v.Name, v.Budget, v.Measured, v.Verdict)
	}
	r.p("")
}

func kiBToMiB(k int64) float64 { return float64(k) / 1024 }

// connsVerdict judges the largest VmRSS of tracerd sampled while all
// the connections were open, over the runs: the Go runtime returns
// memory only after a garbage collection, so the settled value alone
// would depend on when one came. A run where tracerd did not trace
// every connection does not measure the budget's condition: it fails.
func (r *report) connsVerdict() verdict {
	n := r.b.openConns
	name := fmt.Sprintf("tracerd RSS (VmRSS) with %s open traced connections", fmtInt(int64(n)))
	budget := fmt.Sprintf("≤ %.0f MiB with %s connections", budgetRSSMiB, fmtInt(budgetConns))
	var peak, end, idle, hwm []float64
	var traced, inMap, records []int64
	valid := true
	for _, x := range r.conns {
		peak = append(peak, kiBToMiB(x.Held.PeakRSSKiB))
		end = append(end, kiBToMiB(x.Held.RSS))
		idle = append(idle, kiBToMiB(x.Idle.RSS))
		hwm = append(hwm, kiBToMiB(x.Held.HWM))
		traced = append(traced, x.Out.Kernel.Conns)
		inMap = append(inMap, x.Kernel.Conns)
		records = append(records, x.Kernel.Records)
		valid = valid && x.Valid()
	}
	ring := kiBToMiB(r.conns[0].Held.BPFMaps)
	measured := fmt.Sprintf("max %.1f MiB over %d runs while they were open (%s MiB at the end of the hold; %s MiB before connecting, after start-up); of it %.1f MiB are the BPF ring buffer's mappings; peak VmHWM %.1f MiB; connections traced: %s, in tracerd's map when measured: %s",
		slices.Max(peak), len(r.conns), rangeOf(end, fmtMiB), rangeOf(idle, fmtMiB), ring, slices.Max(hwm),
		fmtInt(slices.Min(traced)), fmtInt(slices.Min(inMap)))
	if lo := slices.Min(records); lo < int64(n) {
		measured += fmt.Sprintf("; only %s of their requests' records written by then", fmtInt(lo))
	}
	ok := valid && slices.Max(peak) <= budgetRSSMiB && n >= budgetConns
	switch {
	case !valid:
		measured += fmt.Sprintf(" — not valid: fewer than %s connections were open and traced (see \"tracerd memory with open connections\")", fmtInt(int64(n)))
	case n < budgetConns:
		measured += fmt.Sprintf(" — fewer connections than the budget's %s (-open-conns)", fmtInt(budgetConns))
	}
	return verdict{name, budget, measured, passFail(ok)}
}

func fmtMiB(v float64) string { return fmt.Sprintf("%.1f", v) }

// connsSection reports the open connections measurement.
func (r *report) connsSection() {
	c := r.b.config
	n := fmtInt(int64(c.openConns))
	r.p("## tracerd memory with %s open connections (RSS budget)", n)
	r.p("")
	r.p("- %d runs, after the load rounds, each with its own tracerd started as the traced rounds start it (`tracerd %s`); the benchmark waits for `tracerd: tracing`, then for the end of tracerd's background start-up work (its log line `%s…`: it calibrates its uprobes on its own binary, which it inspects for that, at most %s).", len(r.conns), strings.Join(tracerdArgs(0, "DIR", true), " "), startupDone, connsStartupMax)
	r.p("- Then it opens %s TCP connections from the benchmark process to the server on 127.0.0.1, %d at a time (the accept queue never overflows); each sends one `GET /`, reads the answer and stays open and idle (HTTP/1.1 keep-alive; the server's idle timeout is 2 min). RLIMIT_NOFILE of the benchmark and of the server is raised to %s first.", n, connsDialers, fmtInt(int64(c.openConns+noFileHeadroom)))
	r.p("- The connections are held for at least %s (tracerd's idle timeout, 500 ms by default, ends each request in the kernel and tracerd writes its record), then until VmRSS moves less than %d MiB over %s (at most %s); VmRSS is sampled every %s.", connsSettle, rssStableKiB/1024, connsStable, connsHoldMax, connsSample)
	r.p("- At the end of the hold, with every connection still open: VmRSS, VmHWM, RssAnon and RssFile from /proc/PID/status; the RSS of tracerd's mappings of BPF maps from /proc/PID/smaps (`anon_inode:bpf-map`: the ring buffer, kernel pages mapped into tracerd, all of them from the start); and from tracerd's BPF maps, opened by id from /proc/PID/fdinfo as the benchmark opens its programs: the entries of `%s` (one per traced open connection) and its kernel memory (fdinfo `memlock`, not in VmRSS), and the records counted so far (each request ends at most the idle timeout, 500 ms by default, plus one sweep after its answer).", loader.TracerdMapConns)
	r.p("- Then the connections are closed, and %s later tracerd is stopped with SIGINT; its `kernel:` line gives the connections traced since its start (the accept hook's counter) and those it could not trace (map full).", c.drain)
	r.p("- The verdict is on the largest VmRSS sampled while all %s connections were open: the Go runtime gives memory back only after a garbage collection, which comes when tracerd has allocated enough, so the value at the end of the hold depends on whether one came. VmHWM is the peak over tracerd's whole life, its start included.", n)
	r.p("")
	r.p("| run | connections open | opened in | in tracerd's `%s` map | traced (kernel, at its end) | untraced (map full) | records by then | records at its end | JSON lines | `%s` map kernel memory |", loader.TracerdMapConns, loader.TracerdMapConns)
	r.p("|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.conns {
		memlock := "–"
		if x.Kernel.ConnsKiB >= 0 {
			memlock = fmt.Sprintf("%.1f MiB", kiBToMiB(x.Kernel.ConnsKiB))
		}
		r.p("| %d | %s | %s | %s | %s | %d | %s | %s | %s | %s |", x.Index+1, fmtInt(int64(x.Opened)), fmtDur(x.Open),
			fmtInt(x.Kernel.Conns), fmtInt(x.Out.Kernel.Conns), x.Out.Kernel.ConnsUntraced, fmtInt(x.Kernel.Records),
			fmtInt(x.Out.Kernel.Records), fmtInt(x.Out.JSONLines), memlock)
	}
	r.p("")
	r.p("| run | start-up work over after | RSS then, no connection | VmHWM then | **largest RSS with %s open** | RSS at the end of the hold | held | of it: BPF ring buffer mappings | other file pages (binary, libraries) | anonymous (Go heap, stacks) | peak RSS (VmHWM) |", n)
	r.p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.conns {
		h := x.Held
		held := fmtDur(h.Held.Round(100 * time.Millisecond))
		if !h.Settled {
			held += " (still moving)"
		}
		startup := "not seen"
		if x.StartupEnd >= 0 {
			startup = fmtDur(x.StartupEnd)
		}
		r.p("| %d | %s | %.1f MiB | %.1f MiB | **%.1f MiB** | %.1f MiB | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |", x.Index+1, startup,
			kiBToMiB(x.Idle.RSS), kiBToMiB(x.Idle.HWM), kiBToMiB(h.PeakRSSKiB), kiBToMiB(h.RSS), held,
			kiBToMiB(h.BPFMaps), kiBToMiB(h.File-h.BPFMaps), kiBToMiB(h.Anon), kiBToMiB(h.HWM))
	}
	r.p("")
	var late bool
	for _, x := range r.conns {
		late = late || x.Kernel.Records < int64(x.Opened)
	}
	if late {
		r.p("Records by then < connections: when the memory was read, the kernel side had written fewer records than the %s requests: a request not yet ended by the idle timeout stays open in the kernel until then or its connection's next event (here: the close).", n)
		r.p("")
	}
	last := r.conns[len(r.conns)-1]
	r.p("tracerd's `kernel:` line in run %d (after the connections were closed: the map is empty again):", last.Index+1)
	r.p("")
	r.p("```")
	r.p("%s", last.Out.KernelLine)
	r.p("```")
	r.p("")
}

// cmpRowOf is one row of a comparison of arms, over rounds of type T.
type cmpRowOf[T any] struct {
	name string
	get  func(T) float64
	f    func(float64) string
	rel  bool // change in % rather than absolute
}

type cmpRow = cmpRowOf[roundResult]

// cmpTable compares arms (the first is the baseline): medians, change
// against the baseline, and ranges.
func (r *report) cmpTable(arms [][]roundResult, rows []cmpRow) {
	writeCmpTable(r, arms, func(x roundResult) arm { return x.arm }, rows)
}

func writeCmpTable[T any](r *report, arms [][]T, armOf func(T) arm, rows []cmpRowOf[T]) {
	col := func(xs []T, get func(T) float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = get(x)
		}
		return out
	}
	hdr, sep := "| |", "|---|"
	for i, xs := range arms {
		if len(xs) == 0 {
			continue
		}
		hdr += " " + armLabel(armOf(xs[0])) + " (median) |"
		sep += "---|"
		if i > 0 {
			hdr += " change |"
			sep += "---|"
		}
	}
	for _, xs := range arms {
		if len(xs) == 0 {
			continue
		}
		hdr += " " + armLabel(armOf(xs[0])) + " range |"
		sep += "---|"
	}
	r.p("%s", hdr)
	r.p("%s", sep)
	for _, row := range rows {
		line := "| " + row.name + " |"
		base := median(col(arms[0], row.get))
		for i, xs := range arms {
			if len(xs) == 0 {
				continue
			}
			m := median(col(xs, row.get))
			line += " " + row.f(m) + " |"
			if i > 0 {
				if row.rel {
					line += fmt.Sprintf(" %+.1f %% |", 100*(m-base)/base)
				} else {
					ch := row.f(m - base)
					if m-base >= 0 {
						ch = "+" + ch
					}
					line += " " + ch + " |"
				}
			}
		}
		for _, xs := range arms {
			if len(xs) == 0 {
				continue
			}
			line += " " + rangeOf(col(xs, row.get), row.f) + " |"
		}
		r.p("%s", line)
	}
	r.p("")
}

func fmtPct(v float64) string { return fmt.Sprintf("%.1f %%", v) }

// recordsOK checks tracerd's accounting of the traced rounds: no loss
// counted, every record exported, and at least one record per request
// (exactly one per request sent when exact).
func (r *report) recordsOK(rs []roundResult, exact bool) (bool, string) {
	ok := true
	var lost, req, rec, diffMin, diffMax int64
	diffMin, diffMax = 1<<62, -1<<62
	for _, x := range rs {
		k := x.Out.Kernel
		n := x.Load.Requests
		if exact {
			n = x.Load.Sent
		}
		d := k.Records - n
		lost += k.Lost()
		req += n
		rec += k.Records
		diffMin, diffMax = min(diffMin, d), max(diffMax, d)
		// Every kernel record reaches the outputs; they may hold more:
		// Go-only requests (HTTP/2 streams, gRPC calls, handlers whose
		// record was not joined) come from the Go probes.
		if k.Lost() != 0 || x.Out.SummaryRequests < k.Records || (x.JSON && x.Out.JSONLines != x.Out.SummaryRequests) || d < 0 {
			ok = false
		}
		if exact && d != 0 {
			ok = false
		}
		if !exact && d > int64(r.b.conns)+1 {
			ok = false
		}
	}
	return ok, fmt.Sprintf("%d lost; %s records for %s requests over %d rounds (records − requests per round: %+d … %+d)",
		lost, fmtInt(rec), fmtInt(req), len(rs), diffMin, diffMax)
}

func (r *report) uprobeNote() string {
	var traced []roundResult
	for _, x := range r.rounds {
		if x.Traced {
			traced = append(traced, x)
		}
	}
	ps := sumProgs(collectProgs(traced)...)
	var names []string
	for _, p := range ps {
		if p.Uprobe {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return "no uprobe program loaded by this build"
	}
	rt, runs := uprobeTotals(ps)
	if runs == 0 {
		return fmt.Sprintf("%d uprobe programs loaded (%s), none ran: not attached to the bench server", len(names), strings.Join(names, ", "))
	}
	n := totalRequests(traced)
	return fmt.Sprintf("%.2f uprobe hits per request, %s BPF run time per request, plus the trap per hit (see \"Uprobe programs\")",
		float64(runs)/float64(max(1, n)), fmtNs(float64(rt)/float64(max(1, n))))
}

// uprobeTable reports the uprobe programs apart from the engine.
func (r *report) uprobeTable(maxOn, rateOn []roundResult) {
	maxProgs := sumProgs(collectProgs(maxOn)...)
	rateProgs := map[string]progStat{}
	for _, p := range sumProgs(collectProgs(rateOn)...) {
		rateProgs[p.Name] = p
	}
	nMax, nRate := totalRequests(maxOn), totalRequests(rateOn)
	found := false
	for _, p := range maxProgs {
		found = found || p.Uprobe
	}
	if !found {
		return
	}
	r.p("### Uprobe programs (reported apart)")
	r.p("")
	r.p("Not counted in the kernel engine's cost above. run_time_ns holds only the BPF program: the uprobe's trap (≈ 0.8 µs per hit on an emulated instruction, ≈ 9.5 µs otherwise, on our development VM) is paid in the server's own context and shows in its CPU per request (section 1).")
	r.p("")
	r.p("| program | type | hits/req | ns/hit | ns/req | hits/req @%s | ns/hit @%s | ns/req @%s |", fmtRPS(r.b.rate), fmtRPS(r.b.rate), fmtRPS(r.b.rate))
	r.p("|---|---|---|---|---|---|---|---|")
	for _, p := range maxProgs {
		if !p.Uprobe {
			continue
		}
		q := rateProgs[p.Name]
		r.p("| %s | %s | %.2f | %s | %s | %.2f | %s | %s |", p.Name, p.Type,
			float64(p.RunCount)/float64(max(1, nMax)), nsPerHit(p), fmtNs(float64(p.Runtime)/float64(max(1, nMax))),
			float64(q.RunCount)/float64(max(1, nRate)), nsPerHit(q), fmtNs(float64(q.Runtime)/float64(max(1, nRate))))
	}
	r.p("")
}

func collectProgs(rs []roundResult) [][]progStat {
	return progLists(rs, func(x roundResult) []progStat { return x.Progs })
}

// progLists is the program statistics of each round.
func progLists[T any](xs []T, progs func(T) []progStat) [][]progStat {
	out := make([][]progStat, 0, len(xs))
	for _, x := range xs {
		out = append(out, progs(x))
	}
	return out
}

func totalRequests(rs []roundResult) int64 {
	var n int64
	for _, x := range rs {
		n += x.Load.Requests
	}
	return n
}

func nsPerHit(p progStat) string {
	if p.RunCount == 0 {
		return "–"
	}
	return fmtNs(float64(p.Runtime) / float64(p.RunCount))
}
