package main

import (
	"testing"
	"time"
)

const wrkOutput = `Running 10s test @ http://127.0.0.1:42221/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.98ms    1.36ms  22.99ms   88.15%
    Req/Sec    49.70k    12.86k   81.89k    76.00%
  Latency Distribution
     50%  534.00us
     75%    0.96ms
     90%    2.72ms
     99%    6.26ms
  246828 requests in 5.00s, 36.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  49331.31
Transfer/sec:      7.20MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{Requests: 246828, Errors: 3, Duration: 5 * time.Second, RPS: 49331.31,
		P50: 534 * time.Microsecond, P99: 6260 * time.Microsecond, Max: 22990 * time.Microsecond}
	r.Raw = ""
	if r != want {
		t.Errorf("parseWrk:\n got %+v\nwant %+v", r, want)
	}
	if _, err := parseWrk("Running 10s test\n  0 requests in 10.00s, 0B read\nRequests/sec: 0.00\n"); err == nil {
		t.Error("parseWrk accepted output without a latency distribution")
	}
}

func TestParseKernelLine(t *testing.T) {
	line := "kernel: 33 connections traced, 173034 records; lost: 1 (ring buffer full), 2 connections untraced (map full, 3/65536 in use), 4 threads untimed (map full), 5 idle sweeps failed, 6 output errors"
	k, err := parseKernelLine(line)
	if err != nil {
		t.Fatal(err)
	}
	want := kernelCounters{Conns: 33, Records: 173034, RingbufLost: 1, ConnsUntraced: 2, ConnsInUse: 3, ConnsMax: 65536,
		ThreadsUntimed: 4, SweepFails: 5, OutputErrors: 6}
	if k != want {
		t.Errorf("got %+v\nwant %+v", k, want)
	}
	if k.Lost() != 1+2+4+5+6 {
		t.Errorf("Lost() = %d", k.Lost())
	}
	if _, err := parseKernelLine("kernel: 33 connections traced, 173034 records"); err == nil {
		t.Error("a kernel line without loss counters was accepted")
	}
}

func TestFmt(t *testing.T) {
	for _, c := range []struct {
		ns   float64
		want string
	}{{512, "512 ns"}, {1500, "1.50 µs"}, {52120, "52.1 µs"}, {6.26e6, "6.26 ms"}, {-2000, "-2.00 µs"}} {
		if got := fmtNs(c.ns); got != c.want {
			t.Errorf("fmtNs(%v) = %q, want %q", c.ns, got, c.want)
		}
	}
	if got := fmtInt(1234567); got != "1,234,567" {
		t.Errorf("fmtInt = %q", got)
	}
	if got := median([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Errorf("median = %v", got)
	}
}
