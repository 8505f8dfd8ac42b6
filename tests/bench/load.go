package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadResult is what a load generator measured in one round.
type loadResult struct {
	Sent     int64 // requests written (open loop only; wrk does not say)
	Requests int64 // responses received
	Errors   int64 // socket errors, bad statuses
	Duration time.Duration
	RPS      float64
	P50, P99 time.Duration
	P999     time.Duration // open loop only
	Max      time.Duration
	CPU      time.Duration // the generator's CPU when it is its own process (wrk)
	Raw      string        `json:"-"` // wrk's output
}

// wrkArgs is how wrk is run; the URL is appended.
func wrkArgs(threads, conns int, d time.Duration) []string {
	return []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s", "--latency"}
}

func runWrk(ctx context.Context, wrk string, args []string, url string, started func(pid int)) (loadResult, error) {
	cmd := exec.CommandContext(ctx, wrk, append(slices.Clone(args), url)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = childAttr()
	err := cmd.Start()
	if err == nil {
		if started != nil {
			started(cmd.Process.Pid)
		}
		err = cmd.Wait()
	}
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return r, fmt.Errorf("wrk: %v; its output was:\n%s", err, out.String())
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

var (
	wrkTotalRE  = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),`)
	wrkRPSRE    = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkPctRE    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
	wrkMaxRE    = regexp.MustCompile(`(?m)^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)`)
	wrkSockRE   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xxRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrkDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[unit]
	return time.Duration(v * mult), nil
}

// parseWrk reads wrk --latency's report.
func parseWrk(s string) (loadResult, error) {
	r := loadResult{Raw: s}
	m := wrkTotalRE.FindStringSubmatch(s)
	if m == nil {
		return r, errors.New(`no "N requests in T" line`)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	var err error
	if r.Duration, err = wrkDuration(m[2], m[3]); err != nil {
		return r, err
	}
	m = wrkRPSRE.FindStringSubmatch(s)
	if m == nil {
		return r, errors.New(`no "Requests/sec" line`)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPctRE.FindAllStringSubmatch(s, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, errors.New("no latency distribution (was --latency given?)")
	}
	if m := wrkMaxRE.FindStringSubmatch(s); m != nil {
		r.Max, _ = wrkDuration(m[1], m[2])
	}
	if m := wrkSockRE.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.Errors += n
		}
	}
	if m := wrkNon2xxRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += n
	}
	return r, nil
}

// openLoop sends HTTP/1.1 GETs at a fixed total rate over conns
// keep-alive connections, each connection on its own schedule
// (interval conns/rate, start times staggered). A request is sent at
// its scheduled time, or as soon as its connection is free when the
// previous answer came late; its latency counts from the scheduled time,
// so that a stall is not hidden by sending less (coordinated omission).
func openLoop(ctx context.Context, addr string, rate float64, conns int, d time.Duration) (loadResult, error) {
	return openLoopPath(ctx, addr, "/", rate, conns, d)
}

// openLoopPath is openLoop sending GET path.
func openLoopPath(ctx context.Context, addr, path string, rate float64, conns int, d time.Duration) (loadResult, error) {
	var r loadResult
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: tracerd-bench\r\n\r\n")
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return r, fmt.Errorf("open loop: %w", err)
		}
		cs[i] = c
	}
	interval := time.Duration(float64(conns) / rate * 1e9)
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(d)
	type connResult struct {
		sent, ok, errs int64
		lat            []time.Duration
		err            error
	}
	res := make([]connResult, conns)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr := &res[i]
			cr.lat = make([]time.Duration, 0, int(d/interval)+1)
			c.SetDeadline(end.Add(10 * time.Second))
			br := bufio.NewReaderSize(c, 4096)
			due := start.Add(interval * time.Duration(i) / time.Duration(conns))
			for ; due.Before(end); due = due.Add(interval) {
				if ctx.Err() != nil {
					return
				}
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				if _, err := c.Write(req); err != nil {
					cr.errs++
					cr.err = err
					return
				}
				cr.sent++
				status, err := readResponse(br)
				if err != nil {
					cr.errs++
					cr.err = err
					return
				}
				if status != 200 {
					cr.errs++
					continue
				}
				cr.ok++
				cr.lat = append(cr.lat, time.Since(due))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, c := range cs {
		c.Close()
	}
	var lat []time.Duration
	var firstErr error
	for _, cr := range res {
		r.Sent += cr.sent
		r.Requests += cr.ok
		r.Errors += cr.errs
		lat = append(lat, cr.lat...)
		if firstErr == nil {
			firstErr = cr.err
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if len(lat) == 0 {
		return r, fmt.Errorf("open loop: no answer (%v)", firstErr)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	// Late answers stretch the round: the rate achieved is over the time
	// until the last answer, not the schedule.
	r.Duration = max(elapsed, d)
	r.RPS = float64(r.Requests) / r.Duration.Seconds()
	r.P50, r.P99, r.P999, r.Max = q(0.50), q(0.99), q(0.999), lat[len(lat)-1]
	if firstErr != nil {
		r.Raw = firstErr.Error()
	}
	return r, nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length body.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := int64(-1)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h := strings.TrimSpace(string(line))
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if _, err := io.CopyN(io.Discard, br, length); err != nil {
		return 0, err
	}
	return status, nil
}
