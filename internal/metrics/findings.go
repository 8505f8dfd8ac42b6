package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracerd/tracerd/internal/correlate"
)

// findings counts the causes named on requests (internal/findings), per
// service and code.
type findings struct {
	count *prometheus.CounterVec
	lost  *prometheus.CounterVec
}

// serviceFindings caches a service's counters, one per code, made at
// the code's first finding (a series per cause actually seen).
type serviceFindings struct {
	count, lost [correlate.NumFindingCodes]prometheus.Counter
}

func newFindings(reg prometheus.Registerer) findings {
	f := findings{
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracerd_findings_total",
			Help: "Requests on which a cause of lost time was named, by code (docs/findings.md).",
		}, []string{"service", "code"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracerd_finding_lost_seconds_total",
			Help: "Time the named causes cost requests, by code (causes of one request may overlap: a GC pause during serialization counts in both).",
		}, []string{"service", "code"}),
	}
	reg.MustRegister(f.count, f.lost)
	return f
}

func (m *Requests) observeFindings(o *serviceObservers, fs []correlate.Finding) {
	if o.found == nil {
		o.found = &serviceFindings{}
	}
	for i := range fs {
		c := fs[i].Code
		if c >= correlate.NumFindingCodes {
			continue
		}
		if o.found.count[c] == nil {
			o.found.count[c] = m.findings.count.WithLabelValues(o.name, c.String())
			o.found.lost[c] = m.findings.lost.WithLabelValues(o.name, c.String())
		}
		o.found.count[c].Inc()
		o.found.lost[c].Add(float64(fs[i].LostNs) / 1e9)
	}
}
