package daemon

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/targets"
)

// withSocket puts the control socket in the test's directory.
func withSocket(t *testing.T, cfg config.Config) (config.Config, string) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	cfg.Control.Socket = sock
	return cfg, sock
}

func dial(t *testing.T, sock string) *control.Client {
	t.Helper()
	c, err := control.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStatus: `tracerd status` gets the typed state of the engine, the
// exporters and the configuration.
func TestStatus(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	cfg.Exporters.JSON = filepath.Join(t.TempDir(), "r.jsonl")
	cfg.Exporters.OTLP.Endpoint = "http://127.0.0.1:1"
	h := start(t, cfg, nil)
	st, err := dial(t, sock).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.Version != "test" || st.Config != "/etc/tracerd/test.yaml" || st.Reloads != 0 ||
		st.Targets.String() != "port [80]" || st.Counters.ConnsTraced != 3 || st.Requests != 5 {
		t.Errorf("status %+v", st)
	}
	if len(st.Hooks) != 2 || st.Hooks[0] != (control.Hook{Name: "accept", OK: true}) || st.Hooks[1] != (control.Hook{Name: "softirq", Reason: "not here"}) {
		t.Errorf("hooks %+v", st.Hooks)
	}
	if st.GoProbeKind != "classic" || len(st.GoProbes) != 1 || st.GoProbes[0].PID != 9 {
		t.Errorf("go probes %s %+v", st.GoProbeKind, st.GoProbes)
	}
	if o := st.Exporters.OTLP; o == nil || !strings.Contains(o.Endpoint, "127.0.0.1:1") || st.Exporters.JSON != cfg.Exporters.JSON || st.Exporters.MetricsAddr != "" {
		t.Errorf("exporters %+v", st.Exporters)
	}
	// The JSON schema names every count.
	b, _ := json.Marshal(st)
	for _, key := range []string{`"uptime_seconds":`, `"targets":{"ports":[80]}`, `"conns_traced":3`, `"spans_exported":0`, `"sampled_by_ratio":`, `"go_probe_kind":"classic"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("status JSON lacks %s: %s", key, b)
		}
	}

	if st.FindingsMinutes != 5 || st.Findings == nil || len(st.Findings) != 0 {
		t.Errorf("findings before any: %d %+v", st.FindingsMinutes, st.Findings)
	}
	// Findings of requests handed over show, most time lost first, under
	// the exporters' service name.
	for i, lost := range []int64{3e6, 9e6, 4e6} {
		r := &correlate.Request{PID: 1, Comm: "api", HTTP: &correlate.HTTP{Method: "GET", Target: "/x"}, Conn: correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:80")},
			Findings: []correlate.Finding{{Code: correlate.FindingCode(i % 2), Phase: correlate.AcceptQueue, LostNs: lost}}}
		h.eng.add(t, r)
	}
	st, err = dial(t, sock).Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Findings) != 2 || st.Findings[0].Code != "late_read" || st.Findings[0].Requests != 1 || st.Findings[0].LostNs != 9e6 ||
		st.Findings[1].Code != "accept_backlog" || st.Findings[1].Requests != 2 || st.Findings[1].LostNs != 7e6 ||
		st.Findings[1].Route != "GET /x" || st.Findings[1].Service != "api" || !strings.Contains(st.Findings[1].Confirm, "sport = :80") {
		t.Errorf("findings %+v", st.Findings)
	}

	h.eng.mu.Lock()
	h.eng.countersErr = errors.New("map gone")
	h.eng.mu.Unlock()
	if _, err := dial(t, sock).Status(); err == nil || err.Error() != "map gone" {
		t.Errorf("status with an engine that does not answer: %v", err)
	}
}

// TestStatusWhileStarting: the socket answers before the engine is
// attached, saying so.
func TestStatusWhileStarting(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	d := New(Options{Config: cfg})
	srv, err := d.serveControl()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := dial(t, sock).Status(); err == nil || err.Error() != errStarting.Error() {
		t.Errorf("status: %v", err)
	}
	_, err = dial(t, sock).Snapshot(control.Request{Duration: time.Second}, func(control.Line) error { return nil })
	if err == nil || err.Error() != errStarting.Error() {
		t.Errorf("snapshot: %v", err)
	}
}

// TestSnapshot: a snapshot through the daemon gets the requests its own
// selection takes, as records, profile, summary and typed totals, until
// the client ends it.
func TestSnapshot(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	cfg.Targets = targets.Targets{Ports: []uint16{80, 81}}
	h := start(t, cfg, nil)
	c := dial(t, sock)
	req := control.Request{Duration: time.Minute, Targets: targets.Targets{Ports: []uint16{80}, PIDs: []uint32{7}}, Top: 5, JSON: true, Profile: true}
	var note string
	var records []string
	end, err := c.Snapshot(req, func(l control.Line) error {
		switch {
		case l.Note != "":
			note = l.Note
			// The snapshot is on: these go through the daemon.
			h.eng.add(t, request(7, 80, "/wanted/1"))
			h.eng.add(t, request(8, 80, "/other-pid"))
			h.eng.add(t, request(7, 81, "/other-port"))
			h.eng.add(t, request(7, 80, "/wanted/2"))
		case l.Record != nil:
			records = append(records, string(l.Record))
			if len(records) == 2 {
				c.EndEarly()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "tracing pid [7] and port [80] through the daemon (pid "; !strings.HasPrefix(note, want) || !strings.HasSuffix(note, "for 1m0s") {
		t.Errorf("note %q", note)
	}
	if len(records) != 2 || !strings.Contains(records[0], "/wanted/1") || !strings.Contains(records[1], "/wanted/2") {
		t.Errorf("records %q", records)
	}
	if end.Requests != 2 || end.Dropped != 0 || len(end.Profile) == 0 || !strings.Contains(end.Summary, "2 requests") ||
		end.Kernel == nil || end.Kernel.ConnsTraced != 3 {
		t.Errorf("end %+v", end)
	}
	// The requests went to the exporters too, and the tap is gone.
	if n := len(h.d.taps.list); n != 0 {
		t.Errorf("%d taps left", n)
	}
}

// TestSnapshotRefused: a selection the daemon does not cover, or values
// out of range, are refused (the client's to change); nothing is sent.
func TestSnapshotRefused(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	start(t, cfg, nil)
	for _, tc := range []struct {
		req  control.Request
		want string
	}{
		{control.Request{Duration: time.Second, Targets: targets.Targets{Ports: []uint16{81}}}, "traces port [80], which does not cover port [81]: a snapshot through it would miss requests. Use --standalone"},
		{control.Request{Duration: time.Second}, "which does not cover every accepted TCP connection on this host"},
		{control.Request{Duration: -time.Second, Targets: targets.Targets{Ports: []uint16{80}}}, "--duration: "},
		{control.Request{Duration: time.Second, Top: 100000, Targets: targets.Targets{Ports: []uint16{80}}}, "--top: "},
	} {
		lines := 0
		_, err := dial(t, sock).Snapshot(tc.req, func(control.Line) error { lines++; return nil })
		if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), tc.want) || lines != 0 {
			t.Errorf("%+v: %v after %d lines, want refused with %q", tc.req, err, lines, tc.want)
		}
	}
}

// TestSnapshotEndsWithDaemon: a snapshot running when the daemon stops
// gets its end, with the requests drained at the stop.
func TestSnapshotEndsWithDaemon(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	h := start(t, cfg, nil)
	ended := make(chan *control.End, 1)
	go func() {
		end, err := dial(t, sock).Snapshot(control.Request{Duration: time.Hour, Targets: cfg.Targets}, func(l control.Line) error {
			if l.Note != "" {
				h.eng.add(t, request(1, 80, "/last"))
				h.stop() // SIGTERM
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		ended <- end
	}()
	select {
	case end := <-ended:
		if end == nil || end.Requests != 1 {
			t.Errorf("end %+v", end)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot did not end with the daemon")
	}
}

// TestTop: without a selection, tracerd top gets the daemon's view,
// requests from before it asked included; with one, a view of its own
// from then on, of the selected requests only; a selection the daemon
// does not cover is refused.
func TestTop(t *testing.T) {
	cfg, sock := withSocket(t, testConfig())
	cfg.Targets = targets.Targets{Ports: []uint16{80, 81}}
	h := start(t, cfg, nil)
	now := func(r *correlate.Request) *correlate.Request { r.EndUnixNano = time.Now().UnixNano(); return r }
	h.eng.add(t, now(request(7, 80, "/before")))
	enough := errors.New("enough")
	var all live.View
	err := dial(t, sock).Top(control.Request{}, func(v live.View) error { all = v; return enough })
	if !errors.Is(err, enough) || all.Requests != 1 || len(all.Routes) != 1 || all.Routes[0].Route != "GET /before" || all.Routes[0].Service != "server" {
		t.Errorf("daemon's view %+v (%v)", all, err)
	}
	views := 0
	var mine live.View
	c := dial(t, sock)
	err = c.Top(control.Request{Every: 100 * time.Millisecond, Targets: targets.Targets{Ports: []uint16{81}}}, func(v live.View) error {
		if views++; views == 1 {
			h.eng.add(t, now(request(7, 80, "/not-mine")))
			h.eng.add(t, now(request(7, 81, "/mine")))
			return nil
		}
		mine = v
		return enough
	})
	if !errors.Is(err, enough) || mine.Requests != 1 || mine.Routes[0].Route != "GET /mine" {
		t.Errorf("own view %+v (%v)", mine, err)
	}
	c.Close() // the view goes with its client
	eventually(t, func() bool { h.d.taps.mu.Lock(); defer h.d.taps.mu.Unlock(); return len(h.d.taps.live) == 0 })
	err = dial(t, sock).Top(control.Request{Targets: targets.Targets{Ports: []uint16{82}}}, func(live.View) error { return nil })
	if !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "does not cover port [82]") {
		t.Errorf("uncovered selection: %v", err)
	}
	err = dial(t, sock).Top(control.Request{Every: time.Hour}, func(live.View) error { return nil })
	if !errors.Is(err, control.ErrRefused) {
		t.Errorf("a view an hour: %v", err)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
	}
}
