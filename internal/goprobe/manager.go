package goprobe

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tracerd/tracerd/internal/goinspect"
	"github.com/tracerd/tracerd/internal/loader"
)

// goFunc is a probed function's id: shared with the BPF programs, which
// read it from the probe's cookie.
type goFunc = loader.TracerdGoFunc

// target is one probed function: where, with which program and cookie.
type target struct {
	symbol  string // the first of symbol, alt... that the binary has is probed
	fn      goFunc
	entry   string // program at the entry ("" = none)
	returns string // program where a call ends ("" = none)
	group   string // what it measures: gc, serialization, http, grpc
	alt     []string
	// ends: where a call ends, if not at every RET (single-stepped, ≈ 10
	// µs a hit): emulated instructions found by goinspect.Exits, by the
	// first plan that holds for the binary; when none does, the RETs.
	ends []goinspect.ExitPlan
}

// Where calls end. The serialization functions: when their worker's call
// returns (what is left is bookkeeping), but json.Marshal copies its
// result out after (≈ 5 % of its time, more than the phase may be off):
// in its callers when all of them can be found.
var (
	jsonMarshalEnds = []goinspect.ExitPlan{{Callers: true}, {After: []string{"encoding/json.(*encodeState).marshal"}}}
	jsonEncodeEnds  = []goinspect.ExitPlan{{After: []string{"encoding/json.(*encodeState).marshal"}}}
	// Unmarshal calls the decoder last: the value's decoding in it.
	jsonDecodeEnds = []goinspect.ExitPlan{{After: []string{"encoding/json.(*decodeState).unmarshal", "encoding/json.(*decodeState).value"}}}
	// The slow path's call; the generated code's fast path joins it
	// right after.
	protoMarshalEnds   = []goinspect.ExitPlan{{After: []string{"google.golang.org/protobuf/proto.MarshalOptions.marshalMessageSlow"}}}
	protoUnmarshalEnds = []goinspect.ExitPlan{{After: []string{"google.golang.org/protobuf/proto.UnmarshalOptions.unmarshalMessageSlow"}}}
	// net/http calls serverHandler.ServeHTTP from conn.serve, then
	// cancels the request's context (an indirect call, counted in the
	// span) and calls c.hijacked(): there. HTTP/2 calls it through
	// handlers that return right after, run by runHandler through an
	// interface; its deferred function then calls handlerDone.
	serveHTTPEnds = []goinspect.ExitPlan{{Callers: true, CrossCalls: 1, Follow: map[string]string{
		"net/http.initALPNRequest.ServeHTTP":         "net/http.(*http2responseWriter).handlerDone",
		"net/http.unencryptedHTTP2Request.ServeHTTP": "net/http.(*http2responseWriter).handlerDone",
	}}}
)

// rwKinds: where a ServeHTTP call's exit lies says which ResponseWriter
// it has (the exit probe's cookie carries it; go_return reads the status
// there): conn.serve serves HTTP/1 with a *response, runHandler calls
// handlerDone of the bundled HTTP/2 server's *http2responseWriter.
var rwKinds = map[string]loader.TracerdGoRwKind{
	"net/http.(*conn).serve":                      loader.TracerdGoRwKindGO_RW_RESPONSE,
	"net/http.(*http2responseWriter).handlerDone": loader.TracerdGoRwKindGO_RW_HTTP2,
}

// writeHeaderKinds: the status probes, by the ResponseWriter whose
// status they give; left out where ServeHTTP's exit reads it.
var writeHeaderKinds = map[string]loader.TracerdGoRwKind{
	"net/http.(*response).WriteHeader":                 loader.TracerdGoRwKindGO_RW_RESPONSE,
	"net/http.(*http2responseWriter).WriteHeader":      loader.TracerdGoRwKindGO_RW_HTTP2,
	"net/http.(*http2responseWriterState).writeHeader": loader.TracerdGoRwKindGO_RW_HTTP2,
}

// maxClassicExits bounds the exits of one function where each is a
// classic uprobe (no uprobe_multi): removing one takes the kernel ≈ 90 ms.
const maxClassicExits = 16

// targets lists every function tracerd probes when the binary has it.
var targets = []target{
	// GC pauses are rare (a few per GC cycle): their RETs stay probed.
	{"runtime.stopTheWorldWithSema", loader.TracerdGoFuncGO_STW, loader.TracerdProgGoStwStop, "", "gc", nil, nil},
	// The pause ends at startTheWorldWithSema's entry or at its RETs,
	// depending on the pause (see go_stw_start); probed at both.
	{"runtime.startTheWorldWithSema", loader.TracerdGoFuncGO_STW, loader.TracerdProgGoStwStart, loader.TracerdProgGoStwStart, "gc", nil, nil},
	{"encoding/json.Marshal", loader.TracerdGoFuncGO_JSON_MARSHAL, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization", nil, jsonMarshalEnds},
	{"encoding/json.Unmarshal", loader.TracerdGoFuncGO_JSON_UNMARSHAL, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization", nil, jsonDecodeEnds},
	// Encode's write of the result to its io.Writer comes after: not
	// serialization.
	{"encoding/json.(*Encoder).Encode", loader.TracerdGoFuncGO_JSON_ENCODE, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization", nil, jsonEncodeEnds},
	{"encoding/json.(*Decoder).Decode", loader.TracerdGoFuncGO_JSON_DECODE, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization", nil, jsonDecodeEnds},
	// The core every Marshal variant calls (proto.Marshal,
	// MarshalOptions.Marshal/MarshalAppend: grpc-go's codec uses the
	// latter two), else proto.Marshal itself; likewise for Unmarshal.
	{"google.golang.org/protobuf/proto.MarshalOptions.marshal", loader.TracerdGoFuncGO_PROTO_MARSHAL, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization",
		[]string{"google.golang.org/protobuf/proto.Marshal"}, protoMarshalEnds},
	{"google.golang.org/protobuf/proto.UnmarshalOptions.unmarshal", loader.TracerdGoFuncGO_PROTO_UNMARSHAL, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "serialization",
		[]string{"google.golang.org/protobuf/proto.Unmarshal"}, protoUnmarshalEnds},
	{"net/http.serverHandler.ServeHTTP", loader.TracerdGoFuncGO_SERVE_HTTP, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "http", nil, serveHTTPEnds},
	// The response status: read at ServeHTTP's exit where its offsets
	// are known and the exit says which ResponseWriter the call has
	// (see rwKinds); else, per protocol, from these probes (a hit more
	// per request).
	{"net/http.(*response).WriteHeader", loader.TracerdGoFuncGO_WRITE_HEADER, loader.TracerdProgGoWriteHeader, "", "http", nil, nil},
	{"net/http.(*http2responseWriter).WriteHeader", loader.TracerdGoFuncGO_WRITE_HEADER, loader.TracerdProgGoWriteHeader, "", "http", nil, nil},
	// HTTP/2's implicit 200 (a handler that only writes) calls the
	// state's writeHeader with WriteHeader inlined away: probe it too.
	{"net/http.(*http2responseWriterState).writeHeader", loader.TracerdGoFuncGO_WRITE_HEADER, loader.TracerdProgGoWriteHeader, "", "http", nil, nil},
	// grpc-go servers: one call per RPC on the stream's goroutine, ended
	// by the status it writes last (go_grpc_status; probed only when
	// the layout is known).
	{goinspect.GRPCHandleStream, loader.TracerdGoFuncGO_GRPC_METHOD, loader.TracerdProgGoEntry, "", "grpc", nil, nil},
	{goinspect.GRPCWriteStatus, loader.TracerdGoFuncGO_GRPC_STATUS, loader.TracerdProgGoGrpcStatus, "", "grpc",
		[]string{goinspect.GRPCWriteStatusOld}, nil},
	// A TLS server connection's handshake, once per connection: called
	// through a method value (no caller can be proven), so it ends at
	// its RETs (single-stepped, ≈ 10 µs a handshake), where what was
	// negotiated is read from the Conn (go_return's tls_handshake_done).
	{goinspect.TLSServerHandshake, loader.TracerdGoFuncGO_TLS_HANDSHAKE, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "tls", nil, nil},
	// An outbound TLS connection's handshake (the traced process is the
	// client): the same way; its record's calls fold it in as their
	// tls_handshake phase.
	{goinspect.TLSClientHandshake, loader.TracerdGoFuncGO_TLS_CLIENT_HANDSHAKE, loader.TracerdProgGoEntry, loader.TracerdProgGoReturn, "tls", nil, nil},
	// The HTTP/1 client (outbound calls): entries only (instants, an
	// emulated instruction each), in functions only a client runs: the
	// request about to be written (method, target) and the response
	// about to be parsed (status, from the buffer the readLoop peeked
	// into). A server that calls out costs nothing.
	{goinspect.HTTPClientWrite, loader.TracerdGoFuncGO_HTTP_CLIENT_REQUEST, loader.TracerdProgGoHttpClientRequest, "", "http_client", nil, nil},
	{goinspect.HTTPClientReadResponse, loader.TracerdGoFuncGO_HTTP_CLIENT_RESPONSE, loader.TracerdProgGoHttpClientResponse, "", "http_client", nil, nil},
}

// DefaultMaxCallsPerSecond bounds how often one probed function may fire
// in one process before its probes are switched off: a guard, not the
// normal state. Calls end at emulated instructions, so an entry and an
// exit cost the process ≈ 2–4 µs a call together (BENCHMARKS.md), and
// 50,000 calls/s ≈ 10–20 % of a core.
const DefaultMaxCallsPerSecond = 50_000

// Probes says which Go measurements a process has, so that an
// unmeasured phase stays absent rather than zero.
type Probes struct {
	GC            bool
	Serialization bool
	HTTP          bool
	GRPC          bool // grpc-go server: method names and status codes
	TLS           bool // crypto/tls server handshakes are timed
	// HTTPClient: the net/http client's requests (method, target) and
	// responses (status) are seen, HTTP/1 over TLS or not.
	HTTPClient bool
	// OpenSSL: not a Go process; its libssl is probed (handshake ends,
	// HTTP/1 request lines and statuses under TLS), events keyed by
	// thread id.
	OpenSSL bool
	// AttachedAt is when every probe was on (wall ns; 0 while attaching):
	// a request that began before may have Go calls nobody saw begin.
	AttachedAt int64
	// ProbeCostNs is subtracted from calls timed entry → RET: the time
	// the uprobe traps themselves add (calibrated at start).
	ProbeCostNs int64
}

// switchOff marks a group's measurements as absent.
func (p *Probes) switchOff(group string) {
	switch group {
	case "serialization":
		p.Serialization = false
	case "http":
		p.HTTP = false
	case "gc":
		p.GC = false
	case "grpc":
		p.GRPC = false
	case "tls":
		p.TLS = false
	case "http_client":
		p.HTTPClient = false
	case "openssl":
		p.TLS, p.OpenSSL = false, false
	}
}

// Update is applied by the caller to its correlator, on the goroutine
// that owns it (TakeUpdates): what a process's probes are after one
// change.
type Update struct {
	PID    uint32
	Probes Probes
	OK     bool // false: the process has no Go probes (any more)
}

// engine is what the manager needs of the kernel engine (loader.Tracer).
type engine interface {
	SetGoProc(pid uint32, p loader.TracerdGoProc) error
	DeleteGoProc(pid uint32) error
	Programs() map[string]*ebpf.Program
	UprobeMulti() bool
}

// Manager owns every Go process's probes.
type Manager struct {
	tracer  engine
	log     *slog.Logger
	maxRate int

	mu    sync.Mutex
	procs map[uint32]*proc
	cost  int64 // calibrated ns added by entry + RET traps
	calib *calibration
	// updates are the changes not taken yet, queued under mu where each
	// is made, so in the order they were made (see tell); nUpdates lets
	// TakeUpdates, called for every event, skip the lock.
	updates  []Update
	nUpdates atomic.Int32

	workerOnce sync.Once
	jobs       chan job
	unlinking  sync.WaitGroup // links of exited processes being closed

	// The rate bound's counts of the current second, by process: kept
	// by Observe and taken by Enforce, both on the reader's goroutine,
	// so an event takes no lock (lastPID and last: the process of the
	// last event, so that a run of events of one process looks up the
	// map once). A process's counts stay while it has events, zeroed each
	// second: no allocation per event, nor per second.
	calls   map[uint32]*callCounts
	lastPID uint32
	last    *callCounts
}

// callCounts are one process's Go events in a second, by function.
type callCounts [loader.TracerdGoFuncGO_FUNC_MAX]uint32

type proc struct {
	goVersion  string
	statusFrom []string               // where HTTP statuses come from (ProcessState.HTTPStatus)
	links      map[string][]link.Link // by group
	probes     Probes
	off        []string // groups the rate bound switched off
}

// New returns a manager; updates for the correlator are taken with
// TakeUpdates.
func New(t *loader.Tracer, log *slog.Logger) *Manager {
	return &Manager{
		tracer:  t,
		log:     log,
		maxRate: DefaultMaxCallsPerSecond,
		procs:   map[uint32]*proc{},
		cost:    DefaultProbeCostNs,
	}
}

// tell queues pid's probes as a change just made them; m.mu is held.
// Each update is a whole Probes, so the correlator keeps the last one
// it applies: queued under the lock of the change it tells, updates
// are taken in the order of the changes, whatever goroutines made them.
// (They were sent on a channel after the lock was released: calibration
// ending while a process's probes attached could send that process's
// Probes from before AttachedAt was set after the attach's own update;
// the correlator kept AttachedAt 0, held no record for its ServeHTTP,
// and the records of handlers that answer before they return came out
// without it.) Never blocking, it may run under the lock.
func (m *Manager) tell(u Update) {
	m.updates = append(m.updates, u)
	m.nUpdates.Store(int32(len(m.updates)))
}

// TakeUpdates returns the probe changes made since the last call, in
// the order they were made, to apply to the correlator.
func (m *Manager) TakeUpdates() []Update {
	if m.nUpdates.Load() == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ups := m.updates
	m.updates = nil
	m.nUpdates.Store(0)
	return ups
}

// SetMaxCallsPerSecond changes the per-function rate bound (0: none).
func (m *Manager) SetMaxCallsPerSecond(n int) { m.maxRate = n }

// Attach inspects pid's executable and attaches probes. Not a Go binary,
// or one that cannot be inspected: an error saying why (the kernel engine
// still traces the process).
func (m *Manager) Attach(pid uint32) error {
	return withTightGC(func() error { return m.attach(pid) })
}

func (m *Manager) attach(pid uint32) error {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	bin, err := goinspect.Open(exe)
	if errors.Is(err, goinspect.ErrNotGo) {
		if serr := m.attachOpenSSL(pid); !errors.Is(serr, errNoOpenSSL) {
			return serr
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		bin.Close()
		if bin.OffsetsFrom == "dwarf" {
			// The binary's DWARF, decompressed and parsed, is tens of MiB
			// of garbage now: give it back rather than keep it as RSS.
			debug.FreeOSMemory()
		}
	}()

	funcs, groups, refused, attachErrs := m.targetsOf(pid, bin)
	if len(funcs) == 0 {
		// Every Go binary has the runtime's stop-the-world functions:
		// none found means the symbols could not be trusted.
		return errors.Join(append([]error{fmt.Errorf("no function to probe in %s (symbols from %s)", exe, bin.SymbolsFrom)}, attachErrs...)...)
	}
	if err := m.tracer.SetGoProc(pid, procOffsets(bin)); err != nil {
		return fmt.Errorf("registering pid %d: %w", pid, err)
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return err
	}
	p := &proc{goVersion: bin.GoVersion, links: map[string][]link.Link{}}
	m.mu.Lock()
	if old := m.procs[pid]; old != nil {
		closeLinks(old.links)
	}
	// Both STW functions are needed; serialization counts as probed when
	// none of its functions is linked in (nothing to time: 0 is right).
	p.probes = Probes{
		GC:            groups["gc"] == 2 && !refused["gc"],
		Serialization: !refused["serialization"],
		HTTP:          groups["http"] > 0 && !refused["http"],
		GRPC:          groups["grpc"] == 2 && !refused["grpc"],
		TLS:           groups["tls"] > 0 && !refused["tls"],
		HTTPClient:    groups["http_client"] == 2 && !refused["http_client"],
		ProbeCostNs:   m.cost,
	}
	m.procs[pid] = p
	// The correlator learns of the process before its first event.
	m.tell(Update{PID: pid, Probes: p.probes, OK: true})
	m.mu.Unlock()

	failed := maps.Clone(refused)
	plan := map[string][]probe{} // by group
	var groupOrder []string
	var exitProbes, retProbes int
	exitsStart := time.Now()
	m.scanCallers(pid, bin, funcs)
	// ServeHTTP's exits come before the status probes (targets' order):
	// what they can read decides which of those are needed.
	var exitStatus map[loader.TracerdGoRwKind]bool
	for _, tg := range targets {
		f, ok := funcs[tg.symbol]
		if !ok || refused[tg.group] {
			continue // a group missing a refused function would measure wrong
		}
		if kind, ok := writeHeaderKinds[tg.symbol]; ok && exitStatus[kind] {
			continue
		}
		ps, err := probesOf(f, tg, m.endsOf(pid, bin, f, tg))
		if err == nil && tg.fn == loader.TracerdGoFuncGO_SERVE_HTTP {
			exitStatus = statusAtExit(bin, ps)
		}
		if err != nil {
			attachErrs = append(attachErrs, fmt.Errorf("%s: %w", tg.symbol, err))
			failed[tg.group] = true
			continue
		}
		if plan[tg.group] == nil {
			groupOrder = append(groupOrder, tg.group)
		}
		plan[tg.group] = append(plan[tg.group], ps...)
	}
	exitsTook := time.Since(exitsStart)
	for _, group := range groupOrder {
		plan[group] = carryGoid(shareExits(plan[group]), bin.Offsets.GGoid)
		for _, p := range plan[group] {
			switch loader.TracerdProbeSite(p.cookie >> loader.TracerdGoCookieGO_COOKIE_SITE_SHIFT & 0xff) {
			case loader.TracerdProbeSitePROBE_AT_EXIT:
				exitProbes++
			case loader.TracerdProbeSitePROBE_AT_RET:
				retProbes++
			}
		}
	}
	for _, group := range groupOrder {
		ls, err := m.attachProbes(ex, plan[group], pid)
		m.mu.Lock()
		p.links[group] = append(p.links[group], ls...)
		m.mu.Unlock()
		if err != nil {
			attachErrs = append(attachErrs, fmt.Errorf("%s probes: %w", group, err))
			failed[group] = true
		}
	}
	m.mu.Lock()
	p.statusFrom = statusFrom(funcs, exitStatus)
	m.mu.Unlock()
	m.allOn(pid, p, failed)
	m.log.Info("Go probes attached", "pid", pid, "go", bin.GoVersion, "stripped", bin.Stripped,
		"symbols", bin.SymbolsFrom, "offsets", bin.OffsetsFrom, "links", countLinks(p.links),
		"exit_probes", exitProbes, "ret_probes", retProbes, "exits_found_in", exitsTook.Round(time.Millisecond), "gc", p.probes.GC,
		"serialization", p.probes.Serialization, "http", p.probes.HTTP, "grpc", p.probes.GRPC, "tls", p.probes.TLS, "tls_fields", bin.TLS != nil,
		"http_client", p.probes.HTTPClient, "http_client_status", p.probes.HTTPClient && bin.Bufio != nil,
		"http_status", p.statusFrom, "hijack_known", bin.Hijack != nil)
	return errors.Join(attachErrs...)
}

// allOn says that every probe of p (pid's) is on, but the groups that
// failed: the correlator may wait for calls of requests that begin
// after this.
func (m *Manager) allOn(pid uint32, p *proc, failed map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.probes.GC = p.probes.GC && !failed["gc"]
	p.probes.Serialization = !failed["serialization"]
	p.probes.HTTP = p.probes.HTTP && !failed["http"]
	p.probes.GRPC = p.probes.GRPC && !failed["grpc"]
	p.probes.TLS = p.probes.TLS && !failed["tls"]
	p.probes.HTTPClient = p.probes.HTTPClient && !failed["http_client"]
	p.probes.AttachedAt = time.Now().UnixNano()
	m.tell(Update{PID: pid, Probes: p.probes, OK: true})
}

// targetsOf finds the targets the binary has (by target symbol) and how
// many per group. A function it has but that cannot be probed safely
// (goinspect refuses it: its symbol tables disagree, its instructions
// cannot be proven) is left out with an error saying why, and its group
// marked refused. Why .symtab is not used, if it is not, is logged here.
func (m *Manager) targetsOf(pid uint32, bin *goinspect.Binary) (funcs map[string]goinspect.Func, groups map[string]int, refused map[string]bool, errs []error) {
	if bin.SymtabErr != nil {
		m.log.Warn("Go symbols read from .gopclntab: .symtab unusable", "pid", pid, "exe", bin.Path, "reason", bin.SymtabErr)
	}
	if bin.GRPC == nil && bin.HasGRPC() {
		m.log.Warn("gRPC method names unavailable for this process", "pid", pid, "reason", bin.GRPCErr)
	}
	funcs, groups, refused = map[string]goinspect.Func{}, map[string]int{}, map[string]bool{}
	for _, tg := range targets {
		if tg.group == "grpc" && bin.GRPC == nil {
			continue
		}
		if tg.group == "http_client" && bin.HTTPClient == nil {
			continue // the Request's fields are not known
		}
		for _, sym := range append([]string{tg.symbol}, tg.alt...) {
			f, err := bin.Func(sym)
			if errors.Is(err, goinspect.ErrNoSymbol) {
				continue
			}
			if err != nil {
				errs = append(errs, err) // not an alternative's business
				refused[tg.group] = true
				break
			}
			funcs[tg.symbol] = f
			groups[tg.group]++
			break
		}
	}
	return funcs, groups, refused, errs
}

// probe is one address to probe: a program (classic uprobe name; its
// uprobe_multi twin has loader.MultiSuffix) and the cookie it reads.
type probe struct {
	symbol string // for naming only: the address is what counts
	prog   string
	addr   uint64 // file offset
	cookie uint64
}

// scanCallers looks for the callers of every function whose calls may end
// in them, in one pass over the binary.
func (m *Manager) scanCallers(pid uint32, bin *goinspect.Binary, funcs map[string]goinspect.Func) {
	var names []string
	for _, tg := range targets {
		f, ok := funcs[tg.symbol]
		if !ok {
			continue
		}
		for _, plan := range tg.ends {
			if plan.Callers {
				names = append(names, f.Name)
				break
			}
		}
	}
	if len(names) == 0 {
		return
	}
	if err := bin.ScanCallers(names...); err != nil {
		m.log.Info("Go probes: callers not scanned", "pid", pid, "reason", err)
	}
}

// endsOf returns where tg's calls end in bin when not at its RETs: the
// exits its plan finds (nil: the RETs, also when the plan does not hold
// for this binary, which is logged).
func (m *Manager) endsOf(pid uint32, bin *goinspect.Binary, f goinspect.Func, tg target) []goinspect.Exit {
	if tg.returns == "" || len(tg.ends) == 0 {
		return nil
	}
	// The first plan that holds with no RET probe left, else the one
	// that leaves the fewest (json.Marshal in callers that return its
	// result: a MarshalJSON method each).
	var best []goinspect.Exit
	bestRets := -1
	var errs []error
	for _, plan := range tg.ends {
		exits, err := bin.Exits(f.Name, plan)
		if err == nil && !m.tracer.UprobeMulti() && len(exits) > maxClassicExits {
			err = fmt.Errorf("%d exits, too many for classic uprobes", len(exits))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rets := 0
		for _, e := range exits {
			if !e.Emulated {
				rets++
			}
		}
		if bestRets < 0 || rets < bestRets {
			best, bestRets = exits, rets
		}
		if rets == 0 {
			break
		}
	}
	if best == nil {
		m.log.Info("Go probes: calls end at RET probes (single-stepped, ≈ 10 µs a call)", "pid", pid, "function", f.Name, "reason", errors.Join(errs...))
	}
	return best
}

// probesOf lists the probes of one target function: its entry, and where
// its calls end (exits, else every RET).
func probesOf(f goinspect.Func, tg target, exits []goinspect.Exit) ([]probe, error) {
	var out []probe
	if tg.entry != "" {
		out = append(out, probe{f.Name, tg.entry, f.EntryProbe, cookie(tg.fn, loader.TracerdProbeSitePROBE_AT_ENTRY)})
	}
	if tg.returns == "" {
		return out, nil
	}
	if exits != nil {
		for _, e := range exits {
			site := loader.TracerdProbeSitePROBE_AT_EXIT
			if !e.Emulated {
				site = loader.TracerdProbeSitePROBE_AT_RET
			}
			c := cookie(tg.fn, site)
			if kind := rwKinds[e.Func]; kind != 0 && e.Emulated && tg.fn == loader.TracerdGoFuncGO_SERVE_HTTP {
				c |= uint64(kind) << loader.TracerdGoCookieGO_COOKIE_RW_SHIFT
			}
			out = append(out, probe{e.Func, tg.returns, e.Offset, c})
		}
		return out, nil
	}
	if len(f.Returns) == 0 {
		return nil, errors.New("no RET instruction found")
	}
	for _, off := range f.Returns {
		out = append(out, probe{f.Name, tg.returns, off, cookie(tg.fn, loader.TracerdProbeSitePROBE_AT_RET)})
	}
	return out, nil
}

// statusAtExit says for which ResponseWriters ServeHTTP's exit probes
// (ps) read the status: an exit of that kind is probed and the binary's
// offsets for it are known (0 is a valid offset of rws, not of a status).
func statusAtExit(bin *goinspect.Binary, ps []probe) map[loader.TracerdGoRwKind]bool {
	o := bin.Offsets
	known := map[loader.TracerdGoRwKind]bool{
		loader.TracerdGoRwKindGO_RW_RESPONSE: o.HTTP && o.ResponseStatus != 0,
		loader.TracerdGoRwKindGO_RW_HTTP2:    o.HTTP2 && o.HTTP2RWStateStatus != 0,
	}
	out := map[loader.TracerdGoRwKind]bool{}
	for _, p := range ps {
		kind := loader.TracerdGoRwKind(p.cookie >> loader.TracerdGoCookieGO_COOKIE_RW_SHIFT & 0xff)
		if kind != 0 && known[kind] {
			out[kind] = true
		}
	}
	return out
}

// statusFrom says where a process's HTTP statuses come from, per
// protocol its binary serves (funcs: the targets it has).
func statusFrom(funcs map[string]goinspect.Func, exit map[loader.TracerdGoRwKind]bool) []string {
	if _, ok := funcs["net/http.serverHandler.ServeHTTP"]; !ok {
		return nil
	}
	var out []string
	for _, c := range []struct {
		name string
		kind loader.TracerdGoRwKind
	}{{"http1", loader.TracerdGoRwKindGO_RW_RESPONSE}, {"http2", loader.TracerdGoRwKindGO_RW_HTTP2}} {
		switch {
		case exit[c.kind]:
			out = append(out, c.name+": ServeHTTP exit")
		case hasWriteHeader(funcs, c.kind):
			out = append(out, c.name+": WriteHeader probe")
		}
	}
	return out
}

// hasWriteHeader says whether the binary has a status probe of kind's
// ResponseWriter (writeHeaderKinds).
func hasWriteHeader(funcs map[string]goinspect.Func, kind loader.TracerdGoRwKind) bool {
	for sym, k := range writeHeaderKinds {
		if _, ok := funcs[sym]; ok && k == kind {
			return true
		}
	}
	return false
}

// shareExits merges probes of one program at one address (an exit in a
// worker two functions call: json's Unmarshal and Decode): the first's
// cookie also names the second function, whichever call is open ends.
func shareExits(ps []probe) []probe {
	type key struct {
		prog string
		addr uint64
	}
	at := map[key]int{}
	var out []probe
	for _, p := range ps {
		k := key{p.prog, p.addr}
		i, dup := at[k]
		if !dup {
			at[k] = len(out)
			out = append(out, p)
			continue
		}
		fn, alt := uint64(uint32(p.cookie)), out[i].cookie>>loader.TracerdGoCookieGO_COOKIE_ALT_SHIFT&0xff
		switch {
		case fn == uint64(uint32(out[i].cookie)) || fn == alt:
		case alt == 0:
			out[i].cookie |= fn << loader.TracerdGoCookieGO_COOKIE_ALT_SHIFT
		default:
			out = append(out, p) // a third function: a probe of its own
		}
	}
	return out
}

// attachProbes attaches probes in pid. With uprobe_multi, one link per
// program holds all its addresses (attached, and later removed, in one
// go: removing classic uprobes costs ≈ 90 ms each); else one classic
// uprobe per address.
func (m *Manager) attachProbes(ex *link.Executable, ps []probe, pid uint32) ([]link.Link, error) {
	progs := m.tracer.Programs()
	var out []link.Link
	if m.tracer.UprobeMulti() {
		byProg := map[string]*link.UprobeMultiOptions{}
		var order []string
		for _, p := range ps {
			o := byProg[p.prog]
			if o == nil {
				o = &link.UprobeMultiOptions{PID: pid}
				byProg[p.prog] = o
				order = append(order, p.prog)
			}
			o.Addresses = append(o.Addresses, p.addr)
			o.Cookies = append(o.Cookies, p.cookie)
		}
		for _, name := range order {
			l, err := ex.UprobeMulti(nil, progs[name+loader.MultiSuffix], byProg[name])
			if err != nil {
				return out, fmt.Errorf("uprobe_multi of %s at %d addresses: %w", name, len(byProg[name].Addresses), err)
			}
			out = append(out, l)
		}
		return out, nil
	}
	for _, p := range ps {
		l, err := ex.Uprobe(p.symbol, progs[p.prog], &link.UprobeOptions{Address: p.addr, PID: int(pid), Cookie: p.cookie})
		if err != nil {
			return out, fmt.Errorf("%s at %#x: %w", p.symbol, p.addr, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// carryGoid puts runtime.g.goid's offset (goid, ÷ 8) into the cookies
// of go_return's probes, where the end of a call without strings reads
// it instead of looking its process up (one hash lookup less a hit);
// an offset that does not fit (never seen: 152 in Go 1.18–1.26) is left
// to that lookup.
func carryGoid(ps []probe, goid uint64) []probe {
	if goid == 0 || goid%8 != 0 || goid/8 > 0xff {
		return ps
	}
	for i := range ps {
		if ps[i].prog == loader.TracerdProgGoReturn {
			ps[i].cookie |= goid / 8 << loader.TracerdGoCookieGO_COOKIE_GOID_SHIFT
		}
	}
	return ps
}

// cookie is what a probe's program reads with bpf_get_attach_cookie
// (enum go_cookie): the function, and the probe's site above it.
func cookie(fn goFunc, site loader.TracerdProbeSite) uint64 {
	return uint64(fn) | uint64(site)<<loader.TracerdGoCookieGO_COOKIE_SITE_SHIFT
}

func procOffsets(bin *goinspect.Binary) loader.TracerdGoProc {
	o := bin.Offsets
	p := loader.TracerdGoProc{
		G_goid:        o.GGoid,
		ReqMethod:     o.RequestMethod,
		ReqUrl:        o.RequestURL,
		ReqProtoMajor: o.RequestProtoMajor,
		ReqRemoteAddr: o.RequestRemoteAddr,
		UrlPath:       o.URLPath,
		UrlRawQuery:   o.URLRawQuery,
		ReqPattern:    bin.RequestPattern,
	}
	if o.HTTP {
		p.RespStatus = o.ResponseStatus
		if h := bin.Hijack; h != nil {
			p.RespConn, p.ConnHijacked = h.ResponseConn, h.ConnHijackedv
		}
	}
	if o.HTTP2 {
		p.H2Rws, p.H2RwsStatus = o.HTTP2RWState, o.HTTP2RWStateStatus
	}
	if c := bin.HTTPClient; c != nil && !o.HTTP {
		// No server in the binary: the client's own layout.
		p.ReqMethod, p.ReqUrl, p.UrlPath, p.UrlRawQuery = c.RequestMethod, c.RequestURL, c.URLPath, c.URLRawQuery
	}
	if b := bin.Bufio; b != nil {
		p.BufioBuf, p.BufioR, p.BufioW = b.Buf, b.R, b.W
	}
	if t := bin.TLS; t != nil {
		p.TlsVers, p.TlsDidResume, p.TlsCipher, p.TlsPeerCerts = t.Vers, t.DidResume, t.CipherSuite, t.PeerCertificates
	}
	if g := bin.GRPC; g != nil {
		if g.StreamDeref {
			p.GrpcStreamDeref = 1
		}
		p.GrpcStreamEmbed, p.GrpcStreamMethod = g.StreamEmbed, g.StreamMethod
		p.GrpcStatusProto, p.GrpcStatusCode = g.StatusProto, g.StatusCode
	}
	return p
}

// Detach removes pid's probes (at exit, or before re-attaching after exec).
func (m *Manager) Detach(pid uint32) {
	m.mu.Lock()
	p := m.procs[pid]
	delete(m.procs, pid)
	if p != nil {
		m.tell(Update{PID: pid})
	}
	m.mu.Unlock()
	_ = m.tracer.DeleteGoProc(pid)
	if p == nil {
		return
	}
	// The probes are inert already (go_procs no longer has the pid), but
	// removing a link takes the kernel ≈ 90 ms (a classic uprobe each;
	// an uprobe_multi link all of a program's): off the worker, so that
	// attaching to other processes does not wait.
	m.unlinking.Add(1)
	go func() {
		defer m.unlinking.Done()
		start := time.Now()
		closeLinks(p.links)
		m.log.Info("Go probes detached", "pid", pid, "links", countLinks(p.links), "took", time.Since(start).Round(time.Millisecond))
	}()
}

// Observe takes every Go event the reader gets (on its goroutine): a
// calibration sample is the manager's own (false: not for the
// correlator); any other counts for the rate bound (not at all with
// none). Observe and Enforce are called from one goroutine.
func (m *Manager) Observe(ev *loader.GoEvent) bool {
	fn := goFunc(ev.Func)
	if fn == loader.TracerdGoFuncGO_CALIBRATE {
		m.calibrationSample(ev)
		return false
	}
	if m.maxRate <= 0 || int(fn) >= len(callCounts{}) {
		return true
	}
	if m.last == nil || ev.Pid != m.lastPID {
		c := m.calls[ev.Pid]
		if c == nil {
			if m.calls == nil {
				m.calls = map[uint32]*callCounts{}
			}
			c = new(callCounts)
			m.calls[ev.Pid] = c
		}
		m.lastPID, m.last = ev.Pid, c
	}
	m.last[fn]++
	return true
}

// Enforce runs once a second: a function whose probes fired more than
// the bound in the last second is switched off in that process.
func (m *Manager) Enforce() {
	if m.maxRate <= 0 {
		clear(m.calls)
		m.last = nil
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, c := range m.calls {
		if *c == (callCounts{}) {
			// No event for a second: the process gives its place back.
			delete(m.calls, pid)
			if c == m.last {
				m.last = nil
			}
			continue
		}
		p := m.procs[pid]
		for i, n := range c {
			if p == nil || int(n) <= m.maxRate {
				continue
			}
			fn := goFunc(i)
			tg := targetOf(fn)
			if tg == nil && p.probes.OpenSSL {
				tg = &sslTarget
			}
			if tg == nil || len(p.links[tg.group]) == 0 {
				continue
			}
			closeLinks(map[string][]link.Link{tg.group: p.links[tg.group]})
			delete(p.links, tg.group)
			p.probes.switchOff(tg.group)
			p.off = append(p.off, tg.group)
			m.tell(Update{PID: pid, Probes: p.probes, OK: true})
			m.log.Warn("Go probes switched off: they fire too often for the process's good",
				"pid", pid, "function", tg.symbol, "calls_per_second", n, "limit", m.maxRate, "group", tg.group)
		}
		*c = callCounts{}
	}
}

// targetOf is fn's first target (nil: fn is not probed in processes).
func targetOf(fn goFunc) *target {
	for i := range targets {
		if targets[i].fn == fn {
			return &targets[i]
		}
	}
	return nil
}

// Close removes every probe.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, p := range m.procs {
		closeLinks(p.links)
		delete(m.procs, pid)
	}
	m.unlinking.Wait()
}

// ProcessState is one probed process, as `tracerd status` shows it.
type ProcessState struct {
	PID   uint32   `json:"pid"`
	Go    string   `json:"go"`    // the binary's Go version
	On    []string `json:"on"`    // probe groups attached: gc, serialization, http, grpc
	Off   []string `json:"off"`   // groups the rate bound switched off
	Links int      `json:"links"` // uprobe links held
	// HTTPStatus: where its HTTP statuses come from, per protocol
	// ("http1: ServeHTTP exit", "http2: WriteHeader probe").
	HTTPStatus []string `json:"http_status,omitempty"`
}

// Processes returns the probed processes, by pid.
func (m *Manager) Processes() []ProcessState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProcessState, 0, len(m.procs))
	for pid, p := range m.procs {
		st := ProcessState{PID: pid, Go: p.goVersion, Off: slices.Clone(p.off), Links: countLinks(p.links)}
		if len(p.links["http"]) > 0 {
			st.HTTPStatus = slices.Clone(p.statusFrom)
		}
		for group := range p.links {
			st.On = append(st.On, group)
		}
		slices.Sort(st.On)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ProcessState) int { return int(a.PID) - int(b.PID) })
	return out
}

// Attached returns the pids with Go probes.
func (m *Manager) Attached() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint32, 0, len(m.procs))
	for pid := range m.procs {
		out = append(out, pid)
	}
	return out
}

// closeLinks closes the links concurrently. Uprobe removal is mostly
// serialized in the kernel (≈ 90 ms per probe here: 32 probes took 3.2 s
// one by one, 2.8 s at once), but what can overlap does.
func closeLinks(ls map[string][]link.Link) {
	var wg sync.WaitGroup
	for _, group := range ls {
		for _, l := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = l.Close()
			}()
		}
	}
	wg.Wait()
}

func countLinks(ls map[string][]link.Link) int {
	n := 0
	for _, g := range ls {
		n += len(g)
	}
	return n
}
