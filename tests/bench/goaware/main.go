// Command goaware measures what Go awareness (uprobes) costs the traced
// process and whether it stays on under load: first the cost of one
// uprobe hit by the instruction it sits on (sites.go), then the JSON test
// server (tests/goserver) at fixed request rates, traced by tracerd with
// --go=false, with the default bound on calls per second, and with the
// old bound (2000), rounds interleaved in one run. It appends its section
// to the benchmarks file.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/goprobe"
)

var (
	tracerd    = flag.String("tracerd", "bin/tracerd", "tracerd binary")
	out        = flag.String("out", "BENCHMARKS.md", "file to append the section to")
	rounds     = flag.Int("rounds", 3, "rounds per arm and rate")
	roundD     = flag.Duration("round", 10*time.Second, "load per round")
	rateList   = flag.String("rates", "10000,20000", "fixed request rates (requests/s)")
	sitesOnly  = flag.Bool("sites-only", false, "only measure the cost of a uprobe hit by instruction kind")
	siteRounds = flag.Int("site-rounds", 5, "rounds of the per-instruction measurement")
	bpfObject  = flag.String("bpf-object", "internal/loader/tracerd_x86_bpfel.o", "BPF object whose Go uprobe programs are measured")
	former     = flag.String("former", "", "another tracerd build (an older one) to run as one more arm, with no bound")
)

// path is what the clients ask: one item through json.Marshal, net/http
// around it (4 probe hits a request: ServeHTTP's entry and exit, which
// reads the status, Marshal's entry and exit), light enough for 20,000
// requests/s on 2 CPUs.
const path = "/json?n=1"

// oldBound is the default bound before calls ended at emulated
// instructions.
const oldBound = 2000

type arm struct {
	name    string
	args    []string
	tracerd string // "" for -tracerd
}

var arms = []arm{
	{name: "--go=false", args: []string{"--go=false"}},
	{name: "--go"},
	{name: fmt.Sprintf("--go-max-calls=%d", oldBound), args: []string{"--go-max-calls", strconv.Itoa(oldBound)}},
}

// result is one round: one arm at one rate.
type result struct {
	arm        string
	rate       int
	sent, ok   int64
	serverCPU  float64            // ns per answered request
	serverSys  float64            // of it, in the kernel (utime/stime ticks): where the probes' traps and programs run
	switches   float64            // the server's context switches per request
	hits       float64            // uprobe program runs per request
	progNs     map[string]float64 // uprobe program: ns per run
	progRuns   map[string]float64 // uprobe program: runs per request
	early, end share              // records of the first second, of the last three
	calib      string
}

// share counts records carrying each Go measurement.
type share struct {
	records, serialize, gcSTW, gcPause, serveHTTP, marshal int
}

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		log.Fatal("goaware: needs root (tracerd loads BPF)")
	}
	costs, err := siteCosts(*siteRounds, 100_000)
	if err != nil {
		log.Fatal(err)
	}
	sites := siteReport(costs, *siteRounds, 100_000)
	pc, cases, err := progCosts(*bpfObject, *siteRounds, 100_000)
	if err != nil {
		log.Fatal(err)
	}
	sites += progReport(pc, cases, *bpfObject, *siteRounds, 100_000)
	if *sitesOnly {
		fmt.Print(sites)
		return
	}
	if *former != "" {
		arms = append(arms, arm{name: "former build, --go-max-calls=0", args: []string{"--go-max-calls", "0"}, tracerd: *former})
	}
	var rates []int
	for _, f := range strings.Split(*rateList, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			log.Fatalf("-rates: %q", f)
		}
		rates = append(rates, r)
	}
	dir, err := os.MkdirTemp("", "tracerd-goaware-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	server := filepath.Join(dir, "goserver")
	build := exec.Command("go", "build", "-o", server, ".")
	build.Dir = "tests/goserver"
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if msg, err := build.CombinedOutput(); err != nil {
		log.Fatalf("building goserver: %v\n%s", err, msg)
	}
	var results []result
	for i := 0; i < *rounds; i++ {
		for _, rate := range rates {
			for _, a := range rotated(arms, i) {
				r, err := round(dir, server, a, rate)
				if err != nil {
					log.Fatal(err)
				}
				log.Printf("%s at %d/s: %d of %d answered, server CPU %.1f µs/req, %.2f hits/req, last seconds: %d records, %d with serialize",
					a.name, rate, r.ok, r.sent, r.serverCPU/1e3, r.hits, r.end.records, r.end.serialize)
				results = append(results, r)
			}
		}
	}
	if err := appendReport(sites + report(results, rates)); err != nil {
		log.Fatal(err)
	}
}

// rotated is the arms in round i's order: each round starts one arm
// further, so that no arm always follows the same one (a round's
// leftovers — the previous tracerd's exit, the page cache, the CPUs'
// frequencies — fall on each arm in turn).
func rotated(as []arm, i int) []arm {
	k := i % len(as)
	return append(append([]arm(nil), as[k:]...), as[:k]...)
}

func round(dir, server string, a arm, rate int) (result, error) {
	r := result{arm: a.name, rate: rate}
	srv := exec.Command(server, "-heap", "10000")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var hello struct {
		Listen string `json:"listen"`
		PID    int    `json:"pid"`
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &hello) != nil {
		return r, fmt.Errorf("goserver did not start: %v", err)
	}
	records := filepath.Join(dir, "requests.jsonl")
	os.Remove(records)
	args := append([]string{"snapshot", "--duration", "10m", "--pid", strconv.Itoa(hello.PID), "--log-level", "info",
		"--json", records, "-o", filepath.Join(dir, "cut.pb.gz")}, a.args...)
	bin := *tracerd
	if a.tracerd != "" {
		bin = a.tracerd
	}
	tr := exec.Command(bin, args...)
	var mu sync.Mutex
	var stderr strings.Builder
	pr, pw := io.Pipe()
	tr.Stderr = pw
	tracing, calibrated := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		var t, c sync.Once
		for sc.Scan() {
			mu.Lock()
			stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "tracerd: tracing") {
				t.Do(func() { close(tracing) })
			}
			if strings.Contains(sc.Text(), "uprobe cost calibrated") || strings.Contains(sc.Text(), "uprobe cost calibration") {
				c.Do(func() { close(calibrated) })
			}
		}
	}()
	if err := tr.Start(); err != nil {
		return r, err
	}
	defer pw.Close()
	select {
	case <-tracing:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		return r, fmt.Errorf("tracerd did not start: %s", stderr.String())
	}
	select { // calibration runs in the background: not during the load
	case <-calibrated:
	case <-time.After(5 * time.Second):
	}
	// BPF statistics (two clock reads more per program run) are on only
	// for the load's last second, to count the hits: the server's CPU is
	// taken over the seconds before.
	cpu0, sys0, sw0 := procCPU(hello.PID), procSys(hello.PID), procSwitches(hello.PID)
	start := time.Now()
	var cpu1, sys1, sw1, ok1 int64
	var progs0, progs1 map[string]progStat
	statsAt := time.AfterFunc(*roundD-time.Second, func() {
		cpu1, sys1, sw1, ok1 = procCPU(hello.PID), procSys(hello.PID), procSwitches(hello.PID), answered.Load()
		setBPFStats(true)
		progs0 = uprobeStats()
	})
	r.sent, r.ok, err = paced(hello.Listen, rate, 32, *roundD)
	statsAt.Stop()
	progs1 = uprobeStats()
	setBPFStats(false)
	if err != nil {
		return r, err
	}
	time.Sleep(time.Second) // the last requests' records
	_ = tr.Process.Signal(os.Interrupt)
	if err := tr.Wait(); err != nil {
		return r, fmt.Errorf("tracerd: %v\n%s", err, stderr.String())
	}
	if ok1 == 0 || r.ok == ok1 {
		return r, errors.New("no request answered")
	}
	r.serverCPU = float64(cpu1-cpu0) / float64(ok1)
	r.serverSys = float64(sys1-sys0) / float64(ok1)
	r.switches = float64(sw1-sw0) / float64(ok1)
	r.progNs, r.progRuns = map[string]float64{}, map[string]float64{}
	last := float64(r.ok - ok1) // answered while the statistics were on
	for name, p1 := range progs1 {
		p0 := progs0[name]
		if runs := p1.runs - p0.runs; runs > 0 {
			r.progNs[name] = float64(p1.ns-p0.ns) / float64(runs)
			r.progRuns[name] = float64(runs) / last
			r.hits += float64(runs) / last
		}
	}
	r.early, r.end, err = shares(records, start, *roundD)
	mu.Lock()
	for _, l := range strings.Split(stderr.String(), "\n") {
		if i := strings.Index(l, "entry_plus_exit_ns"); i >= 0 {
			r.calib = l[i:]
		}
	}
	mu.Unlock()
	return r, err
}

// paced sends GETs of path at rate over conns keep-alive connections for
// d, each connection every conns/rate (a late answer delays only its own
// connection's next request); it returns requests sent and answered 200.
func paced(addr string, rate, conns int, d time.Duration) (sent, ok int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	every := time.Duration(int64(time.Second) * int64(conns) / int64(rate))
	var nSent atomic.Int64
	answered.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, 0, err
		}
		wg.Add(1)
		go func(c net.Conn, offset time.Duration) {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
			next := time.Now().Add(offset)
			for ctx.Err() == nil {
				time.Sleep(time.Until(next))
				next = next.Add(every)
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
				nSent.Add(1)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answered.Add(1)
				}
			}
		}(c, every*time.Duration(i)/time.Duration(conns))
	}
	wg.Wait()
	close(errs)
	return nSent.Load(), answered.Load(), <-errs
}

// answered counts the requests answered 200 in the current round.
var answered atomic.Int64

// shares reads tracerd's JSON lines: the /json records that began in the
// load's first second, and in its last three.
func shares(file string, start time.Time, d time.Duration) (early, end share, err error) {
	f, err := os.Open(file)
	if err != nil {
		return early, end, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec export.JSONRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return early, end, err
		}
		if rec.HTTP == nil || !strings.HasPrefix(rec.HTTP.Target, "/json") {
			continue
		}
		at := time.Unix(0, rec.StartUnixNano).Sub(start)
		var s *share
		switch {
		case at >= 0 && at < time.Second:
			s = &early
		case at >= d-3*time.Second && at < d:
			s = &end
		default:
			continue
		}
		s.records++
		if _, ok := rec.Phases["serialize"]; ok {
			s.serialize++
		}
		if v, ok := rec.Phases["gc_stw"]; ok {
			s.gcSTW++
			if v > 0 {
				s.gcPause++
			}
		}
		for _, sp := range rec.Spans {
			switch sp.Name {
			case "net/http.serverHandler.ServeHTTP":
				s.serveHTTP++
			case "encoding/json.Marshal":
				s.marshal++
			}
		}
	}
	return early, end, sc.Err()
}

// procCPU is the process's CPU time in ns (all threads, schedstat).
func procCPU(pid int) int64 {
	var total int64
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		v, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		total += v
	}
	return total
}

// procSys is the process's system time in ns (/proc/PID/stat, clock
// ticks).
func procSys(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ticks, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	return ticks * int64(time.Second) / clockTicks
}

// procSwitches is the context switches of the process's threads
// (schedstat's timeslices).
func procSwitches(pid int) int64 {
	var total int64
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) == 3 {
			v, _ := strconv.ParseInt(f[2], 10, 64)
			total += v
		}
	}
	return total
}

// clockTicks is USER_HZ, 100 on Linux/amd64.
const clockTicks = 100

type progStat struct{ runs, ns int64 }

func setBPFStats(on bool) {
	v := "0"
	if on {
		v = "1"
	}
	_ = os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte(v), 0)
}

// uprobeStats reads run counts and run time of tracerd's Go uprobe
// programs (bpftool).
func uprobeStats() map[string]progStat {
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return nil
	}
	var progs []struct {
		Name    string `json:"name"`
		RunCnt  int64  `json:"run_cnt"`
		RunTime int64  `json:"run_time_ns"`
	}
	_ = json.Unmarshal(out, &progs)
	m := map[string]progStat{}
	for _, p := range progs {
		if strings.HasPrefix(p.Name, "go_") {
			s := m[p.Name]
			s.runs += p.RunCnt
			s.ns += p.RunTime
			m[p.Name] = s
		}
	}
	return m
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	return v[len(v)/2]
}

func span(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func pct(n, of int) string {
	if of == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of))
}

func report(rs []result, rates []int) string {
	pick := func(armName string, rate int) []result {
		var out []result
		for _, r := range rs {
			if r.arm == armName && r.rate == rate {
				out = append(out, r)
			}
		}
		return out
	}
	vals := func(rs []result, f func(result) float64) []float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### The JSON server at fixed rates\n\n")
	fmt.Fprintf(&b, "`go run ./tests/bench/goaware` (part of `make bench`), %s: tests/goserver answering `GET %s` (json.Marshal of one item; 4 probe hits a request: ServeHTTP's entry and exit, where the status is read, Marshal's entry and exit) to 32 keep-alive connections, each sending at its own fixed pace (%s req/s in all), %d rounds of %s per arm and rate, arms interleaved (each round starting one arm further). tracerd runs `snapshot --pid P --json … -o …` with `--go=false`, with the default bound (a function firing over %d calls/s in a process has its group of probes switched off) and with the former default (%d)%s. Server CPU: its threads' schedstat over the load but its last second, per request answered then. Hits and program time: bpftool's run_cnt and run_time_ns of tracerd's go_* programs over the last second (BPF statistics on only then: they add two clock reads to each run). Records: tracerd's JSON lines for `/json`, by start time.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), path, *rateList, *rounds, *roundD, goprobe.DefaultMaxCallsPerSecond, oldBound, formerNote())
	for _, rate := range rates {
		off := pick(arms[0].name, rate)
		fmt.Fprintf(&b, "#### %d requests/s\n\n", rate)
		fmt.Fprintf(&b, "| | %s | %s | %s |", arms[0].name, arms[1].name+" (default bound)", arms[2].name+" (former default)")
		for _, a := range arms[3:] {
			fmt.Fprintf(&b, " %s |", a.name)
		}
		fmt.Fprintf(&b, "\n|---|---|---|---|%s\n", strings.Repeat("---|", len(arms)-3))
		row := func(label string, f func(result) float64, format func(float64) string, added bool) {
			fmt.Fprintf(&b, "| %s |", label)
			base := median(vals(off, f))
			for i, a := range arms {
				v := vals(pick(a.name, rate), f)
				lo, hi := span(v)
				cell := fmt.Sprintf(" %s (%s – %s)", format(median(v)), format(lo), format(hi))
				if added && i > 0 {
					cell += fmt.Sprintf("; %+.2f µs", (median(v)-base)/1e3)
				}
				fmt.Fprintf(&b, "%s |", cell)
			}
			b.WriteString("\n")
		}
		us := func(v float64) string { return fmt.Sprintf("%.2f µs", v/1e3) }
		row("answered requests/s", func(r result) float64 { return float64(r.ok) / roundD.Seconds() }, func(v float64) string { return fmt.Sprintf("%.0f", v) }, false)
		row("server CPU per request", func(r result) float64 { return r.serverCPU }, us, true)
		row("of it in the kernel (stime)", func(r result) float64 { return r.serverSys }, us, true)
		row("uprobe hits per request", func(r result) float64 { return r.hits }, func(v float64) string { return fmt.Sprintf("%.2f", v) }, false)
		row("server context switches per request", func(r result) float64 { return r.switches }, func(v float64) string { return fmt.Sprintf("%.2f", v) }, false)
		on := pick(arms[1].name, rate)
		// Per hit, round by round (an arm against --go=false of the same
		// round): the machine's load drifts between rounds.
		perHit := func(armName string, f func(result) float64) []float64 {
			var v []float64
			for i, r := range pick(armName, rate) {
				if i < len(off) && r.hits > 0 {
					v = append(v, (f(r)-f(off[i]))/r.hits)
				}
			}
			return v
		}
		for _, a := range append([]arm{arms[1]}, arms[3:]...) {
			all, sys := perHit(a.name, func(r result) float64 { return r.serverCPU }), perHit(a.name, func(r result) float64 { return r.serverSys })
			if len(all) > 0 {
				lo, hi := span(all)
				slo, shi := span(sys)
				fmt.Fprintf(&b, "\n%s: %.2f µs of server CPU per uprobe hit (added CPU per request ÷ hits per request, each round against the same round's --go=false; median, range %.2f – %.2f µs); in the kernel %.2f µs (%.2f – %.2f µs).\n",
					a.name, median(all)/1e3, lo/1e3, hi/1e3, median(sys)/1e3, slo/1e3, shi/1e3)
			}
		}
		fmt.Fprintf(&b, "\nRecords carrying each Go measurement, pooled over the rounds: in the load's first second → in its last three seconds.\n\n")
		fmt.Fprintf(&b, "| arm | records | `serialize` | `gc_stw` (> 0) | ServeHTTP span | json.Marshal span |\n|---|---|---|---|---|---|\n")
		for _, a := range arms {
			var e, l share
			for _, r := range pick(a.name, rate) {
				e.add(r.early)
				l.add(r.end)
			}
			fmt.Fprintf(&b, "| %s | %d → %d | %s → %s | %s (%s) → %s (%s) | %s → %s | %s → %s |\n", a.name, e.records, l.records,
				pct(e.serialize, e.records), pct(l.serialize, l.records), pct(e.gcSTW, e.records), pct(e.gcPause, e.records),
				pct(l.gcSTW, l.records), pct(l.gcPause, l.records), pct(e.serveHTTP, e.records), pct(l.serveHTTP, l.records),
				pct(e.marshal, e.records), pct(l.marshal, l.records))
		}
		// The former build's programs, next to these: the A/B of a
		// change to them.
		var former []result
		if len(arms) > 3 {
			former = pick(arms[3].name, rate)
		}
		fmt.Fprintf(&b, "\nUprobe programs with the default bound (medians over rounds): runs per request and BPF run time per run.\n\n| program | runs per request | ns per run |")
		if former != nil {
			fmt.Fprintf(&b, " former build: ns per run |\n|---|---|---|---|\n")
		} else {
			fmt.Fprintf(&b, "\n|---|---|---|\n")
		}
		names := map[string]bool{}
		for _, r := range on {
			for n := range r.progRuns {
				names[n] = true
			}
		}
		var sorted []string
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			fmt.Fprintf(&b, "| %s | %.2f | %.0f |", n, median(vals(on, func(r result) float64 { return r.progRuns[n] })), median(vals(on, func(r result) float64 { return r.progNs[n] })))
			if former != nil {
				fmt.Fprintf(&b, " %.0f |", median(vals(former, func(r result) float64 { return r.progNs[n] })))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	for _, r := range rs {
		if r.calib != "" {
			fmt.Fprintf(&b, "tracerd's calibration of an entry + exit probe pair (subtracted from Go spans), one round: %s\n", r.calib)
			break
		}
	}
	return b.String()
}

func formerNote() string {
	if *former == "" {
		return ""
	}
	return fmt.Sprintf("; and `-former %s`, another build, with no bound (`--go-max-calls 0`)", *former)
}

func (s *share) add(o share) {
	s.records += o.records
	s.serialize += o.serialize
	s.gcSTW += o.gcSTW
	s.gcPause += o.gcPause
	s.serveHTTP += o.serveHTTP
	s.marshal += o.marshal
}

func appendReport(section string) error {
	f, err := os.OpenFile(*out, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString("\n## Go awareness: uprobes on and off (JSON server)\n" + section)
	return err
}
