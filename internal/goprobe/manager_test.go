package goprobe

import (
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracerd/tracerd/internal/goinspect"
	"github.com/tracerd/tracerd/internal/loader"
)

// fakeEngine records which processes the BPF programs would act for.
type fakeEngine struct {
	mu       sync.Mutex
	deleted  []uint32
	onDelete func(pid uint32) // runs in DeleteGoProc, unlocked
}

func (e *fakeEngine) SetGoProc(uint32, loader.TracerdGoProc) error { return nil }
func (e *fakeEngine) DeleteGoProc(pid uint32) error {
	e.mu.Lock()
	e.deleted = append(e.deleted, pid)
	f := e.onDelete
	e.mu.Unlock()
	if f != nil {
		f(pid)
	}
	return nil
}
func (e *fakeEngine) Programs() map[string]*ebpf.Program { return nil }
func (e *fakeEngine) UprobeMulti() bool                  { return true }

// fakeLink counts its closes; nothing else of link.Link is called.
type fakeLink struct {
	link.Link
	closes *atomic.Int32
}

func (l fakeLink) Close() error { l.closes.Add(1); return nil }

func newTestManager(t *testing.T) (*Manager, *fakeEngine, *logRecorder) {
	t.Helper()
	log := &logRecorder{}
	m := New(nil, slog.New(log))
	e := &fakeEngine{}
	m.tracer = e
	return m, e, log
}

// addProc gives the manager pid with n links in each group.
func addProc(m *Manager, pid uint32, closes *atomic.Int32, probes Probes, groups ...string) {
	p := &proc{goVersion: "go1.24", links: map[string][]link.Link{}, probes: probes}
	for _, g := range groups {
		p.links[g] = []link.Link{fakeLink{closes: closes}, fakeLink{closes: closes}}
	}
	m.procs[pid] = p
}

// nextUpdate returns the one update waiting, failing when there is not
// exactly one.
func nextUpdate(t *testing.T, m *Manager) Update {
	t.Helper()
	ups := m.TakeUpdates()
	if len(ups) != 1 {
		t.Fatalf("updates %+v, want one", ups)
	}
	return ups[0]
}

func noUpdate(t *testing.T, m *Manager) {
	t.Helper()
	if ups := m.TakeUpdates(); len(ups) != 0 {
		t.Fatalf("unexpected updates %+v", ups)
	}
}

// The cookie's layout is the BPF programs': the function in the low 32
// bits (they read (__u32)cookie), the site from GO_COOKIE_SITE_SHIFT.
func TestCookieLayout(t *testing.T) {
	f := goinspect.Func{Name: "encoding/json.Marshal", EntryProbe: 0x100, Returns: []uint64{0x180, 0x1c0}}
	ps, err := probesOf(f, *targetOf(loader.TracerdGoFuncGO_JSON_MARSHAL), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []probe{
		{f.Name, loader.TracerdProgGoEntry, 0x100, 1 | 1<<32},
		{f.Name, loader.TracerdProgGoReturn, 0x180, 1 | 2<<32},
		{f.Name, loader.TracerdProgGoReturn, 0x1c0, 1 | 2<<32},
	}
	if !slices.Equal(ps, want) {
		t.Errorf("probes %+v, want %+v", ps, want)
	}
	for _, p := range ps {
		if fn, site := goFunc(uint32(p.cookie)), loader.TracerdProbeSite(p.cookie>>loader.TracerdGoCookieGO_COOKIE_SITE_SHIFT); fn != loader.TracerdGoFuncGO_JSON_MARSHAL ||
			(site == loader.TracerdProbeSitePROBE_AT_ENTRY) != (p.prog == loader.TracerdProgGoEntry) {
			t.Errorf("cookie %#x reads as function %d at site %d", p.cookie, fn, site)
		}
	}
	f.Returns = nil
	if _, err := probesOf(f, *targetOf(loader.TracerdGoFuncGO_JSON_MARSHAL), nil); err == nil {
		t.Error("a timed function without RET instructions was probed")
	}
}

// Exits replace the RETs: emulated ones at the exit site, a RET kept on a
// path without one at the RET site; the RETs themselves are not probed.
func TestExitProbes(t *testing.T) {
	f := goinspect.Func{Name: "encoding/json.Unmarshal", EntryProbe: 0x100, Returns: []uint64{0x180, 0x1c0}}
	exits := []goinspect.Exit{
		{Func: "encoding/json.(*decodeState).unmarshal", Offset: 0x2f0, Emulated: true},
		{Func: "encoding/json.Unmarshal", Offset: 0x1c0},
	}
	ps, err := probesOf(f, *targetOf(loader.TracerdGoFuncGO_JSON_UNMARSHAL), exits)
	if err != nil {
		t.Fatal(err)
	}
	want := []probe{
		{f.Name, loader.TracerdProgGoEntry, 0x100, 2 | 1<<32},
		{exits[0].Func, loader.TracerdProgGoReturn, 0x2f0, 2 | 3<<32},
		{exits[1].Func, loader.TracerdProgGoReturn, 0x1c0, 2 | 2<<32},
	}
	if !slices.Equal(ps, want) {
		t.Errorf("probes %+v, want %+v", ps, want)
	}
}

// One program at one address is one probe: the second function sharing
// it is in the cookie's alternative byte (what go_return tries next); a
// third gets a probe of its own; entries are never merged with exits.
func TestShareExits(t *testing.T) {
	ret := loader.TracerdProgGoReturn
	exit := func(fn goFunc) uint64 { return cookie(fn, loader.TracerdProbeSitePROBE_AT_EXIT) }
	in := []probe{
		{"a", loader.TracerdProgGoEntry, 0x10, cookie(loader.TracerdGoFuncGO_JSON_UNMARSHAL, loader.TracerdProbeSitePROBE_AT_ENTRY)},
		{"u", ret, 0x2f0, exit(loader.TracerdGoFuncGO_JSON_UNMARSHAL)},
		{"d", loader.TracerdProgGoEntry, 0x20, cookie(loader.TracerdGoFuncGO_JSON_DECODE, loader.TracerdProbeSitePROBE_AT_ENTRY)},
		{"u", ret, 0x2f0, exit(loader.TracerdGoFuncGO_JSON_DECODE)},
		{"u", ret, 0x2f0, exit(loader.TracerdGoFuncGO_JSON_DECODE)},
		{"u", ret, 0x2f0, exit(loader.TracerdGoFuncGO_PROTO_UNMARSHAL)},
	}
	got := shareExits(in)
	want := []probe{in[0], in[1], in[2], in[5]}
	want[1].cookie |= uint64(loader.TracerdGoFuncGO_JSON_DECODE) << loader.TracerdGoCookieGO_COOKIE_ALT_SHIFT
	if !slices.Equal(got, want) {
		t.Errorf("shared %+v\nwant %+v", got, want)
	}
	if alt := got[1].cookie >> loader.TracerdGoCookieGO_COOKIE_ALT_SHIFT & 0xff; goFunc(alt) != loader.TracerdGoFuncGO_JSON_DECODE {
		t.Errorf("alternative function %d", alt)
	}
	if site := loader.TracerdProbeSite(got[1].cookie >> loader.TracerdGoCookieGO_COOKIE_SITE_SHIFT & 0xff); site != loader.TracerdProbeSitePROBE_AT_EXIT {
		t.Errorf("site %d after sharing", site)
	}
}

// Every probed function belongs to one group, whatever symbol it is
// found by; the groups are those Probes has; Attach's counts hold.
func TestTargetGroups(t *testing.T) {
	perGroup := map[string]int{}
	for _, tg := range targets {
		if first := targetOf(tg.fn); first.group != tg.group {
			t.Errorf("%s: group %s, but %s of the same function is in %s", tg.symbol, tg.group, first.symbol, first.group)
		}
		var p Probes
		p.GC, p.Serialization, p.HTTP, p.GRPC, p.TLS, p.HTTPClient = true, true, true, true, true, true
		p.switchOff(tg.group)
		if p.GC && p.Serialization && p.HTTP && p.GRPC && p.TLS && p.HTTPClient {
			t.Errorf("%s: group %q switches off no measurement", tg.symbol, tg.group)
		}
		perGroup[tg.group]++
	}
	// Attach needs both STW functions for gc, both gRPC ones for grpc,
	// both client ones for http_client.
	if perGroup["gc"] != 2 || perGroup["grpc"] != 2 || perGroup["http_client"] != 2 {
		t.Errorf("targets per group %v", perGroup)
	}
	if targetOf(loader.TracerdGoFuncGO_CALIBRATE) != nil {
		t.Error("calibration's function is probed in processes")
	}
}

// A function firing over the bound has its group switched off in that
// process (links closed, the correlator told), and only there; counts
// start again every second.
func TestEnforce(t *testing.T) {
	m, _, log := newTestManager(t)
	m.SetMaxCallsPerSecond(10)
	var closes7, closes8 atomic.Int32
	all := Probes{GC: true, Serialization: true, HTTP: true, AttachedAt: 1}
	addProc(m, 7, &closes7, all, "gc", "serialization", "http")
	addProc(m, 8, &closes8, all, "gc", "serialization", "http")
	observe := func(pid uint32, fn goFunc, n int) {
		for range n {
			if !m.Observe(&loader.GoEvent{Pid: pid, Func: uint32(fn)}) {
				t.Fatal("an event of a probed function was kept from the correlator")
			}
		}
	}
	observe(7, loader.TracerdGoFuncGO_WRITE_HEADER, 11)
	observe(7, loader.TracerdGoFuncGO_JSON_MARSHAL, 10)
	observe(8, loader.TracerdGoFuncGO_WRITE_HEADER, 10)
	observe(9, loader.TracerdGoFuncGO_WRITE_HEADER, 100) // not probed
	m.Enforce()

	u := nextUpdate(t, m)
	want := all
	want.HTTP = false
	if u.PID != 7 || !u.OK || u.Probes != want {
		t.Errorf("update %+v, want pid 7 with %+v", u, want)
	}
	noUpdate(t, m)
	if closes7.Load() != 2 || closes8.Load() != 0 {
		t.Errorf("links closed: %d of pid 7 (want its 2 http ones), %d of pid 8", closes7.Load(), closes8.Load())
	}
	st := m.Processes()
	if len(st) != 2 || st[0].PID != 7 || !slices.Equal(st[0].On, []string{"gc", "serialization"}) || !slices.Equal(st[0].Off, []string{"http"}) || st[0].Links != 4 {
		t.Errorf("status %+v", st)
	}
	if _, ok := log.find(slog.LevelWarn, 7, "net/http.(*response).WriteHeader"); !ok {
		t.Errorf("no warning naming pid 7 and the function; logged:\n%s", log)
	}

	// A new second: under the bound again, and http is off already.
	observe(7, loader.TracerdGoFuncGO_JSON_MARSHAL, 10)
	observe(7, loader.TracerdGoFuncGO_WRITE_HEADER, 20)
	m.Enforce()
	noUpdate(t, m)

	m.SetMaxCallsPerSecond(0) // no bound
	observe(8, loader.TracerdGoFuncGO_WRITE_HEADER, 1000)
	m.Enforce()
	noUpdate(t, m)
}

// Calibration samples are the manager's own; the median becomes the cost
// of every process's probes, the correlator is told, and tracerd's own
// process leaves the BPF programs' map.
func TestCalibration(t *testing.T) {
	m, e, _ := newTestManager(t)
	var closes atomic.Int32
	addProc(m, 7, &closes, Probes{HTTP: true, ProbeCostNs: DefaultProbeCostNs}, "http")
	m.calib = &calibration{want: 3}
	for i, ns := range []uint64{3000, 1000, 2000} {
		ev := loader.GoEvent{Pid: uint32(os.Getpid()), Func: uint32(loader.TracerdGoFuncGO_CALIBRATE), Start: 10_000, End: 10_000 + ns}
		if m.Observe(&ev) {
			t.Fatal("a calibration sample went to the correlator")
		}
		if i < 2 {
			noUpdate(t, m)
		}
	}
	if m.cost != 2000 || m.calib != nil {
		t.Errorf("cost %d, want the median 2000; calibration over: %v", m.cost, m.calib == nil)
	}
	if u := nextUpdate(t, m); u.PID != 7 || u.Probes.ProbeCostNs != 2000 || !u.Probes.HTTP {
		t.Errorf("update %+v", u)
	}
	if !slices.Equal(e.deleted, []uint32{uint32(os.Getpid())}) {
		t.Errorf("BPF map entries deleted: %v, want tracerd's own", e.deleted)
	}
	// Later samples (calibration over) change nothing.
	late := loader.GoEvent{Func: uint32(loader.TracerdGoFuncGO_CALIBRATE), End: 99_999}
	m.Observe(&late)
	if m.cost != 2000 {
		t.Errorf("cost changed after calibration: %d", m.cost)
	}
	noUpdate(t, m)
}

// Updates come in the order of the changes they tell, whichever
// goroutines made them: here calibration ends (every process's probes
// get the calibrated cost) while a process's probes finish attaching
// (AttachedAt set), between calibration's change and its removal of its
// own probes. The last update is what the probes are now; it used to be
// calibration's, sent after the attach's with AttachedAt still 0, and the
// correlator then held no record for its ServeHTTP
// (TestGoFlushBeforeReturn).
func TestUpdatesInOrder(t *testing.T) {
	m, e, _ := newTestManager(t)
	var closes atomic.Int32
	addProc(m, 7, &closes, Probes{HTTP: true, ProbeCostNs: DefaultProbeCostNs}, "http")
	m.calib = &calibration{want: 1}
	e.onDelete = func(pid uint32) {
		if pid == uint32(os.Getpid()) { // calibration's own, as it closes
			m.allOn(7, m.procs[7], nil)
		}
	}
	ev := loader.GoEvent{Pid: uint32(os.Getpid()), Func: uint32(loader.TracerdGoFuncGO_CALIBRATE), Start: 10_000, End: 12_000}
	m.Observe(&ev)
	ups := m.TakeUpdates()
	if len(ups) != 2 {
		t.Fatalf("updates %+v, want calibration's and the attach's", ups)
	}
	last := ups[len(ups)-1]
	if last.PID != 7 || last.Probes != m.procs[7].probes || last.Probes.AttachedAt == 0 || last.Probes.ProbeCostNs != 2000 {
		t.Errorf("last update %+v, want the probes as they are: %+v", last, m.procs[7].probes)
	}
	if ups[0].Probes.AttachedAt != 0 || ups[0].Probes.ProbeCostNs != 2000 {
		t.Errorf("first update %+v, want calibration's (before AttachedAt)", ups[0])
	}
	noUpdate(t, m)
}

// Detach makes the probes inert first (the BPF map), tells the
// correlator, then closes the links; Close waits for them.
func TestDetach(t *testing.T) {
	m, e, _ := newTestManager(t)
	var closes atomic.Int32
	addProc(m, 7, &closes, Probes{GC: true}, "gc", "http")
	m.Detach(7)
	if u := nextUpdate(t, m); u != (Update{PID: 7}) {
		t.Errorf("update %+v, want pid 7 without probes", u)
	}
	m.Detach(8) // never probed: nothing to tell
	noUpdate(t, m)
	m.Close()
	if closes.Load() != 4 || !slices.Equal(e.deleted, []uint32{7, 8}) || len(m.Attached()) != 0 {
		t.Errorf("links closed %d (want 4), map entries deleted %v, attached %v", closes.Load(), e.deleted, m.Attached())
	}
}

// ServeHTTP's exit probes say which ResponseWriter the call has, by
// where they lie (go_return reads the status there): conn.serve's is a
// *response, handlerDone's an *http2responseWriter; a RET (or another
// exit) says nothing. Where the offsets are known for a kind probed so,
// its WriteHeader probes are left out (statusAtExit).
func TestServeHTTPExitKinds(t *testing.T) {
	f := goinspect.Func{Name: "net/http.serverHandler.ServeHTTP", EntryProbe: 0x100, Returns: []uint64{0x180}}
	exits := []goinspect.Exit{
		{Func: "net/http.(*conn).serve", Offset: 0x200, Emulated: true},
		{Func: "net/http.(*http2responseWriter).handlerDone", Offset: 0x300, Emulated: true},
		{Func: "net/http.(*serverHandler).ServeHTTP", Offset: 0x400},
	}
	ps, err := probesOf(f, *targetOf(loader.TracerdGoFuncGO_SERVE_HTTP), exits)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []loader.TracerdGoRwKind{0, loader.TracerdGoRwKindGO_RW_RESPONSE, loader.TracerdGoRwKindGO_RW_HTTP2, 0}
	for i, p := range ps {
		if k := loader.TracerdGoRwKind(p.cookie >> loader.TracerdGoCookieGO_COOKIE_RW_SHIFT & 0xff); k != kinds[i] {
			t.Errorf("probe %+v: kind %d, want %d", p, k, kinds[i])
		}
		if fn := goFunc(uint32(p.cookie)); fn != loader.TracerdGoFuncGO_SERVE_HTTP {
			t.Errorf("probe %+v: function %d", p, fn)
		}
	}
	bin := &goinspect.Binary{Offsets: goinspect.Offsets{HTTP: true, ResponseStatus: 120, HTTP2: true, HTTP2RWState: 0, HTTP2RWStateStatus: 72}}
	if got := statusAtExit(bin, ps); !got[loader.TracerdGoRwKindGO_RW_RESPONSE] || !got[loader.TracerdGoRwKindGO_RW_HTTP2] {
		t.Errorf("status at exit %v, want both", got)
	}
	bin.Offsets.HTTP2, bin.Offsets.HTTP2RWStateStatus = false, 0
	got := statusAtExit(bin, ps)
	if !got[loader.TracerdGoRwKindGO_RW_RESPONSE] || got[loader.TracerdGoRwKindGO_RW_HTTP2] {
		t.Errorf("status at exit %v, want HTTP/1's alone (HTTP/2's offsets unknown)", got)
	}
	funcs := map[string]goinspect.Func{"net/http.serverHandler.ServeHTTP": f, "net/http.(*response).WriteHeader": {}, "net/http.(*http2responseWriter).WriteHeader": {}}
	if from := statusFrom(funcs, got); !slices.Equal(from, []string{"http1: ServeHTTP exit", "http2: WriteHeader probe"}) {
		t.Errorf("status from %v", from)
	}
	// RETs alone (no exit plan held): no kind, the WriteHeader probes stay.
	ps, _ = probesOf(f, *targetOf(loader.TracerdGoFuncGO_SERVE_HTTP), nil)
	if got := statusAtExit(bin, ps); len(got) != 0 {
		t.Errorf("status at RETs %v", got)
	}
}
