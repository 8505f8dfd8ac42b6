// Command bench measures tracerd's overhead against the budgets of
// docs/design.md ("Budgets") and writes BENCHMARKS.md. Run it as `make bench`
// (root; it builds tracerd and installs wrk first).
//
// In one run it interleaves rounds without and with `tracerd snapshot`
// attached to a Go net/http server (its own process, tests/bench/server):
//
//  1. max throughput: wrk (closed loop) against the server on loopback;
//     requests/s and p50/p99 latency off vs on;
//  2. during the traced rounds, with kernel.bpf_stats_enabled=1, the run
//     time and run count of each of tracerd's BPF programs and tracerd's
//     own CPU time, per request; and the records tracerd wrote vs the
//     requests wrk got, with tracerd's loss counters;
//  3. a fixed rate (20k requests/s by default) from an open-loop
//     generator in this process, to check that no record is lost there;
//  4. tracerd's memory with 10k open traced keep-alive connections
//     (the RSS budget), each having had one request;
//  5. the floor: the same hooks with empty programs attached, as a third
//     arm of 1 and 3 (and of 7);
//  6. the census: a round of each load with tracerd on and counting
//     programs of the benchmark's own on the same tracepoints, which
//     split the program runs per request into the server's side, the
//     load generator's (on loopback its events run the same host-wide
//     programs) and the rest of the host;
//  7. an untraced context-switch-heavy workload (a pipe ping-pong of two
//     processes tracerd does not select), off, on and floor: what the
//     scheduler hooks cost the rest of the host per context switch.
//  8. the outbound arm (-only outbound, outbound.go): a traced server
//     whose requests each make one downstream call, against the same
//     server's plain requests: what the call costs tracerd per request;
//     with -outbound-former BIN, the same rounds under an older build
//     too (what a server without calls pays more than before).
//
// -only runs some parts (census, ctxswitch, conns10k; comma-separated;
// selfcost and outbound alone, appended to -out)
// and writes a partial report, to stdout unless -out is given, so that
// BENCHMARKS.md stays whole.
//
// Server, load generator and tracerd share the machine's cores; nothing
// is pinned. A missing prerequisite (root, wrk, the tracerd binary) is a
// failure with a message, not a skipped measurement.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	tracerd, out, wrk string
	rounds            int
	round, warmup     time.Duration
	threads, conns    int
	rate              float64
	rateRounds        int
	rateRound         time.Duration
	rateConns         int
	drain, pause      time.Duration
	strict, pprofArm  bool
	raw               string
	nice              int
	quietWait         time.Duration
	roundQuietWait    time.Duration
	openConns         int // connections held open for the RSS budget (0: skip)
	openConnsRuns     int
	floorArm          bool
	censusRound       time.Duration
	ctxRoundsN        int
	ctxRound1         time.Duration
	only              string // parts to run alone (comma-separated), "" for all
	outSet            bool   // -out was given
}

// The parts -only can run.
const (
	partConns10k = "conns10k"
	partCensus   = "census"
	partCtx      = "ctxswitch"
)

var partNames = []string{partCensus, partCtx, partConns10k, partSelfCost, partOutbound}

// runs says whether part is run.
func (c *config) runs(part string) bool {
	if c.only == "" {
		return true
	}
	return slices.Contains(strings.Split(c.only, ","), part)
}

func main() {
	if spec := os.Getenv(pingPongEnv); spec != "" {
		pingPongChild(spec)
		return
	}
	var c config
	flag.StringVar(&c.tracerd, "tracerd", "bin/tracerd", "the tracerd binary to measure")
	flag.StringVar(&c.out, "out", "BENCHMARKS.md", "write the report here (rewritten completely)")
	flag.IntVar(&c.rounds, "rounds", 4, "max-throughput rounds of each kind (off, on, off, on, …)")
	flag.DurationVar(&c.round, "round", 10*time.Second, "length of a max-throughput round")
	flag.DurationVar(&c.warmup, "warmup", 3*time.Second, "untraced warm-up load before the first round (not reported)")
	flag.IntVar(&c.threads, "threads", 1, "wrk threads")
	flag.IntVar(&c.conns, "conns", 32, "wrk connections")
	flag.Float64Var(&c.rate, "rate", 20000, "fixed-rate rounds: requests/s (0: skip them)")
	flag.IntVar(&c.rateRounds, "rate-rounds", 3, "fixed-rate rounds of each kind")
	flag.DurationVar(&c.rateRound, "rate-round", 10*time.Second, "length of a fixed-rate round")
	flag.IntVar(&c.rateConns, "rate-conns", 32, "fixed-rate connections")
	flag.DurationVar(&c.drain, "drain", time.Second, "wait after the load before reading counters (last requests end, tracerd drains)")
	flag.DurationVar(&c.pause, "pause", 0, "extra pause between rounds (each round first waits for the machine to be quiet, ≥ 500 ms)")
	flag.IntVar(&c.nice, "nice", -10, "run the server, wrk, tracerd and the generator at this nice value (a shared machine disturbs them less; they compete with each other as at 0)")
	flag.StringVar(&c.raw, "raw", "", "also write every round's measurements as JSON to this file")
	flag.DurationVar(&c.quietWait, "quiet-wait", 20*time.Second, "before starting, wait at most this long for other work on the machine to stop")
	flag.DurationVar(&c.roundQuietWait, "round-quiet-wait", 2*time.Second, "before each round, wait at most this long for other work to stop")
	flag.BoolVar(&c.strict, "strict", false, "exit 1 when a budget is missed (default: report it, exit 0)")
	flag.BoolVar(&c.pprofArm, "pprof-arm", true, "also run max-throughput rounds with tracerd writing the pprof profile only (no --json)")
	flag.IntVar(&c.openConns, "open-conns", 10000, "RSS budget: keep this many traced keep-alive connections open (0: skip)")
	flag.IntVar(&c.openConnsRuns, "open-conns-runs", 2, "RSS budget: how many times to measure it")
	flag.BoolVar(&c.floorArm, "floor-arm", true, "also run rounds with empty programs on tracerd's hooks (the floor)")
	flag.DurationVar(&c.censusRound, "census-round", 6*time.Second, "length of a census round (one at max throughput, one at the fixed rate; 0: skip)")
	flag.IntVar(&c.ctxRoundsN, "ctx-rounds", 3, "untraced context-switch rounds of each kind (0: skip)")
	flag.DurationVar(&c.ctxRound1, "ctx-round", 4*time.Second, "length of a context-switch round")
	flag.StringVar(&c.only, "only", "", "run only these parts, comma-separated: "+strings.Join(partNames, ", ")+" (report to stdout unless -out is given)")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { c.outSet = c.outSet || f.Name == "out" })
	if flag.NArg() > 0 {
		fatal(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, c)
	if err != nil {
		fatal(err)
	}
	if failed && c.strict {
		where := c.report()
		if where == "" {
			where = "the report above"
		}
		fmt.Fprintln(os.Stderr, "bench: budget missed (see", where+")")
		os.Exit(1)
	}
}

// report is where the report goes: "" for stdout (a partial run
// without -out).
func (c *config) report() string {
	if c.only != "" && !c.outSet {
		return ""
	}
	return c.out
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// prerequisites fails with what to do when the benchmark cannot run.
func prerequisites(c *config) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("must run as root: tracerd loads BPF programs and the benchmark sets kernel.bpf_stats_enabled (sudo make bench)"))
	}
	if c.rounds < 3 || c.rateRounds < 0 || c.round < time.Second || c.conns < 1 || c.threads < 1 || c.rate < 0 {
		errs = append(errs, errors.New("need -rounds ≥ 3, -round ≥ 1s and positive -conns/-threads/-rate"))
	}
	if c.rate > 0 && (c.rateRounds < 1 || c.rateConns < 1 || c.rateRound < time.Second) {
		errs = append(errs, errors.New("need -rate-rounds ≥ 1, -rate-conns ≥ 1 and -rate-round ≥ 1s (or -rate 0)"))
	}
	if c.openConns < 0 || (c.openConns > 0 && c.openConnsRuns < 1) {
		errs = append(errs, errors.New("need -open-conns ≥ 0 and -open-conns-runs ≥ 1"))
	}
	if c.only != "" {
		for _, p := range strings.Split(c.only, ",") {
			if !slices.Contains(partNames, p) {
				errs = append(errs, fmt.Errorf("-only %q: the parts are %s", p, strings.Join(partNames, ", ")))
			}
		}
	}
	if c.runs(partConns10k) && c.only != "" && c.openConns == 0 {
		errs = append(errs, errors.New("-only "+partConns10k+" with -open-conns 0 measures nothing"))
	}
	if c.ctxRoundsN < 0 || (c.ctxRoundsN > 0 && c.ctxRound1 < time.Second) || c.censusRound < 0 {
		errs = append(errs, errors.New("need -ctx-rounds ≥ 0, -ctx-round ≥ 1s and -census-round ≥ 0"))
	}
	if c.only == "" || c.runs(partCensus) || c.runs(partSelfCost) {
		wrk, err := exec.LookPath("wrk")
		if err != nil {
			errs = append(errs, errors.New("wrk not found in PATH: install it with `tests/tools/install-deps.sh bench` (Debian package wrk); `make bench` does"))
		}
		c.wrk = wrk
	}
	abs, err := filepath.Abs(c.tracerd)
	if err == nil {
		c.tracerd = abs
	}
	if fi, err := os.Stat(c.tracerd); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		errs = append(errs, fmt.Errorf("tracerd binary %s missing or not executable: run `make build` (`make bench` builds it)", c.tracerd))
	}
	if _, err := os.Stat(bpfStatsSysctl); err != nil {
		errs = append(errs, fmt.Errorf("%s: %v (kernel too old for BPF run-time statistics?)", bpfStatsSysctl, err))
	}
	if _, err := exec.LookPath("go"); err != nil {
		errs = append(errs, errors.New("go not found in PATH (builds the bench server)"))
	}
	return errors.Join(errs...)
}

// arm is one side of the A/B comparison.
type arm struct {
	Name   string // "off", "on", "pprof", "floor", "census"
	Traced bool   // tracerd attached
	JSON   bool   // with --json
	Floor  bool   // empty programs on tracerd's hooks instead
	Census bool   // tracerd and the census's counting programs
}

var (
	armOff    = arm{Name: "off"}
	armOn     = arm{Name: "on", Traced: true, JSON: true}
	armPprof  = arm{Name: "pprof", Traced: true}
	armFloor  = arm{Name: "floor", Floor: true}
	armCensus = arm{Name: "census", Traced: true, JSON: true, Census: true}
)

// roundResult is one measured round.
type roundResult struct {
	Kind string // "max" or "rate"
	arm
	Index int
	Load  loadResult

	ServerCPU procCPU
	BenchCPU  procCPU // this process (the open-loop generator)
	IRQWork   int64   // IRQ work interrupts on the machine (ring buffer wake-ups among them)
	Machine   machineCPU
	Wall      time.Duration // load + drain, the span of the CPU deltas

	// Traced rounds only.
	Attach    time.Duration
	Progs     []progStat
	TracerCPU procCPU
	Out       traceOutput
	Wakeups   int64 // tracerd's voluntary context switches
	RSSKiB    int64
	HWMKiB    int64
	Missing   []string // loader hooks tracerd did not load

	// Census rounds: event → events by class (clsServer, …).
	Sorted map[string][nClasses]uint64
}

// rawResults is what -raw writes.
type rawResults struct {
	Rounds    []roundResult
	OpenConns []connsResult
	Ctx       []ctxResult
}

type bench struct {
	config
	dir      string
	server   *serverProc
	start    time.Time
	idleBusy float64       // % of the machine busy before the run, nothing of ours running
	points   []attachPoint // tracerd's hooks on this kernel (the floor's attach points)
}

func run(ctx context.Context, c config) (failed bool, err error) {
	if err := prerequisites(&c); err != nil {
		return false, err
	}
	if err := setNice(c.nice); err != nil {
		return false, err
	}
	b := &bench{config: c, start: time.Now()}
	b.dir, err = os.MkdirTemp("", "tracerd-bench-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(b.dir)

	oldStats, err := readSysctl(bpfStatsSysctl)
	if err != nil {
		return false, err
	}
	defer func() {
		if err := writeSysctl(bpfStatsSysctl, oldStats); err != nil {
			logf("could not restore kernel.bpf_stats_enabled=%s: %v", oldStats, err)
		}
	}()

	root, err := moduleRoot()
	if err != nil {
		return false, err
	}
	serverBin := filepath.Join(b.dir, "server")
	build := exec.CommandContext(ctx, "go", "build", "-o", serverBin, "./tests/bench/server")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return false, fmt.Errorf("building tests/bench/server: %w", err)
	}
	// Before the server starts: it inherits the limit.
	if c.openConns > 0 {
		if err := raiseNoFile(c.openConns); err != nil {
			return false, err
		}
	}
	b.server, err = startServer(ctx, serverBin)
	if err != nil {
		return false, err
	}
	defer b.server.Stop()
	if lim := noFileLimit(b.server.Pid()); c.openConns > 0 && lim < int64(c.openConns+noFileHeadroom) {
		return false, fmt.Errorf("the bench server may open %d files, %d connections need %d", lim, c.openConns, c.openConns+noFileHeadroom)
	}
	logf("server pid %d on %s; tracerd %s; wrk %s", b.server.Pid(), b.server.Addr, c.tracerd, c.wrk)
	if c.only == partSelfCost {
		return false, b.selfCost(ctx)
	}
	if c.only == partOutbound {
		return false, b.outbound(ctx, serverBin)
	}

	// What else runs on this machine skews an A/B: wait a little for it
	// to go quiet, and say how busy it was. (A memory measurement alone
	// does not need the quiet.)
	if c.only != partConns10k {
		if b.idleBusy, err = waitQuiet(ctx, c.quietWait); err != nil {
			return false, err
		}
		if b.idleBusy > quietBusy {
			logf("WARNING: the machine is still %.0f %% busy after waiting %s: other work skews the A/B", b.idleBusy, c.quietWait)
		}
	}

	if c.floorArm && (c.only == "" || c.runs(partCtx)) {
		if b.points, err = b.tracerdPoints(); err != nil {
			return false, err
		}
		logf("floor: empty programs at %d attach points", len(b.points))
	}
	var results []roundResult
	if c.only == "" {
		if results, err = b.loadRounds(ctx); err != nil {
			return false, err
		}
	}
	if c.runs(partCensus) && c.censusRound > 0 {
		rs, err := b.censusRounds(ctx)
		if err != nil {
			return false, err
		}
		results = append(results, rs...)
	}
	var ctxs []ctxResult
	if c.runs(partCtx) && c.ctxRoundsN > 0 {
		if ctxs, err = b.ctxRounds(ctx, b.points); err != nil {
			return false, err
		}
	}
	// Last: its thousands of closed connections (TIME_WAIT) and the
	// server's grown heap do not touch the throughput rounds.
	var conns []connsResult
	for i := 0; i < c.openConnsRuns && c.openConns > 0 && c.runs(partConns10k); i++ {
		r, err := b.connsRound(ctx, i, c.openConns)
		if err != nil {
			return false, fmt.Errorf("%d open connections, run %d: %w", c.openConns, i+1, err)
		}
		conns = append(conns, r)
	}

	if c.raw != "" {
		raw, err := json.MarshalIndent(rawResults{results, conns, ctxs}, "", "  ")
		if err != nil {
			return false, err
		}
		if err := os.WriteFile(c.raw, raw, 0o644); err != nil {
			return false, err
		}
	}
	rep := newReport(b, results, conns, ctxs)
	if err := rep.write(c.report()); err != nil {
		return false, err
	}
	if c.report() != "" {
		logf("wrote %s in %s", c.report(), time.Since(b.start).Round(time.Second))
	}
	for _, v := range rep.verdicts {
		logf("%-4s %s: %s (budget %s)", v.Verdict, v.Name, v.Measured, v.Budget)
	}
	return rep.failed(), nil
}

// loadRounds runs the warm-up, then the max-throughput and fixed-rate
// rounds, interleaving the arms.
func (b *bench) loadRounds(ctx context.Context) ([]roundResult, error) {
	c := b.config
	if c.warmup > 0 {
		logf("warm-up %s", c.warmup)
		if _, err := b.wrkLoad(c.warmup)(ctx, nil); err != nil {
			return nil, err
		}
	}

	var results []roundResult
	maxArms := []arm{armOff, armOn}
	if c.pprofArm {
		maxArms = append(maxArms, armPprof)
	}
	if len(b.points) > 0 {
		maxArms = append(maxArms, armFloor)
	}
	for i := 0; i < c.rounds; i++ {
		for _, a := range maxArms {
			r, err := b.round(ctx, "max", a, i, b.wrkLoad(c.round))
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		}
	}
	if c.rate > 0 {
		rateArms := []arm{armOff, armOn}
		if len(b.points) > 0 {
			rateArms = append(rateArms, armFloor)
		}
		for i := 0; i < c.rateRounds; i++ {
			for _, a := range rateArms {
				r, err := b.round(ctx, "rate", a, i, b.rateLoad(c.rateRound))
				if err != nil {
					return nil, err
				}
				results = append(results, r)
			}
		}
	}
	return results, nil
}

// enableBPFStats sets kernel.bpf_stats_enabled=1 for a round; restore
// puts back what was there.
func enableBPFStats() (restore func(), err error) {
	old, err := readSysctl(bpfStatsSysctl)
	if err != nil {
		return nil, err
	}
	if err := writeSysctl(bpfStatsSysctl, "1"); err != nil {
		return nil, fmt.Errorf("enabling kernel.bpf_stats_enabled: %w", err)
	}
	return func() { writeSysctl(bpfStatsSysctl, old) }, nil
}

// loadFn runs one load; started, when not nil, gets the pid of the
// process that generates it once it runs.
type loadFn func(ctx context.Context, started func(pid int)) (loadResult, error)

func (b *bench) wrkLoad(d time.Duration) loadFn {
	return func(ctx context.Context, started func(int)) (loadResult, error) {
		return runWrk(ctx, b.wrk, wrkArgs(b.threads, b.conns, d), "http://"+b.server.Addr+"/", started)
	}
}

func (b *bench) rateLoad(d time.Duration) loadFn {
	return func(ctx context.Context, started func(int)) (loadResult, error) {
		if started != nil {
			started(os.Getpid())
		}
		return openLoop(ctx, b.server.Addr, b.rate, b.rateConns, d)
	}
}

// tracerdPoints starts tracerd once to see where its programs attach on
// this kernel: the floor's attach points (where it attached them: its
// scheduler programs wait for a CPU quota on the host).
func (b *bench) tracerdPoints() ([]attachPoint, error) {
	tr, err := startTracer(b.tracerd, tracerdArgs(b.server.Port, b.dir, false), "")
	if err != nil {
		return nil, err
	}
	defer tr.Kill()
	defer os.Remove(filepath.Join(b.dir, "cut.pb.gz"))
	w, err := watchPrograms(tr.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	linked, err := linkedProgIDs(tr.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	var out []attachPoint
	for id, m := range w.meta {
		if m.Uprobe || m.Hook == "?" || m.Hook == "" || !slices.Contains(linked, id) {
			continue
		}
		if !slices.Contains(out, attachPoint(m.Hook)) {
			out = append(out, attachPoint(m.Hook))
		}
	}
	slices.Sort(out)
	if _, err := tr.Stop(); err != nil {
		return nil, err
	}
	return out, nil
}

// censusRounds runs one census round of each load.
func (b *bench) censusRounds(ctx context.Context) ([]roundResult, error) {
	var out []roundResult
	r, err := b.round(ctx, "max", armCensus, 0, b.wrkLoad(b.censusRound))
	if err != nil {
		return nil, fmt.Errorf("census at max throughput: %w", err)
	}
	out = append(out, r)
	if b.rate > 0 {
		r, err := b.round(ctx, "rate", armCensus, 0, b.rateLoad(b.censusRound))
		if err != nil {
			return nil, fmt.Errorf("census at the fixed rate: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// round runs one load, with tracerd attached when traced.
func (b *bench) round(ctx context.Context, kind string, a arm, idx int, load loadFn) (r roundResult, err error) {
	r = roundResult{Kind: kind, arm: a, Index: idx}
	traced := a.Traced
	if err := sleepCtx(ctx, b.pause); err != nil {
		return r, err
	}
	if busy, err := waitQuiet(ctx, b.roundQuietWait); err != nil {
		return r, err
	} else if busy > quietBusy {
		logf("the machine is %.0f %% busy before %s round %d (%s): other work", busy, kind, idx+1, a.Name)
	}
	var (
		tr    *tracerProc
		watch *progWatch
	)
	if traced || a.Floor {
		restore, err := enableBPFStats()
		if err != nil {
			return r, err
		}
		defer restore()
	}
	if traced {
		jsonPath := ""
		if a.JSON {
			jsonPath = filepath.Join(b.dir, "requests.jsonl")
			defer os.Remove(jsonPath)
		}
		tr, err = startTracer(b.tracerd, tracerdArgs(b.server.Port, b.dir, a.JSON), jsonPath)
		if err != nil {
			return r, err
		}
		defer tr.Kill()
		defer os.Remove(filepath.Join(b.dir, "cut.pb.gz"))
		r.Attach = tr.Attach
		watch, err = watchPrograms(tr.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		defer watch.Close()
		r.Missing = watch.Missing()
	}
	var cen *census
	var started func(int)
	if a.Census {
		if cen, err = attachCensus(b.server.Port, b.server.Pid()); err != nil {
			return r, err
		}
		defer cen.Close()
		started = func(pid int) {
			if err := cen.SetClient(pid); err != nil {
				logf("census: %v", err)
			}
		}
	}
	if a.Floor {
		fl, err := attachFloor(b.points)
		if err != nil {
			return r, err
		}
		defer fl.Close()
		if watch, err = watchIDs(fl.ids); err != nil {
			return r, err
		}
		defer watch.Close()
	}

	// Counters before.
	var progs0 map[uint32]progStat
	var tcpu0 procCPU
	var wake0 int64
	if watch != nil {
		if progs0, err = watch.Snapshot(); err != nil {
			return r, err
		}
	}
	if traced {
		wake0 = wakeups(tr.cmd.Process.Pid)
		if tcpu0, err = readProcCPU(tr.cmd.Process.Pid); err != nil {
			return r, err
		}
	}
	scpu0, err := readProcCPU(b.server.Pid())
	if err != nil {
		return r, err
	}
	self0, err := readProcCPU(os.Getpid())
	if err != nil {
		return r, err
	}
	iwi0 := irqWork()
	m0, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	t0 := time.Now()

	if r.Load, err = load(ctx, started); err != nil {
		return r, err
	}
	if err := sleepCtx(ctx, b.drain); err != nil {
		return r, err
	}

	// Counters after.
	r.Wall = time.Since(t0)
	m1, err := readMachineCPU()
	if err != nil {
		return r, err
	}
	r.Machine = m1.sub(m0)
	r.IRQWork = irqWork() - iwi0
	scpu1, err := readProcCPU(b.server.Pid())
	if err != nil {
		return r, err
	}
	r.ServerCPU = scpu1.sub(scpu0)
	self1, err := readProcCPU(os.Getpid())
	if err != nil {
		return r, err
	}
	r.BenchCPU = self1.sub(self0)
	if watch != nil {
		progs1, err := watch.Snapshot()
		if err != nil {
			return r, err
		}
		r.Progs = progDeltas(progs0, progs1)
	}
	if cen != nil {
		if r.Sorted, err = cen.Read(); err != nil {
			return r, err
		}
	}
	if traced {
		tcpu1, err := readProcCPU(tr.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		r.TracerCPU = tcpu1.sub(tcpu0)
		r.Wakeups = wakeups(tr.cmd.Process.Pid) - wake0
		r.RSSKiB, r.HWMKiB = memKiB(tr.cmd.Process.Pid)
		if r.Out, err = tr.Stop(); err != nil {
			return r, err
		}
	}
	b.logRound(r)
	return r, nil
}

func (b *bench) logRound(r roundResult) {
	line := fmt.Sprintf("%-4s %d %-5s: %8.0f req/s  p50 %s  p99 %s  (%d requests, %d errors; others %.1f %% CPU)",
		r.Kind, r.Index+1, r.Name, r.Load.RPS, fmtDur(r.Load.P50), fmtDur(r.Load.P99), r.Load.Requests, r.Load.Errors, othersPct(r))
	if r.Traced || r.Floor {
		bpf, hits, _ := progTotals(r.Progs)
		n := float64(r.Load.Requests)
		line += fmt.Sprintf("; BPF %.0f ns/req, %.1f hits/req", float64(bpf)/n, float64(hits)/n)
	}
	if r.Traced {
		n := float64(r.Load.Requests)
		line += fmt.Sprintf("; attach %s, tracerd %.0f ns/req, %d records, lost %d",
			fmtDur(r.Attach), float64(r.TracerCPU.Exec)/n, r.Out.Kernel.Records, r.Out.Kernel.Lost())
	}
	if r.Sorted != nil {
		var server float64
		for _, row := range r.Sorted {
			server += float64(row[clsServer] + row[clsServerEarly])
		}
		line += fmt.Sprintf("; census: %.1f server-side runs/req", server/float64(max(1, r.Load.Requests)))
	}
	logf("%s", line)
}

// quietBusy is the machine busy share (%) under which it counts as
// quiet: the server, wrk and tracerd are idle between rounds.
const quietBusy = 10

// waitQuiet samples the machine's busy share over 500 ms until it is
// under quietBusy, for at most max; it returns the last sample.
func waitQuiet(ctx context.Context, max time.Duration) (float64, error) {
	deadline := time.Now().Add(max)
	for {
		m0, err := readMachineCPU()
		if err != nil {
			return 0, err
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
		m1, err := readMachineCPU()
		if err != nil {
			return 0, err
		}
		busy := 0.0
		if d := m1.sub(m0); d.Total > 0 {
			busy = 100 * float64(d.Busy) / float64(d.Total)
		}
		if busy <= quietBusy || !time.Now().Before(deadline) {
			return busy, nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setNice gives every thread of this process the nice value n; threads
// and children created later inherit it (Linux keeps nice per thread).
func setNice(n int) error {
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tids {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
			return fmt.Errorf("setting nice %d: %w", n, err)
		}
	}
	return nil
}

// moduleRoot is the directory of tracerd's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside tracerd's Go module: run from the repository (make bench)")
	}
	return filepath.Dir(gomod), nil
}

// gitDescribe names the measured source tree, when it is a git checkout.
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
