package main

// The benchmark's own BPF programs, built here in BPF assembly (no
// compiler, no generated object to keep in step): the floor arm's empty
// programs, and the census, which counts the events of tracerd's hooks
// by whose they are (the server's side, the load generator's, the rest
// of the host).

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// attachPoint is where one of tracerd's programs is attached, as the
// loader names a way: "tp_btf/EVENT", "raw_tp/EVENT", "GROUP/EVENT" (a
// classic tracepoint), "fentry/FUNC", "fexit/FUNC".
type attachPoint string

func (a attachPoint) split() (kind, target string) {
	k, t, _ := strings.Cut(string(a), "/")
	return k, t
}

// event is the tracepoint's name ("" for functions and unknown kinds).
func (a attachPoint) event() string {
	switch k, t := a.split(); k {
	case "tp_btf", "raw_tp":
		return t
	case "fentry", "fexit", "?", "uprobe", "":
		return ""
	default:
		return t // classic: GROUP/EVENT
	}
}

// attachedProgs is a set of loaded and attached programs, closed together.
type attachedProgs struct {
	progs []*ebpf.Program
	links []link.Link
	maps  []*ebpf.Map
	ids   map[uint32]string // program id → attach point
}

func (a *attachedProgs) Close() {
	if a == nil {
		return
	}
	for _, l := range a.links {
		l.Close()
	}
	for _, p := range a.progs {
		p.Close()
	}
	for _, m := range a.maps {
		m.Close()
	}
}

// attachAt loads insns as a program for point and attaches it there.
func (a *attachedProgs) attachAt(point attachPoint, insns asm.Instructions) error {
	kind, target := point.split()
	spec := &ebpf.ProgramSpec{Name: "bench_" + short(target), Instructions: insns, License: "GPL"}
	switch kind {
	case "tp_btf":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceRawTp, target
	case "raw_tp":
		spec.Type = ebpf.RawTracepoint
	case "fentry":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceFEntry, target
	case "fexit":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceFExit, target
	default:
		spec.Type = ebpf.TracePoint
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		return fmt.Errorf("loading a program for %s: %w", point, err)
	}
	a.progs = append(a.progs, p)
	var l link.Link
	switch kind {
	case "tp_btf", "fentry", "fexit":
		l, err = link.AttachTracing(link.TracingOptions{Program: p})
	case "raw_tp":
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: p})
	default:
		l, err = link.Tracepoint(kind, target, p, nil)
	}
	if err != nil {
		return fmt.Errorf("attaching a program at %s: %w", point, err)
	}
	a.links = append(a.links, l)
	if info, err := p.Info(); err == nil {
		if id, ok := info.ID(); ok {
			a.ids[uint32(id)] = string(point)
		}
	}
	return nil
}

// short fits a name in the kernel's 15 bytes of program name.
func short(s string) string {
	s = strings.NewReplacer("/", "_", "-", "_").Replace(s)
	if len(s) > 9 {
		s = s[:9]
	}
	return s
}

// attachFloor attaches an empty program (return 0) at each point: the
// floor, what the hooks cost before any work of tracerd's.
func attachFloor(points []attachPoint) (*attachedProgs, error) {
	a := &attachedProgs{ids: map[uint32]string{}}
	for _, pt := range points {
		if err := a.attachAt(pt, asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Census classes: whose event it is.
const (
	clsServer      = iota // the server's socket or thread: tracerd works on it
	clsServerEarly        // the server's socket, but an empty read or write (ret ≤ 0): tracerd returns before any map work
	clsClient             // the load generator's socket or thread
	clsOther              // anything else on the host (tracerd, the benchmark, kernel threads, idle)
	nClasses
)

// censusHooks are the events the census counts, in the order of its
// counters. The softirq ones are always attached (the census follows
// NET_RX softirqs from raise to exit to tell whose segments they
// delivered), whether tracerd uses them or not.
var censusHooks = []string{
	"sock_recv_length", "sock_send_length", "tcp_probe", "sk_data_ready", "net_dev_start_xmit",
	"softirq_raise", "softirq_entry", "softirq_exit", "sched_switch", "sched_wakeup", "sched_wakeup_new",
	"inet_sock_set_state", "tcp_retransmit_skb",
}

func censusIndex(event string) int {
	for i, h := range censusHooks {
		if h == event {
			return i
		}
	}
	return -1
}

// census is the attached counting programs and their counters.
type census struct {
	*attachedProgs
	counts, cfg *ebpf.Map
	hooks       []string // events attached (those the kernel has)
}

// SetClient says which process's threads are the client's.
func (c *census) SetClient(pid int) error { return c.cfg.Put(uint32(0), uint32(pid)) }

// kernel structure offsets the census reads through BTF pointers.
type censusOffsets struct {
	skcNum, skcDport, skbSk, taskTgid int16
}

func loadCensusOffsets() (censusOffsets, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return censusOffsets{}, err
	}
	var o censusOffsets
	for _, f := range []struct {
		typ, field string
		size       uint32
		dst        *int16
	}{
		{"sock_common", "skc_num", 2, &o.skcNum},
		{"sock_common", "skc_dport", 2, &o.skcDport},
		{"sk_buff", "sk", 8, &o.skbSk},
		{"task_struct", "tgid", 4, &o.taskTgid},
	} {
		var s *btf.Struct
		if err := spec.TypeByName(f.typ, &s); err != nil {
			return o, fmt.Errorf("kernel BTF: struct %s: %w", f.typ, err)
		}
		off, ok := memberOffset(s, f.field, 0)
		if !ok {
			return o, fmt.Errorf("kernel BTF: no %s.%s", f.typ, f.field)
		}
		*f.dst = int16(off)
	}
	return o, nil
}

// memberOffset finds a member by name, inside anonymous structs and
// unions too; the offset is in bytes from the outer struct.
func memberOffset(t btf.Type, name string, base uint32) (uint32, bool) {
	var members []btf.Member
	switch c := t.(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return 0, false
	}
	for _, m := range members {
		off := base + uint32(m.Offset.Bytes())
		if m.Name == name {
			return off, true
		}
		if m.Name == "" {
			if o, ok := memberOffset(btf.UnderlyingType(m.Type), name, off); ok {
				return o, true
			}
		}
	}
	return 0, false
}

// NET_RX_SOFTIRQ's number.
const netRxSoftirq = 3

// softirq state per CPU (the census's own): NET_RX raises and entries
// since the last exit, whether inside one, and whose segments it
// delivered (bit 1: the server's, bit 2: the client's).
const (
	sqRaises  = 0
	sqEntries = 8
	sqIn      = 16
	sqSeen    = 24
	sqSize    = 32
)

// attachCensus attaches the counting programs: port is the server's
// listening port, serverPid the process whose threads are the server's
// (SetClient names the client's).
func attachCensus(port, serverPid int) (*census, error) {
	off, err := loadCensusOffsets()
	if err != nil {
		return nil, err
	}
	c := &census{attachedProgs: &attachedProgs{ids: map[uint32]string{}}}
	fail := func(err error) (*census, error) {
		c.Close()
		return nil, err
	}
	c.counts, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8,
		MaxEntries: uint32(len(censusHooks) * nClasses)})
	if err != nil {
		return fail(fmt.Errorf("census counters: %w", err))
	}
	c.maps = append(c.maps, c.counts)
	sq, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: sqSize, MaxEntries: 1})
	if err != nil {
		return fail(fmt.Errorf("census softirq state: %w", err))
	}
	c.maps = append(c.maps, sq)
	c.cfg, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return fail(fmt.Errorf("census config: %w", err))
	}
	c.maps = append(c.maps, c.cfg)
	g := censusGen{off: off, port: int32(port), server: int32(serverPid), counts: c.counts, sq: sq, cfg: c.cfg}
	for i, ev := range censusHooks {
		insns, err := g.program(i, ev)
		if err != nil {
			return fail(err)
		}
		if err := c.attachAt(attachPoint("tp_btf/"+ev), insns); err != nil {
			if ev == "sk_data_ready" && errors.Is(err, ebpf.ErrNotSupported) {
				continue // Linux < 6.3
			}
			return fail(err)
		}
		c.hooks = append(c.hooks, ev)
	}
	return c, nil
}

// Read sums the counters: event → class → events.
func (c *census) Read() (map[string][nClasses]uint64, error) {
	out := map[string][nClasses]uint64{}
	for i, ev := range censusHooks {
		var row [nClasses]uint64
		for k := 0; k < nClasses; k++ {
			var perCPU []uint64
			if err := c.counts.Lookup(uint32(i*nClasses+k), &perCPU); err != nil {
				return nil, err
			}
			for _, v := range perCPU {
				row[k] += v
			}
		}
		out[ev] = row
	}
	return out, nil
}

type censusGen struct {
	off             censusOffsets
	port, server    int32
	counts, sq, cfg *ebpf.Map
}

// Registers: R6 holds the class, R7 the event's index; R1 is the
// tracepoint's argument array at entry.
func (g censusGen) program(idx int, ev string) (asm.Instructions, error) {
	var body asm.Instructions
	switch ev {
	case "sock_recv_length", "sock_send_length":
		body = append(g.sockClass(0), g.earlyIfEmpty(1)...)
	case "tcp_probe":
		body = append(g.sockClass(0), g.markSeen()...)
	case "sk_data_ready", "inet_sock_set_state", "tcp_retransmit_skb":
		body = g.sockClass(0)
	case "net_dev_start_xmit":
		body = asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),
			asm.Mov.Imm(asm.R6, clsOther),
			asm.JEq.Imm(asm.R2, 0, "count"),
			asm.LoadMem(asm.R2, asm.R2, g.off.skbSk, asm.DWord),
		}
		body = append(body, g.sockFrom(asm.R2)...)
	case "softirq_raise", "softirq_entry", "softirq_exit":
		return g.softirq(idx, ev), nil
	case "sched_switch":
		body = g.taskClass(1, 2)
	case "sched_wakeup", "sched_wakeup_new":
		body = g.taskClass(0, -1)
	default:
		return nil, fmt.Errorf("census: no classifier for %s", ev)
	}
	return append(append(asm.Instructions{asm.Mov.Imm(asm.R7, int32(idx))}, body...), g.countClass()...), nil
}

// sockClass: the class of the socket in argument arg.
func (g censusGen) sockClass(arg int16) asm.Instructions {
	return append(asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, arg*8, asm.DWord),
		asm.Mov.Imm(asm.R6, clsOther),
		asm.JEq.Imm(asm.R2, 0, "count"),
	}, g.sockFrom(asm.R2)...)
}

// sockFrom: the class of the socket in r (not NULL, or NULL-safe BTF loads).
func (g censusGen) sockFrom(r asm.Register) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R6, clsOther),
		asm.JEq.Imm(r, 0, "count"),
		asm.LoadMem(asm.R3, r, g.off.skcNum, asm.Half),
		asm.Mov.Imm(asm.R6, clsServer),
		asm.JEq.Imm(asm.R3, g.port, "classified"),
		asm.LoadMem(asm.R3, r, g.off.skcDport, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.Mov.Imm(asm.R6, clsClient),
		asm.JEq.Imm(asm.R3, g.port, "classified"),
		asm.Mov.Imm(asm.R6, clsOther),
		asm.Ja.Label("classified"),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("classified"),
	}
}

// earlyIfEmpty: a server-side event whose return value (argument arg)
// is ≤ 0 is clsServerEarly.
func (g censusGen) earlyIfEmpty(arg int16) asm.Instructions {
	return asm.Instructions{
		asm.JNE.Imm(asm.R6, clsServer, "count"),
		asm.LoadMem(asm.R3, asm.R1, arg*8, asm.DWord),
		asm.LSh.Imm(asm.R3, 32),
		asm.ArSh.Imm(asm.R3, 32),
		asm.JSGT.Imm(asm.R3, 0, "count"),
		asm.Mov.Imm(asm.R6, clsServerEarly),
	}
}

// taskClass: server if either task (arguments a, b; b < 0: none) is a
// thread of the server, else client if either is the client's (whose
// pid is in the config map: wrk starts after the census is attached).
func (g censusGen) taskClass(a, b int16) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, -8, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, g.cfg.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(asm.R3, -1),
		asm.JEq.Imm(asm.R0, 0, "no_cfg"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R3, asm.DWord).WithSymbol("no_cfg"),
		asm.Mov.Reg(asm.R1, asm.R6),
	}
	tgid := func(arg int16, reg asm.Register, label string) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Imm(reg, 0),
			asm.LoadMem(asm.R2, asm.R1, arg*8, asm.DWord),
			asm.JEq.Imm(asm.R2, 0, label),
			asm.LoadMem(reg, asm.R2, g.off.taskTgid, asm.Word),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(label),
		}
	}
	insns = append(insns, tgid(a, asm.R8, "tgid_a")...)
	if b >= 0 {
		insns = append(insns, tgid(b, asm.R9, "tgid_b")...)
	} else {
		insns = append(insns, asm.Mov.Reg(asm.R9, asm.R8))
	}
	return append(insns,
		asm.Mov.Imm(asm.R6, clsServer),
		asm.JEq.Imm(asm.R8, g.server, "count"),
		asm.JEq.Imm(asm.R9, g.server, "count"),
		asm.Mov.Imm(asm.R6, clsClient),
		asm.LoadMem(asm.R3, asm.RFP, -16, asm.DWord),
		asm.JEq.Reg(asm.R8, asm.R3, "count"),
		asm.JEq.Reg(asm.R9, asm.R3, "count"),
		asm.Mov.Imm(asm.R6, clsOther),
	)
}

// sqState: R0 = this CPU's softirq state, or exit.
func (g censusGen) sqState(exit string) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -8, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, g.sq.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, exit),
	}
}

// markSeen: inside a NET_RX softirq, note whose segment it delivered
// (tcp_probe fires for each segment of an established socket).
func (g censusGen) markSeen() asm.Instructions {
	insns := g.sqState("count")
	return append(insns,
		asm.LoadMem(asm.R2, asm.R0, sqIn, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, "count"),
		asm.Mov.Imm(asm.R3, 1),
		asm.JEq.Imm(asm.R6, clsServer, "seen"),
		asm.Mov.Imm(asm.R3, 2),
		asm.JEq.Imm(asm.R6, clsClient, "seen"),
		asm.Ja.Label("count"),
		asm.LoadMem(asm.R2, asm.R0, sqSeen, asm.DWord).WithSymbol("seen"),
		asm.Or.Reg(asm.R2, asm.R3),
		asm.StoreMem(asm.R0, sqSeen, asm.R2, asm.DWord),
	)
}

// countClass adds 1 to counter R7*nClasses + R6, then returns 0.
func (g censusGen) countClass() asm.Instructions {
	insns := asm.Instructions{asm.Mov.Imm(asm.R8, 1).WithSymbol("count")}
	return append(append(insns, g.addTo("out")...), asm.Return())
}

// softirq: raises and entries of NET_RX are held per CPU until its exit,
// then counted in the class of the segments that softirq delivered;
// other softirqs are clsOther at once.
func (g censusGen) softirq(idx int, ev string) asm.Instructions {
	raise, entry := int32(censusIndex("softirq_raise")), int32(censusIndex("softirq_entry"))
	insns := asm.Instructions{
		asm.Mov.Imm(asm.R7, int32(idx)),
		asm.Mov.Imm(asm.R6, clsOther),
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),
		asm.Mov.Reg32(asm.R2, asm.R2), // the vector: an unsigned int
		asm.JNE.Imm(asm.R2, netRxSoftirq, "count"),
	}
	insns = append(insns, g.sqState("out")...)
	switch ev {
	case "softirq_raise":
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R0, sqRaises, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, sqRaises, asm.R1, asm.DWord),
			asm.Ja.Label("out"))
	case "softirq_entry":
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R0, sqEntries, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, sqEntries, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, sqIn, asm.R1, asm.DWord),
			asm.Ja.Label("out"))
	case "softirq_exit":
		// Class from what it delivered; then the held raises and
		// entries, then this exit.
		insns = append(insns,
			asm.Mov.Reg(asm.R9, asm.R0),
			asm.LoadMem(asm.R2, asm.R9, sqSeen, asm.DWord),
			asm.Mov.Imm(asm.R6, clsServer),
			asm.JSet.Imm(asm.R2, 1, "cls"),
			asm.Mov.Imm(asm.R6, clsClient),
			asm.JSet.Imm(asm.R2, 2, "cls"),
			asm.Mov.Imm(asm.R6, clsOther),
			asm.Mov.Imm(asm.R7, raise).WithSymbol("cls"),
			asm.LoadMem(asm.R8, asm.R9, sqRaises, asm.DWord),
		)
		insns = append(insns, g.addTo("add_raises")...)
		insns = append(insns,
			asm.Mov.Imm(asm.R7, entry),
			asm.LoadMem(asm.R8, asm.R9, sqEntries, asm.DWord),
		)
		insns = append(insns, g.addTo("add_entries")...)
		insns = append(insns,
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.R9, sqRaises, asm.R1, asm.DWord),
			asm.StoreMem(asm.R9, sqEntries, asm.R1, asm.DWord),
			asm.StoreMem(asm.R9, sqIn, asm.R1, asm.DWord),
			asm.StoreMem(asm.R9, sqSeen, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R7, int32(idx)),
			asm.Ja.Label("count"))
	}
	// countClass adds R8 (set to 1 at its label) to the counter.
	return append(insns, g.countClass()...)
}

// addTo adds R8 to counter R7*nClasses + R6 (R9 is kept).
func (g censusGen) addTo(done string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mul.Imm(asm.R1, nClasses),
		asm.Add.Reg(asm.R1, asm.R6),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, g.counts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, done),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R8),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	}
}
