package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/portpressure"
	"github.com/tracerd/tracerd/internal/targets"
)

// TestPrintStatus: the typed status reads as `tracerd status` always
// printed it.
func TestPrintStatus(t *testing.T) {
	st := control.Status{
		PID: 42, Version: "v1", UptimeSeconds: 3725, Reloads: 2,
		Targets: targets.Targets{Ports: []uint16{80, 443}},
		Hooks: []control.Hook{{Name: "a", OK: true}, {Name: "b", Reason: "no such tracepoint"},
			{Name: "sched_switch", OK: true, Pending: true}},
		Counters: loader.Counters{ConnsTraced: 10, Records: 20, ConnsOpen: 3, ConnsMax: 65536,
			RingbufDrops: 1, ConnMapFull: 2, TaskMapFull: 4},
		Requests: 19, SinkErrors: 1,
		GoProbeKind: "uprobe_multi",
		GoProbes: []goprobe.ProcessState{{PID: 7, Go: "go1.24.1", On: []string{"gc", "http"}, Off: []string{"serialization"}, Links: 9,
			HTTPStatus: []string{"http1: ServeHTTP exit", "http2: WriteHeader probe"}}},
		Exporters: control.Exporters{
			OTLP:        &control.OTLP{Endpoint: "http://c:4318/v1/traces", Stats: control.OTLPStats{ExportErrors: 3, Exports: 3, SpansFailed: 5, SpansQueued: 6}},
			MetricsAddr: "127.0.0.1:9464",
		},
		FindingsMinutes: 5,
		Findings: []control.Finding{{Service: "api", Route: "GET /x", Code: "cfs_throttled", Phase: "cfs_throttle", Requests: 3, LostNs: 123456789,
			Confirm: "cat /sys/fs/cgroup/cpu/api/cpu.stat", Remedy: "raise it"}},
	}
	var b strings.Builder
	printStatus(&b, st)
	want := `tracerd v1, pid 42, up 1h2m5s, config none, 2 reloads
targets: port [80 443]
hooks: 1/3 attached; waiting for a CPU quota on a traced thread: sched_switch; missing: b (no such tracepoint)
go probes (uprobe_multi links): 1 processes
  pid 7 (go1.24.1): gc, http; switched off, firing too often: serialization (9 links); statuses: http1: ServeHTTP exit, http2: WriteHeader probe
requests: 19 exported, 1 output errors
kernel: 10 connections traced, 20 records, 3/65536 connections open; lost: 1 (ring buffer full), 2 (connection map full), 4 threads untimed
otlp: http://c:4318/v1/traces, down: 0 spans exported, 0 dropped, 5 failed (3 of 3 exports failed), 6 queued
json: none
metrics: 127.0.0.1:9464
findings (last 5 minutes, most time lost first):
  api GET /x: cfs_throttled (cfs_throttle) on 3 requests, 123.46ms lost
    confirm: cat /sys/fs/cgroup/cpu/api/cpu.stat
    remedy: raise it
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	printStatus(&b, control.Status{PID: 1, Config: "/etc/tracerd/tracerd.yaml", Exporters: control.Exporters{JSON: "-"}})
	for _, line := range []string{"up 0s, config /etc/tracerd/tracerd.yaml, 0 reloads", "targets: every accepted TCP connection on this host", "hooks: 0/0 attached\n", "go probes: off", "otlp: off", "json: -", "findings: off"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("lacks %q:\n%s", line, b.String())
		}
	}
}

func TestPrintPorts(t *testing.T) {
	at := time.Date(2026, 12, 1, 2, 3, 4, 0, time.UTC)
	r := &portpressure.Report{At: at, FailuresUncounted: 2, Namespaces: []portpressure.Namespace{{
		NetNS: 4026531840, Processes: []portpressure.Process{{PID: 7, Comm: "api"}}, PortLow: 40000, PortHigh: 40009, RangeSize: 10,
		TimeWait: 12, EphemeralInUse: 11,
		Destinations: []portpressure.Destination{{Address: netip.MustParseAddrPort("10.0.0.1:5432"), InUse: 10, TimeWait: 9, Established: 1,
			Failures: []portpressure.Failure{{PID: 7, Comm: "api", Count: 4}},
			Finding:  &portpressure.Finding{Code: portpressure.FindingCode, LastFailure: at, RecentFailures: 3, Confirm: "ss", Remedy: "reuse"}}},
		DestinationsOmitted: 1,
	}, {NetNS: 5, Error: "ip_local_port_range: operation not permitted", Processes: []portpressure.Process{}}}}
	var b strings.Builder
	printPorts(&b, r)
	want := `ports, netns 4026531840 (api[7]): port range 40000-40009 (10 ports a destination), 11 sockets on them, 12 in TIME_WAIT in all
  10.0.0.1:5432: 10 ports in use (9 TIME_WAIT, 1 established), 0 left; 4 connect() failed with EADDRNOTAVAIL
    finding ephemeral_port_exhaustion: 3 connects failed in the last 5 minutes, the last at 02:03:04
    confirm: ss
    remedy: reuse
  and 1 more destinations
ports, netns 5 (none): port range unknown, 0 sockets on them, 0 in TIME_WAIT in all
  not read: ip_local_port_range: operation not permitted
ports: 2 EADDRNOTAVAIL failures not counted per destination (map full)
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printPorts(&b, &portpressure.Report{})
	if b.Len() != 0 {
		t.Errorf("before the first sample: %q", b.String())
	}
}

func TestDaemonTotals(t *testing.T) {
	end := &control.End{Dropped: 3, Kernel: &loader.Counters{ConnsTraced: 1, Records: 2, RingbufDrops: 4, ConnMapFull: 5}}
	want := "daemon kernel totals: 1 connections traced, 2 records; lost: 4 (ring buffer full), 5 connections untraced (map full); 3 records not sent to this snapshot (it read too slowly)"
	if got := daemonTotals(end); got != want {
		t.Errorf("%q\nwant %q", got, want)
	}
	if got := daemonTotals(&control.End{}); got != "" {
		t.Errorf("without counters: %q", got)
	}
}
