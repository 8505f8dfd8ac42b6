// Package metrics exposes tracerd's Prometheus metrics: per-service
// request and phase latency histograms, and tracerd's own health (records
// read and lost, ring-buffer and map pressure, OTLP export).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Buckets of the latency histograms, in seconds: from a loopback softirq
// (µs) to a stuck request (10 s), 1-2.5-5 per decade, with the default
// latency budget (50 ms) a bound.
var Buckets = []float64{
	1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// maxServices bounds the service label's values; the services past it
// are counted under "other".
const maxServices = 500

// Requests records finished requests. Observe is called from one
// goroutine (the pipeline's); scrapes read concurrently.
type Requests struct {
	phase    *prometheus.HistogramVec
	duration *prometheus.HistogramVec
	total    *prometheus.CounterVec
	services map[string]*serviceObservers
	findings
}

// serviceObservers caches one service's label lookups: a request costs a
// map lookup and an atomic add per measured phase.
type serviceObservers struct {
	phase    [correlate.NumPhases]prometheus.Observer
	duration prometheus.Observer
	total    prometheus.Counter
	found    *serviceFindings // made at the service's first finding
	name     string           // the service label
}

// NewRequests registers the request metrics with reg.
func NewRequests(reg prometheus.Registerer) *Requests {
	m := &Requests{
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tracerd_request_phase_seconds",
			Help: "Time requests spent in each phase (accept_queue, softirq, recv_queue, app, send_queue, ack_wait; " +
				"runqueue, cfs_throttle, gc_stw and serialize are nested in app: do not add them to it). Unmeasured phases are not observed.",
			Buckets: Buckets,
		}, []string{"service", "phase"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tracerd_request_duration_seconds",
			Help:    "Request duration from the first byte queued on the socket (or the connection entering the accept queue) to the answer's last byte leaving.",
			Buckets: Buckets,
		}, []string{"service"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tracerd_requests_total",
			Help: "Requests traced.",
		}, []string{"service"}),
		services: map[string]*serviceObservers{},
	}
	reg.MustRegister(m.phase, m.duration, m.total)
	m.findings = newFindings(reg)
	return m
}

func (m *Requests) observers(service string) *serviceObservers {
	if o := m.services[service]; o != nil {
		return o
	}
	if len(m.services) >= maxServices {
		service = "other"
		if o := m.services[service]; o != nil {
			return o
		}
	}
	o := &serviceObservers{
		name:     service,
		duration: m.duration.WithLabelValues(service),
		total:    m.total.WithLabelValues(service),
	}
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		o.phase[p] = m.phase.WithLabelValues(service, p.String())
	}
	m.services[service] = o
	return o
}

// ObserveFindings counts a request's findings alone: an outbound call's
// (its time is not a served request's, the other metrics' subject).
func (m *Requests) ObserveFindings(r *correlate.Request) {
	if len(r.Findings) > 0 {
		m.observeFindings(m.observers(r.Service), r.Findings)
	}
}

// Observe records one request. When it was exported as a trace, its
// trace id goes along as an exemplar of the duration histogram (read
// with the OpenMetrics format), linking a latency bucket to a trace.
func (m *Requests) Observe(r *correlate.Request, traced bool) {
	o := m.observers(r.Service)
	o.total.Inc()
	d := float64(r.DurationNs) / 1e9
	if eo, ok := o.duration.(prometheus.ExemplarObserver); ok && traced && !r.TraceID.IsZero() {
		eo.ObserveWithExemplar(d, prometheus.Labels{"trace_id": r.TraceID.String(), "span_id": r.SpanID.String()})
	} else {
		o.duration.Observe(d)
	}
	r.Phases.Each(func(p correlate.Phase, ns int64) {
		o.phase[p].Observe(float64(ns) / 1e9)
	})
	if len(r.Findings) > 0 {
		m.observeFindings(o, r.Findings)
	}
}
