package correlate

// FindingCode names a cause of lost time (docs/findings.md). The names
// are used verbatim in the JSON lines, OTLP events, the summary and the
// Prometheus code label.
type FindingCode uint8

const (
	AcceptBacklog FindingCode = iota
	LateRead
	SoftirqDelay
	CPUContention
	CFSThrottled
	GCPause
	Serialization
	PeerZeroWindow
	Retransmits
	NagleDelayedAck
	OwnReceiveWindow
	PMTUBlackhole
	SlowHandler
	NewConnectionPerRequest
	TLSFullHandshake
	NumFindingCodes
)

var findingNames = [NumFindingCodes]string{
	AcceptBacklog:    "accept_backlog",
	LateRead:         "late_read",
	SoftirqDelay:     "softirq_delay",
	CPUContention:    "cpu_contention",
	CFSThrottled:     "cfs_throttled",
	GCPause:          "gc_pause",
	Serialization:    "serialization",
	PeerZeroWindow:   "peer_zero_window",
	Retransmits:      "retransmits",
	NagleDelayedAck:  "nagle_delayed_ack",
	OwnReceiveWindow: "own_receive_window",
	PMTUBlackhole:    "pmtu_blackhole",
	SlowHandler:      "slow_handler",

	NewConnectionPerRequest: "new_connection_per_request",
	TLSFullHandshake:        "tls_full_handshake",
}

// findingRemedies: one line each, what to change.
var findingRemedies = [NumFindingCodes]string{
	AcceptBacklog:    "accept faster: more accepting threads or workers, and a larger listen backlog (listen() argument and net.core.somaxconn)",
	LateRead:         "the app read the request late: its threads or event loop were busy elsewhere; add workers or stop blocking the loop",
	SoftirqDelay:     "packets waited for NET_RX processing: spread interrupts and RPS over more CPUs, keep busy threads off the NIC's CPUs",
	CPUContention:    "the thread waited for a busy CPU: move or limit the other work on its CPUs, or give the service more CPUs",
	CFSThrottled:     "the cgroup's CPU quota ran out: raise cpu.max (cfs_quota_us), or match GOMAXPROCS / the thread pool to the quota",
	GCPause:          "GC stopped the world: allocate less per request, or raise GOGC / GOMEMLIMIT if memory allows",
	Serialization:    "encoding/decoding took the time: send less data, or use a faster encoder or a binary format",
	PeerZeroWindow:   "the client stopped reading (its receive window closed): fix the client's reading or its buffer size",
	Retransmits:      "segments were lost and resent: look for drops on the path (nstat, interface counters, firewall rules)",
	NagleDelayedAck:  "Nagle held a small write until the peer's delayed ACK: set TCP_NODELAY, or write the answer in one call",
	OwnReceiveWindow: "the server's receive window filled: read uploads faster or raise the receive buffer",
	PMTUBlackhole:    "large segments are dropped on the path: allow ICMP fragmentation-needed, or clamp the MSS",
	SlowHandler:      "the handler's own time: profile it (its code, or the calls, locks and disk it waits on)",

	NewConnectionPerRequest: "each call paid for a new connection: keep connections open and reuse them (HTTP keep-alive, a pool with enough idle connections per host)",
	TLSFullHandshake:        "a returning client paid a full TLS 1.2 handshake: enable session resumption on the server (session tickets or a shared session cache, e.g. nginx ssl_session_cache) and keep the client's session cache",
}

func (c FindingCode) String() string {
	if c < NumFindingCodes {
		return findingNames[c]
	}
	return "unknown"
}

// Remedy is the code's one-line advice.
func (c FindingCode) Remedy() string {
	if c < NumFindingCodes {
		return findingRemedies[c]
	}
	return ""
}

// FindingCodeByName finds a code by its name.
func FindingCodeByName(name string) (FindingCode, bool) {
	for i, n := range findingNames {
		if n == name {
			return FindingCode(i), true
		}
	}
	return 0, false
}

// Finding is a cause that cost a request time: which phase it explains,
// how much of it, and the numbers that say so.
type Finding struct {
	Code     FindingCode
	Phase    Phase
	LostNs   int64
	Evidence []Evidence
}

// EvidenceKind says which field of an Evidence holds its value.
type EvidenceKind uint8

const (
	EvInt EvidenceKind = iota
	EvFloat
	EvText
)

// Evidence is one number (or name) behind a finding. Keys carry their
// unit (_ns, _us, _per_s, _pct).
type Evidence struct {
	Key   string
	Kind  EvidenceKind
	Int   int64
	Float float64
	Text  string
}

// IntEvidence, FloatEvidence and TextEvidence make evidence of a kind.
func IntEvidence(key string, v int64) Evidence { return Evidence{Key: key, Kind: EvInt, Int: v} }
func FloatEvidence(key string, v float64) Evidence {
	return Evidence{Key: key, Kind: EvFloat, Float: v}
}
func TextEvidence(key, v string) Evidence { return Evidence{Key: key, Kind: EvText, Text: v} }

// Lookup finds the evidence of key.
func (f *Finding) Lookup(key string) (Evidence, bool) {
	for _, e := range f.Evidence {
		if e.Key == key {
			return e, true
		}
	}
	return Evidence{}, false
}
