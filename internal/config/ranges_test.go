package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOutOfRange: every numeric key of the file refuses a value outside
// its range with the file, the line, the key, the value and the range
// (issue 10: a 10^17-span queue panicked in makechan, 10^10 exhausted
// memory, at start and at reload).
func TestOutOfRange(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"exporters:\n  otlp:\n    queue_size: \"99999999999999999\"\n", `h.yaml:3: exporters.otlp.queue_size: 99999999999999999 is out of range: want 1 to 1048576 spans`},
		{"exporters:\n  otlp:\n    queue_size: 10000000000\n", `exporters.otlp.queue_size: 10000000000 is out of range: want 1 to 1048576 spans`},
		{"exporters:\n  otlp:\n    queue_size: \"999999999999999999999999\"\n", `exporters.otlp.queue_size: "999999999999999999999999" is out of range`},
		{"exporters:\n  otlp:\n    queue_size: \"0\"\n", `exporters.otlp.queue_size: 0 is out of range`},
		{"exporters:\n  otlp:\n    queue_size: lots\n", `exporters.otlp.queue_size: "lots" is not a whole number: want 1 to 1048576 spans`},
		{"exporters:\n  otlp:\n    batch_size: \"16385\"\n", `h.yaml:3: exporters.otlp.batch_size: 16385 is out of range: want 1 to 16384 spans`},
		{"exporters:\n  otlp:\n    batch_delay: 1000h\n", `exporters.otlp.batch_delay: 1000h is out of range: want 1ms to 1m`},
		{"exporters:\n  otlp:\n    batch_delay: \"-1s\"\n", `exporters.otlp.batch_delay: -1s is out of range`},
		{"exporters:\n  otlp:\n    timeout: 0s\n", `exporters.otlp.timeout: 0s is out of range: want 1ms to 5m`},
		{"exporters:\n  sampling:\n    latency_budget: 2h\n", `exporters.sampling.latency_budget: 2h is out of range: want 0s to 1h (0: none)`},
		{"exporters:\n  sampling:\n    ratio: NaN\n", `h.yaml:3: exporters.sampling.ratio: NaN is out of range: want a ratio from 0 to 1`},
		{"exporters:\n  sampling:\n    ratio: \"1.5\"\n", `exporters.sampling.ratio: 1.5 is out of range`},
		{"exporters:\n  sampling:\n    ratio: \"-Inf\"\n", `exporters.sampling.ratio: -Inf is out of range`},
		{"engine:\n  idle_timeout: -1s\n", `h.yaml:2: engine.idle_timeout: -1s is out of range: want 1ms to 10m`},
		{"engine:\n  idle_timeout: 1h\n", `engine.idle_timeout: 1h is out of range`},
		{"engine:\n  max_conns: 4194305\n", `h.yaml:2: engine.max_conns: 4194305 is out of range: want 1 to 4194304 connections`},
		{"engine:\n  max_conns: 0\n", `engine.max_conns: 0 is out of range`},
		{"engine:\n  ring_buffer_bytes: 536870912\n", `engine.ring_buffer_bytes: 536870912 is out of range: want 4096 to 268435456 bytes`},
		{"engine:\n  go_max_calls_per_second: 99999999999999999\n", `engine.go_max_calls_per_second: 99999999999999999 is out of range: want 0 to 1000000 calls per second (0: no bound)`},
		{"engine:\n  go_max_calls_per_second: -1\n", `engine.go_max_calls_per_second: -1 is out of range`},
		{"engine:\n  skip_hooks: [sys_exit_accept4]\n", `h.yaml:2: engine.skip_hooks: hook sys_exit_accept4 is required and cannot be skipped: optional hooks are`},
		{"engine:\n  skip_hooks: [nope]\n", `engine.skip_hooks: no hook named "nope": optional hooks are sys_exit_accept,`},
		{"exporters:\n  metrics_addr: 127.0.0.1:99999\n", `h.yaml:2: exporters.metrics_addr: "127.0.0.1:99999": port 99999 is out of range: want host:port with a port from 1 to 65535, or off`},
		{"exporters:\n  metrics_addr: \"127.0.0.1:0\"\n", `port 0 is out of range`},
		{"findings:\n  min_lost: 2m\n", `h.yaml:2: findings.min_lost: 2m is out of range: want 0s to 1m (0: any)`},
		{"findings:\n  min_share_percent: -1\n", `h.yaml:2: findings.min_share_percent: -1 is out of range: want 0 to 100 percent (0: any)`},
	} {
		_, err := Parse("h.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestRangeBounds: the bounds themselves are accepted.
func TestRangeBounds(t *testing.T) {
	for _, doc := range []string{
		"exporters:\n  otlp:\n    queue_size: \"1\"\n    batch_size: \"1\"\n    batch_delay: 1ms\n    timeout: 1ms\n  sampling:\n    latency_budget: \"0\"\n    ratio: \"0\"\n",
		"exporters:\n  otlp:\n    queue_size: \"1048576\"\n    batch_size: \"16384\"\n    batch_delay: 1m\n    timeout: 5m\n  sampling:\n    latency_budget: 1h\n    ratio: \"1\"\n",
		"engine:\n  idle_timeout: 1ms\n  max_conns: 1\n  ring_buffer_bytes: 4096\n  go_max_calls_per_second: 0\n",
		"engine:\n  idle_timeout: 10m\n  max_conns: 4194304\n  ring_buffer_bytes: 268435456\n  go_max_calls_per_second: 1000000\n  skip_hooks: [sched_switch, softirq_raise]\n",
		"exporters:\n  metrics_addr: \"[::1]:65535\"\n",
		"findings:\n  min_lost: \"0\"\n  min_share_percent: 0\n",
		"findings:\n  enabled: false\n  min_lost: 1m\n  min_share_percent: 100\n",
	} {
		if _, err := Parse("b.yaml", []byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

func TestRangeStrings(t *testing.T) {
	for r, want := range map[Range]string{
		QueueSize:     "1 to 1048576 spans",
		IdleTimeout:   "1ms to 10m",
		LatencyBudget: "0s to 1h (0: none)",
		GoMaxCalls:    "0 to 1000000 calls per second (0: no bound)",
	} {
		if got := r.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if _, err := ParseSampleRatio("NaN"); err == nil {
		t.Error("NaN accepted as a sample ratio")
	}
	if d, err := SnapshotDuration.ParseDuration("24h"); err != nil || d != 24*time.Hour {
		t.Errorf("24h: %v %v", d, err)
	}
}

// FuzzParse: whatever the bytes, Parse does not panic, and a file it
// accepts has every numeric setting within its range.
func FuzzParse(f *testing.F) {
	f.Add([]byte("engine:\n  idle_timeout: 2s\n  max_conns: 100\n"))
	f.Add([]byte("exporters:\n  otlp:\n    queue_size: \"99999999999999999\"\n    batch_size: \"10\"\n"))
	f.Add([]byte("exporters:\n  sampling:\n    ratio: NaN\n    latency_budget: 5ms\n"))
	f.Add([]byte("engine:\n  skip_hooks: [sched_switch]\n  go_max_calls_per_second: 5\n  ring_buffer_bytes: 8192\n"))
	f.Add([]byte("targets:\n  ports: [80, 443]\n  pids: [1]\nexporters:\n  metrics_addr: 127.0.0.1:9464\n"))
	f.Add([]byte("engine: &a {idle_timeout: 1s}\nexporters: *a\n"))
	f.Add([]byte("---\n- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			return
		}
		e := c.Engine
		for what, err := range map[string]error{
			"idle_timeout":            IdleTimeout.Check(int64(e.IdleTimeout)),
			"max_conns":               MaxConns.CheckUint(uint64(e.MaxConns)),
			"ring_buffer_bytes":       CheckRingBufferBytes(uint64(e.RingBufferBytes)),
			"go_max_calls_per_second": GoMaxCalls.Check(int64(e.GoMaxCallsPerSecond)),
		} {
			if err != nil {
				t.Fatalf("accepted engine.%s out of range: %v\n%q", what, err, data)
			}
		}
		for _, h := range e.SkipHooks {
			if err := CheckSkipHook(h); err != nil {
				t.Fatalf("accepted skip_hooks %q: %v", h, err)
			}
		}
		o, s := c.Exporters.OTLP, c.Exporters.Sampling
		for _, v := range []struct {
			val string
			r   Range
		}{{o.QueueSize, QueueSize}, {o.BatchSize, BatchSize}, {o.BatchDelay, BatchDelay}, {o.Timeout, OTLPTimeout}, {s.LatencyBudget, LatencyBudget}} {
			if v.val == "" {
				continue
			}
			if err := v.r.CheckString(v.val); err != nil {
				t.Fatalf("accepted %q out of %s: %v", v.val, v.r, err)
			}
		}
		if s.Ratio != "" {
			if _, err := ParseSampleRatio(s.Ratio); err != nil {
				t.Fatalf("accepted ratio %q: %v", s.Ratio, err)
			}
		}
		if a := c.Exporters.MetricsAddr; a != "" && a != "off" {
			if err := CheckListenAddr(a); err != nil {
				t.Fatalf("accepted metrics_addr %q: %v", a, err)
			}
		}
		// What --print-config prints parses back.
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse("printed", out); err != nil {
			t.Fatalf("printed config does not parse: %v\n%s\nfrom %q", err, out, data)
		}
	})
}

func ExampleRange_String() {
	fmt.Println(QueueSize)
	// Output: 1 to 1048576 spans
}
