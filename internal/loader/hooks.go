package loader

// Hook is one kernel attachment point and what tracerd loses without it.
type Hook struct {
	Program  string   // BPF program name in tracerd.c
	Kind     string   // "tracepoint" (classic) or "tp_btf"
	Group    string   // tracepoint group (classic tracepoints)
	Event    string   // tracepoint name
	Required bool     // tracing cannot work at all without it
	Phases   []string // what it measures, for `tracerd check` and the log
}

// Hooks lists every program tracerd attaches, in attach order.
var Hooks = []Hook{
	{Program: TracerdProgSysExitAccept4, Kind: "tracepoint", Group: "syscalls", Event: "sys_exit_accept4", Required: true,
		Phases: []string{"connections (accept4)", "accept_queue"}},
	{Program: TracerdProgSysExitAccept, Kind: "tracepoint", Group: "syscalls", Event: "sys_exit_accept",
		Phases: []string{"connections of servers calling accept(2)"}},
	{Program: TracerdProgInetSockSetState, Kind: "tp_btf", Event: "inet_sock_set_state", Required: true,
		Phases: []string{"accept_queue", "connection close"}},
	{Program: TracerdProgSockRecvLength, Kind: "tp_btf", Event: "sock_recv_length", Required: true,
		Phases: []string{"request boundaries", "recv_queue", "app", "http request"}},
	{Program: TracerdProgSockSendLength, Kind: "tp_btf", Event: "sock_send_length", Required: true,
		Phases: []string{"request boundaries", "app", "http status"}},
	{Program: TracerdProgSkDataReady, Kind: "tp_btf", Event: "sk_data_ready",
		Phases: []string{"recv_queue", "softirq"}},
	{Program: TracerdProgNetDevStartXmit, Kind: "tp_btf", Event: "net_dev_start_xmit",
		Phases: []string{"send_queue", "ack_wait"}},
	{Program: TracerdProgTcpProbe, Kind: "tp_btf", Event: "tcp_probe",
		Phases: []string{"ack_wait", "tcp.srtt_us", "tcp.snd_cwnd", "tcp.zero_window"}},
	{Program: TracerdProgTcpRetransmitSkb, Kind: "tp_btf", Event: "tcp_retransmit_skb",
		Phases: []string{"tcp.retransmits"}},
	{Program: TracerdProgSoftirqRaise, Kind: "tp_btf", Event: "softirq_raise", Phases: []string{"softirq"}},
	{Program: TracerdProgSoftirqEntry, Kind: "tp_btf", Event: "softirq_entry", Phases: []string{"softirq"}},
	{Program: TracerdProgSoftirqExit, Kind: "tp_btf", Event: "softirq_exit", Phases: []string{"softirq"}},
	{Program: TracerdProgSchedWakeup, Kind: "tp_btf", Event: "sched_wakeup", Phases: []string{"runqueue", "cfs_throttle"}},
	{Program: TracerdProgSchedWakeupNew, Kind: "tp_btf", Event: "sched_wakeup_new", Phases: []string{"runqueue", "cfs_throttle"}},
	{Program: TracerdProgSchedSwitch, Kind: "tp_btf", Event: "sched_switch", Phases: []string{"runqueue", "cfs_throttle"}},
	{Program: TracerdProgSchedProcessExec, Kind: "tp_btf", Event: "sched_process_exec", Phases: []string{"Go probes for exec'd processes"}},
	{Program: TracerdProgSchedProcessExit, Kind: "tp_btf", Event: "sched_process_exit", Phases: []string{"Go probes removed at exit", "thread map cleanup"}},
}

// HookStatus says whether a hook is usable on this kernel and why not.
type HookStatus struct {
	Hook
	OK     bool
	Reason string // why it is missing, empty when OK
}

// Name is how a hook is shown to people: group/event or tp_btf/event.
func (h Hook) Name() string {
	if h.Kind == "tracepoint" {
		return h.Group + "/" + h.Event
	}
	return "tp_btf/" + h.Event
}
