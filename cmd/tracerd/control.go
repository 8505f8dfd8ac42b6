package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// serveControl opens the control socket unless it is off.
func (d *daemon) serveControl() (*control.Server, error) {
	p := d.cfg.Control.Socket
	if p == "" || p == "off" {
		return nil, nil
	}
	s, err := control.Listen(p, d, d.log)
	if errors.Is(err, control.ErrUnsafePath) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	d.log.Info("control socket ready", "path", p)
	return s, nil
}

var errStarting = errors.New("tracerd is starting: the engine is not attached yet")

// Status is what `tracerd status` shows.
type Status struct {
	PID         int                    `json:"pid"`
	Version     string                 `json:"version"`
	Uptime      string                 `json:"uptime"`
	Config      string                 `json:"config"`
	Reloads     int64                  `json:"reloads"`
	Targets     loader.Targets         `json:"targets"`
	TargetsText string                 `json:"targets_text"`
	Hooks       []HookState            `json:"hooks"`
	GoProbes    []goprobe.ProcessState `json:"go_probes"`
	GoProbeKind string                 `json:"go_probe_kind,omitempty"` // uprobe_multi or classic
	Counters    loader.Counters        `json:"counters"`
	Requests    int64                  `json:"requests"`
	SinkErrors  int64                  `json:"sink_errors"`
	Exporters   ExporterStatus         `json:"exporters"`
}

// HookState is one hook's state.
type HookState struct {
	Name   string `json:"name"`
	Way    string `json:"way,omitempty"` // how it is attached on this kernel
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// ExporterStatus is the health of each output.
type ExporterStatus struct {
	OTLP        *OTLPStatus `json:"otlp,omitempty"`
	JSON        string      `json:"json,omitempty"`
	MetricsAddr string      `json:"metrics_addr,omitempty"`
}

// OTLPStatus is the trace exporter's state.
type OTLPStatus struct {
	Endpoint string           `json:"endpoint"`
	Stats    export.OTLPStats `json:"stats"`
}

// Status implements control.Handler.
func (d *daemon) Status() (any, error) {
	tr := d.cur.Load()
	if tr == nil {
		return nil, errStarting
	}
	c, err := tr.tracer.Counters()
	if err != nil {
		return nil, err
	}
	st := Status{
		PID: os.Getpid(), Version: versionString(), Uptime: time.Since(d.start).Round(time.Second).String(),
		Config: d.opts.configPath, Reloads: d.reloads.Load(),
		Targets: tr.tracer.Targets(), TargetsText: describeTargets(tr.tracer.Targets()),
		Counters: c, Requests: tr.sess.Requests(), SinkErrors: tr.sess.SinkErrors(),
	}
	for _, h := range tr.tracer.Hooks {
		st.Hooks = append(st.Hooks, HookState{Name: h.Name, Way: h.WayName(), OK: h.OK, Reason: h.Reason})
	}
	if tr.gm != nil {
		st.GoProbes = tr.gm.Processes()
		st.GoProbeKind = "classic"
		if tr.tracer.UprobeMulti() {
			st.GoProbeKind = "uprobe_multi"
		}
	}
	d.mu.Lock()
	x, jsonPath := d.x, d.cfg.Exporters.JSON
	d.mu.Unlock()
	if x.otlp != nil {
		st.Exporters.OTLP = &OTLPStatus{Endpoint: x.otlpSet.Endpoint(), Stats: x.otlp.Stats()}
	}
	st.Exporters.JSON = jsonPath
	if x.server != nil {
		st.Exporters.MetricsAddr = x.server.Addr()
	}
	return st, nil
}

// tap is one snapshot running through the daemon.
type tap struct {
	match   func(*correlate.Request) bool
	json    bool
	ch      chan []byte
	prof    *export.Profile
	summary *export.Summary
	dropped atomic.Int64
	n       int64
	done    chan struct{} // closed when the daemon stops
}

// taps are the running snapshots; add is called with daemon.mu held.
type taps struct {
	mu   sync.Mutex
	list []*tap
}

func (ts *taps) add(r *correlate.Request) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.list {
		if !t.match(r) {
			continue
		}
		t.n++
		t.prof.Add(r)
		t.summary.Add(r)
		if t.json {
			b, err := json.Marshal(export.ToJSON(r))
			if err != nil {
				continue
			}
			select {
			case t.ch <- b:
			default:
				t.dropped.Add(1)
			}
		}
	}
}

func (ts *taps) register(t *tap) {
	ts.mu.Lock()
	ts.list = append(ts.list, t)
	ts.mu.Unlock()
}

func (ts *taps) remove(t *tap) {
	ts.mu.Lock()
	ts.list = slices.DeleteFunc(ts.list, func(x *tap) bool { return x == t })
	ts.mu.Unlock()
}

// closeAll ends every snapshot (the daemon stops; its last requests are in).
func (ts *taps) closeAll() {
	ts.mu.Lock()
	for _, t := range ts.list {
		close(t.done)
	}
	ts.list = nil
	ts.mu.Unlock()
}

// Snapshot implements control.Handler: the requests of req.Targets seen
// by the running engine for req.Duration.
func (d *daemon) Snapshot(ctx context.Context, req control.Request, send func(control.Line) error) error {
	if err := config.SnapshotDuration.Check(int64(req.Duration)); err != nil {
		return control.Refuse("--duration: %v", err)
	}
	if err := config.Top.Check(int64(req.Top)); err != nil {
		return control.Refuse("--top: %v", err)
	}
	match, err := matcher(req.Targets)
	if err != nil {
		return err
	}
	tr := d.cur.Load()
	if tr == nil {
		return errStarting
	}
	// A snapshot through the daemon sees only what the daemon traces:
	// one it does not cover would record nothing and look fine.
	if why := coverage(tr.tracer.Targets(), req.Targets); why != "" {
		return control.Refuse("%s", why)
	}
	t := &tap{match: match, json: req.JSON, ch: make(chan []byte, 16384),
		prof: export.NewProfile(), summary: export.NewSummary(req.Top), done: make(chan struct{})}
	d.taps.register(t)
	send(control.Line{Note: fmt.Sprintf("tracing %s through the daemon (pid %d) for %s", describeTargets(req.Targets), os.Getpid(), req.Duration)})
	timer := time.NewTimer(req.Duration)
	defer timer.Stop()
	ended := false
	for !ended {
		select {
		case b := <-t.ch:
			if err := send(control.Line{Record: b}); err != nil {
				d.taps.remove(t)
				return err
			}
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-t.done:
		}
		ended = true
	}
	d.taps.remove(t)
	for {
		select {
		case b := <-t.ch:
			send(control.Line{Record: b})
			continue
		default:
		}
		break
	}
	end := &control.End{Requests: t.n, Dropped: t.dropped.Load()}
	if req.Profile {
		var buf bytes.Buffer
		if err := t.prof.WriteProfile(&buf); err != nil {
			return err
		}
		end.Profile = buf.Bytes()
	}
	var sb strings.Builder
	t.summary.Write(&sb)
	end.Summary = sb.String()
	if c, err := d.cur.Load().tracer.Counters(); err == nil {
		end.Counters = fmt.Sprintf("daemon kernel totals: %d connections traced, %d records; lost: %d (ring buffer full), %d connections untraced (map full); %d records not sent to this snapshot (it read too slowly)",
			c.ConnsTraced, c.Records, c.RingbufDrops, c.ConnMapFull, end.Dropped)
	}
	return send(control.Line{End: end})
}

// coverage says why the daemon's selection does not cover what the
// snapshot asks for ("" when it does). The check is on the selections
// alone (kinds ANDed, values ORed), so it is conservative: every kind
// the daemon restricts must be restricted by the snapshot to values the
// daemon takes (a cgroup below one of the daemon's is taken too).
func coverage(daemon, want loader.Targets) string {
	if daemon.Empty() {
		return ""
	}
	sub := func(d, w []string, covers func(d, w string) bool) bool {
		if len(d) == 0 {
			return true
		}
		if len(w) == 0 {
			return false
		}
		for _, v := range w {
			if !slices.ContainsFunc(d, func(x string) bool { return covers(x, v) }) {
				return false
			}
		}
		return true
	}
	equal := func(d, w string) bool { return d == w }
	comm := func(d, w string) bool { return d[:min(len(d), 15)] == w[:min(len(w), 15)] }
	below := func(d, w string) bool {
		d, w = filepath.Clean(d), filepath.Clean(w)
		return d == w || strings.HasPrefix(w, strings.TrimSuffix(d, "/")+"/")
	}
	if sub(strs(daemon.PIDs), strs(want.PIDs), equal) && sub(strs(daemon.Ports), strs(want.Ports), equal) &&
		sub(daemon.Comms, want.Comms, comm) && sub(daemon.Cgroups, want.Cgroups, below) {
		return ""
	}
	return fmt.Sprintf("the daemon (pid %d) traces %s, which does not cover %s: a snapshot through it would miss requests. Use --standalone to trace on its own",
		os.Getpid(), describeTargets(daemon), describeTargets(want))
}

// matcher selects requests in user space the way the BPF filter does at
// accept(): kinds ANDed, values ORed; cgroups include their descendants.
func matcher(t loader.Targets) (func(*correlate.Request) bool, error) {
	cgroups := map[uint64]bool{}
	for _, dir := range t.Cgroups {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			var st unix.Stat_t
			if unix.Stat(p, &st) == nil {
				cgroups[st.Ino] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--cgroup %s: %w", dir, err)
		}
	}
	return func(r *correlate.Request) bool {
		if len(t.PIDs) > 0 && !slices.Contains(t.PIDs, r.PID) {
			return false
		}
		if len(t.Ports) > 0 && !slices.Contains(t.Ports, r.Conn.Local.Port()) {
			return false
		}
		if len(t.Comms) > 0 && !slices.ContainsFunc(t.Comms, func(c string) bool { return c[:min(len(c), 15)] == r.Comm }) {
			return false
		}
		if len(t.Cgroups) > 0 && !cgroups[r.CgroupID] {
			return false
		}
		return true
	}, nil
}
