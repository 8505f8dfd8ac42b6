package export

import (
	"io"
	"strconv"

	"github.com/tracerd/tracerd/internal/correlate"
)

// JSONRecord is the stable JSON-lines shape of one request.
type JSONRecord struct {
	StartUnixNano int64      `json:"start_unix_nano"`
	EndUnixNano   int64      `json:"end_unix_nano"`
	DurationNs    int64      `json:"duration_ns"`
	PID           uint32     `json:"pid"`
	TID           uint32     `json:"tid"`
	Comm          string     `json:"comm"`
	Service       string     `json:"service"`
	CgroupID      uint64     `json:"cgroup_id"`
	Direction     string     `json:"direction"` // server, or client (an outbound call: conn.local is the process's end)
	Conn          JSONConn   `json:"conn"`
	HTTP          *JSONHTTP  `json:"http,omitempty"`
	RPC           *JSONRPC   `json:"rpc,omitempty"`
	TLS           *JSONTLS   `json:"tls,omitempty"`
	TraceID       string     `json:"trace_id"`
	SpanID        string     `json:"span_id"`
	ParentSpanID  string     `json:"parent_span_id,omitempty"`
	Phases        JSONPhases `json:"phases_ns"`
	TCP           *JSONTCP   `json:"tcp,omitempty"`
	Spans         []JSONSpan `json:"spans,omitempty"`
	EndReason     string     `json:"end_reason"`

	// Findings are the causes that cost the request time
	// (docs/findings.md); absent when none.
	Findings []JSONFinding `json:"findings,omitempty"`
}

type JSONConn struct {
	Local        string `json:"local"`
	Peer         string `json:"peer"`
	RequestIndex uint32 `json:"request_index"`
}

type JSONHTTP struct {
	Method string `json:"method"`
	Target string `json:"target"`
	Status int    `json:"status,omitempty"`
}

// JSONRPC is a gRPC call (grpc-go servers, Go awareness); status_code is
// absent when the status was not seen.
type JSONRPC struct {
	System     string `json:"system"`
	Service    string `json:"service"`
	Method     string `json:"method"`
	StatusCode *int   `json:"status_code,omitempty"`
}

// JSONTCP: srtt_us and snd_cwnd are absent when no segment from the
// peer was seen during the request.
type JSONTCP struct {
	SrttUs      *uint32 `json:"srtt_us,omitempty"`
	Retransmits uint32  `json:"retransmits"`
	ZeroWindow  uint32  `json:"zero_window"`
	SndCwnd     *uint32 `json:"snd_cwnd,omitempty"`
	Nagle       bool    `json:"nagle"`
	// SynRetransmits: an outbound call's connect (client records that
	// paid it) sent its SYN again so many times.
	SynRetransmits *uint32 `json:"syn_retransmits,omitempty"`
}

type JSONSpan struct {
	Name          string `json:"name"`
	StartUnixNano int64  `json:"start_unix_nano"`
	DurationNs    int64  `json:"duration_ns"`
}

// JSONPhases marshals measured phases only, in canonical order; an
// unmeasured phase is absent, never 0.
type JSONPhases map[string]int64

func (p JSONPhases) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for ph := correlate.Phase(0); ph < correlate.NumPhases; ph++ {
		v, ok := p[ph.String()]
		if !ok {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, ph.String())
		b = append(b, ':')
		b = strconv.AppendInt(b, v, 10)
	}
	return append(b, '}'), nil
}

// JSONOptions say what the JSON lines show. The zero value is the safe
// default.
type JSONOptions struct {
	// KeepQueryValues writes query values as the client sent them
	// instead of REDACTED: for a service whose queries are known to
	// carry no secret, where the values matter to read the records.
	KeepQueryValues bool
}

// ToJSON converts a Request to its JSON-lines shape, query values
// redacted.
func ToJSON(r *correlate.Request) JSONRecord { return JSONOptions{}.ToJSON(r) }

// ToJSON converts a Request to its JSON-lines shape with these options.
func (o JSONOptions) ToJSON(r *correlate.Request) JSONRecord {
	j := JSONRecord{
		StartUnixNano: r.StartUnixNano,
		EndUnixNano:   r.EndUnixNano,
		DurationNs:    r.DurationNs,
		PID:           r.PID,
		TID:           r.TID,
		Comm:          r.Comm,
		Service:       r.Service,
		CgroupID:      r.CgroupID,
		Direction:     r.Direction.String(),
		Conn: JSONConn{
			Local:        r.Conn.Local.String(),
			Peer:         r.Conn.Peer.String(),
			RequestIndex: r.Conn.RequestIndex,
		},
		TraceID:   r.TraceID.String(),
		SpanID:    r.SpanID.String(),
		Phases:    JSONPhases{},
		EndReason: r.EndReason.String(),
	}
	if !r.ParentSpanID.IsZero() {
		j.ParentSpanID = r.ParentSpanID.String()
	}
	if r.HTTP != nil {
		j.HTTP = &JSONHTTP{Method: r.HTTP.Method, Target: ShownTarget(r.HTTP.Target, o.KeepQueryValues), Status: r.HTTP.Status}
	}
	if r.RPC != nil {
		j.RPC = &JSONRPC{System: r.RPC.System, Service: r.RPC.Service, Method: r.RPC.Method}
		if r.RPC.StatusKnown {
			code := r.RPC.StatusCode
			j.RPC.StatusCode = &code
		}
	}
	if r.TLS != nil {
		j.TLS = toJSONTLS(r.TLS)
	}
	r.Phases.Each(func(p correlate.Phase, ns int64) { j.Phases[p.String()] = ns })
	j.TCP = &JSONTCP{Retransmits: r.TCP.Retransmits, ZeroWindow: r.TCP.ZeroWindow, Nagle: r.TCP.Nagle}
	if r.TCP.Valid {
		srtt, cwnd := r.TCP.SrttUs, r.TCP.SndCwnd
		j.TCP.SrttUs, j.TCP.SndCwnd = &srtt, &cwnd
	}
	if r.Direction == correlate.DirClient && r.Phases.Has(correlate.Connect) {
		syn := r.TCP.SynRetransmits
		j.TCP.SynRetransmits = &syn
	}
	for _, s := range r.Spans {
		j.Spans = append(j.Spans, JSONSpan{Name: s.Name, StartUnixNano: s.StartUnixNano, DurationNs: s.DurationNs})
	}
	for _, f := range r.Findings {
		j.Findings = append(j.Findings, JSONFinding{Code: f.Code.String(), Phase: f.Phase.String(), LostNs: f.LostNs,
			Evidence: JSONEvidence(f.Evidence), Remedy: f.Code.Remedy()})
	}
	return j
}

// jsonBuffer is how many bytes of lines JSONLines holds before it
// writes them: the pipeline flushes at each periodic look (150 ms), so
// that at 20,000 requests/s (≈ 17 MB/s of lines) a write carries 1 MiB:
// few write calls, each with its fixed cost (the system call, the
// file's times and journal, the page cache's per-write work) and the
// wake-up of Go's monitor thread that a blocking call makes. Measured on
// ext4 (6.18), 870-byte lines flushed every 3,000 as at 20,000/s, CPU
// per line, buffer and write included: 64 KiB ≈ 280 ns, 256 KiB
// ≈ 220 ns, 1 MiB ≈ 185 ns, 2 MiB no better, 4 MiB erratic (≈ 210 to
// 490 ns).
const jsonBuffer = 1 << 20

// jsonSlack is the room past jsonBuffer that the buffer is made with:
// the line that crosses jsonBuffer fits without the buffer growing
// (lines are about a kilobyte; a longer one grows it, once).
const jsonSlack = 16 << 10

// JSONLines writes one JSON object per line. Lines are made straight in
// its buffer (no copy of each line into a writer's buffer), which is
// written out once it holds jsonBuffer bytes and at each Flush. A write
// error sticks, as bufio.Writer's does: every later Write and Flush
// returns it, and the lines they would have written are dropped.
type JSONLines struct {
	w    io.Writer
	buf  []byte // the lines not written yet
	err  error
	opts JSONOptions
}

// NewJSONLines writes to w with the default options (query values
// redacted).
func NewJSONLines(w io.Writer) *JSONLines { return NewJSONLinesWith(w, JSONOptions{}) }

// NewJSONLinesWith writes to w with these options.
func NewJSONLinesWith(w io.Writer, o JSONOptions) *JSONLines {
	return &JSONLines{w: w, buf: make([]byte, 0, jsonBuffer+jsonSlack), opts: o}
}

// Write appends one request.
func (j *JSONLines) Write(r *correlate.Request) error {
	if j.err != nil {
		return j.err
	}
	j.buf = append(j.opts.AppendJSON(j.buf, r), '\n')
	if len(j.buf) >= jsonBuffer {
		return j.Flush()
	}
	return nil
}

// Add is Write: JSONLines is a pipeline sink, flushed at each periodic
// look (pipeline.PollEvery) and at the end.
func (j *JSONLines) Add(r *correlate.Request) error { return j.Write(r) }

// Flush writes the buffered lines to the underlying writer.
func (j *JSONLines) Flush() error {
	if j.err != nil || len(j.buf) == 0 {
		return j.err
	}
	n, err := j.w.Write(j.buf)
	if err == nil && n < len(j.buf) {
		err = io.ErrShortWrite
	}
	j.buf = j.buf[:0]
	j.err = err
	return err
}
