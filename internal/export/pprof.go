package export

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Profile aggregates requests into a pprof profile whose stacks are
// service → route → phase (nested phases under their parent, so that
// `app` keeps only its own time and nothing is counted twice).
//
// Sample types: latency/nanoseconds (the default) sums phase time;
// requests/count puts each request once, on its dominant phase (the
// phase with the most self time), so a route's total is its request count.
//
// ack_wait is left out: it comes after the answer's last byte left (the
// end of the request's duration), so it is not part of the latency the
// flame graph splits. The JSON lines and the summary carry it.
//
// Memory is bounded whatever clients send: routes are normalised
// (correlate.Request.AppendRoute) and each service has at most
// MaxRoutes of them; the requests of any further route go to the route
// "other" and are counted (OtherRequests, and a comment in the profile).
type Profile struct {
	startNano, endNano int64
	maxRoutes          int
	services           map[string]*serviceRoutes
	routes             map[routeKey]*routeSamples
	scratch            []byte // the route being looked up
	other              int64
	last               lastRoute
}

// lastRoute remembers the last request's route: a service's requests
// mostly come with the strings of the one before (the correlator
// interns them), so the route is not normalised and hashed again.
type lastRoute struct {
	service, method, target, pattern string
	port                             uint16 // HTTP == nil: tcp:PORT
	pid                              uint32
	http                             bool
	rs                               *routeSamples
	other                            *serviceRoutes // the route was OtherRoute: counted there
}

func (l *lastRoute) same(r *correlate.Request) bool {
	if l.rs == nil || l.pid != r.PID || l.service != r.Service || l.http != (r.HTTP != nil) {
		return false
	}
	if r.HTTP == nil {
		return l.port == r.Conn.Local.Port()
	}
	return l.method == r.HTTP.Method && l.target == r.HTTP.Target && l.pattern == r.HTTP.Pattern
}

// samplesOf returns the samples of the request's route.
func (p *Profile) samplesOf(r *correlate.Request) *routeSamples {
	if p.last.same(r) {
		if sr := p.last.other; sr != nil {
			sr.other++
			p.other++
		}
		return p.last.rs
	}
	route := p.route(r)
	k := routeKey{service: r.Service, route: route, pid: r.PID}
	rs := p.routes[k]
	if rs == nil {
		rs = new(routeSamples)
		p.routes[k] = rs
	}
	p.last = lastRoute{service: r.Service, pid: r.PID, http: r.HTTP != nil, rs: rs, port: r.Conn.Local.Port()}
	if r.HTTP != nil {
		p.last.method, p.last.target, p.last.pattern = r.HTTP.Method, r.HTTP.Target, r.HTTP.Pattern
	}
	if route == OtherRoute {
		p.last.other = p.services[r.Service]
	}
	return rs
}

// DefaultMaxRoutes bounds a service's routes in a profile: far more than
// a service has endpoints, few enough that a flood of unique paths costs
// a few hundred kB per service rather than growing without end.
const DefaultMaxRoutes = 1000

// OtherRoute is the route of a service's requests past its MaxRoutes.
// It cannot be mistaken for a real route ("METHOD /path", "tcp:PORT").
const OtherRoute = "other"

// ProfileOptions configure a Profile; the zero value is the default.
type ProfileOptions struct {
	// MaxRoutes bounds the distinct routes per service (0:
	// DefaultMaxRoutes). Routes are taken first come, first served.
	MaxRoutes int
}

// serviceRoutes are the routes a service has in the profile.
type serviceRoutes struct {
	names map[string]string // interned: a route's string is made once
	other int64             // requests that went to OtherRoute
}

// routeKey identifies a route's samples in one process.
type routeKey struct {
	service, route string
	pid            uint32
}

// routeSamples holds [requests, latency] per phase of one route, and
// which phases were measured at all (a phase measured as 0 is a sample).
type routeSamples struct {
	v    [correlate.NumPhases][2]int64
	seen uint32
}

// sampleKey is one pprof sample: a route's phase.
type sampleKey struct {
	service, route string
	phase          correlate.Phase
	pid            uint32
}

// NewProfile returns a profile with the default options.
func NewProfile() *Profile { return NewProfileWith(ProfileOptions{}) }

// NewProfileWith returns a profile with these options.
func NewProfileWith(o ProfileOptions) *Profile {
	if o.MaxRoutes <= 0 {
		o.MaxRoutes = DefaultMaxRoutes
	}
	return &Profile{maxRoutes: o.MaxRoutes, services: map[string]*serviceRoutes{}, routes: map[routeKey]*routeSamples{}}
}

// Add accounts one request.
func (p *Profile) Add(r *correlate.Request) {
	if r.Direction != correlate.DirServer {
		return // the profile is of served requests' time
	}
	if p.startNano == 0 || r.StartUnixNano < p.startNano {
		p.startNano = r.StartUnixNano
	}
	if r.EndUnixNano > p.endNano {
		p.endNano = r.EndUnixNano
	}
	self := SelfTimes(r.Phases)
	self.Delete(correlate.AckWait)
	dominant, best := correlate.NumPhases, int64(-1)
	self.Each(func(ph correlate.Phase, v int64) {
		if v > best {
			dominant, best = ph, v
		}
	})
	rs := p.samplesOf(r)
	self.Each(func(ph correlate.Phase, ns int64) {
		rs.seen |= 1 << ph
		rs.v[ph][1] += ns
		if ph == dominant {
			rs.v[ph][0]++
		}
	})
}

// route returns the request's route in its service: the interned string
// of a route seen before (no allocation: the lookup converts the scratch
// bytes in place), a new one while the service has room, else
// OtherRoute.
func (p *Profile) route(r *correlate.Request) string {
	sr := p.services[r.Service]
	if sr == nil {
		sr = &serviceRoutes{names: map[string]string{}}
		p.services[r.Service] = sr
	}
	p.scratch = r.AppendRoute(p.scratch[:0])
	if name, ok := sr.names[string(p.scratch)]; ok {
		return name
	}
	if len(sr.names) >= p.maxRoutes {
		sr.other++
		p.other++
		return OtherRoute
	}
	name := string(p.scratch)
	sr.names[name] = name
	return name
}

// OtherRequests counts the requests that went to route "other" because
// their service had MaxRoutes routes already.
func (p *Profile) OtherRequests() int64 { return p.other }

// samples returns every (route, phase) that was measured at least once.
func (p *Profile) samples() map[sampleKey][2]int64 {
	out := map[sampleKey][2]int64{}
	for k, rs := range p.routes {
		for ph := correlate.Phase(0); ph < correlate.NumPhases; ph++ {
			if rs.seen&(1<<ph) != 0 {
				out[sampleKey{k.service, k.route, ph, k.pid}] = rs.v[ph]
			}
		}
	}
	return out
}

// comments say, in the profile itself (pprof -comments), which services
// lost routes to the cap.
func (p *Profile) comments() []string {
	var out []string
	for service, sr := range p.services {
		if sr.other > 0 {
			out = append(out, fmt.Sprintf("tracerd: service %s had more than %d routes: %d requests of further routes are under route %q",
				service, p.maxRoutes, sr.other, OtherRoute))
		}
	}
	sort.Strings(out)
	return out
}

// SelfTimes returns each measured phase's own time: a parent phase
// minus the nested phases measured inside it.
func SelfTimes(ps correlate.Phases) correlate.Phases {
	self := ps
	ps.Each(func(ph correlate.Phase, ns int64) {
		if parent := ph.Parent(); ph.Nested() {
			if v, ok := self.Get(parent); ok {
				self.Set(parent, v-ns)
			}
		}
	})
	return self
}

// Build returns the pprof profile.
func (p *Profile) Build() *profile.Profile {
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "requests", Unit: "count"},
			{Type: "latency", Unit: "nanoseconds"},
		},
		DefaultSampleType: "latency",
		TimeNanos:         p.startNano,
		DurationNanos:     p.endNano - p.startNano,
		PeriodType:        &profile.ValueType{Type: "latency", Unit: "nanoseconds"},
		Period:            1,
		Comments:          p.comments(),
	}
	funcs := map[string]*profile.Function{}
	locs := map[string]*profile.Location{}
	frame := func(name string) *profile.Location {
		if l, ok := locs[name]; ok {
			return l
		}
		f := &profile.Function{ID: uint64(len(prof.Function) + 1), Name: name, SystemName: name}
		prof.Function = append(prof.Function, f)
		funcs[name] = f
		l := &profile.Location{ID: uint64(len(prof.Location) + 1), Line: []profile.Line{{Function: f}}}
		prof.Location = append(prof.Location, l)
		locs[name] = l
		return l
	}
	samples := p.samples()
	keys := make([]sampleKey, 0, len(samples))
	for k := range samples {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.service != b.service {
			return a.service < b.service
		}
		if a.route != b.route {
			return a.route < b.route
		}
		if a.phase != b.phase {
			return a.phase < b.phase
		}
		return a.pid < b.pid
	})
	for _, k := range keys {
		v := samples[k]
		// Leaf first, as pprof wants; frames are qualified by their
		// parents so that equal names under different routes stay apart.
		svc := "service " + k.service
		route := svc + ";" + k.route
		stack := []*profile.Location{}
		if k.phase.Nested() {
			stack = append(stack, frame(route+";"+k.phase.Parent().String()+";"+k.phase.String()))
		}
		stack = append(stack, frame(route+";"+k.phase.Parent().String()), frame(route), frame(svc))
		prof.Sample = append(prof.Sample, &profile.Sample{
			Location: stack,
			Value:    []int64{v[0], v[1]},
			Label:    map[string][]string{"phase": {k.phase.String()}},
			NumLabel: map[string][]int64{"pid": {int64(k.pid)}},
		})
	}
	// Show plain names: the qualification above only keeps frames apart.
	for name, f := range funcs {
		f.Name = name[strings.LastIndexByte(name, ';')+1:]
	}
	return prof
}

// WriteProfile writes the gzipped protobuf profile.
func (p *Profile) WriteProfile(w io.Writer) error { return p.Build().Write(w) }
