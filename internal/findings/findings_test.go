package findings

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

const ms = int64(time.Millisecond)

// req is an answered GET of dur with the scheduler's phases measured
// (0) and no TCP trouble.
func req(dur int64, phases map[correlate.Phase]int64) *correlate.Request {
	r := &correlate.Request{
		StartUnixNano: 1e18, EndUnixNano: 1e18 + dur, DurationNs: dur, PID: 42, Service: "api",
		Conn:      correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Peer: netip.MustParseAddrPort("127.0.0.1:50000")},
		HTTP:      &correlate.HTTP{Method: "GET", Target: "/x"},
		TCP:       correlate.TCP{Valid: true, SrttUs: 50, SndCwnd: 10},
		EndReason: correlate.EndNextRequest, Answered: true,
	}
	r.Phases.Set(correlate.Runqueue, 0)
	r.Phases.Set(correlate.CFSThrottle, 0)
	for p, v := range phases {
		r.Phases.Set(p, v)
	}
	return r
}

func codes(fs []correlate.Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Code.String())
	}
	return strings.Join(s, ",")
}

var def = New(DefaultConfig(), nil)

// TestRuleThresholds: each phase rule at its thresholds (≥ 1 ms and
// ≥ 20 % of the duration) and just under each.
func TestRuleThresholds(t *testing.T) {
	for _, c := range []struct {
		code  correlate.FindingCode
		phase correlate.Phase
	}{
		{correlate.AcceptBacklog, correlate.AcceptQueue},
		{correlate.LateRead, correlate.RecvQueue},
		{correlate.CPUContention, correlate.Runqueue},
		{correlate.CFSThrottled, correlate.CFSThrottle},
		{correlate.GCPause, correlate.GCSTW},
		{correlate.Serialization, correlate.Serialize},
	} {
		// 1 ms of a 5 ms request: exactly both thresholds.
		r := req(5*ms, map[correlate.Phase]int64{c.phase: ms, correlate.App: 4 * ms})
		r.FirstWriteNs = ms / 10
		fs := def.Analyze(r)
		if len(fs) != 1 || fs[0].Code != c.code || fs[0].Phase != c.phase || fs[0].LostNs != ms {
			t.Errorf("%s at the thresholds: %+v", c.code, fs)
		}
		// 1 ms of a 5.001 ms request: under 20 %.
		r = req(5*ms+1000, map[correlate.Phase]int64{c.phase: ms, correlate.App: 4 * ms})
		if fs := def.Analyze(r); len(fs) != 0 {
			t.Errorf("%s under 20 %%: %s", c.code, codes(fs))
		}
		// 0.999 ms of 2 ms: under 1 ms.
		r = req(2*ms, map[correlate.Phase]int64{c.phase: ms - 1000, correlate.App: ms})
		if fs := def.Analyze(r); len(fs) != 0 {
			t.Errorf("%s under 1 ms: %s", c.code, codes(fs))
		}
	}
}

// TestConfigurable: other thresholds apply.
func TestConfigurable(t *testing.T) {
	r := req(100*ms, map[correlate.Phase]int64{correlate.AcceptQueue: 10 * ms, correlate.App: ms})
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("10 %% found at 20 %%: %s", codes(fs))
	}
	if fs := New(Config{MinLost: time.Millisecond, MinSharePct: 10}, nil).Analyze(r); codes(fs) != "accept_backlog" {
		t.Errorf("10 %% at 10 %%: %s", codes(fs))
	}
	if fs := New(Config{MinLost: 11 * time.Millisecond, MinSharePct: 0}, nil).Analyze(r); len(fs) != 0 {
		t.Errorf("10 ms at 11 ms: %s", codes(fs))
	}
}

// TestQuietRequest: a fast request has no finding, and costs no
// allocation.
func TestQuietRequest(t *testing.T) {
	r := req(300_000, map[correlate.Phase]int64{correlate.AcceptQueue: 20_000, correlate.RecvQueue: 10_000,
		correlate.App: 200_000, correlate.SendQueue: 0, correlate.AckWait: 40_000})
	r.TCP.Nagle = true
	r.FirstWriteNs = 190_000
	if fs := def.Analyze(r); fs != nil {
		t.Errorf("quiet request: %s", codes(fs))
	}
	if n := testing.AllocsPerRun(100, func() { def.Add(r) }); n != 0 {
		t.Errorf("%v allocations for a request without findings", n)
	}
}

// TestOrderAndTies: largest loss first; equal losses in code order.
func TestOrderAndTies(t *testing.T) {
	r := req(100*ms, map[correlate.Phase]int64{correlate.AcceptQueue: 30 * ms, correlate.RecvQueue: 30 * ms,
		correlate.App: 40 * ms, correlate.CFSThrottle: 35 * ms})
	if got := codes(def.Analyze(r)); got != "cfs_throttled,accept_backlog,late_read" {
		t.Errorf("order: %s", got)
	}
}

// TestIncompleteRequests: unanswered, flushed or zero-length requests
// have no whole duration to weigh causes against.
func TestIncompleteRequests(t *testing.T) {
	for name, mod := range map[string]func(*correlate.Request){
		"unanswered": func(r *correlate.Request) { r.Answered = false },
		"flush":      func(r *correlate.Request) { r.EndReason = correlate.EndFlush },
		"no length":  func(r *correlate.Request) { r.DurationNs = 0 },
	} {
		r := req(10*ms, map[correlate.Phase]int64{correlate.AcceptQueue: 9 * ms})
		mod(r)
		if fs := def.Analyze(r); fs != nil {
			t.Errorf("%s: %s", name, codes(fs))
		}
	}
}

// TestSoftirqOutsideDuration: softirq happened before the request's
// first byte was queued, so it is weighed against the duration with it.
func TestSoftirqOutsideDuration(t *testing.T) {
	// 2 ms of softirq before an 8 ms request: 20 % of 10 ms.
	r := req(8*ms, map[correlate.Phase]int64{correlate.Softirq: 2 * ms, correlate.App: 8 * ms})
	if fs := def.Analyze(r); codes(fs) != "softirq_delay" || fs[0].LostNs != 2*ms {
		t.Errorf("2 of 10 ms: %+v", fs)
	}
	r = req(8*ms+1000, map[correlate.Phase]int64{correlate.Softirq: 2 * ms, correlate.App: 8 * ms})
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("under 20 %% with the softirq: %s", codes(fs))
	}
}

// TestSendQueueCauses: a closed peer window, retransmissions or Nagle
// explain send_queue; one at a time, and Nagle only when the wait fits
// a delayed ACK.
func TestSendQueueCauses(t *testing.T) {
	base := func() *correlate.Request {
		return req(50*ms, map[correlate.Phase]int64{correlate.App: 5 * ms, correlate.SendQueue: 40 * ms, correlate.AckWait: ms})
	}
	r := base()
	r.TCP.ZeroWindow, r.TCP.Retransmits, r.TCP.Nagle = 2, 3, true
	if fs := def.Analyze(r); codes(fs) != "peer_zero_window" || fs[0].LostNs != 40*ms || fs[0].Phase != correlate.SendQueue {
		t.Errorf("zero window: %+v", fs)
	} else if e, ok := fs[0].Lookup("zero_window"); !ok || e.Int != 2 {
		t.Errorf("zero window evidence: %+v", fs[0].Evidence)
	}

	r = base()
	r.TCP.Retransmits, r.TCP.Nagle = 3, true
	if fs := def.Analyze(r); codes(fs) != "retransmits" || fs[0].Phase != correlate.SendQueue || fs[0].LostNs != 40*ms {
		t.Errorf("retransmits: %+v", fs)
	}
	// A lost last segment: the answer left at once and its ACK came an
	// RTO later; weighed against the duration with ack_wait.
	r = req(5*ms, map[correlate.Phase]int64{correlate.App: 5 * ms, correlate.SendQueue: 0, correlate.AckWait: 205 * ms})
	r.TCP.Retransmits = 1
	if fs := def.Analyze(r); codes(fs) != "retransmits" || fs[0].Phase != correlate.AckWait || fs[0].LostNs != 205*ms-50_000 {
		t.Errorf("tail loss: %+v", fs)
	}

	r = base()
	r.TCP.Nagle = true
	if fs := def.Analyze(r); codes(fs) != "nagle_delayed_ack" || fs[0].LostNs != 40*ms {
		t.Errorf("nagle: %+v", fs)
	}
	r.TCP.Nagle = false
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("send_queue with TCP_NODELAY and nothing else: %s", codes(fs))
	}
	// The delayed ACKs inflate srtt: a wait as long is still Nagle's.
	r = base()
	r.TCP.Nagle, r.TCP.SrttUs = true, 40_000
	if fs := def.Analyze(r); codes(fs) != "nagle_delayed_ack" {
		t.Errorf("nagle with srtt inflated by delayed ACKs: %s", codes(fs))
	}
	// Longer than any delayed ACK: not Nagle alone.
	r = req(700*ms, map[correlate.Phase]int64{correlate.App: 5 * ms, correlate.SendQueue: 690 * ms})
	r.TCP.Nagle = true
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("690 ms held: %s", codes(fs))
	}
	// Without TCP facts (no segment from the peer) nothing tells.
	r = base()
	r.TCP.Nagle, r.TCP.Valid = true, false
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("nagle without srtt: %s", codes(fs))
	}
	// Go-only records carry no TCP facts.
	r = base()
	r.TCP.ZeroWindow, r.EndReason = 1, correlate.EndStream
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("stream record: %s", codes(fs))
	}
}

// TestPMTUBlackhole: retransmissions shaped like a path MTU black hole
// (one full-size segment resent by the timer again and again, then the
// MSS lowered with the path MTU unchanged) are pmtu_blackhole, in place
// of retransmits; each missing part of the shape leaves retransmits.
func TestPMTUBlackhole(t *testing.T) {
	hole := func() *correlate.Request {
		r := req(5*ms, map[correlate.Phase]int64{correlate.App: ms, correlate.SendQueue: ms, correlate.AckWait: 3000 * ms})
		r.TCP.Retransmits = 26
		r.TCP.Retrans = correlate.RetransShape{MaxSeg: 1448, Repeats: 4, RepeatSeg: 1448,
			MSSFirst: 1448, MSSLast: 1012, PMTUFirst: 1500, PMTULast: 1500}
		return r
	}
	fs := def.Analyze(hole())
	if codes(fs) != "pmtu_blackhole" || fs[0].Phase != correlate.AckWait || fs[0].LostNs != 3000*ms-50_000 {
		t.Fatalf("black hole: %+v", fs)
	}
	for k, want := range map[string]int64{"retransmits": 26, "lost_segment_bytes": 1448, "lost_segment_retransmits": 4,
		"largest_retransmit_bytes": 1448, "mss_before": 1448, "mss_after": 1012, "path_mtu": 1500, "ack_wait_ns": 3000 * ms} {
		if e, ok := fs[0].Lookup(k); !ok || e.Int != want {
			t.Errorf("evidence %s: %+v, want %d", k, e, want)
		}
	}
	// The peer's window closed behind the missing segment: still the hole.
	zw := hole()
	zw.TCP.ZeroWindow = 1
	zw.Phases.Set(correlate.SendQueue, 3000*ms)
	zw.Phases.Set(correlate.AckWait, 10*ms)
	if fs := def.Analyze(zw); codes(fs) != "pmtu_blackhole" || fs[0].Phase != correlate.SendQueue {
		t.Errorf("black hole with a closed peer window: %+v", fs)
	}
	for name, spoil := range map[string]func(r *correlate.Request){
		"lost twice only":        func(r *correlate.Request) { r.TCP.Retrans.Repeats = 2 },
		"MSS never lowered":      func(r *correlate.Request) { r.TCP.Retrans.MSSLast = 1448 },
		"ICMP lowered the PMTU":  func(r *correlate.Request) { r.TCP.Retrans.PMTULast = 1400 },
		"lost segment was small": func(r *correlate.Request) { r.TCP.Retrans.RepeatSeg = 900 },
		"answer never acknowledged": func(r *correlate.Request) {
			r.Phases = correlate.Phases{}
			r.Phases.Set(correlate.App, ms)
			r.Phases.Set(correlate.SendQueue, 4*ms)
		},
	} {
		r := hole()
		spoil(r)
		if fs := def.Analyze(r); findingOf(fs, correlate.PMTUBlackhole) {
			t.Errorf("%s: %s", name, codes(fs))
		}
	}
}

// TestOwnReceiveWindow: time the server's advertised window stayed
// closed is own_receive_window, in the phase where most of it lay; a
// POST's app time is then not slow_handler's.
func TestOwnReceiveWindow(t *testing.T) {
	r := req(900*ms, map[correlate.Phase]int64{correlate.RecvQueue: ms, correlate.App: 890 * ms})
	r.HTTP.Method = "POST"
	r.TCP.OwnWindow = correlate.OwnWindow{Zero: 2, UnreadNs: 5 * ms, ReadingNs: 790 * ms}
	fs := def.Analyze(r)
	if codes(fs) != "own_receive_window" || fs[0].Phase != correlate.App || fs[0].LostNs != 795*ms {
		t.Fatalf("slow POST: %+v", fs)
	}
	for k, want := range map[string]int64{"zero_window_adv": 2, "window_closed_ns": 795 * ms, "closed_before_read_ns": 5 * ms, "closed_while_reading_ns": 790 * ms} {
		if e, ok := fs[0].Lookup(k); !ok || e.Int != want {
			t.Errorf("evidence %s: %+v, want %d", k, e, want)
		}
	}
	r.TCP.OwnWindow = correlate.OwnWindow{Zero: 1, UnreadNs: 700 * ms, ReadingNs: ms}
	if fs := def.Analyze(r); codes(fs) != "own_receive_window" || fs[0].Phase != correlate.RecvQueue {
		t.Errorf("closed before the read: %+v", fs)
	}
	// Under the thresholds, or no zero window advertised: none.
	r.TCP.OwnWindow = correlate.OwnWindow{Zero: 1, UnreadNs: ms / 2}
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("0.5 ms closed: %s", codes(fs))
	}
	r.TCP.OwnWindow = correlate.OwnWindow{ReadingNs: 500 * ms}
	if fs := def.Analyze(r); len(fs) != 0 {
		t.Errorf("no zero window advertised: %s", codes(fs))
	}
}

// TestAcceptQueueEvidence: the listener's queue at accept and its limit
// are the record's own evidence.
func TestAcceptQueueEvidence(t *testing.T) {
	r := req(10*ms, map[correlate.Phase]int64{correlate.AcceptQueue: 8 * ms, correlate.App: ms})
	r.TCP.AcceptQueueLen, r.TCP.AcceptQueueMax = 2, 1
	fs := def.Analyze(r)
	if codes(fs) != "accept_backlog" {
		t.Fatalf("%+v", fs)
	}
	if e, ok := fs[0].Lookup("queue_at_accept"); !ok || e.Int != 2 {
		t.Errorf("queue_at_accept: %+v", fs[0].Evidence)
	}
	if e, ok := fs[0].Lookup("queue_limit"); !ok || e.Int != 1 {
		t.Errorf("queue_limit: %+v", fs[0].Evidence)
	}
}

func findingOf(fs []correlate.Finding, code correlate.FindingCode) bool {
	for _, f := range fs {
		if f.Code == code {
			return true
		}
	}
	return false
}

// withProc is an analyzer whose last sample saw process 42 use cpuPct
// of one CPU, of 2 allowed.
func withProc(cpuPct float64) (*Analyzer, *Sampler) {
	s := newSampler("/nonexistent")
	s.snap.Store(&Snapshot{At: time.Unix(0, 1e18), Procs: map[uint32]*Proc{42: {CPUsAllowed: 2, CPUPct: cpuPct, HasCPU: true}}})
	return New(DefaultConfig(), s), s
}

// TestSlowHandler: the handler's own time before its first write, when
// it dominates, nothing nested explains it, the request has no body and
// the process had CPU to spare.
func TestSlowHandler(t *testing.T) {
	mk := func() *correlate.Request {
		r := req(100*ms, map[correlate.Phase]int64{correlate.RecvQueue: ms, correlate.App: 99 * ms,
			correlate.Runqueue: 10 * ms, correlate.GCSTW: 5 * ms, correlate.SendQueue: 0})
		r.FirstWriteNs = 98 * ms
		return r
	}
	a, _ := withProc(30) // 15 % of its 2 CPUs
	fs := a.Analyze(mk())
	if codes(fs) != "slow_handler" || fs[0].LostNs != 83*ms || fs[0].Phase != correlate.App {
		t.Fatalf("slow handler: %+v", fs)
	}
	if e, _ := fs[0].Lookup("process_cpu_share_pct"); e.Float != 15 {
		t.Errorf("process_cpu_share_pct %+v", e)
	}
	// Under half of the request once nested phases are taken off.
	r := mk()
	r.Phases.Set(correlate.Runqueue, 45*ms)
	if got := codes(a.Analyze(r)); got != "cpu_contention" {
		t.Errorf("runqueue explains it: %s", got)
	}
	for name, mod := range map[string]func(*correlate.Request){
		"POST (may wait for the upload)": func(r *correlate.Request) { r.HTTP.Method = "POST" },
		"not HTTP":                       func(r *correlate.Request) { r.HTTP = nil },
		"runqueue not measured":          func(r *correlate.Request) { r.Phases.Delete(correlate.Runqueue) },
		"no first write seen":            func(r *correlate.Request) { r.FirstWriteNs = 0 },
		// After the first write the app may block on a slow peer.
		"answer written early": func(r *correlate.Request) { r.FirstWriteNs = 20 * ms },
	} {
		r := mk()
		mod(r)
		if fs := a.Analyze(r); len(fs) != 0 {
			t.Errorf("%s: %s", name, codes(fs))
		}
	}
	// A process using its CPUs may keep the handler waiting for one
	// (a goroutine for a P): not named, nor when it is not known.
	busy, _ := withProc(160) // 80 % of 2 CPUs
	if fs := busy.Analyze(mk()); len(fs) != 0 {
		t.Errorf("saturated process: %s", codes(fs))
	}
	if fs := def.Analyze(mk()); len(fs) != 0 {
		t.Errorf("no host sample: %s", codes(fs))
	}
	unknown, s := withProc(0)
	s.snap.Store(&Snapshot{})
	if fs := unknown.Analyze(mk()); len(fs) != 0 || !s.pids[42] {
		t.Errorf("process not sampled yet: %s, watched %v", codes(fs), s.pids)
	}
	// GOMAXPROCS=1 halves what the process may use: 80 % of one CPU is
	// 40 % of 2 allowed, 80 % of 1.
	a, s = withProc(80)
	s.Load().Procs[42].Env.GOMAXPROCS = "1"
	if share, _ := s.Load().Procs[42].CPUShare(); share != 0.8 {
		t.Errorf("share with GOMAXPROCS=1: %v", share)
	}
	if fs := a.Analyze(mk()); len(fs) != 0 {
		t.Errorf("GOMAXPROCS=1 at 80 %%: %s", codes(fs))
	}
}

// TestSerializationLessGC: GC pauses inside serialization calls are the
// GC's (counted once even when calls nest).
func TestSerializationLessGC(t *testing.T) {
	r := req(20*ms, map[correlate.Phase]int64{correlate.App: 20 * ms, correlate.Serialize: 12 * ms, correlate.GCSTW: 3 * ms})
	t0 := r.StartUnixNano
	r.Spans = []correlate.Span{
		{Name: "encoding/json.(*Encoder).Encode", StartUnixNano: t0 + 2*ms, DurationNs: 12 * ms},
		{Name: "encoding/json.Marshal", StartUnixNano: t0 + 3*ms, DurationNs: 10 * ms},
		{Name: "runtime.GC stop-the-world (mark termination)", StartUnixNano: t0 + 4*ms, DurationNs: 2 * ms},
		{Name: "runtime.GC stop-the-world (sweep termination)", StartUnixNano: t0 + 15*ms, DurationNs: ms},
	}
	fs := def.Analyze(r)
	if codes(fs) != "serialization" || fs[0].LostNs != 10*ms {
		t.Fatalf("serialization: %+v", fs)
	}
	for key, want := range map[string]int64{"serialize_ns": 12 * ms, "calls": 2, "longest_call_ns": 12 * ms, "gc_in_calls_ns": 2 * ms} {
		if e, ok := fs[0].Lookup(key); !ok || e.Int != want {
			t.Errorf("%s = %+v, want %d", key, e, want)
		}
	}
	if e, _ := fs[0].Lookup("longest_call"); e.Text != "encoding/json.(*Encoder).Encode" {
		t.Errorf("longest_call %q", e.Text)
	}
	// The pauses on their own: 3 ms of 20 is 15 %.
	r.Phases.Set(correlate.GCSTW, 4*ms)
	fs = def.Analyze(r)
	if codes(fs) != "serialization,gc_pause" {
		t.Fatalf("with 4 ms of GC: %s", codes(fs))
	}
	if e, _ := fs[1].Lookup("pauses"); e.Int != 2 {
		t.Errorf("pauses %+v", e)
	}
	if e, _ := fs[1].Lookup("longest_pause_ns"); e.Int != 2*ms {
		t.Errorf("longest pause %+v", e)
	}
}

// TestContextEvidence: what the last sample showed of the process goes
// into the evidence; a process the sample lacks is watched.
func TestContextEvidence(t *testing.T) {
	s := newSampler(t.TempDir())
	a := New(DefaultConfig(), s)
	r := req(100*ms, map[correlate.Phase]int64{correlate.App: 90 * ms, correlate.CFSThrottle: 60 * ms, correlate.GCSTW: 25 * ms})
	r.Spans = []correlate.Span{{Name: "runtime.GC stop-the-world (mark termination)", StartUnixNano: r.StartUnixNano, DurationNs: 25 * ms}}
	fs := a.Analyze(r)
	if codes(fs) != "cfs_throttled,gc_pause" {
		t.Fatalf("%s", codes(fs))
	}
	if _, ok := fs[0].Lookup("cgroup"); ok {
		t.Errorf("cgroup evidence before any sample: %+v", fs[0].Evidence)
	}
	if !s.pids[42] {
		t.Errorf("pid 42 not watched after a finding that needs its context")
	}
	s.snap.Store(&Snapshot{At: time.Unix(0, r.EndUnixNano-int64(300*time.Millisecond)), Procs: map[uint32]*Proc{42: {
		CPUsAllowed: 2, HasEnv: true, Env: goEnv{GOGC: "off", GOMAXPROCS: "2"},
		Quota: &CgroupQuota{Dir: "/sys/fs/cgroup/x", QuotaUs: 20000, PeriodUs: 100000, HasRates: true, ThrottledNsPerS: 700 * ms, NrThrottledPerS: 9, NrPeriodsPerS: 10},
	}}})
	fs = a.Analyze(r)
	want := map[string]string{"cgroup": "/sys/fs/cgroup/x", "cpu_quota_us": "20000", "cpu_period_us": "100000", "quota_cpus": "0.2",
		"cgroup_throttled_ns_per_s": "700000000", "cgroup_nr_throttled_per_s": "9", "env_GOMAXPROCS": "2", "cpus_allowed": "2", "context_age_ms": "300"}
	for k, v := range want {
		if e, ok := fs[0].Lookup(k); !ok || evString(e) != v {
			t.Errorf("cfs %s = %q, want %q", k, evString(e), v)
		}
	}
	if e, _ := fs[1].Lookup("env_GOGC"); e.Text != "off" {
		t.Errorf("env_GOGC %+v", e)
	}
	if e, _ := fs[1].Lookup("env_GOMEMLIMIT"); e.Text != "unset" {
		t.Errorf("env_GOMEMLIMIT %+v", e)
	}
	if got := Confirm(r, &fs[0]); !strings.Contains(got, "/sys/fs/cgroup/x/cpu.stat") {
		t.Errorf("confirm: %s", got)
	}
}

func evString(e correlate.Evidence) string {
	switch e.Kind {
	case correlate.EvInt:
		return strconv.FormatInt(e.Int, 10)
	case correlate.EvFloat:
		return strconv.FormatFloat(e.Float, 'f', -1, 64)
	}
	return e.Text
}

// The pipeline runs Add on every request: most have no finding.
func BenchmarkAnalyzeQuiet(b *testing.B) {
	r := req(300_000, map[correlate.Phase]int64{correlate.AcceptQueue: 20_000, correlate.RecvQueue: 10_000,
		correlate.App: 200_000, correlate.SendQueue: 0, correlate.AckWait: 40_000})
	r.FirstWriteNs = 190_000
	for b.Loop() {
		def.Add(r)
	}
}

func BenchmarkAnalyzeFinding(b *testing.B) {
	r := req(100*ms, map[correlate.Phase]int64{correlate.App: 90 * ms, correlate.CFSThrottle: 60 * ms})
	for b.Loop() {
		def.Add(r)
	}
}
