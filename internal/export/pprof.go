package export

import (
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
type Profile struct {
	startNano, endNano int64
	routes             map[routeKey]*routeSamples
}

// routeKey identifies a route without building its name (one map lookup
// per request, no allocation: see correlate.Request.RouteParts).
type routeKey struct {
	service      string
	method, path string
	port         uint16
	pid          uint32
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

func NewProfile() *Profile { return &Profile{routes: map[routeKey]*routeSamples{}} }

// Add accounts one request.
func (p *Profile) Add(r *correlate.Request) {
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
	k := routeKey{service: r.Service, pid: r.PID}
	k.method, k.path, k.port = r.RouteParts()
	rs := p.routes[k]
	if rs == nil {
		rs = new(routeSamples)
		p.routes[k] = rs
	}
	self.Each(func(ph correlate.Phase, ns int64) {
		rs.seen |= 1 << ph
		rs.v[ph][1] += ns
		if ph == dominant {
			rs.v[ph][0]++
		}
	})
}

// samples returns every (route, phase) that was measured at least once.
func (p *Profile) samples() map[sampleKey][2]int64 {
	out := map[sampleKey][2]int64{}
	for k, rs := range p.routes {
		route := correlate.RouteName(k.method, k.path, k.port)
		for ph := correlate.Phase(0); ph < correlate.NumPhases; ph++ {
			if rs.seen&(1<<ph) != 0 {
				out[sampleKey{k.service, route, ph, k.pid}] = rs.v[ph]
			}
		}
	}
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
