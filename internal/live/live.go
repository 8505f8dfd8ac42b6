// Package live keeps what `tracerd top` shows: over the last seconds,
// per service and route, the request rate, p50/p99 of the duration and
// each phase's share of the time, the findings that cost most, and the
// slowest requests with their breakdowns. A request costs a map lookup
// and a few additions; memory is bounded (routes past a limit are
// folded into "other", seconds out of the window are reused).
package live

import (
	"net/netip"
	"sync"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/findings"
)

// Defaults and bounds of an Aggregator.
const (
	DefaultWindow  = 10 * time.Second
	MinWindow      = 2 * time.Second
	MaxWindow      = 60 * time.Second
	DefaultRoutes  = 200 // service and route pairs kept apart
	DefaultSlowest = 10
	// OtherRoute holds a service's requests past the route limit;
	// OtherService's "other" route holds those past the reserve too.
	OtherRoute   = "other"
	OtherService = "other"
	// slowFindings: the codes kept per slow request.
	slowFindings = 3
)

// Options size an Aggregator; zero values take the defaults.
type Options struct {
	Window  time.Duration // whole seconds, MinWindow to MaxWindow
	Routes  int           // service and route pairs before folding
	Slowest int           // slow requests kept per second and shown
	Start   time.Time     // when counting started (default now): rates over fewer seconds until the window is full
}

// Aggregator sums requests per second over a sliding window. Add and
// View may be called concurrently.
type Aggregator struct {
	mu      sync.Mutex
	window  int64 // seconds
	routes  int
	slowN   int
	start   time.Time
	head    int64 // newest second a request ended in
	rows    map[rowKey]*row
	others  int // rows of OtherRoute made past the route limit
	slow    []slowSecond
	folded  int64 // requests folded into "other" (all time)
	late    int64 // requests that ended before the window (all time)
	scratch []byte
	last    lastRoute
}

// lastRoute is the row the last request was counted in and what its
// route was made of: the next request with the same service and the
// same parts has the same route, and goes to that row without making
// its route and looking it up (most requests repeat the last one's
// route). Only a row of the route itself (not "other") is kept, and
// expire forgets it.
type lastRoute struct {
	row                     *row
	service                 string
	http                    bool   // method, pattern and target hold the route, else port
	method, pattern, target string // target only without a pattern
	port                    uint16
}

// rowOfLast is the last request's row when r's route is surely the
// same, else nil.
func (a *Aggregator) rowOfLast(r *correlate.Request) *row {
	l := &a.last
	if l.row == nil || r.Service != l.service {
		return nil
	}
	h := r.HTTP
	if h == nil || h.Method == "" {
		if l.http || r.Conn.Local.Port() != l.port {
			return nil
		}
		return l.row
	}
	if !l.http || h.Method != l.method || h.Pattern != l.pattern || (h.Pattern == "" && h.Target != l.target) {
		return nil
	}
	return l.row
}

// remember notes rw as r's row (rowOfLast).
func (a *Aggregator) remember(r *correlate.Request, rw *row) {
	a.last = lastRoute{row: rw, service: r.Service}
	if h := r.HTTP; h != nil && h.Method != "" {
		a.last.http, a.last.method, a.last.pattern = true, h.Method, h.Pattern
		if h.Pattern == "" {
			a.last.target = h.Target
		}
		return
	}
	a.last.port = r.Conn.Local.Port()
}

type rowKey struct{ service, route string }

// row is one service and route: a ring of seconds.
type row struct {
	service, route string
	secs           []rowSecond
	// confirm: the command that confirms each code, made once from
	// the first request it was found on.
	confirm [correlate.NumFindingCodes]string
}

type rowSecond struct {
	sec      int64
	n        int64
	durNs    int64 // the requests' durations, summed
	hist     histogram
	phases   [correlate.NumPhases]int64
	findings [correlate.NumFindingCodes]findingSum
}

type findingSum struct {
	n, lostNs int64
	phase     correlate.Phase
}

// slowSecond keeps the slowest requests that ended in one second.
type slowSecond struct {
	sec   int64
	reqs  []slowRequest
	minNs int64 // the fastest kept, once full
}

type slowRequest struct {
	service, route string // the row's strings: no allocation
	pid            uint32
	peer           netip.AddrPort
	endUnixNano    int64
	durationNs     int64
	phases         correlate.Phases
	findings       [slowFindings]correlate.FindingCode
	nFindings      uint8
}

// New makes an Aggregator.
func New(o Options) *Aggregator {
	w := o.Window
	if w == 0 {
		w = DefaultWindow
	}
	w = min(max(w, MinWindow), MaxWindow)
	if o.Routes <= 0 {
		o.Routes = DefaultRoutes
	}
	if o.Slowest <= 0 {
		o.Slowest = DefaultSlowest
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	secs := int64(w / time.Second)
	return &Aggregator{window: secs, routes: o.Routes, slowN: o.Slowest, start: o.Start,
		rows: map[rowKey]*row{}, slow: make([]slowSecond, secs)}
}

// Window is the span the view covers.
func (a *Aggregator) Window() time.Duration { return time.Duration(a.window) * time.Second }

// Add counts r in the second it ended.
func (a *Aggregator) Add(r *correlate.Request) {
	sec := r.EndUnixNano / int64(time.Second)
	a.mu.Lock()
	defer a.mu.Unlock()
	if sec > a.head {
		a.expire(sec)
		a.head = sec
	}
	if sec <= a.head-a.window {
		a.late++
		return
	}
	rw := a.rowOfLast(r)
	if rw == nil {
		a.scratch = r.AppendRoute(a.scratch[:0])
		rw = a.rowFor(r.Service)
		if rw.route == string(a.scratch) && rw.service == r.Service {
			a.remember(r, rw)
		}
	}
	s := &rw.secs[sec%a.window]
	if s.sec != sec {
		s.reset(sec)
	}
	s.n++
	s.durNs += max(r.DurationNs, 0)
	s.hist.add(r.DurationNs)
	for m := r.Phases.Measured(); m != 0; m = m.Rest() {
		p := m.First()
		s.phases[p] += r.Phases.NS(p)
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Code >= correlate.NumFindingCodes {
			continue
		}
		fs := &s.findings[f.Code]
		fs.n++
		fs.lostNs += f.LostNs
		fs.phase = f.Phase
		if rw.confirm[f.Code] == "" {
			rw.confirm[f.Code] = findings.Confirm(r, f)
		}
	}
	a.addSlow(sec, rw, r)
}

// rowFor finds or makes the row of service and the route in scratch;
// past the limit, the service's "other" row, within a reserve of an
// eighth of the limit (at least 2) whose last place is OtherService's.
func (a *Aggregator) rowFor(service string) *row {
	// string(a.scratch) in a lookup does not allocate.
	if rw := a.rows[rowKey{service, string(a.scratch)}]; rw != nil {
		return rw
	}
	route := string(a.scratch)
	if len(a.rows) >= a.routes {
		a.folded++
		route = OtherRoute
		if rw := a.rows[rowKey{service, route}]; rw != nil {
			return rw
		}
		if a.others+1 >= max(2, a.routes/8) {
			service = OtherService
			if rw := a.rows[rowKey{service, route}]; rw != nil {
				return rw
			}
		}
		a.others++
	}
	rw := &row{service: service, route: route, secs: make([]rowSecond, a.window)}
	a.rows[rowKey{service, route}] = rw
	return rw
}

func (s *rowSecond) reset(sec int64) {
	h := s.hist
	h.reset()
	*s = rowSecond{sec: sec, hist: h}
}

// expire drops the rows with no request in the window ending at sec:
// once a second, so that quiet routes give their place back.
func (a *Aggregator) expire(sec int64) {
	a.last = lastRoute{}
	for k, rw := range a.rows {
		live := false
		for i := range rw.secs {
			if rw.secs[i].sec > sec-a.window && rw.secs[i].n > 0 {
				live = true
				break
			}
		}
		if !live {
			if rw.route == OtherRoute {
				a.others--
			}
			delete(a.rows, k)
		}
	}
}

func (a *Aggregator) addSlow(sec int64, rw *row, r *correlate.Request) {
	ss := &a.slow[sec%a.window]
	if ss.sec != sec {
		ss.sec, ss.reqs, ss.minNs = sec, ss.reqs[:0], 0
	}
	full := len(ss.reqs) >= a.slowN
	if full && r.DurationNs <= ss.minNs {
		return
	}
	sr := slowRequest{service: rw.service, route: rw.route, pid: r.PID, peer: r.Conn.Peer,
		endUnixNano: r.EndUnixNano, durationNs: r.DurationNs, phases: r.Phases}
	for i := 0; i < len(r.Findings) && i < slowFindings; i++ {
		sr.findings[i] = r.Findings[i].Code
		sr.nFindings++
	}
	if !full {
		ss.reqs = append(ss.reqs, sr)
		if len(ss.reqs) < a.slowN {
			return
		}
	} else {
		for i := range ss.reqs {
			if ss.reqs[i].durationNs == ss.minNs {
				ss.reqs[i] = sr
				break
			}
		}
	}
	ss.minNs = ss.reqs[0].durationNs
	for i := range ss.reqs {
		ss.minNs = min(ss.minNs, ss.reqs[i].durationNs)
	}
}
