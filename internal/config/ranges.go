package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// Range is the accepted interval of a numeric setting, bounds included.
// Every numeric setting of the flags and of the file has one, checked at
// start and at reload: a value outside is refused, never clamped, and
// never reaches an allocation (a 10^17-span queue panics in makechan).
// docs/service.md ("Ranges") lists them.
type Range struct {
	Min, Max int64  // durations in nanoseconds
	Duration bool   // the values are time.Durations
	Unit     string // after a count: "spans", "bytes", …
	Zero     string // what 0 means when it is allowed and special ("no bound")
}

// The ranges. Each says why its bounds are where they are.
var (
	// IdleTimeout: below 1 ms a request ends between two reads of one
	// answer; the Go join horizon (idle + 2 s) holds events that long.
	IdleTimeout = Range{Min: int64(time.Millisecond), Max: int64(10 * time.Minute), Duration: true}
	// MaxConns: the conns map's buckets are allocated at load and the
	// idle sweep walks them all (≈ 6.6 ns each: 28 ms at 4 Mi).
	MaxConns = Range{Min: 1, Max: 1 << 22, Unit: "connections"}
	// RingBufferBytes: a power of two, at least a page; 256 MiB of
	// kernel memory is 16 times the default.
	RingBufferBytes = Range{Min: int64(os.Getpagesize()), Max: 256 << 20, Unit: "bytes"}
	// GoMaxCalls: at ≈ 1.5 µs of the traced process's CPU per probe hit,
	// two a call, a million calls a second is three CPUs: no useful bound
	// is higher.
	GoMaxCalls = Range{Min: 0, Max: 1_000_000, Unit: "calls per second", Zero: "no bound"}
	// QueueSize: one channel slot per span, allocated at start.
	QueueSize = Range{Min: 1, Max: 1 << 20, Unit: "spans"}
	// BatchSize: ≈ 4 MiB of spans, the default gRPC message limit of
	// collectors (a batch is also never larger than the queue).
	BatchSize  = Range{Min: 1, Max: 16384, Unit: "spans"}
	BatchDelay = Range{Min: int64(time.Millisecond), Max: int64(time.Minute), Duration: true}
	// OTLPTimeout is per export, retries included.
	OTLPTimeout   = Range{Min: int64(time.Millisecond), Max: int64(5 * time.Minute), Duration: true}
	LatencyBudget = Range{Min: 0, Max: int64(time.Hour), Duration: true, Zero: "none"}
	// MaxTraces: exported traces per second per service (a token bucket).
	MaxTraces = Range{Min: 0, Max: 1_000_000, Unit: "traces per second", Zero: "no cap"}
	// SnapshotDuration and Top are tracerd snapshot's (flags, and the
	// control socket's requests).
	SnapshotDuration = Range{Min: int64(time.Millisecond), Max: int64(24 * time.Hour), Duration: true}
	Top              = Range{Min: 0, Max: 1000, Unit: "requests"}
	// FindingMinLost and FindingMinShare: a cause is named when it cost
	// a request this much and this share of its duration (a minute is
	// past any request worth a per-request finding).
	FindingMinLost  = Range{Min: 0, Max: int64(time.Minute), Duration: true, Zero: "any"}
	FindingMinShare = Range{Min: 0, Max: 100, Unit: "percent", Zero: "any"}
)

// SampleRatio is the only fractional setting: [0, 1], NaN refused.
const SampleRatioRange = "0 to 1"

func (r Range) format(v int64) string {
	if r.Duration {
		return shortDuration(time.Duration(v))
	}
	return strconv.FormatInt(v, 10)
}

// shortDuration is d without zero minutes and seconds: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// String is the range as docs/service.md shows it: "1 to 1048576 spans".
func (r Range) String() string {
	s := r.format(r.Min) + " to " + r.format(r.Max)
	if r.Unit != "" {
		s += " " + r.Unit
	}
	if r.Zero != "" && r.Min == 0 {
		s += " (0: " + r.Zero + ")"
	}
	return s
}

// Check says whether v is in the range.
func (r Range) Check(v int64) error {
	if v < r.Min || v > r.Max {
		return fmt.Errorf("%s is out of range: want %s", r.format(v), r)
	}
	return nil
}

// CheckUint is Check for unsigned values (no wrap into negatives).
func (r Range) CheckUint(v uint64) error {
	if v > math.MaxInt64 {
		return fmt.Errorf("%d is out of range: want %s", v, r)
	}
	return r.Check(int64(v))
}

// ParseCount parses a whole number and checks it.
func (r Range) ParseCount(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is out of range: want %s", s, r)
		}
		return 0, fmt.Errorf("%q is not a whole number: want %s", s, r)
	}
	return v, r.Check(v)
}

// ParseDuration parses a Go duration ("0" too) and checks it.
func (r Range) ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 500ms or 2s): want %s", s, r)
	}
	return d, r.Check(int64(d))
}

// CheckString parses s as the range's kind (a duration or a whole
// number) and checks it.
func (r Range) CheckString(s string) error {
	var err error
	if r.Duration {
		_, err = r.ParseDuration(s)
	} else {
		_, err = r.ParseCount(s)
	}
	return err
}

// ParseSampleRatio parses a ratio in [0, 1]; NaN and infinities are refused.
func ParseSampleRatio(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number: want a ratio from %s", s, SampleRatioRange)
	}
	if err := CheckSampleRatio(v); err != nil {
		return 0, err
	}
	return v, nil
}

// CheckSampleRatio: 0 ≤ v ≤ 1 (false for NaN).
func CheckSampleRatio(v float64) error {
	if !(v >= 0 && v <= 1) {
		return fmt.Errorf("%v is out of range: want a ratio from %s", v, SampleRatioRange)
	}
	return nil
}

// CheckRingBufferBytes: in range, a power of two and a multiple of the page size.
func CheckRingBufferBytes(v uint64) error {
	if page := uint64(os.Getpagesize()); v == 0 || v&(v-1) != 0 || v%page != 0 {
		return fmt.Errorf("%d must be a power of two and a multiple of the page size (%d), from %s", v, page, RingBufferBytes)
	}
	return RingBufferBytes.CheckUint(v)
}

// CheckSkipHook: name is a hook of loader.Hooks that may be skipped.
func CheckSkipHook(name string) error {
	i := slices.IndexFunc(loader.Hooks, func(h loader.Hook) bool { return h.Name == name })
	if i < 0 {
		return fmt.Errorf("no hook named %q: optional hooks are %s", name, strings.Join(OptionalHooks(), ", "))
	}
	if loader.Hooks[i].Required {
		return fmt.Errorf("hook %s is required and cannot be skipped: optional hooks are %s", name, strings.Join(OptionalHooks(), ", "))
	}
	return nil
}

// OptionalHooks are the hooks skip_hooks may name.
func OptionalHooks() []string {
	var out []string
	for _, h := range loader.Hooks {
		if !h.Required {
			out = append(out, h.Name)
		}
	}
	return out
}

// CheckListenAddr: host:port with a port from 1 to 65535.
func CheckListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want host:port or off", a)
	}
	p, err := strconv.ParseUint(port, 10, 64)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %s is out of range: want host:port with a port from 1 to 65535, or off", a, port)
	}
	return nil
}
