package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// fakeSource is a kernel engine whose ring buffer the test fills.
type fakeSource struct {
	ring chan loader.Event
	// late are records made before Detach that the session has not read
	// yet: they reach the ring when it detaches.
	late     []loader.Event
	inFlight []loader.Record // what Drain hands over
	readErr  error           // ReadBatch's error once the ring is empty
	sweepErr error

	mu     sync.Mutex
	wake   chan struct{}
	calls  []string // detach, drain, in order
	sweeps int
	swept  chan struct{} // a token per sweep
}

func newFakeSource() *fakeSource {
	return &fakeSource{ring: make(chan loader.Event, 64), swept: make(chan struct{}, 1024), wake: make(chan struct{}, 1)}
}

// Wait returns when an event is in the ring, at the deadline, or when
// woken.
func (f *fakeSource) Wait(deadline time.Time) error {
	f.mu.Lock()
	wake := f.wake
	f.mu.Unlock()
	if len(f.ring) > 0 {
		return nil
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(f.ring) == 0 {
		select {
		case <-t.C:
			return nil
		case <-wake:
			return nil
		case <-tick.C:
		}
	}
	return nil
}

func (f *fakeSource) Wake() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// ReadBatch takes what the ring holds; readErr once it is empty.
func (f *fakeSource) ReadBatch(max int, fn func(*loader.Event)) (int, error) {
	f.mu.Lock()
	readErr := f.readErr
	f.mu.Unlock()
	for n := 0; n < max; n++ {
		select {
		case ev := <-f.ring:
			fn(&ev)
		default:
			return n, readErr
		}
	}
	return max, nil
}

func (f *fakeSource) SweepIdle() error {
	f.mu.Lock()
	f.sweeps++
	f.mu.Unlock()
	f.swept <- struct{}{}
	return f.sweepErr
}

func (f *fakeSource) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "detach")
	for _, ev := range f.late {
		f.ring <- ev
	}
	return nil
}

func (f *fakeSource) Drain(fn func(*loader.Record)) error {
	f.mu.Lock()
	f.calls = append(f.calls, "drain")
	f.mu.Unlock()
	for i := range f.inFlight {
		rec := f.inFlight[i]
		rec.EndReason = uint8(loader.TracerdEndReasonEND_FLUSH)
		fn(&rec)
	}
	return nil
}

// fakeGo stands in for the Go probes: the test sends their updates.
type fakeGo struct {
	updates  []goprobe.Update
	consume  bool // Observe keeps every event (as calibration samples)
	observed int
	enforced int
	jobs     []goprobe.Job
}

func newFakeGo() *fakeGo { return &fakeGo{} }

func (g *fakeGo) TakeUpdates() []goprobe.Update {
	ups := g.updates
	g.updates = nil
	return ups
}
func (g *fakeGo) Enqueue(_ uint32, what goprobe.Job) { g.jobs = append(g.jobs, what) }
func (g *fakeGo) Observe(*loader.GoEvent) bool       { g.observed++; return !g.consume }
func (g *fakeGo) Enforce()                           { g.enforced++ }

// recorder is a sink that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	reqs []correlate.Request
	got  chan struct{} // a token per request
	err  error         // what Add returns
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1024)} }

func (r *recorder) Add(req *correlate.Request) error {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone())
	r.mu.Unlock()
	r.got <- struct{}{}
	return r.err
}

func (r *recorder) requests() []correlate.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// wait returns once n more requests have come.
func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d requests came", i, n)
		}
	}
}

const pid = 42

// record is a finished HTTP/1 request of pid, from peer, read and
// answered just now on goroutine goid.
func record(sk uint64, goid uint64, peer string) loader.Event {
	ev := loader.Event{Kind: loader.KindRequest}
	rec := &ev.Request
	rec.Pid, rec.Sk, rec.Goid = pid, sk, goid
	rec.T_rd = uint64(correlate.MonotonicNow())
	rec.T_wl = rec.T_rd + 1000
	rec.T_tx = rec.T_wl
	rec.EndReason = uint8(loader.TracerdEndReasonEND_NEXT_REQUEST)
	rec.Family = uint16(loader.TracerdAddrFamilyFAMILY_INET)
	ap := netip.MustParseAddrPort(peer)
	a := ap.Addr().As4()
	copy(rec.Raddr[:], a[:])
	rec.Rport, rec.Lport = ap.Port(), 8080
	rec.ReqLen = uint16(copy(rec.ReqHead[:], "GET /x HTTP/1.1\r\n\r\n"))
	return ev
}

// serveHTTP is net/http's ServeHTTP of method path on goroutine goid,
// from entry to return around mono.
func serveHTTP(goid uint64, mono uint64, proto uint8, remote, method, path string) loader.Event {
	ev := loader.Event{Kind: loader.KindGo}
	g := &ev.Go
	g.Kind, g.Pid, g.Goid = uint32(loader.KindGo), pid, goid
	g.Func = uint32(loader.TracerdGoFuncGO_SERVE_HTTP)
	g.Start, g.End = mono, mono+500
	g.ProtoMajor = proto
	g.MethodLen = cString(g.Method[:], method)
	g.PathLen = cString(g.Path[:], path)
	g.RemoteLen = cString(g.Remote[:], remote)
	return ev
}

func cString(dst []int8, s string) uint8 {
	for i := range s {
		dst[i] = int8(s[i])
	}
	return uint8(len(s))
}

// httpProbes: pid has net/http probes, all on since an hour ago.
func httpProbes() goprobe.Update {
	return goprobe.Update{PID: pid, OK: true, Probes: goprobe.Probes{HTTP: true, AttachedAt: time.Now().Add(-time.Hour).UnixNano()}}
}

// A record whose ServeHTTP has not returned waits for it: the probes'
// update is applied before the record is judged, and the request comes
// out joined when the call does.
func TestHeldForGoReleased(t *testing.T) {
	sink := newRecorder()
	s := New(newFakeSource(), time.Second, time.Minute, sink)
	gm := newFakeGo()
	s.gm = gm
	gm.updates = append(gm.updates, httpProbes())
	rec := record(1, 5, "127.0.0.1:4000")
	s.dispatch(&rec)
	if n := len(sink.requests()); n != 0 {
		t.Fatalf("%d requests emitted before their ServeHTTP returned", n)
	}
	call := serveHTTP(5, rec.Request.T_rd+100, 1, "127.0.0.1:4000", "PUT", "/y")
	s.dispatch(&call)
	got := sink.requests()
	if len(got) != 1 || got[0].HTTP == nil || got[0].HTTP.Method != "PUT" || len(got[0].Spans) != 1 {
		t.Fatalf("want the record joined with its ServeHTTP: %+v", got)
	}
	if gm.observed != 1 || s.Requests() != 1 {
		t.Errorf("Go events observed %d, requests %d; want 1, 1", gm.observed, s.Requests())
	}
}

// An event the Go probes keep (a calibration sample) never reaches the
// correlator: the held record is not released by it.
func TestGoEventConsumed(t *testing.T) {
	sink := newRecorder()
	s := New(newFakeSource(), time.Second, time.Minute, sink)
	gm := newFakeGo()
	gm.consume = true
	s.gm = gm
	gm.updates = append(gm.updates, httpProbes())
	rec := record(1, 5, "127.0.0.1:4000")
	s.dispatch(&rec)
	call := serveHTTP(5, rec.Request.T_rd+100, 1, "127.0.0.1:4000", "PUT", "/y")
	s.dispatch(&call)
	if n := len(sink.requests()); n != 0 {
		t.Fatalf("a consumed Go event released %d requests", n)
	}
}

// Process notes become jobs for the Go probes; without Go awareness
// they are ignored.
func TestProcNotes(t *testing.T) {
	s := New(newFakeSource(), time.Second, time.Minute)
	note := func(what loader.TracerdProcWhat) *loader.Event {
		return &loader.Event{Kind: loader.KindProc, Proc: loader.ProcNote{Pid: pid, What: uint32(what)}}
	}
	s.dispatch(note(loader.TracerdProcWhatPROC_TRACED))
	gm := newFakeGo()
	s.gm = gm
	for _, w := range []loader.TracerdProcWhat{loader.TracerdProcWhatPROC_TRACED, loader.TracerdProcWhatPROC_EXEC, loader.TracerdProcWhatPROC_EXIT, 99} {
		s.dispatch(note(w))
	}
	if want := []goprobe.Job{goprobe.AttachIfNew, goprobe.Reattach, goprobe.Remove}; !slices.Equal(gm.jobs, want) {
		t.Errorf("jobs %v, want %v", gm.jobs, want)
	}
}

// The rate bound runs once a second, not on every tick.
func TestTickEnforcesOncePerSecond(t *testing.T) {
	s := New(newFakeSource(), time.Second, time.Minute)
	gm := newFakeGo()
	s.gm = gm
	last := time.Now().Add(-2 * time.Second)
	s.tick(&last)
	s.tick(&last)
	if gm.enforced != 1 || time.Since(last) > time.Second {
		t.Errorf("enforced %d times, last %v ago; want once, just now", gm.enforced, time.Since(last))
	}
}

// Every sink gets every request; each failed call is counted, requests
// once each.
func TestSinkErrorsCounted(t *testing.T) {
	good, bad := newRecorder(), newRecorder()
	bad.err = errors.New("disk full")
	s := New(newFakeSource(), time.Second, time.Minute, bad, good)
	for i := range 3 {
		rec := record(uint64(i), 0, "127.0.0.1:4000")
		s.dispatch(&rec)
	}
	if len(good.requests()) != 3 || len(bad.requests()) != 3 || s.SinkErrors() != 3 || s.Requests() != 3 {
		t.Errorf("good sink %d, failing sink %d, errors %d, requests %d; want 3 each",
			len(good.requests()), len(bad.requests()), s.SinkErrors(), s.Requests())
	}
}

// At stop the session detaches, reads what the ring buffer still holds,
// drains the requests in progress and flushes what waits for Go calls:
// a held record whose ServeHTTP never came, and an HTTP/2 stream no
// record claimed.
func TestRunStop(t *testing.T) {
	src := newFakeSource()
	sink := newRecorder()
	s := New(src, time.Second, time.Minute, sink)
	gm := newFakeGo()
	s.SetLogger(slog.New(slog.DiscardHandler))
	s.gm = gm
	gm.updates = append(gm.updates, httpProbes())
	answered := record(1, 0, "127.0.0.1:4000") // notes the traced peer
	held := record(2, 5, "127.0.0.1:4001")
	stream := serveHTTP(9, answered.Request.T_rd, 2, "127.0.0.1:4000", "POST", "/h2")
	src.ring <- answered
	src.ring <- held
	src.ring <- stream
	src.late = []loader.Event{record(3, 0, "127.0.0.1:4002")}
	src.inFlight = []loader.Record{record(4, 0, "127.0.0.1:4003").Request}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	sink.wait(t, 1) // the answered record; the others wait
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.calls, []string{"detach", "drain"}) {
		t.Errorf("calls %v, want detach then drain", src.calls)
	}
	bySock := map[uint64]correlate.Request{}
	var streams []correlate.Request
	for _, r := range sink.requests() {
		if r.EndReason == correlate.EndStream {
			streams = append(streams, r)
			continue
		}
		bySock[r.Conn.Sock] = r
	}
	for sk, want := range map[uint64]correlate.EndReason{1: correlate.EndNextRequest, 2: correlate.EndNextRequest, 3: correlate.EndNextRequest, 4: correlate.EndFlush} {
		if r, ok := bySock[sk]; !ok || r.EndReason != want {
			t.Errorf("record of sock %d: came %v, end %v; want %v", sk, ok, r.EndReason, want)
		}
	}
	if r := bySock[2]; len(r.Spans) != 0 {
		t.Errorf("the held record came out joined with %+v", r.Spans)
	}
	if len(streams) != 1 || streams[0].HTTP.Target != "/h2" {
		t.Errorf("streams %+v, want the HTTP/2 call", streams)
	}
	if s.Requests() != 5 || s.Drained() != 1 {
		t.Errorf("requests %d drained %d, want 5 and 1", s.Requests(), s.Drained())
	}
}

// A read error ends the run with it, and what is in flight is still
// drained; a failing idle sweep is logged once.
func TestRunReadError(t *testing.T) {
	src := newFakeSource()
	src.sweepErr = errors.New("no sweep")
	broken := errors.New("ring buffer gone")
	sink := newRecorder()
	log := &countingHandler{}
	s := New(src, 10*time.Millisecond, time.Minute, sink)
	s.SetLogger(slog.New(log))
	src.inFlight = []loader.Record{record(1, 0, "127.0.0.1:4000").Request}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	for range 3 {
		<-src.swept
	}
	src.mu.Lock()
	src.readErr = broken
	src.mu.Unlock()
	if err := <-done; !errors.Is(err, broken) {
		t.Fatalf("Run: %v, want %v", err, broken)
	}
	if len(sink.requests()) != 1 || s.Drained() != 1 {
		t.Errorf("%d requests, %d drained; want the one in flight", len(sink.requests()), s.Drained())
	}
	if n := log.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for failing sweeps, want 1", n)
	}
}

// countingHandler counts records by level.
type countingHandler struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels = append(h.levels, r.Level)
	return nil
}

func (h *countingHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, x := range h.levels {
		if x == l {
			n++
		}
	}
	return n
}

// flushRecorder is a buffering sink: what Add got is out at Flush.
type flushRecorder struct {
	mu      sync.Mutex
	added   []time.Time // when each pending request came
	waited  []time.Duration
	flushes int
}

func (f *flushRecorder) Add(*correlate.Request) error {
	f.mu.Lock()
	f.added = append(f.added, time.Now())
	f.mu.Unlock()
	return nil
}

func (f *flushRecorder) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range f.added {
		f.waited = append(f.waited, time.Since(at))
	}
	f.added = f.added[:0]
	f.flushes++
	return nil
}

// Records that come one by one, each waking the reader, are flushed at
// the periodic looks, not at each wake-up, each within PollEvery (and
// a little scheduling) of being read; the stop flushes the rest.
func TestFlushAtPeriodicLooks(t *testing.T) {
	src := newFakeSource()
	sink := &flushRecorder{}
	s := New(src, time.Second, time.Minute, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	const n, every = 120, 5 * time.Millisecond
	for i := range n {
		src.ring <- record(uint64(i), 0, "127.0.0.1:4000")
		time.Sleep(every)
	}
	time.Sleep(PollEvery + 50*time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.waited) != n || len(sink.added) != 0 {
		t.Fatalf("%d requests flushed, %d not; want %d, 0", len(sink.waited), len(sink.added), n)
	}
	// ≈ 0.75 s of records: 5 or 6 periods, and the stop's.
	if max := int(n*every/PollEvery) + 3; sink.flushes > max {
		t.Errorf("%d flushes for %d wake-ups; want at most %d (one per period)", sink.flushes, n, max)
	}
	if longest := slices.Max(sink.waited); longest > PollEvery+50*time.Millisecond {
		t.Errorf("a request waited %v for its flush; want ≤ PollEvery (%v) and scheduling", longest, PollEvery)
	}
}
