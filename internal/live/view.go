package live

import (
	"cmp"
	"slices"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

// View is what top shows at one moment; the control socket sends it as
// JSON.
type View struct {
	UnixNano int64 `json:"unix_nano"`
	// Seconds is the span the rates are over: the window, or less
	// while counting started less than a window ago.
	Seconds float64 `json:"seconds"`
	// Window is the span the view covers once full, in seconds.
	Window   float64 `json:"window_seconds"`
	Requests int64   `json:"requests"` // in the window
	Routes   []Route `json:"routes"`   // busiest first
	// Findings: the causes that cost most in the window, per service,
	// route and code, most time lost first.
	Findings []Finding `json:"findings"`
	Slowest  []Slow    `json:"slowest"` // slowest first
	// Folded counts requests put under route "other" since counting
	// started (more service and route pairs than the limit).
	Folded int64 `json:"folded,omitempty"`
	// Late counts requests that reached tracerd after they left the
	// window (not shown).
	Late int64 `json:"late,omitempty"`
}

// Route is one service and route over the window.
type Route struct {
	Service   string  `json:"service"`
	Route     string  `json:"route"`
	Requests  int64   `json:"requests"`
	PerSecond float64 `json:"per_second"`
	P50Ns     int64   `json:"p50_ns"`
	P99Ns     int64   `json:"p99_ns"`
	MaxNs     int64   `json:"max_ns"`
	// Phases: each phase's share of the route's requests' durations,
	// largest first. The phases inside the duration add up to about 1
	// (the nested ones, runqueue, cfs_throttle, gc_stw and serialize,
	// are parts of app's); then softirq and ack_wait (Outside), which
	// lie before and after it.
	Phases []PhaseShare `json:"phases"`
}

// PhaseShare is a phase's share of a route's time.
type PhaseShare struct {
	Phase   string  `json:"phase"`
	Nested  bool    `json:"nested,omitempty"`
	Outside bool    `json:"outside,omitempty"` // not in the duration: a share on top of it
	Share   float64 `json:"share"`             // 0..1
	MeanNs  int64   `json:"mean_ns"`           // per request of the route
}

// Finding is one cause on one route over the window.
type Finding struct {
	Service  string `json:"service"`
	Route    string `json:"route"`
	Code     string `json:"code"`
	Phase    string `json:"phase"`
	Requests int64  `json:"requests"`
	LostNs   int64  `json:"lost_ns"`
	Confirm  string `json:"confirm"`
	Remedy   string `json:"remedy"`
}

// Slow is one of the slowest recent requests.
type Slow struct {
	Service     string    `json:"service"`
	Route       string    `json:"route"`
	PID         uint32    `json:"pid"`
	Peer        string    `json:"peer"`
	EndUnixNano int64     `json:"end_unix_nano"`
	DurationNs  int64     `json:"duration_ns"`
	Phases      []PhaseNs `json:"phases"` // measured ones, in the phases' order
	Findings    []string  `json:"findings,omitempty"`
}

// PhaseNs is one phase of a request.
type PhaseNs struct {
	Phase  string `json:"phase"`
	Nested bool   `json:"nested,omitempty"`
	Ns     int64  `json:"ns"`
}

// Limits of a view.
const (
	viewFindings = 10
)

// View is the window ending at now.
func (a *Aggregator) View(now time.Time) View {
	nowSec := now.Unix()
	oldest := nowSec - a.window + 1
	in := func(sec int64) bool { return sec >= oldest && sec <= nowSec }

	a.mu.Lock()
	defer a.mu.Unlock()
	v := View{UnixNano: now.UnixNano(), Window: float64(a.window), Folded: a.folded, Late: a.late}
	// The current second counts for its elapsed part.
	v.Seconds = float64(a.window-1) + float64(now.Nanosecond())/1e9
	if since := now.Sub(a.start).Seconds(); since < v.Seconds {
		v.Seconds = max(since, 1)
	}
	var h histogram
	for _, rw := range a.rows {
		var n, durNs int64
		var phases [correlate.NumPhases]int64
		h.reset()
		for i := range rw.secs {
			s := &rw.secs[i]
			if s.n == 0 || !in(s.sec) {
				continue
			}
			n += s.n
			durNs += s.durNs
			h.merge(&s.hist)
			for p := range phases {
				phases[p] += s.phases[p]
			}
			for c := range s.findings {
				fs := &s.findings[c]
				if fs.n == 0 {
					continue
				}
				code := correlate.FindingCode(c)
				k := slices.IndexFunc(v.Findings, func(f Finding) bool {
					return f.Service == rw.service && f.Route == rw.route && f.Code == code.String()
				})
				if k < 0 {
					v.Findings = append(v.Findings, Finding{Service: rw.service, Route: rw.route, Code: code.String(),
						Phase: fs.phase.String(), Confirm: rw.confirm[c], Remedy: code.Remedy()})
					k = len(v.Findings) - 1
				}
				v.Findings[k].Requests += fs.n
				v.Findings[k].LostNs += fs.lostNs
			}
		}
		if n == 0 {
			continue
		}
		v.Requests += n
		r := Route{Service: rw.service, Route: rw.route, Requests: n, PerSecond: float64(n) / v.Seconds,
			P50Ns: h.quantile(0.5), P99Ns: h.quantile(0.99), MaxNs: h.max, Phases: shares(&phases, durNs, n)}
		v.Routes = append(v.Routes, r)
	}
	slices.SortFunc(v.Routes, func(x, y Route) int {
		return cmp.Or(cmp.Compare(y.Requests, x.Requests), cmp.Compare(x.Service, y.Service), cmp.Compare(x.Route, y.Route))
	})
	slices.SortFunc(v.Findings, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(y.LostNs, x.LostNs), cmp.Compare(x.Service, y.Service), cmp.Compare(x.Route, y.Route), cmp.Compare(x.Code, y.Code))
	})
	if len(v.Findings) > viewFindings {
		v.Findings = v.Findings[:viewFindings]
	}
	v.Slowest = a.slowest(in)
	return v
}

// shares turns a route's phase totals into shares of its requests'
// durations (durNs), those inside the duration first, each part
// largest first; phases with no time are left out.
func shares(phases *[correlate.NumPhases]int64, durNs, n int64) []PhaseShare {
	out := []PhaseShare{}
	if durNs <= 0 {
		return out
	}
	for p, ns := range phases {
		if ns == 0 {
			continue
		}
		ph := correlate.Phase(p)
		out = append(out, PhaseShare{Phase: ph.String(), Nested: ph.Nested(), Outside: outside(ph),
			Share: float64(ns) / float64(durNs), MeanNs: ns / n})
	}
	slices.SortStableFunc(out, func(x, y PhaseShare) int {
		if x.Outside != y.Outside {
			if x.Outside {
				return 1
			}
			return -1
		}
		return cmp.Compare(y.Share, x.Share)
	})
	return out
}

// outside: the phases that lie outside a request's duration (T_rx, or
// T_est, to T_tx): softirq ends where the first bytes were queued,
// ack_wait starts where the last left.
func outside(p correlate.Phase) bool { return p == correlate.Softirq || p == correlate.AckWait }

// slowest merges the seconds' slowest requests.
func (a *Aggregator) slowest(in func(int64) bool) []Slow {
	var all []*slowRequest
	for i := range a.slow {
		ss := &a.slow[i]
		if !in(ss.sec) {
			continue
		}
		for j := range ss.reqs {
			all = append(all, &ss.reqs[j])
		}
	}
	slices.SortFunc(all, func(x, y *slowRequest) int {
		return cmp.Or(cmp.Compare(y.durationNs, x.durationNs), cmp.Compare(y.endUnixNano, x.endUnixNano))
	})
	if len(all) > a.slowN {
		all = all[:a.slowN]
	}
	out := make([]Slow, 0, len(all))
	for _, r := range all {
		s := Slow{Service: r.service, Route: r.route, PID: r.pid, EndUnixNano: r.endUnixNano, DurationNs: r.durationNs}
		if r.peer.IsValid() {
			s.Peer = r.peer.String()
		}
		s.Phases = breakdown(r.phases)
		for _, c := range r.findings[:r.nFindings] {
			s.Findings = append(s.Findings, c.String())
		}
		out = append(out, s)
	}
	return out
}

// breakdown lists the measured phases in their order, the nested ones
// right after app when they took any time.
func breakdown(ps correlate.Phases) []PhaseNs {
	var out []PhaseNs
	add := func(p correlate.Phase) {
		if ns, ok := ps.Get(p); ok && (ns > 0 || !p.Nested()) {
			out = append(out, PhaseNs{Phase: p.String(), Nested: p.Nested(), Ns: ns})
		}
	}
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		if p.Nested() {
			continue
		}
		add(p)
		if p == correlate.App {
			for q := correlate.Phase(0); q < correlate.NumPhases; q++ {
				if q.Nested() {
					add(q)
				}
			}
		}
	}
	return out
}
