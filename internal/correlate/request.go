package correlate

import (
	"net/netip"
	"slices"
	"strings"
)

// Request is one finished request, served (Direction server) or sent by
// the traced process (client: an outbound call): the single model every
// exporter consumes. A sink gets it for the time of its call only: the
// correlator reuses its HTTP and Spans for the next request, so a sink
// that keeps a request keeps a Clone.
type Request struct {
	StartUnixNano int64
	EndUnixNano   int64
	DurationNs    int64
	PID           uint32
	TID           uint32 // the thread that consumed the request
	Comm          string
	Service       string
	CgroupID      uint64
	Direction     Direction // server, or client: Conn.Local is then the process's own end
	Conn          Conn
	HTTP          *HTTP // nil unless the bytes were plaintext HTTP/1.x (or Go awareness saw the request)
	RPC           *RPC  // a gRPC call (Go awareness of a grpc-go server), else nil
	TLS           *TLS  // the connection's TLS handshake, on its first request; else nil
	Encrypted     bool  // the request's bytes on the socket were TLS records (its HTTP, if any, from probes)
	TraceID       TraceID
	SpanID        SpanID
	ParentSpanID  SpanID // the caller's span (from traceparent), zero if none
	TraceFlags    byte   // the caller's trace-flags (bit 0: sampled); valid with ParentSpanID
	Phases        Phases
	TCP           TCP
	Spans         []Span
	EndReason     EndReason
	Answered      bool // the app wrote an answer
	// FirstWriteNs is T_wr − T_rd: from the request's first read to the
	// answer's first write; 0 when not seen (Go-only records).
	FirstWriteNs int64
	// Findings name the causes that cost the request time, largest
	// first (internal/findings); nil when none.
	Findings []Finding
	// Inbound: for an outbound call parented to the served request that
	// made it, what that request's sampling was decided on, so that the
	// call is exported with it (never alone, an orphan).
	Inbound Inbound
}

// Inbound is what a sampler decides a served request on.
type Inbound struct {
	Valid        bool
	DurationNs   int64
	ParentSpanID SpanID // its caller's span, zero if none
	TraceFlags   byte
}

// Clone returns a copy of r that shares nothing with it.
func (r *Request) Clone() Request {
	c := *r
	if r.HTTP != nil {
		h := *r.HTTP
		c.HTTP = &h
	}
	if r.RPC != nil {
		x := *r.RPC
		c.RPC = &x
	}
	if r.TLS != nil {
		t := *r.TLS
		c.TLS = &t
	}
	c.Spans = slices.Clone(r.Spans)
	return c
}

// Conn identifies the connection a request came on.
type Conn struct {
	Local        netip.AddrPort
	Peer         netip.AddrPort
	RequestIndex uint32 // 0 for the first request of the connection
	Sock         uint64 // kernel sock address: unique among open connections
}

// HTTP holds what was parsed from the request and response heads.
type HTTP struct {
	Method string
	// Target is the request-target as received (query included) or, from
	// Go awareness, net/http's URL.Path. It may hold secrets: outputs
	// show it through export's redaction, never verbatim.
	Target string
	// Pattern is the server's route template when it is known (Go 1.22+
	// net/http's Request.Pattern, "GET /items/{id}"), else "": the route
	// then comes from Target (see AppendRoute).
	Pattern string
	Status  int // 0 when the response was not seen or not HTTP
}

// RPC describes a remote procedure call.
type RPC struct {
	System      string // "grpc"
	Service     string // "package.Service"
	Method      string // "Method"
	StatusCode  int    // gRPC status code (0 OK), valid when StatusKnown
	StatusKnown bool
}

// newGRPC splits a gRPC method path "/package.Service/Method" at its last
// slash, as grpc-go does; a path of another shape is kept whole as the
// method.
func newGRPC(path string) *RPC {
	r := &RPC{System: "grpc", Method: path}
	if rest, ok := strings.CutPrefix(path, "/"); ok {
		if i := strings.LastIndexByte(rest, '/'); i > 0 && i < len(rest)-1 {
			r.Service, r.Method = rest[:i], rest[i+1:]
		}
	}
	return r
}

// TCP holds the connection's TCP facts at the end of the request.
type TCP struct {
	Valid       bool // srtt/cwnd were read from an incoming segment
	SrttUs      uint32
	Retransmits uint32
	ZeroWindow  uint32
	SndCwnd     uint32
	Nagle       bool
	Retrans     RetransShape
	OwnWindow   OwnWindow
	// The listener's accept queue when accept() took the connection,
	// this one included, and its limit (0: not seen).
	AcceptQueueLen, AcceptQueueMax uint32
	// SynRetransmits: SYNs connect() sent again (client records of a
	// connection's first request).
	SynRetransmits uint32
}

// OwnWindow is the time the server's own advertised receive window
// stayed closed (zero) for the request: its client could not send.
type OwnWindow struct {
	Zero      uint32 // zero windows advertised (closings)
	UnreadNs  int64  // closed before the app's first read of the request
	ReadingNs int64  // closed while the app was reading and handling it
}

// RetransShape is how a request's retransmissions looked (zero when
// none): what tells a path MTU black hole from other losses.
type RetransShape struct {
	MaxSeg    uint32 // largest segment retransmitted, payload bytes
	Repeats   uint32 // most retransmissions in a row of one sequence number
	RepeatSeg uint32 // that segment's largest size
	MSSFirst  uint32 // the socket's mss_cache at the first retransmission
	MSSLast   uint32 // and at the last
	PMTUFirst uint32 // the path MTU TCP knew (icsk_pmtu_cookie) at the first
	PMTULast  uint32 // and at the last
}

// Span is a user-space span (Go awareness) inside the request's app time.
type Span struct {
	Name          string
	StartUnixNano int64
	DurationNs    int64
}

// Route is the request's route for grouping (see AppendRoute):
// "GET /users/{id}" for HTTP, "tcp:PORT" for other protocols.
func (r *Request) Route() string { return string(r.AppendRoute(nil)) }
