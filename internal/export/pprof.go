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
	samples            map[sampleKey]*[2]int64 // requests, latency
}

type sampleKey struct {
	service, route string
	phase          correlate.Phase
	pid            uint32
}

func NewProfile() *Profile { return &Profile{samples: map[sampleKey]*[2]int64{}} }

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
	route := r.Route()
	self.Each(func(ph correlate.Phase, ns int64) {
		v := p.sample(sampleKey{r.Service, route, ph, r.PID})
		v[1] += ns
		if ph == dominant {
			v[0]++
		}
	})
}

func (p *Profile) sample(k sampleKey) *[2]int64 {
	v := p.samples[k]
	if v == nil {
		v = new([2]int64)
		p.samples[k] = v
	}
	return v
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
	keys := make([]sampleKey, 0, len(p.samples))
	for k := range p.samples {
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
		v := p.samples[k]
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
