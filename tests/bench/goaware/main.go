// Command goaware measures what Go awareness (uprobes) adds per request:
// the JSON test server (tests/goserver) at max loopback throughput, traced
// by tracerd with --go and with --go=false, rounds interleaved in one run.
// It appends its section to the benchmarks file.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
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

	"github.com/tracerd/tracerd/internal/goprobe"
)

var (
	tracerd    = flag.String("tracerd", "bin/tracerd", "tracerd binary")
	out        = flag.String("out", "BENCHMARKS.md", "file to append the section to")
	rounds     = flag.Int("rounds", 3, "rounds per arm")
	roundD     = flag.Duration("round", 8*time.Second, "load per round")
	sitesOnly  = flag.Bool("sites-only", false, "only measure the cost of a uprobe hit by instruction kind")
	siteRounds = flag.Int("site-rounds", 5, "rounds of the per-instruction measurement")
)

type result struct {
	arm        string
	reqs       int64
	rps        float64
	serverCPU  float64 // ns per request
	p50, p99   time.Duration
	uprobeHits float64 // per request
	costNote   string
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
	if *sitesOnly {
		fmt.Print(sites)
		return
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
		for _, arm := range arms {
			r, err := round(server, arm)
			if err != nil {
				log.Fatal(err)
			}
			log.Printf("%s: %.0f req/s, server CPU %.1f µs/req, p99 %s", arm, r.rps, r.serverCPU/1e3, r.p99)
			results = append(results, r)
		}
	}
	if err := report(results); err != nil {
		log.Fatal(err)
	}
}

// arms: Go awareness off; on, with the default bound on calls per
// second (which switches busy probes off after a second at this load);
// on with no bound (every call pays its traps: the real cost).
var arms = []string{armOff, armOn, armUnbounded}

const (
	armOff       = "--go=false"
	armOn        = "--go"
	armUnbounded = "--go-max-calls=0"
)

func round(server, arm string) (result, error) {
	srv := exec.Command(server, "-heap", "10000")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var hello struct {
		Listen string `json:"listen"`
		PID    int    `json:"pid"`
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &hello) != nil {
		return result{}, fmt.Errorf("goserver did not start: %v", err)
	}
	tr := exec.Command(*tracerd, "snapshot", "--duration", "10m", "--pid", strconv.Itoa(hello.PID), arm, "--log-level", "info", "-o", os.DevNull)
	stderr := &strings.Builder{}
	var mu sync.Mutex
	pr, pw := io.Pipe()
	tr.Stderr = pw
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "tracerd: tracing") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	if err := tr.Start(); err != nil {
		return result{}, err
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		return result{}, fmt.Errorf("tracerd did not start: %s", stderr)
	}
	time.Sleep(500 * time.Millisecond) // calibration
	cpu0 := procCPU(hello.PID)
	hits0 := uprobeRuns()
	reqs, lat := load("http://"+hello.Listen+"/json?n=50", *roundD)
	cpu1 := procCPU(hello.PID)
	hits1 := uprobeRuns()
	_ = tr.Process.Signal(os.Interrupt)
	_ = tr.Wait()
	pw.Close()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{arm: arm, reqs: reqs, rps: float64(reqs) / roundD.Seconds(),
		serverCPU: float64(cpu1-cpu0) / float64(reqs), uprobeHits: float64(hits1-hits0) / float64(reqs)}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	mu.Lock()
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "calibrated") {
			r.costNote = l[strings.Index(l, "entry_plus_exit_ns"):]
		}
	}
	mu.Unlock()
	return r, nil
}

// load runs 8 keep-alive clients for d; it returns requests and latencies.
func load(url string, d time.Duration) (int64, []time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return n.Load(), lat
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

// uprobeRuns sums run counts of tracerd's Go uprobe programs (bpftool).
func uprobeRuns() int64 {
	_ = os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0)
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return 0
	}
	var progs []struct {
		Name   string `json:"name"`
		RunCnt int64  `json:"run_cnt"`
	}
	_ = json.Unmarshal(out, &progs)
	var n int64
	for _, p := range progs {
		if strings.HasPrefix(p.Name, "go_") {
			n += p.RunCnt
		}
	}
	return n
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, 0, len(rs))
	for _, r := range rs {
		v = append(v, f(r))
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func report(rs []result) error {
	var off, on, all []result
	for _, r := range rs {
		switch r.arm {
		case armOn:
			on = append(on, r)
		case armUnbounded:
			all = append(all, r)
		default:
			off = append(off, r)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Go awareness: uprobes on and off (JSON server)\n\n")
	fmt.Fprintf(&b, "`go run ./tests/bench/goaware` (part of `make bench`), %s: tests/goserver answering `GET /json?n=50` (encoding/json.Marshal of 50 items, net/http) to 8 keep-alive Go clients at max loopback throughput, traced by `tracerd snapshot --pid P` with `--go=false`, with `--go` (default bound: a function firing over %d calls/s in a process has its probes switched off, which happens here after the first second) and with `--go --go-max-calls=0` (no bound: every call pays its traps), %d interleaved rounds of %s each. Medians:\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), goprobe.DefaultMaxCallsPerSecond, *rounds, *roundD)
	fmt.Fprintf(&b, "| | --go=false | --go | added | --go-max-calls=0 | added |\n|---|---|---|---|---|---|\n")
	fr := func(r result) float64 { return r.rps }
	fc := func(r result) float64 { return r.serverCPU }
	fh := func(r result) float64 { return r.uprobeHits }
	f99 := func(r result) float64 { return float64(r.p99) }
	fmt.Fprintf(&b, "| requests/s | %.0f | %.0f | %+.1f %% | %.0f | %+.1f %% |\n", median(off, fr), median(on, fr), 100*(median(on, fr)/median(off, fr)-1),
		median(all, fr), 100*(median(all, fr)/median(off, fr)-1))
	fmt.Fprintf(&b, "| server CPU per request | %.1f µs | %.1f µs | %+.1f µs | %.1f µs | %+.1f µs |\n", median(off, fc)/1e3, median(on, fc)/1e3, (median(on, fc)-median(off, fc))/1e3,
		median(all, fc)/1e3, (median(all, fc)-median(off, fc))/1e3)
	fmt.Fprintf(&b, "| p99 latency | %s | %s | %s | %s | %s |\n", time.Duration(median(off, f99)), time.Duration(median(on, f99)), time.Duration(median(on, f99)-median(off, f99)),
		time.Duration(median(all, f99)), time.Duration(median(all, f99)-median(off, f99)))
	fmt.Fprintf(&b, "| uprobe hits per request | %.2f | %.2f | | %.2f | |\n", median(off, fh), median(on, fh), median(all, fh))
	if h := median(all, fh); h > 0 {
		fmt.Fprintf(&b, "\nWith no bound: %.1f µs of server CPU per uprobe hit (added CPU per request ÷ hits per request).\n", (median(all, fc)-median(off, fc))/1e3/h)
	}
	for _, r := range append(on, all...) {
		if r.costNote != "" {
			fmt.Fprintf(&b, "\ntracerd's own calibration of an entry + RET probe pair (subtracted from Go spans): %s\n", r.costNote)
			break
		}
	}
	fmt.Fprintf(&b, "\nThe added server CPU is the uprobe traps (the kernel runs them in the traced process): per request, one ServeHTTP entry and RET, one WriteHeader, one json.Marshal entry and RET.\n")
	f, err := os.OpenFile(*out, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(b.String())
	return err
}
