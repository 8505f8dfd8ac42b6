package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/privileges"
	"github.com/tracerd/tracerd/internal/targets"
)

// Record is one finished request as the kernel wrote it.
type Record = TracerdReqRecord

// GoEvent is a timed Go call, stop-the-world pause or status written.
type GoEvent = TracerdGoEvent

// ProcNote says a traced process appeared, exec'd or exited.
type ProcNote = TracerdProcNote

// RecordSize is the size of a whole request record.
const RecordSize = int(unsafe.Sizeof(Record{}))

// recordHeadOffset is where the request head starts: the shortest
// record on the ring buffer.
const recordHeadOffset = int(unsafe.Offsetof(Record{}.ReqHead))

// Event is one ring-buffer entry; Kind says which field is valid.
type Event struct {
	Kind    TracerdEventKind
	Request Record
	Go      GoEvent
	Proc    ProcNote
	TLSWire TLSWire
}

// TLSWire is one read's or write's first bytes of a TLS handshake's
// exchange (bpf/tlswire.h); only B[:Len] is valid.
type TLSWire = TracerdTlsWire

// tlsWireHead is where a TLSWire's bytes start: the shortest entry.
const tlsWireHead = int(unsafe.Offsetof(TLSWire{}.B))

// Event kinds.
const (
	KindRequest = TracerdEventKindEV_REQUEST
	KindGo      = TracerdEventKindEV_GO
	KindProc    = TracerdEventKindEV_PROC
	KindTLSWire = TracerdEventKindEV_TLS_WIRE
)

// Config sets what the BPF programs trace and how much they may hold.
type Config struct {
	Targets     targets.Targets
	IdleTimeout time.Duration // keep-alive request finished after this quiet time
	MaxConns    uint32        // traced connections held at once
	RingBytes   uint32        // ring buffer size, a power of two pages
	// SkipHooks names hooks (Hook.Name) not to attach, e.g. to spare
	// sched_switch's cost on a busy host; their phases go absent.
	SkipHooks []string
	// RefuseWays turns ways of attaching off: a kind (tp_btf), a way
	// (fexit/tcp_recvmsg), or either for one hook (sock_recv_length:fexit).
	// To test fallbacks; the entries of TRACERD_NO_WAYS (comma-separated)
	// are added.
	RefuseWays []string
	// ClassicUprobes: one classic uprobe per address even when the
	// kernel has uprobe_multi links (to compare, and to test that path).
	ClassicUprobes bool
	Logger         *slog.Logger
}

// DefaultConfig is what the CLI uses unless told otherwise.
func DefaultConfig() Config {
	return Config{IdleTimeout: 500 * time.Millisecond, MaxConns: 65536, RingBytes: 16 << 20}
}

// Tracer is the loaded and attached kernel engine.
type Tracer struct {
	coll   *ebpf.Collection
	links  []link.Link
	ring   *ring
	ev     Event        // ReadBatch's, reused
	Hooks  []HookStatus // what is attached and what is missing
	logger *slog.Logger
	// targets is the selection in the maps (SetTargets changes it).
	targets targets.Targets
	// uprobeMulti: the kernel has uprobe_multi links and the *_multi Go
	// programs are loaded (else only the classic uprobe ones are).
	uprobeMulti bool
	sweepFails  atomic.Int64
	// When the idle sweep must run (ReadBatch and SweepIdle, on one
	// goroutine, keep it), and whether the last one left answered
	// requests waiting for their timeout, the first of them due at
	// nextIdle (CLOCK_MONOTONIC ns).
	sweeps       *sweepSched
	sweptWaiting bool
	nextIdle     uint64
	answers      *rawCounter // CNT_ANSWERS, read at each look; nil: through cilium/ebpf
	// The hooks that wait for a CPU quota (Hook.OnQuota, quota_linux.go):
	// pending while they do; quotaSeen reads CNT_QUOTA_SEEN. mu guards
	// links, Hooks[].Pending and detached (status readers run elsewhere).
	mu            sync.Mutex
	pending       atomic.Bool
	quotaSeen     *rawCounter
	quotaLookedAt uint64 // CLOCK_MONOTONIC ns of the last read of quotaSeen
	detached      bool
}

// quotaLookEvery is how often CNT_QUOTA_SEEN is read while the OnQuota
// hooks wait.
const quotaLookEvery = time.Second

// UprobeMulti says whether Go probes can use uprobe_multi links: the
// program of a classic one is p, its multi twin is p + MultiSuffix.
func (t *Tracer) UprobeMulti() bool { return t.uprobeMulti }

// MultiSuffix names the uprobe_multi twin of a Go uprobe program.
const MultiSuffix = "_multi"

// ErrClosed is returned by Wait and ReadBatch once the tracer is closed.
var ErrClosed = os.ErrClosed

// Open loads and attaches the kernel engine: for each hook, the first
// way the kernel offers (planHooks). A way whose program the verifier
// rejects, or that fails to attach, is recorded and everything is loaded
// again without it, so the constants that depend on the ways taken stay
// true; a required hook with no way left fails Open. On error nothing is
// left attached or loaded.
func Open(cfg Config) (*Tracer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Targets.Validate(); err != nil {
		return nil, err
	}
	cg, err := targets.ResolveCgroups(cfg.Targets.Cgroups)
	if err != nil {
		return nil, err
	}
	cfg.RefuseWays = append(slices.Clone(cfg.RefuseWays), envList("TRACERD_NO_WAYS")...)
	k, err := newKernelView()
	if err != nil {
		return nil, err
	}
	defer ReleaseKernelBTF()
	failed := map[string]string{}
	var quota quotaAtStart
	for {
		t, retry, err := open(cfg, cg, k, failed, &quota, log)
		if err != nil || !retry {
			return t, err
		}
	}
}

// open is one attempt. retry: a way failed and is now in failed.
func open(cfg Config, cg targets.Cgroups, k *kernelView, failed map[string]string, quota *quotaAtStart, log *slog.Logger) (_ *Tracer, retry bool, err error) {
	spec, err := LoadTracerd()
	if err != nil {
		return nil, false, fmt.Errorf("reading embedded BPF object: %w", err)
	}
	hooks, err := planHooks(k, cfg, failed)
	if err != nil {
		return nil, false, err
	}
	t := &Tracer{Hooks: hooks, logger: log,
		sweeps: newSweepSched(uint64(cfg.IdleTimeout.Nanoseconds()), monotonicNow())}
	defer func() {
		if err != nil || retry {
			t.Close()
		}
	}()

	// Only the programs of the ways taken are loaded.
	all := maps.Clone(spec.Programs)
	for _, h := range Hooks {
		for _, w := range h.Ways {
			for _, a := range w.Progs {
				delete(spec.Programs, a.Program)
			}
		}
	}
	owner := map[string]*HookStatus{}
	ways := map[string]string{} // hook → kind of the way taken
	for i := range t.Hooks {
		h := &t.Hooks[i]
		if !h.OK {
			continue
		}
		ways[h.Name] = h.Way.Kind
		for _, a := range h.Way.Progs {
			spec.Programs[a.Program] = all[a.Program]
			owner[a.Program] = h
		}
	}
	if err := configure(spec, cfg, ways); err != nil {
		return nil, false, err
	}
	// uprobe_multi programs do not load on kernels without it (< 6.6).
	t.uprobeMulti = !cfg.ClassicUprobes && features.HaveBPFLinkUprobeMulti() == nil
	if !t.uprobeMulti {
		for name := range spec.Programs {
			if strings.HasSuffix(name, MultiSuffix) {
				delete(spec.Programs, name)
			}
		}
	}

	t.coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: k.btf},
	})
	if err != nil {
		prog := failedProgram(err)
		h := owner[prog]
		// Some kernels refuse trampolines (EPERM before the verifier
		// runs, as our 6.18 VM does); elsewhere EPERM is privileges.
		trampoline := h != nil && (h.Way.Kind == "fentry" || h.Way.Kind == "fexit")
		if errors.Is(err, os.ErrPermission) && !trampoline {
			return nil, false, fmt.Errorf("loading BPF programs: %w: run as root, or grant %s (deploy/tracerd.service lists the set)", err, privileges.KernelEngine())
		}
		if h != nil {
			reason := loadError(err)
			if trampoline && errors.Is(err, os.ErrPermission) {
				reason = "the kernel refuses " + h.Way.Kind + " programs (EPERM before the verifier runs)"
			}
			failed[wayKey(h.Hook, *h.Way)] = reason
			log.Warn("the kernel rejected a program; trying the hook's next way", "hook", h.Name, "way", h.WayName(), "error", reason)
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("loading BPF programs: %s", loadError(err))
	}
	if err := putTargets(t.coll, cfg.Targets, cg); err != nil {
		return nil, false, err
	}
	t.targets = cfg.Targets
	quotaNow := quota.attachNow(t.Hooks, log)
	if quotaNow {
		// Before they run: a request read in between would take no
		// tasks entry for them to fill.
		if err := t.markSchedHooks(); err != nil {
			return nil, false, err
		}
	}
	for i := range t.Hooks {
		h := &t.Hooks[i]
		if !h.OK {
			continue
		}
		for _, a := range h.Way.Progs {
			l, err := attach(t.coll.Programs[a.Program], h.Way.Kind, a)
			if err != nil {
				failed[wayKey(h.Hook, *h.Way)] = fmt.Sprintf("attaching %s: %v", a.Program, err)
				log.Warn("a hook failed to attach; trying its next way", "hook", h.Name, "way", h.WayName(), "error", err)
				return nil, true, nil
			}
			if h.OnQuota && !quotaNow {
				// The way works; it is attached again once needed.
				_ = l.Close()
				h.Pending = true
				t.pending.Store(true)
				continue
			}
			t.links = append(t.links, l)
		}
	}
	for _, h := range t.Hooks {
		switch {
		case !h.OK && !h.Required:
			log.Warn("hook missing, phases disabled", "hook", h.Name, "reason", h.Reason, "disables", h.Phases)
		case h.OK && h.Way.Cost != "":
			log.Info("hook attached by a fallback way", "hook", h.Name, "way", h.WayName(), "cost", h.Way.Cost)
		}
	}
	t.ring, err = newRing(t.coll.Maps[TracerdMapEvents])
	if err != nil {
		return nil, false, fmt.Errorf("opening ring buffer: %w", err)
	}
	return t, false, nil
}

// failedProgram is the program a collection load failed on, from
// cilium/ebpf's "program NAME: …" wrapping; "" when it is not one.
func failedProgram(err error) string {
	rest, ok := strings.CutPrefix(err.Error(), "program ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ":")
	return name
}

// loadError says why a load failed: for the verifier, the program and
// the last lines of its log (the reason is at the end).
func loadError(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("program %s rejected by the verifier: %-6v", failedProgram(err), ve)
	}
	return err.Error()
}

// configure sets the constants and sizes of the object from the ways
// taken (ways: hook name → kind; absent when not attached). (The
// selection is in maps: putTargets.)
func configure(spec *ebpf.CollectionSpec, cfg Config, ways map[string]string) error {
	attached := func(hook string) bool { return ways[hook] != "" }
	vars := map[string]any{
		TracerdVarIdleTimeoutNs:  uint64(cfg.IdleTimeout.Nanoseconds()),
		TracerdVarSchedEnabled:   b2u(attached("sched_switch") && attached("sched_wakeup")),
		TracerdVarSoftirqEnabled: b2u(attached("softirq_raise") && attached("softirq_exit")),
		TracerdVarRxEnabled:      b2u(attached("tcp_probe")),
		// Candidate sockets are marked by inet_sock_set_state's typed
		// program (sk storage needs the socket's BTF type).
		TracerdVarSkMarksOn: b2u(ways["inet_sock_set_state"] == "tp_btf"),
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	if cfg.IdleTimeout <= 0 {
		return errors.New("idle timeout must be positive")
	}
	// Global data sections are not memory-mapped: a mapping outlives
	// Close until the garbage collector unmaps it, keeping the maps
	// alive; nothing reads them after load.
	for name, m := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			m.Flags &^= unix.BPF_F_MMAPABLE
		}
	}
	if cfg.MaxConns > 0 {
		spec.Maps[TracerdMapConns].MaxEntries = cfg.MaxConns
	}
	if cfg.RingBytes > 0 {
		page := uint32(os.Getpagesize())
		if cfg.RingBytes%page != 0 || cfg.RingBytes&(cfg.RingBytes-1) != 0 {
			return fmt.Errorf("ring buffer size %d must be a power of two and a multiple of %d", cfg.RingBytes, page)
		}
		spec.Maps[TracerdMapEvents].MaxEntries = cfg.RingBytes
	}
	ring := spec.Maps[TracerdMapEvents].MaxEntries
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting CPUs: %w", err)
	}
	if err := spec.Variables[TracerdVarWakeupEvery].Set(wakeupEvery(ring, cpus)); err != nil {
		return fmt.Errorf("setting %s: %w", TracerdVarWakeupEvery, err)
	}
	for name, perCPU := range goCallsPerCPU {
		m := spec.Maps[name]
		m.MaxEntries = perCPUListEntries(m.MaxEntries, cpus, perCPU)
	}
	return nil
}

// goCallsPerCPU is how many Go calls in progress each CPU's list of the
// per-CPU LRU maps holds at least. With BPF_F_NO_COMMON_LRU the kernel
// splits max_entries evenly over the possible CPUs and a call is kept
// in the list of the CPU its entry probe ran on, which evicts its own
// oldest when full: 8,192 entries on a 96-CPU host would leave 85 per
// CPU, fewer than the streams or long polls a busy gRPC or SSE server
// keeps open, and their ends would find nothing. ServeHTTP's and gRPC's
// entries hold ≈ 0.4 KiB each (256 a CPU: ≈ 10 MiB at 96 CPUs); the
// short calls' 16 bytes.
var goCallsPerCPU = map[string]uint32{
	TracerdMapGoCalls:      256,
	TracerdMapGoCallsShort: 1024,
}

// perCPUListEntries is a per-CPU LRU map's size: its compiled size, or
// perCPU entries for each possible CPU where that is more.
func perCPUListEntries(compiled uint32, cpus int, perCPU uint32) uint32 {
	want := uint64(max(cpus, 1)) * uint64(perCPU)
	if want <= uint64(compiled) {
		return compiled
	}
	return uint32(min(want, 1<<24))
}

// wakeupEvery is how many entries a CPU writes to the ring buffer before
// it wakes the reader: with every CPU that far, entries (≤ 1 KiB) fill at
// most 1/8 of the ring. The reader looks every 150 ms anyway; the
// wake-ups only keep a burst from filling the ring, and each costs a
// look (two context switches, the scheduler's work): 1/8 rather than
// 1/16 halves them (with the default 16 MiB on 2 CPUs, once per 1,024
// entries a CPU writes instead of 512).
func wakeupEvery(ringBytes uint32, cpus int) uint32 {
	n := uint64(ringBytes) / 8 / 1024 / uint64(max(cpus, 1))
	return uint32(min(max(n, 1), 1024))
}

// putTargets adds tg's values to the target maps (cg: its cgroups
// resolved), then switches on the kinds of selection it uses and off the
// others: a kind turned on finds its values already there.
func putTargets(coll *ebpf.Collection, tg targets.Targets, cg targets.Cgroups) error {
	one := uint8(1)
	for _, pid := range tg.PIDs {
		if err := coll.Maps[TracerdMapTargetPids].Put(pid, one); err != nil {
			return fmt.Errorf("adding pid %d: %w", pid, err)
		}
	}
	for _, port := range tg.Ports {
		if err := coll.Maps[TracerdMapTargetPorts].Put(port, one); err != nil {
			return fmt.Errorf("adding port %d: %w", port, err)
		}
	}
	for _, comm := range tg.Comms {
		if err := coll.Maps[TracerdMapTargetComms].Put(commKey(comm), one); err != nil {
			return fmt.Errorf("adding comm %q: %w", comm, err)
		}
	}
	for _, id := range cg.IDs {
		if err := coll.Maps[TracerdMapTargetCgroups].Put(id, one); err != nil {
			return fmt.Errorf("adding cgroup %d: %w", id, err)
		}
	}
	f := TracerdFilterConfig{
		Pids: b2u(len(tg.PIDs) > 0), Ports: b2u(len(tg.Ports) > 0),
		Comms: b2u(len(tg.Comms) > 0), Cgroups: b2u(len(tg.Cgroups) > 0),
		CgroupV1Subsys: cg.V1Subsys,
	}
	if err := coll.Maps[TracerdMapFilter].Put(uint32(0), f); err != nil {
		return fmt.Errorf("setting the selection's kinds: %w", err)
	}
	return nil
}

// commKey is the target map's key of a process name: as the kernel
// keeps it, NUL-padded.
func commKey(comm string) TracerdCommKey {
	var key TracerdCommKey
	for i, c := range []byte(targets.Comm(comm)) {
		key.Comm[i] = int8(c)
	}
	return key
}

func attach(prog *ebpf.Program, kind string, a Attach) (link.Link, error) {
	if prog == nil {
		return nil, fmt.Errorf("program %s not loaded", a.Program)
	}
	switch kind {
	case "tracepoint":
		return link.Tracepoint(a.Group, a.Target, prog, nil)
	case "raw_tp":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.Target, Program: prog})
	}
	return link.AttachTracing(link.TracingOptions{Program: prog}) // tp_btf, fentry, fexit
}

// envList is a comma-separated environment variable's entries.
func envList(name string) []string {
	var out []string
	for _, f := range strings.Split(os.Getenv(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Wait blocks until the kernel wakes its reader (records pile up past
// the wake-up mark: bpf/maps.h), deadline passes or Wake is called; it
// returns at once when entries wait. ErrClosed after Close.
func (t *Tracer) Wait(deadline time.Time) error { return t.ring.wait(deadline) }

// Wake makes a blocked Wait return now; safe from any goroutine.
func (t *Tracer) Wake() { t.ring.wake() }

// ReadBatch decodes up to max of the entries waiting in the ring
// buffer, in order, handing each to fn, and says how many. The Event is
// reused: fn must not keep it. Entries are decoded by the generated
// types' layout (the C structs), after checking their size; a malformed
// one is an error.
func (t *Tracer) ReadBatch(max int, fn func(*Event)) (int, error) {
	return t.ring.read(max, func(raw []byte) error {
		if err := decodeEvent(raw, &t.ev); err != nil {
			return err
		}
		if t.ev.Kind == KindRequest {
			if at, ok := answeredAt(&t.ev.Request); ok {
				t.sweeps.ended(at)
			}
		}
		fn(&t.ev)
		return nil
	})
}

// goEventHead is GO_EVENT_HEAD: what a Go event without strings sends.
const goEventHead = int(unsafe.Offsetof(GoEvent{}.Method))

func decodeEvent(raw []byte, ev *Event) error {
	if len(raw) < 4 {
		return fmt.Errorf("short ring-buffer entry: %d bytes", len(raw))
	}
	ev.Kind = TracerdEventKind(*(*uint32)(unsafe.Pointer(&raw[0])))
	var want int
	switch ev.Kind {
	case KindRequest:
		// The kernel leaves the request head's unused tail behind.
		want = recordHeadOffset
	case KindGo:
		// Events without strings come as their head alone.
		want = goEventHead
	case KindProc:
		want = int(unsafe.Sizeof(ProcNote{}))
	case KindTLSWire:
		want = tlsWireHead
	default:
		return fmt.Errorf("unknown ring-buffer entry kind %d", ev.Kind)
	}
	if len(raw) < want {
		return fmt.Errorf("short entry of kind %d: %d bytes, want %d", ev.Kind, len(raw), want)
	}
	switch ev.Kind {
	case KindRequest:
		dst := unsafe.Slice((*byte)(unsafe.Pointer(&ev.Request)), RecordSize)
		n := copy(dst, raw)
		clear(dst[n:])
	case KindGo:
		dst := unsafe.Slice((*byte)(unsafe.Pointer(&ev.Go)), unsafe.Sizeof(ev.Go))
		n := copy(dst, raw)
		clear(dst[n:])
	case KindProc:
		ev.Proc = *(*ProcNote)(unsafe.Pointer(&raw[0]))
	case KindTLSWire:
		// Only Len bytes of B came: the rest is not read.
		dst := unsafe.Slice((*byte)(unsafe.Pointer(&ev.TLSWire)), unsafe.Sizeof(ev.TLSWire))
		copy(dst, raw)
		ev.TLSWire.Len = uint16(min(int(ev.TLSWire.Len), len(raw)-tlsWireHead))
	}
	return nil
}

// Counters are the kernel side's totals since load.
type Counters struct {
	ConnsTraced      uint64 `json:"conns_traced"`
	Records          uint64 `json:"records"`
	RingbufDrops     uint64 `json:"ringbuf_drops"`
	ConnMapFull      uint64 `json:"conn_map_full"`
	TaskMapFull      uint64 `json:"task_map_full"`
	IdleSweepFails   uint64 `json:"idle_sweep_fails"` // sweeps user space could not run (counted there)
	Answers          uint64 `json:"answers"`          // requests answered
	UnansweredWrites uint64 `json:"unanswered_writes"`
	CaptureFails     uint64 `json:"capture_fails"`
	GoDrops          uint64 `json:"go_drops"`
	GoMapFull        uint64 `json:"go_map_full"`
	ConnsOpen        uint64 `json:"conns_open"`
	ConnsMax         uint64 `json:"conns_max"`
}

// Counters sums the per-CPU counters.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	for _, f := range []struct {
		idx TracerdCounter
		dst *uint64
	}{
		{TracerdCounterCNT_CONNS_TRACED, &c.ConnsTraced},
		{TracerdCounterCNT_RECORDS, &c.Records},
		{TracerdCounterCNT_RINGBUF_DROPS, &c.RingbufDrops},
		{TracerdCounterCNT_CONN_MAP_FULL, &c.ConnMapFull},
		{TracerdCounterCNT_TASK_MAP_FULL, &c.TaskMapFull},
		{TracerdCounterCNT_ANSWERS, &c.Answers},
		{TracerdCounterCNT_UNANSWERED_WRITES, &c.UnansweredWrites},
		{TracerdCounterCNT_CAPTURE_FAILS, &c.CaptureFails},
		{TracerdCounterCNT_GO_DROPS, &c.GoDrops},
		{TracerdCounterCNT_GO_MAP_FULL, &c.GoMapFull},
	} {
		v, err := t.counter(f.idx)
		if err != nil {
			return c, fmt.Errorf("reading counter %d: %w", f.idx, err)
		}
		*f.dst = v
	}
	c.IdleSweepFails = uint64(t.sweepFails.Load())
	conns := t.coll.Maps[TracerdMapConns]
	c.ConnsMax = uint64(conns.MaxEntries())
	var k uint64
	it := conns.Iterate()
	var v TracerdTracedConn
	for it.Next(&k, &v) {
		c.ConnsOpen++
	}
	return c, it.Err()
}

// Drain hands over the requests still in progress (answered or not) as
// records ending with END_FLUSH, so that a shutdown loses nothing.
func (t *Tracer) Drain(fn func(*Record)) error {
	var k uint64
	var v TracerdTracedConn
	it := t.coll.Maps[TracerdMapConns].Iterate()
	for it.Next(&k, &v) {
		if v.State == uint8(TracerdConnStateCONN_IDLE) {
			continue
		}
		v.Req.EndReason = uint8(TracerdEndReasonEND_FLUSH)
		rec := v.Req
		fn(&rec)
	}
	return it.Err()
}

// SweepIdle ends the answered requests of connections quiet for the idle
// timeout (records with END_IDLE): one pass of the idle_sweep program,
// which costs the conns map's whole size (≈ 0.9 ms here), however few
// connections wait. Call it every IdleSweepEvery, from the goroutine
// that calls ReadBatch.
//
// It sweeps only when a request may be due (sweepSched: under load
// every answered request is ended by its connection's next one, whose
// record tracerd reads, so no sweep runs; an idle host has none), and
// not before the first request the last sweep left waiting can reach
// the timeout (the program returns when that is).
func (t *Tracer) SweepIdle() error {
	t.attachOnQuota()
	now := monotonicNow() // before the count: see sweepSched
	answers, err := t.answersCount()
	if err == nil && !t.sweeps.tick(now, answers) {
		return nil
	}
	if t.sweptWaiting && now < t.nextIdle {
		return nil
	}
	ret, err := t.coll.Programs[TracerdProgIdleSweep].Run(nil)
	if err != nil {
		t.sweepFails.Add(1)
		return fmt.Errorf("idle sweep: %w", err)
	}
	t.sweptWaiting = ret > 0
	if t.sweptWaiting {
		t.nextIdle = now + uint64(ret-1)*uint64(time.Millisecond)
	}
	t.sweeps.swept(now, answers, uint32(min(ret, 1)))
	return nil
}

// Quiet says whether the idle sweep waits for nothing: every answered
// request the kernel counted has ended (its ticks resolved: sweepSched),
// the last sweep left none waiting, and none was answered since that
// sweep (else the next look sweeps once more, and the one after may be
// quiet). Until the count changes, a look finds no request to end; the
// reader may look less often (pipeline's quiet period), as long as it
// looks again before the idle timeout could pass for a request answered
// just after this look.
func (t *Tracer) Quiet() bool {
	return !t.sweptWaiting && t.sweeps.quiet()
}

// WakeOnNextRecord makes the kernel wake the reader at the next entry
// any CPU writes to the ring buffer, not after wakeupEvery of them: each
// CPU's count of entries since it last woke the reader (ring_writes) is
// set one short. For a quiet reader that looks seldom (Quiet): the
// first record after a quiet spell is read at once. A program writing
// an entry at that very moment may overwrite the count (its increment
// is not atomic with this write): that entry then waits for the next
// look.
func (t *Tracer) WakeOnNextRecord() error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	short := uint64(wakeupEvery(t.coll.Maps[TracerdMapEvents].MaxEntries(), cpus))
	if short > 0 {
		short--
	}
	vals := make([]uint64, cpus)
	for i := range vals {
		vals[i] = short
	}
	if err := t.coll.Maps[TracerdMapRingWrites].Update(uint32(0), vals, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("asking for a wake-up at the next record: %w", err)
	}
	return nil
}

// monotonicNow is CLOCK_MONOTONIC, the BPF programs' clock, in ns,
// without a system call: Go's monotonic clock is CLOCK_MONOTONIC on
// Linux (read through the vDSO), so one reading of both at start and
// time.Since give it exactly. unix.ClockGettime is a real system call,
// and a blocking call wakes Go's monitor thread (sysmon) when tracerd
// was idle, which then polls every 20 µs for a while.
func monotonicNow() uint64 { return monoBase.ns + uint64(time.Since(monoBase.at)) }

// monoBase is Go's clock and CLOCK_MONOTONIC (ns) at the same moment:
// the tightest of a few brackets of system calls around time.Now.
var monoBase = func() (b struct {
	at time.Time
	ns uint64
}) {
	var t0, t1 unix.Timespec
	best := int64(1 << 62)
	for i := 0; i < 5; i++ {
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &t0)
		at := time.Now()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &t1)
		if gap := t1.Nano() - t0.Nano(); gap < best {
			best, b.at, b.ns = gap, at, uint64(t0.Nano()+gap/2)
		}
	}
	return b
}()

// answersCount is CNT_ANSWERS, read raw (rawCounter) when it can be.
func (t *Tracer) answersCount() (uint64, error) {
	return t.rawCount(&t.answers, TracerdCounterCNT_ANSWERS)
}

// rawCount reads counter idx through *raw, made at the first call
// (rawCounter); through cilium/ebpf when it cannot be made.
func (t *Tracer) rawCount(raw **rawCounter, idx TracerdCounter) (uint64, error) {
	if *raw == nil {
		c, err := newRawCounter(t.coll.Maps[TracerdMapCounters], uint32(idx))
		if err != nil {
			return t.counter(idx)
		}
		*raw = c
	}
	return (*raw).read()
}

// counter sums one per-CPU counter.
func (t *Tracer) counter(c TracerdCounter) (uint64, error) {
	var perCPU []uint64
	if err := t.coll.Maps[TracerdMapCounters].Lookup(uint32(c), &perCPU); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// IdleSweepEvery is how often to look for requests past the idle
// timeout (SweepIdle decides whether to sweep): a request ends
// between the timeout and the timeout plus this after its last activity.
func IdleSweepEvery(idle time.Duration) time.Duration {
	return min(max(idle/3, 10*time.Millisecond), 150*time.Millisecond)
}

// Programs returns the loaded programs by name (for benchmarks' run-time stats).
func (t *Tracer) Programs() map[string]*ebpf.Program { return t.coll.Programs }

// quotaAtStart says whether the OnQuota hooks attach at start: a CPU
// quota exists on the host, or TRACERD_SCHED_HOOKS=start. The host is
// looked at once per Open, whatever the attempts (open's retries).
type quotaAtStart struct {
	looked, found bool
}

func (q *quotaAtStart) attachNow(hooks []HookStatus, log *slog.Logger) bool {
	if !slices.ContainsFunc(hooks, func(h HookStatus) bool { return h.OK && h.OnQuota }) {
		return false
	}
	if os.Getenv("TRACERD_SCHED_HOOKS") == "start" {
		return true
	}
	if !q.looked {
		var took time.Duration
		q.found, took = hostHasCPUQuota()
		q.looked = true
		if !q.found {
			log.Info("no cgroup sets a CPU quota: the scheduler hooks wait until a traced thread runs under one",
				"hooks", "sched_switch, sched_wakeup, sched_wakeup_new", "looked_for", took.Round(time.Microsecond))
		}
	}
	return q.found
}

// HookStatuses is how each hook is attached now (Hooks, with Pending
// current).
func (t *Tracer) HookStatuses() []HookStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.Hooks)
}

// attachOnQuota attaches the pending OnQuota hooks once the kernel side
// has seen a serving thread under a CPU quota (CNT_QUOTA_SEEN). Called
// at every periodic look (SweepIdle); the counter is read once a second
// while they wait (a system call that, on an idle tracerd, cost more
// than the rest of the look).
func (t *Tracer) attachOnQuota() {
	if !t.pending.Load() {
		return
	}
	now := monotonicNow()
	if now-t.quotaLookedAt < uint64(quotaLookEvery) {
		return
	}
	t.quotaLookedAt = now
	if n, err := t.rawCount(&t.quotaSeen, TracerdCounterCNT_QUOTA_SEEN); err == nil && n > 0 {
		t.attachPending("a traced thread runs under a CPU quota")
	}
}

// attachPending attaches the pending hooks (why: for the log). A hook
// that fails now stays pending and is retried at the next look.
func (t *Tracer) attachPending(why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.detached || t.coll == nil {
		t.pending.Store(false)
		return
	}
	// Before they run (see open); if none attaches, requests just take
	// the tasks entries they would need.
	if err := t.markSchedHooks(); err != nil {
		t.logger.Warn("the kernel side cannot be told that the scheduler hooks run: requests' CPU throttling reads 0", "error", err)
	}
	left := false
	for i := range t.Hooks {
		h := &t.Hooks[i]
		if !h.Pending {
			continue
		}
		var made []link.Link
		var err error
		for _, a := range h.Way.Progs {
			var l link.Link
			if l, err = attach(t.coll.Programs[a.Program], h.Way.Kind, a); err != nil {
				break
			}
			made = append(made, l)
		}
		if err != nil {
			for _, l := range made {
				_ = l.Close()
			}
			t.logger.Warn("a scheduler hook failed to attach; retrying at the next look", "hook", h.Name, "way", h.WayName(), "error", err)
			left = true
			continue
		}
		t.links = append(t.links, made...)
		h.Pending = false
		t.logger.Info("hook attached", "hook", h.Name, "way", h.WayName(), "why", why)
	}
	t.pending.Store(left)
}

// markSchedHooks tells the kernel side (sched_hooks, index 0) that the
// scheduler hooks are about to run. Until then a request's read takes no
// tasks entry and its answer's write looks up none: nothing times a
// thread's throttling while they wait (start_request and update_sched
// in bpf/request.h). Set before they attach, so that no request read
// in between misses the entry they fill.
func (t *Tracer) markSchedHooks() error {
	if err := t.coll.Maps[TracerdMapSchedHooks].Put(uint32(0), uint32(1)); err != nil {
		return fmt.Errorf("noting the scheduler hooks attached: %w", err)
	}
	return nil
}

// Detach removes every hook (in reverse order) so that no new records
// are made; records already made can still be read, and Drain still works.
func (t *Tracer) Detach() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.detached = true
	var errs []error
	for i := len(t.links) - 1; i >= 0; i-- {
		errs = append(errs, t.links[i].Close())
	}
	t.links = nil
	if t.ring != nil {
		// The last reads wait for an entry a program still writes.
		t.ring.patient.Store(true)
	}
	return errors.Join(errs...)
}

// Close detaches every hook and frees the maps.
func (t *Tracer) Close() error {
	errs := []error{t.Detach()}
	if t.ring != nil {
		errs = append(errs, t.ring.close())
		t.ring = nil
	}
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	return errors.Join(errs...)
}

// Map returns a loaded map by name (TracerdMap* constants), or nil.
func (t *Tracer) Map(name string) *ebpf.Map { return t.coll.Maps[name] }
