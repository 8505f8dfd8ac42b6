package metrics

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracerd/tracerd/internal/portpressure"
)

// TestMetricsPorts: port pressure's series, processes of one name
// summed into one series.
func TestMetricsPorts(t *testing.T) {
	reg := prometheus.NewRegistry()
	self := NewSelf(reg)
	dst := netip.MustParseAddrPort("10.0.0.1:5432")
	rep := &portpressure.Report{At: time.Now(), FailuresUncounted: 1, Namespaces: []portpressure.Namespace{{
		NetNS: 4026531840, RangeSize: 28232, TimeWait: 9,
		Destinations: []portpressure.Destination{{Address: dst, InUse: 7, TimeWait: 5,
			Failures: []portpressure.Failure{{PID: 1, Comm: "api", Count: 2}, {PID: 2, Comm: "api", Count: 3}}}},
	}}}
	self.SetSources(Sources{Ports: func() *portpressure.Report { return rep }})
	want := map[string]float64{
		`tracerd_connect_eaddrnotavail_total{comm="api",destination="10.0.0.1:5432",netns="4026531840"}`: 5,
		`tracerd_connect_eaddrnotavail_uncounted_total`:                                                  1,
		`tracerd_ephemeral_port_range_size{netns="4026531840"}`:                                          28232,
		`tracerd_ephemeral_ports_in_use{destination="10.0.0.1:5432",netns="4026531840"}`:                 7,
		`tracerd_namespace_time_wait_connections{netns="4026531840"}`:                                    9,
		`tracerd_time_wait_connections{destination="10.0.0.1:5432",netns="4026531840"}`:                  5,
	}
	got := gatherPorts(t, reg)
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Before the first sample: no series.
	rep = &portpressure.Report{}
	if got := gatherPorts(t, reg); len(got) != 0 {
		t.Errorf("series before the first sample: %v", got)
	}
}

// gatherPorts gathers the port pressure series as name{labels} → value.
func gatherPorts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.Contains(name, "eaddrnotavail") && !strings.Contains(name, "ephemeral") && !strings.Contains(name, "time_wait") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			k := name
			if len(labels) > 0 {
				k += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[k] = v
		}
	}
	return out
}
