package main

// The report's sections on where the BPF cost goes: the BPF budget's
// verdicts, the census (runs per request by side), the floor's ratio and
// the untraced context-switch arm.

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// bpfVerdicts: BPF run time per request against the budget (issue 11:
// the kernel engine's BPF ≤ 1 µs per request at max throughput and at
// the fixed rate).
func (r *report) bpfVerdicts(maxOn, rateOn []roundResult) {
	add := func(name string, rs []roundResult) {
		v := pooled(rs, bpfTime)
		r.verdicts = append(r.verdicts, verdict{name, "≤ " + fmtNs(budgetBPF),
			fmt.Sprintf("%s (%.1f runs per request)", fmtNs(v), bpfHits(rs)), passFail(v <= budgetBPF)})
	}
	add("BPF run time per request at max throughput", maxOn)
	if len(rateOn) > 0 {
		add(fmt.Sprintf("BPF run time per request at %s req/s", fmtRPS(r.b.rate)), rateOn)
	}
}

// censusRound is the census round of a load kind, if one ran.
func (r *report) censusRound(kind string) (roundResult, bool) {
	for _, x := range r.rounds {
		if x.Census && x.Kind == kind {
			return x, true
		}
	}
	return roundResult{}, false
}

func (r *report) kindLabel(kind string) string {
	if kind == "rate" {
		return fmtRPS(r.b.rate) + " req/s"
	}
	return "max throughput"
}

// serverRuns is the census's server-side runs per request of tracerd's
// hooks (those its programs attach to).
func serverRuns(x roundResult) float64 {
	used := tracerdEvents(x)
	var n uint64
	for ev, row := range x.Sorted {
		if used[ev] {
			n += row[clsServer] + row[clsServerEarly]
		}
	}
	return float64(n) / float64(max(1, x.Load.Requests))
}

// tracerdEvents is the set of events tracerd's programs are attached to
// in round x (linked, or run): a program loaded but not attached (the
// scheduler's, on a host without a CPU quota) does not count.
func tracerdEvents(x roundResult) map[string]bool {
	out := map[string]bool{}
	for _, p := range x.Progs {
		if ev := attachPoint(p.Hook).event(); ev != "" && !p.Uprobe && (p.Linked || p.RunCount > 0) {
			out[ev] = true
		}
	}
	return out
}

// loadedNotAttached lists the events of x where tracerd's programs were
// loaded but never attached.
func loadedNotAttached(x roundResult) []string {
	used := tracerdEvents(x)
	var out []string
	for _, p := range x.Progs {
		if ev := attachPoint(p.Hook).event(); ev != "" && !p.Uprobe && !used[ev] && !slices.Contains(out, ev) {
			out = append(out, ev)
		}
	}
	slices.Sort(out)
	return out
}

func (r *report) censusVerdicts() {
	if x, ok := r.censusRound("max"); ok {
		v := serverRuns(x)
		r.verdicts = append(r.verdicts, verdict{"BPF program runs per request on the server side, max throughput (census)",
			fmt.Sprintf("≤ %.0f", budgetServerRuns), fmt.Sprintf("%.1f", v), passFail(v <= budgetServerRuns)})
	}
	if x, ok := r.censusRound("rate"); ok {
		v := serverRuns(x)
		r.verdicts = append(r.verdicts, verdict{fmt.Sprintf("BPF program runs per request on the server side, %s (census)", r.kindLabel("rate")),
			fmt.Sprintf("≤ %.0f", budgetServerRuns), fmt.Sprintf("%.1f", v), passFail(v <= budgetServerRuns)})
	}
}

// floorVerdict: tracerd's BPF cost as a ratio to the floor's.
func (r *report) floorVerdict(on, floor, off []roundResult) {
	if len(floor) == 0 || len(on) == 0 {
		return
	}
	fb, tb := pooled(floor, bpfTime), pooled(on, bpfTime)
	offM := median(collect(off, machinePerReq))
	r.verdicts = append(r.verdicts, verdict{"the floor at max throughput: empty programs on the same hooks", "reported (issue 11)",
		fmt.Sprintf("BPF %s per request at %.1f runs (tracerd: %.1f× that); whole-machine CPU %s per request over off (tracerd: %s)",
			fmtNs(fb), bpfHits(floor), tb/fb, signed(median(collect(floor, machinePerReq))-offM), signed(median(collect(on, machinePerReq))-offM)), "info"})
}

func signed(ns float64) string {
	if ns >= 0 {
		return "+" + fmtNs(ns)
	}
	return fmtNs(ns)
}

// censusSection: program runs per request by side, per hook.
func (r *report) censusSection() {
	var xs []roundResult
	for _, kind := range []string{"max", "rate"} {
		if x, ok := r.censusRound(kind); ok {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return
	}
	r.p("### Program runs per request by side (census)")
	r.p("")
	r.p("One round of each load (%s) with tracerd on as in the traced rounds and, beside it, counting programs of the benchmark's own (BPF assembly in tests/bench/bpfarms.go) on the same tracepoints, which sort every event: **server** = the bench server's sockets (local port) and threads, and the NET_RX softirqs that delivered segments to its sockets; of those, **early** = an empty read or write (ret ≤ 0), where tracerd returns before any map work; **client** = the load generator's sockets (peer port) and threads (wrk's, or this benchmark's for the fixed rate) and the softirqs delivering to them: on loopback they run the same host-wide programs, on a real host they would run on another machine; **other** = the rest of the host (tracerd, the benchmark, kernel threads, idle). A `sched_switch` is the server's when either task is. Per request of the load generator; \"tracerd\" is its own programs' runs in the same round (the census's total can differ by the events between the two attaching).", r.b.censusRound)
	r.p("")
	for _, x := range xs {
		n := float64(max(1, x.Load.Requests))
		used := tracerdEvents(x)
		runs := map[string]progStat{}
		for _, p := range x.Progs {
			if ev := attachPoint(p.Hook).event(); ev != "" && !p.Uprobe {
				q := runs[ev]
				q.RunCount += p.RunCount
				q.Runtime += p.Runtime
				runs[ev] = q
			}
		}
		r.p("%s (%s requests, %s req/s):", r.kindLabel(x.Kind), fmtInt(x.Load.Requests), fmtRPS(x.Load.RPS))
		r.p("")
		r.p("| tracepoint | server | of which early | client | other | census total | tracerd's runs | tracerd's ns/run | tracerd's ns/req |")
		r.p("|---|---|---|---|---|---|---|---|---|")
		var tot [nClasses]float64
		var totRuns, totNs float64
		for _, ev := range censusHooks {
			if !used[ev] {
				continue
			}
			row := x.Sorted[ev]
			var all uint64
			for _, v := range row {
				all += v
			}
			for k := range row {
				tot[k] += float64(row[k]) / n
			}
			p := runs[ev]
			totRuns += float64(p.RunCount) / n
			totNs += float64(p.Runtime) / n
			r.p("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s |", ev,
				float64(row[clsServer]+row[clsServerEarly])/n, float64(row[clsServerEarly])/n, float64(row[clsClient])/n, float64(row[clsOther])/n,
				float64(all)/n, float64(p.RunCount)/n, nsPerHit(p), fmtNs(float64(p.Runtime)/n))
		}
		// tracerd's programs elsewhere (accept, process events, the idle
		// sweep): not sorted by the census.
		var restRuns uint64
		var restNs time.Duration
		var rest []string
		for _, p := range x.Progs {
			if p.Uprobe {
				continue
			}
			if ev := attachPoint(p.Hook).event(); ev != "" && slices.Contains(censusHooks, ev) {
				continue
			}
			restRuns += p.RunCount
			restNs += p.Runtime
			if p.RunCount > 0 {
				rest = append(rest, p.Name)
			}
		}
		slices.Sort(rest)
		r.p("| (not sorted: %s) | | | | | | %.2f | | %s |", strings.Join(rest, ", "), float64(restRuns)/n, fmtNs(float64(restNs)/n))
		r.p("| **total** | **%.2f** | %.2f | %.2f | %.2f | | %.2f | | %s |", tot[clsServer]+tot[clsServerEarly], tot[clsServerEarly], tot[clsClient], tot[clsOther],
			totRuns+float64(restRuns)/n, fmtNs(totNs+float64(restNs)/n))
		r.p("")
		if idle := loadedNotAttached(x); len(idle) > 0 {
			r.p("Loaded but not attached in this round (no cgroup of the host sets a CPU quota: the scheduler hooks wait for one), not counted: %s.", strings.Join(idle, ", "))
			r.p("")
		}
	}
}

// ---- the untraced context-switch arm ----

func (r *report) ctxPick(a arm) []ctxResult {
	var out []ctxResult
	for _, x := range r.ctxs {
		if x.arm == a {
			out = append(out, x)
		}
	}
	return out
}

func ctxCollect(xs []ctxResult, f func(ctxResult) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func ctxMachine(x ctxResult) float64  { return x.perSwitch(x.Machine.Busy) }
func ctxChildren(x ctxResult) float64 { return x.perSwitch(x.Children) }
func ctxBPF(x ctxResult) float64 {
	rt, _, _ := progTotals(x.Progs)
	return x.perSwitch(rt)
}
func ctxRate(x ctxResult) float64 { return float64(x.Switches) / x.Wall.Seconds() }

func (r *report) ctxVerdict() {
	off, on := r.ctxPick(armOff), r.ctxPick(armOn)
	if len(off) == 0 || len(on) == 0 {
		return
	}
	added := median(ctxCollect(on, ctxChildren)) - median(ctxCollect(off, ctxChildren))
	what := fmt.Sprintf("%s per switch in the switching processes' CPU (BPF run time %s of it)", signed(added), fmtNs(median(ctxCollect(on, ctxBPF))))
	if fl := r.ctxPick(armFloor); len(fl) > 0 {
		what += fmt.Sprintf("; the floor: %s (BPF %s)", signed(median(ctxCollect(fl, ctxChildren))-median(ctxCollect(off, ctxChildren))), fmtNs(median(ctxCollect(fl, ctxBPF))))
	}
	r.verdicts = append(r.verdicts, verdict{"CPU added per context switch of processes tracerd does not trace (pipe ping-pong)", "reported (issue 11)", what, "info"})
}

func (r *report) ctxSection() {
	off := r.ctxPick(armOff)
	if len(off) == 0 {
		return
	}
	arms := [][]ctxResult{off, r.ctxPick(armOn)}
	if fl := r.ctxPick(armFloor); len(fl) > 0 {
		arms = append(arms, fl)
	}
	r.p("## Untraced context switches: what the scheduler hooks cost the rest of the host")
	r.p("")
	r.p("Two processes that tracerd does not select (re-executions of the benchmark binary) bounce a byte through two blocking pipes, both pinned to CPU %d, so that each step is a context switch between them; %d rounds of %s of each arm, interleaved: off, tracerd on (`tracerd %s`: it traces the idle bench server, not them)%s. Switches: the machine's `ctxt` (/proc/stat) over the round; CPU per switch: the two processes' own CPU time (schedstat: the scheduler's tracepoints run in their context) and the whole machine's busy time, each divided by the switches; BPF: the run time of the programs attached (tracerd's, or the floor's), per switch.",
		runtime.NumCPU()-1, r.b.ctxRoundsN, r.b.ctxRound1, strings.Join(tracerdArgs(0, "DIR", true), " "),
		map[bool]string{true: ", and the floor (empty programs at tracerd's attach points)"}[len(arms) > 2])
	r.p("")
	writeCmpTable(r, arms, func(x ctxResult) arm { return x.arm }, []cmpRowOf[ctxResult]{
		{"context switches per second", ctxRate, fmtRPS, true},
		{"the two processes' CPU per switch", ctxChildren, fmtNs, false},
		{"whole-machine CPU per switch", ctxMachine, fmtNs, false},
		{"BPF run time per switch", ctxBPF, fmtNs, false},
	})
	if on := r.ctxPick(armOn); len(on) > 0 {
		ps := sumProgs(progLists(on, func(x ctxResult) []progStat { return x.Progs })...)
		var sw int64
		for _, x := range on {
			sw += x.Switches
		}
		var parts []string
		for _, p := range ps {
			if p.RunCount == 0 || p.Uprobe {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f runs × %s", p.Name, float64(p.RunCount)/float64(max(1, sw)), nsPerHit(p)))
		}
		r.p("tracerd's programs per switch (pooled over its rounds): %s.", strings.Join(parts, "; "))
		r.p("")
	}
}
