package daemon

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tracerd/tracerd/internal/control"
	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/targets"
)

// tapBuffer is how many records a snapshot's client may lag behind
// before records are dropped (and counted).
const tapBuffer = 16384

// tap is one snapshot running through the daemon.
type tap struct {
	match   *targets.Matcher
	json    bool
	ch      chan []byte
	prof    *export.Profile
	summary *export.Summary
	dropped atomic.Int64
	n       int64         // requests matched (under taps.mu)
	done    chan struct{} // closed when the daemon stops
}

func newTap(m *targets.Matcher, req control.Request) *tap {
	return &tap{match: m, json: req.JSON, ch: make(chan []byte, tapBuffer),
		prof: export.NewProfile(), summary: export.NewSummary(req.Top), done: make(chan struct{})}
}

// taps are the running snapshots and the views of tracerd top with a
// selection of their own.
type taps struct {
	mu   sync.Mutex
	list []*tap
	live []*liveTap
	// running is len(list) + len(live), set under mu: the exporters'
	// goroutine looks at it for every request, without the lock, and
	// most of the time there is no tap.
	running atomic.Int32
}

// count sets running (under mu).
func (ts *taps) count() { ts.running.Store(int32(len(ts.list) + len(ts.live))) }

// liveTap is one tracerd top whose selection is not all the daemon
// traces: its own view, from when it started.
type liveTap struct {
	match *targets.Matcher
	agg   *live.Aggregator
}

// addLive gives r to each view that selects it (after the exporters
// named its service).
func (ts *taps) addLive(r *correlate.Request) {
	if ts.running.Load() == 0 {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.live {
		if t.match.Match(r.PID, r.Conn.Local.Port(), r.Comm, r.CgroupID) {
			t.agg.Add(r)
		}
	}
}

func (ts *taps) registerLive(t *liveTap) {
	ts.mu.Lock()
	ts.live = append(ts.live, t)
	ts.count()
	ts.mu.Unlock()
}

func (ts *taps) removeLive(t *liveTap) {
	ts.mu.Lock()
	ts.live = slices.DeleteFunc(ts.live, func(x *liveTap) bool { return x == t })
	ts.count()
	ts.mu.Unlock()
}

// add gives r to each snapshot that selects it; a snapshot whose client
// reads too slowly loses the record (counted), never the exporters.
func (ts *taps) add(r *correlate.Request) {
	if ts.running.Load() == 0 {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.list {
		if !t.match.Match(r.PID, r.Conn.Local.Port(), r.Comm, r.CgroupID) {
			continue
		}
		t.n++
		t.prof.Add(r)
		t.summary.Add(r)
		if t.json {
			// A slice of its own: the client's goroutine writes it later.
			b := export.AppendJSON(make([]byte, 0, 1024), r)
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
	ts.count()
	ts.mu.Unlock()
}

func (ts *taps) remove(t *tap) {
	ts.mu.Lock()
	ts.list = slices.DeleteFunc(ts.list, func(x *tap) bool { return x == t })
	ts.count()
	ts.mu.Unlock()
}

// closeAll ends every snapshot (the daemon stops; its last requests are in).
func (ts *taps) closeAll() {
	ts.mu.Lock()
	for _, t := range ts.list {
		close(t.done)
	}
	ts.list = nil
	ts.count()
	ts.mu.Unlock()
}
