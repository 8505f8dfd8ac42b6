// Package findings names the cause of a slow request from the evidence
// its record carries (phases, TCP facts, Go spans) and from what the
// host showed around it (cgroup CPU quota, TCP counters, Go settings:
// Sampler). A finding is attached when its cause cost the request at
// least MinLost and MinSharePct of its duration. Each rule claims only
// what its evidence proves; where the evidence cannot tell, the finding
// is absent rather than wrong (docs/findings.md says, code by code, what
// is claimed).
package findings

import (
	"slices"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Config holds the thresholds.
type Config struct {
	MinLost     time.Duration // a cause must cost at least this
	MinSharePct int           // and at least this percentage of the request's duration
}

// DefaultConfig: 1 ms and 20 %.
func DefaultConfig() Config { return Config{MinLost: time.Millisecond, MinSharePct: 20} }

// Analyzer attaches findings to requests. Add is called from one
// goroutine (the pipeline's).
type Analyzer struct {
	minLost  int64
	minShare int64
	s        *Sampler // nil: no host context
	calls    lastCalls
	tls      tlsClients
}

// New makes an analyzer; s (may be nil) gives the host's context.
func New(cfg Config, s *Sampler) *Analyzer {
	return &Analyzer{minLost: int64(cfg.MinLost), minShare: int64(cfg.MinSharePct), s: s}
}

// Add sets r.Findings (it makes an Analyzer a pipeline sink; it runs
// before the others).
func (a *Analyzer) Add(r *correlate.Request) error {
	r.Findings = a.Analyze(r)
	return nil
}

// candidate is a cause that passed its rule: its evidence is built only
// then.
type candidate struct {
	code  correlate.FindingCode
	phase correlate.Phase
	lost  int64
	aux   int64 // tls_full_handshake: since the client's previous handshake
}

// slowHandlerShare: the handler's own time must be at least half the
// request's ("dominates").
const slowHandlerShare = 50

// Analyze returns r's findings, largest loss first (nil when none: no
// allocation for a request without findings).
func (a *Analyzer) Analyze(r *correlate.Request) []correlate.Finding {
	// Every handshake is remembered, whatever its request's fate.
	sinceTLS := a.tls.seen(r)
	// A request cut by the stop or never answered has no whole
	// duration to weigh its causes against.
	if !r.Answered || r.EndReason == correlate.EndFlush || r.DurationNs <= 0 {
		return nil
	}
	if r.Direction == correlate.DirClient {
		return a.analyzeCall(r)
	}
	// Every loss is at most one phase: a request whose phases are all
	// under MinLost (most of them) has nothing to weigh. (The measured
	// ones only, on the request: a copy of its phases costs more than
	// the look.)
	if a.minLost > 0 && !anyPhaseFrom(&r.Phases, a.minLost) {
		return nil
	}
	ps := r.Phases
	var cands [correlate.NumFindingCodes]candidate
	n := 0
	dur := r.DurationNs
	// ok weighs a loss against the time it is part of.
	ok := func(lost, of int64) bool {
		return lost > 0 && lost >= a.minLost && lost*100 >= a.minShare*of
	}
	add := func(code correlate.FindingCode, p correlate.Phase, lost, of int64) {
		if ok(lost, of) {
			cands[n] = candidate{code: code, phase: p, lost: lost}
			n++
		}
	}
	get := func(p correlate.Phase) int64 { v, _ := ps.Get(p); return v }

	add(correlate.AcceptBacklog, correlate.AcceptQueue, get(correlate.AcceptQueue), dur)
	add(correlate.LateRead, correlate.RecvQueue, get(correlate.RecvQueue), dur)
	// softirq lies before the request's first byte was queued: weighed
	// against the duration with it.
	add(correlate.SoftirqDelay, correlate.Softirq, get(correlate.Softirq), dur+get(correlate.Softirq))
	add(correlate.CPUContention, correlate.Runqueue, get(correlate.Runqueue), dur)
	add(correlate.CFSThrottled, correlate.CFSThrottle, get(correlate.CFSThrottle), dur)
	add(correlate.GCPause, correlate.GCSTW, get(correlate.GCSTW), dur)
	if ps.Has(correlate.Serialize) {
		add(correlate.Serialization, correlate.Serialize, serializationLost(r), dur)
	}
	tcpCause(r, add)
	if w := r.TCP.OwnWindow; w.Zero > 0 && r.EndReason != correlate.EndStream {
		// Where most of the closed time lay: before the app's first read
		// (the request's bytes queued, unread) or while it handled it.
		p := correlate.App
		if w.UnreadNs > w.ReadingNs {
			p = correlate.RecvQueue
		}
		add(correlate.OwnReceiveWindow, p, w.UnreadNs+w.ReadingNs, dur)
	}
	if own, yes := handlerOwn(r); yes && own*100 >= slowHandlerShare*dur && ok(own, dur) && a.notSaturated(r.PID) {
		add(correlate.SlowHandler, correlate.App, own, dur)
	}
	if lost, yes := tlsFullHandshake(r, sinceTLS); yes {
		// The request starts at the ClientHello: its duration holds
		// the handshake.
		add(correlate.TLSFullHandshake, correlate.TLSHandshake, lost, dur)
		if n > 0 && cands[n-1].code == correlate.TLSFullHandshake {
			cands[n-1].aux = sinceTLS
		}
	}
	if n == 0 {
		return nil
	}
	c := cands[:n]
	// Largest loss first; ties in code order (stable).
	slices.SortStableFunc(c, func(x, y candidate) int {
		switch {
		case x.lost > y.lost:
			return -1
		case x.lost < y.lost:
			return 1
		}
		return 0
	})
	var snap *Snapshot
	if a.s != nil {
		snap = a.s.Load()
	}
	out := make([]correlate.Finding, n)
	ev := make([]correlate.Evidence, 0, 8*n)
	for i, cd := range c {
		start := len(ev)
		ev = evidence(ev, cd, r, snap, a.s)
		out[i] = correlate.Finding{Code: cd.code, Phase: cd.phase, LostNs: cd.lost, Evidence: ev[start:len(ev):len(ev)]}
	}
	return out
}

// anyPhaseFrom says whether a measured phase lasted at least min.
func anyPhaseFrom(ps *correlate.Phases, min int64) bool {
	for m := ps.Measured(); m != 0; m = m.Rest() {
		if ps.NS(m.First()) >= min {
			return true
		}
	}
	return false
}

// tcpCause names what held the answer's last bytes (send_queue), or its
// acknowledgement: a closed peer window, retransmissions, or Nagle
// waiting for a delayed ACK. At most one of them: each excludes the
// others' evidence.
func tcpCause(r *correlate.Request, add func(correlate.FindingCode, correlate.Phase, int64, int64)) {
	if r.EndReason == correlate.EndStream {
		return // seen by the Go probes alone: no TCP facts
	}
	ps, t, dur := r.Phases, r.TCP, r.DurationNs
	sq, hasSQ := ps.Get(correlate.SendQueue)
	aw, hasAW := ps.Get(correlate.AckWait)
	// A black hole's shape outranks a closed peer window: while the lost
	// segment is missing, the peer holds the segments after it out of
	// order, and its window may close with them (measured: the 256 KiB
	// answer of the netns test, in 2 runs of 3).
	blackhole := t.Retransmits > 0 && hasAW && pmtuBlackhole(&t.Retrans)
	switch {
	case t.ZeroWindow > 0 && hasSQ && !blackhole:
		add(correlate.PeerZeroWindow, correlate.SendQueue, sq, dur)
	case t.Retransmits > 0:
		// The answer's delivery beyond one round trip: waiting to leave
		// (send_queue), or for its acknowledgement (ack_wait, past the
		// request's end: weighed with it).
		rtt := int64(0)
		if t.Valid {
			rtt = int64(t.SrttUs) * 1000
		}
		code := correlate.Retransmits
		if blackhole {
			code = correlate.PMTUBlackhole
		}
		if hasAW && aw-rtt > sq {
			add(code, correlate.AckWait, aw-rtt, dur+aw)
		} else if hasSQ {
			add(code, correlate.SendQueue, sq, dur)
		}
	case t.Nagle && t.Valid && hasSQ && nagleWait(sq, t.SrttUs):
		add(correlate.NagleDelayedAck, correlate.SendQueue, sq, dur)
	}
}

// minBlackholeRepeats: a segment lost this many times in a row was
// resent by the retransmission timer, each time after a longer wait.
const minBlackholeRepeats = 3

// pmtuBlackhole says whether the retransmissions were those of a path
// that drops segments above some size and hides it (no ICMP
// fragmentation-needed came back): one segment was retransmitted at
// least minBlackholeRepeats times in a row, then TCP lowered its MSS
// below that segment's size (tcp_mtu_probing's black-hole detection,
// after tcp_retries1 timeouts) while the path MTU it knew stayed the
// same (an ICMP that lowers it is path MTU discovery working). The
// caller also wants the answer acknowledged: smaller segments passed.
func pmtuBlackhole(rs *correlate.RetransShape) bool {
	return rs.Repeats >= minBlackholeRepeats && rs.MSSLast > 0 && rs.MSSLast < rs.MSSFirst &&
		rs.RepeatSeg > rs.MSSLast && rs.PMTULast == rs.PMTUFirst
}

// maxDelayedAck is the longest a peer may delay an ACK (RFC 1122: 500 ms;
// Linux 200 ms).
const maxDelayedAck = 500 * time.Millisecond

// nagleWait says whether a send_queue wait fits Nagle holding the last
// write until the peer acknowledged what was in flight: no longer than a
// round trip plus the longest delayed ACK. (srtt is no lower bound: the
// delayed ACKs themselves inflate it.)
func nagleWait(sq int64, srttUs uint32) bool {
	return sq <= int64(srttUs)*1000+int64(maxDelayedAck)
}

// maxHandlerCPUShare: a process using more of its CPUs than this may
// keep a handler waiting for a CPU inside it (goroutines for a Go P,
// requests for a worker thread), a wait the kernel's run queue does not
// show: its handlers' own time is then not named slow_handler.
const maxHandlerCPUShare = 0.75

// notSaturated says whether the last sample saw pid use less than
// maxHandlerCPUShare of its CPUs; false when it does not know (the
// process is watched from the next sample on).
func (a *Analyzer) notSaturated(pid uint32) bool {
	if a.s == nil {
		return false
	}
	p := a.s.Load().Procs[pid]
	if p == nil {
		a.s.WatchProc(pid)
		return false
	}
	share, known := p.CPUShare()
	return known && share < maxHandlerCPUShare
}

// bodiless are the HTTP methods whose request is its head: the app does
// not wait for the client's upload while it handles them.
var bodiless = map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "TRACE": true}

// handlerOwn is the time from reading the request to writing the first
// byte of the answer, less what the nested phases explain (scheduling,
// throttling, GC, serialization: totals over the whole app phase, so
// this errs low), when that is the handler's own time: the scheduler's
// phases were measured (else a wait for a CPU could hide in it), and the
// request has no body (else the app may have been waiting for the
// client's upload). The time after the first write is left out: a write
// blocked on a slow peer is not the handler's.
func handlerOwn(r *correlate.Request) (int64, bool) {
	ps := r.Phases
	if r.FirstWriteNs <= 0 || !ps.Has(correlate.Runqueue) || !ps.Has(correlate.CFSThrottle) {
		return 0, false
	}
	if r.HTTP == nil || !bodiless[r.HTTP.Method] {
		return 0, false
	}
	own := r.FirstWriteNs
	if app, ok := ps.Get(correlate.App); ok {
		own = min(own, app)
	}
	for _, p := range []correlate.Phase{correlate.Runqueue, correlate.CFSThrottle, correlate.GCSTW, correlate.Serialize} {
		v, _ := ps.Get(p)
		own -= v
	}
	return own, own > 0
}

// isGCSpan tells the GC pauses among the Go spans.
func isGCSpan(name string) bool { return strings.HasPrefix(name, "runtime.GC ") }

// isSerializationSpan tells the serialization calls among the Go spans.
func isSerializationSpan(name string) bool {
	return strings.HasPrefix(name, "encoding/json.") || strings.HasPrefix(name, "google.golang.org/protobuf/proto.")
}

// serializationLost is the serialize phase less the GC pauses that fell
// inside serialization calls (gc_pause claims those).
func serializationLost(r *correlate.Request) int64 {
	ser, _ := r.Phases.Get(correlate.Serialize)
	var gcIn int64
	for _, g := range r.Spans {
		if !isGCSpan(g.Name) {
			continue
		}
		gs, ge := g.StartUnixNano, g.StartUnixNano+g.DurationNs
		// The longest overlap with one call: calls nest (a Marshal in an
		// Encode), and a pause counts once.
		var most int64
		for _, s := range r.Spans {
			if !isSerializationSpan(s.Name) {
				continue
			}
			most = max(most, min(ge, s.StartUnixNano+s.DurationNs)-max(gs, s.StartUnixNano))
		}
		gcIn += most
	}
	return ser - gcIn
}
