package loader

import "strings"

// Hook is one thing tracerd needs to see in the kernel, the phases it
// gives, and the ways to attach it, best first. At start the loader
// takes, for each hook, the first way the running kernel offers and
// accepts (see Open); a hook with no usable way loses only its phases.
type Hook struct {
	Name     string   // stable name: --skip-hook, tracerd check, status
	Required bool     // tracing cannot work at all without it
	Phases   []string // what it measures, for `tracerd check` and the log
	Ways     []Way
	// OnQuota: loaded and tried at start, but attached only when a CPU
	// quota exists on the host or, later, when the kernel finds a
	// serving thread under one (quota_linux.go).
	OnQuota bool
}

// Way is one way to attach a hook: its programs and where each goes.
type Way struct {
	Kind  string   // tp_btf, raw_tp, tracepoint, fentry, fexit
	Progs []Attach // programs attached together (syscall exits: several)
	Args  int      // tp_btf/raw_tp: the event must have exactly this many arguments (0: any)
	Cost  string   // what it loses or costs next to the first way; empty for the first
}

// Attach is one program and its attach point.
type Attach struct {
	Program string // BPF program name in tracerd.c
	Group   string // classic tracepoints: the tracepoint group
	Target  string // tracepoint event or kernel function
}

// Name is how a way is shown: kind/target, or the syscall exits it uses.
func (w Way) Name() string {
	switch {
	case len(w.Progs) > 1:
		names := make([]string, len(w.Progs))
		for i, p := range w.Progs {
			names[i] = strings.TrimPrefix(p.Target, "sys_exit_")
		}
		return w.Progs[0].Group + "/sys_exit_{" + strings.Join(names, ",") + "}"
	case w.Kind == "tracepoint":
		return w.Progs[0].Group + "/" + w.Progs[0].Target
	}
	return w.Kind + "/" + w.Progs[0].Target
}

// tracepointWays: a tracepoint with typed arguments, then the same
// handler as a raw tracepoint (same cost; needs no BTF for the event).
func tracepointWays(event, prog string, args int) []Way {
	return []Way{
		{Kind: "tp_btf", Progs: []Attach{{Program: prog, Target: event}}, Args: args},
		{Kind: "raw_tp", Progs: []Attach{{Program: prog + "_raw", Target: event}}, Args: args,
			Cost: "none (same handler; for kernels whose BTF lacks the event's type)"},
	}
}

func syscallExits(names ...string) []Attach {
	out := make([]Attach, len(names))
	for i, n := range names {
		out[i] = Attach{Program: "sys_exit_" + n, Group: "syscalls", Target: "sys_exit_" + n}
	}
	return out
}

const syscallCost = "fires for every read/write syscall of a process that owns a traced connection " +
	"(files and pipes too: ≈ one map lookup each); io_uring and sendpage I/O unseen"

// Hooks lists every hook, in attach order. Kprobes are not among the
// ways: every kernel tracerd supports has fentry/fexit where it has
// kprobes, and a trampoline costs less than a breakpoint.
var Hooks = []Hook{
	{Name: "sys_exit_accept4", Required: true, Phases: []string{"connections (accept4)", "accept_queue"},
		Ways: []Way{{Kind: "tracepoint", Progs: syscallExits("accept4")}}},
	{Name: "sys_exit_accept", Phases: []string{"connections of servers calling accept(2)"},
		Ways: []Way{{Kind: "tracepoint", Progs: syscallExits("accept")}}},
	{Name: "inet_sock_set_state", Required: true, Phases: []string{"accept_queue", "connection close", "outbound calls", "connect"},
		Ways: tracepointWays("inet_sock_set_state", TracerdProgInetSockSetState, 0)},
	{Name: "sock_recv_length", Required: true, Phases: []string{"request boundaries", "recv_queue", "app", "http request"},
		Ways: append(tracepointWays("sock_recv_length", TracerdProgSockRecvLength, 0),
			Way{Kind: "fexit", Progs: []Attach{{Program: TracerdProgTcpRecvmsgExit, Target: "tcp_recvmsg"}}, Args: 5,
				Cost: "none measurable: a trampoline on TCP's recvmsg (Linux < 6.3)"},
			Way{Kind: "fexit", Progs: []Attach{{Program: TracerdProgTcpRecvmsgNbExit, Target: "tcp_recvmsg"}}, Args: 6,
				Cost: "none measurable: a trampoline on TCP's recvmsg (Linux < 5.19)"},
			Way{Kind: "tracepoint", Progs: syscallExits("read", "readv", "recvfrom", "recvmsg"), Cost: syscallCost})},
	{Name: "sock_send_length", Required: true, Phases: []string{"request boundaries", "app", "http status"},
		Ways: append(tracepointWays("sock_send_length", TracerdProgSockSendLength, 0),
			Way{Kind: "fexit", Progs: []Attach{{Program: TracerdProgTcpSendmsgExit, Target: "tcp_sendmsg"}},
				Cost: "a trampoline on TCP's sendmsg (Linux < 6.3); sendfile(2) bodies unseen before 6.5 (T_wl is the last write before them)"},
			Way{Kind: "tracepoint", Progs: syscallExits("write", "writev", "sendto", "sendmsg", "sendfile64"), Cost: syscallCost})},
	// Every incoming segment of an established socket: data arrival
	// (T_rx) and the TCP facts from one hook (sk_data_ready would be a
	// second run per request for T_rx alone).
	{Name: "tcp_probe", Phases: []string{"recv_queue", "softirq", "ack_wait", "tcp.srtt_us", "tcp.snd_cwnd", "tcp.zero_window", "wait", "receive"},
		Ways: tracepointWays("tcp_probe", TracerdProgTcpProbe, 0)},
	{Name: "net_dev_start_xmit", Phases: []string{"send_queue", "ack_wait", "send"},
		Ways: tracepointWays("net_dev_start_xmit", TracerdProgNetDevStartXmit, 0)},
	{Name: "tcp_retransmit_skb", Phases: []string{"tcp.retransmits", "tcp.syn_retransmits"},
		Ways: []Way{
			{Kind: "tp_btf", Progs: []Attach{{Program: TracerdProgTcpRetransmitSkb, Target: "tcp_retransmit_skb"}}, Args: 3},
			{Kind: "tp_btf", Progs: []Attach{{Program: TracerdProgTcpRetransmitSkbSent, Target: "tcp_retransmit_skb"}}, Args: 2,
				Cost: "none: the same count (kernels ≤ 6.12 fire the event only for segments sent)"},
			{Kind: "raw_tp", Progs: []Attach{{Program: TracerdProgTcpRetransmitSkbRaw, Target: "tcp_retransmit_skb"}}, Args: 3, Cost: "none"},
			{Kind: "raw_tp", Progs: []Attach{{Program: TracerdProgTcpRetransmitSkbSentRaw, Target: "tcp_retransmit_skb"}}, Args: 2, Cost: "none"},
		}},
	{Name: "softirq_raise", Phases: []string{"softirq"}, Ways: tracepointWays("softirq_raise", TracerdProgSoftirqRaise, 0)},
	{Name: "softirq_exit", Phases: []string{"softirq"}, Ways: tracepointWays("softirq_exit", TracerdProgSoftirqExit, 0)},
	// The scheduler's hooks fire for every context switch of the host;
	// they time only throttling (run-queue waits are the kernel's own
	// count), so they are attached once a CPU quota can throttle a
	// serving thread (quota_linux.go).
	{Name: "sched_wakeup", Phases: []string{"runqueue", "cfs_throttle"}, OnQuota: true, Ways: tracepointWays("sched_wakeup", TracerdProgSchedWakeup, 0)},
	{Name: "sched_wakeup_new", Phases: []string{"runqueue", "cfs_throttle"}, OnQuota: true, Ways: tracepointWays("sched_wakeup_new", TracerdProgSchedWakeupNew, 0)},
	{Name: "sched_switch", Phases: []string{"runqueue", "cfs_throttle"}, OnQuota: true, Ways: tracepointWays("sched_switch", TracerdProgSchedSwitch, 0)},
	{Name: "sched_process_exec", Phases: []string{"Go probes for exec'd processes"}, Ways: tracepointWays("sched_process_exec", TracerdProgSchedProcessExec, 0)},
	{Name: "sched_process_exit", Phases: []string{"Go probes removed at exit", "thread map cleanup"}, Ways: tracepointWays("sched_process_exit", TracerdProgSchedProcessExit, 0)},
	// Every connect() exit of the host; one compare unless it failed
	// with EADDRNOTAVAIL (docs/ports.md).
	{Name: "sys_exit_connect", Phases: []string{"connect failures (EADDRNOTAVAIL) per destination"},
		Ways: []Way{{Kind: "tracepoint", Progs: []Attach{{Program: TracerdProgConnectEaddrnotavail, Group: "syscalls", Target: "sys_exit_connect"}}}}},
}

// Tried is one way that was tried for a hook and why it was not taken.
type Tried struct {
	Way    string `json:"way"`
	Reason string `json:"reason"`
}

// HookStatus says how a hook is attached on this kernel, or why not.
type HookStatus struct {
	Hook
	OK     bool
	Way    *Way    // the way attached (nil when not OK)
	Reason string  // why it is missing, empty when OK
	Tried  []Tried // ways tried before the one taken (or all, when none)
	// Pending: OK, but not attached yet: an OnQuota hook on a host
	// without a CPU quota so far. Only Tracer.HookStatuses is current.
	Pending bool
}

// WayName is the attached way's name, or "".
func (h HookStatus) WayName() string {
	if h.Way == nil {
		return ""
	}
	return h.Way.Name()
}
