package export

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/httpparse"
)

// Attribute keys of tracerd's own facts (no semantic convention covers
// them). Semantic-convention keys are spelled out where they are used.
const (
	attrPhase          = "tracerd.phase"
	attrPhaseAggregate = "tracerd.phase.aggregate"
	attrRequestIndex   = "tracerd.conn.request_index"
	attrEndReason      = "tracerd.end_reason"
	attrAnswered       = "tracerd.answered"
	attrCgroupID       = "tracerd.cgroup_id"
	attrSrttUs         = "tracerd.tcp.srtt_us"
	attrSndCwnd        = "tracerd.tcp.snd_cwnd"
	attrRetransmits    = "tracerd.tcp.retransmits"
	attrSynRetransmits = "tracerd.tcp.syn_retransmits"
	attrZeroWindow     = "tracerd.tcp.zero_window"
	attrNagle          = "tracerd.tcp.nagle"
)

// window is a span's place in wall-clock time.
type window struct{ start, end int64 }

// phaseWindows places each measured phase in time. A Request carries
// its start and end and each phase's length; the kernel's timestamps
// follow from them:
//
//	T_tx = end when send_queue was measured; T_wl = T_tx − send_queue
//	(or end when the answer's last byte was not seen leaving)
//	T_rd = T_wl − app; recv_queue ends at T_rd
//	accept_queue begins at start (T_est, first request of a connection)
//	softirq ends where recv_queue begins (the bytes were queued)
//	ack_wait begins at T_tx
//
// softirq and ack_wait lie outside [start, end] by definition (the
// request's duration is T_tx − T_rx); their spans say where they
// happened rather than being squeezed inside. Nested phases are totals
// of many intervals: their span begins where their parent begins and
// lasts the total (attribute tracerd.phase.aggregate=true says so).
func phaseWindows(r *correlate.Request) (w [correlate.NumPhases]window, ok [correlate.NumPhases]bool) {
	if r.Direction == correlate.DirClient {
		return clientPhaseWindows(r)
	}
	ps := r.Phases
	get := func(p correlate.Phase) int64 { v, _ := ps.Get(p); return v }
	tx := r.EndUnixNano
	wl := tx
	if ps.Has(correlate.SendQueue) {
		wl = tx - get(correlate.SendQueue)
	}
	rd := wl
	if ps.Has(correlate.App) {
		rd = wl - get(correlate.App)
	}
	set := func(p correlate.Phase, start, end int64) {
		w[p], ok[p] = window{start, end}, true
	}
	// A connection's first request over TLS: app begins where the
	// handshake ended, which began at the ClientHello's read.
	if ps.Has(correlate.TLSHandshake) {
		set(correlate.TLSHandshake, rd-get(correlate.TLSHandshake), rd)
		rd -= get(correlate.TLSHandshake)
	}
	rxFrom := rd // where the bytes started to wait (max(T_rx, T_acc))
	if ps.Has(correlate.RecvQueue) {
		rxFrom = rd - get(correlate.RecvQueue)
		set(correlate.RecvQueue, rxFrom, rd)
	}
	if ps.Has(correlate.AcceptQueue) {
		set(correlate.AcceptQueue, r.StartUnixNano, r.StartUnixNano+get(correlate.AcceptQueue))
	}
	if ps.Has(correlate.Softirq) {
		set(correlate.Softirq, rxFrom-get(correlate.Softirq), rxFrom)
	}
	if ps.Has(correlate.App) {
		set(correlate.App, wl-get(correlate.App), wl)
	}
	if ps.Has(correlate.SendQueue) {
		set(correlate.SendQueue, wl, tx)
	}
	if ps.Has(correlate.AckWait) {
		set(correlate.AckWait, tx, tx+get(correlate.AckWait))
	}
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		if !p.Nested() || !ps.Has(p) {
			continue
		}
		from := rd
		if ok[p.Parent()] {
			from = w[p.Parent()].start
		}
		set(p, from, from+get(p))
	}
	return w, ok
}

// clientPhaseWindows places an outbound call's phases, which follow
// one another: connect from the start; send, wait and receive, this
// last ending at the end; tls_handshake ending where send begins.
// Whatever the app did between connect and its handshake or send lies
// between them.
func clientPhaseWindows(r *correlate.Request) (w [correlate.NumPhases]window, ok [correlate.NumPhases]bool) {
	if ns, has := r.Phases.Get(correlate.Connect); has {
		w[correlate.Connect], ok[correlate.Connect] = window{r.StartUnixNano, r.StartUnixNano + ns}, true
	}
	at := r.EndUnixNano
	for _, p := range [...]correlate.Phase{correlate.Receive, correlate.Wait, correlate.Send, correlate.TLSHandshake} {
		ns, has := r.Phases.Get(p)
		if !has {
			continue
		}
		w[p], ok[p] = window{at - ns, at}, true
		at -= ns
	}
	return w, ok
}

// RequestSpans builds a request's span tree: the SERVER span (the
// request's own ids; a child of the caller's span when a traceparent
// came in), one INTERNAL span per measured top-level phase under it,
// nested phases under their parent phase, and the Go spans under app,
// each inside the Go span that contains it. Child span ids derive from
// the request's span id, so the same Request always gives the same tree.
// Query values are redacted (see RedactedValue).
func RequestSpans(r *correlate.Request) []*tracepb.Span { return requestSpans(r, false) }

// requestSpans is RequestSpans, query values kept when keepQueryValues.
func requestSpans(r *correlate.Request, keepQueryValues bool) []*tracepb.Span {
	traceID := idBytes(r.TraceID[:])
	serverID := idBytes(r.SpanID[:])
	parentID := idBytes(r.ParentSpanID[:])
	if traceID == nil {
		traceID = randomID(16)
	}
	if serverID == nil {
		serverID = randomID(8)
	}
	const sampled = 0x01
	hasRemote := uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	serverFlags := sampled | hasRemote
	kind := tracepb.Span_SPAN_KIND_SERVER
	if r.Direction == correlate.DirClient {
		// An outbound call: its parent is the inbound request's span,
		// made here, not a remote caller's.
		kind = tracepb.Span_SPAN_KIND_CLIENT
	} else if parentID != nil {
		serverFlags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	server := &tracepb.Span{
		TraceId:           traceID,
		SpanId:            serverID,
		ParentSpanId:      parentID,
		Flags:             serverFlags,
		Name:              serverSpanName(r),
		Kind:              kind,
		StartTimeUnixNano: uint64(r.StartUnixNano),
		EndTimeUnixNano:   uint64(r.EndUnixNano),
		Attributes:        serverAttributes(r, keepQueryValues),
		Status:            serverStatus(r),
	}
	// One allocation for the children and one for their ids.
	total := int(SpanCount(r))
	spans := make([]*tracepb.Span, 1, total)
	spans[0] = server
	children := make([]tracepb.Span, total-1)
	ids := make([]byte, 8*(total-1))
	n := 0
	child := func(parent []byte, name string, w window, attrs []*commonpb.KeyValue) *tracepb.Span {
		s := &children[n]
		n++
		id := ids[8*(n-1) : 8*n : 8*n]
		childID(id, serverID, uint64(n))
		s.TraceId = traceID
		s.SpanId = id
		s.ParentSpanId = parent
		s.Flags = sampled | hasRemote
		s.Name = name
		s.Kind = tracepb.Span_SPAN_KIND_INTERNAL
		s.StartTimeUnixNano = uint64(max(w.start, 0))
		s.EndTimeUnixNano = uint64(max(w.end, w.start, 0))
		s.Attributes = attrs
		spans = append(spans, s)
		return s
	}

	wins, ok := phaseWindows(r)
	var phaseSpan [correlate.NumPhases]*tracepb.Span
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		if !ok[p] || p.Nested() {
			continue
		}
		phaseSpan[p] = child(serverID, p.String(), wins[p], phaseAttrs[p])
	}
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		if !ok[p] || !p.Nested() {
			continue
		}
		parent := serverID
		if ps := phaseSpan[p.Parent()]; ps != nil {
			parent = ps.SpanId
		}
		phaseSpan[p] = child(parent, p.String(), wins[p], phaseAttrs[p])
	}
	if len(r.Findings) > 0 {
		findingEvents(r, server, &phaseSpan, &wins, &ok)
	}

	// Go spans: under app, each inside the innermost earlier Go span
	// that contains it (json.Marshal within ServeHTTP); GC pauses, which
	// stop the whole process rather than being called, under gc_stw.
	appID := serverID
	if ps := phaseSpan[correlate.App]; ps != nil {
		appID = ps.SpanId
	}
	gcID := appID
	if ps := phaseSpan[correlate.GCSTW]; ps != nil {
		gcID = ps.SpanId
	}
	goSpans := r.Spans
	if !slices.IsSortedFunc(goSpans, cmpGoSpans) {
		goSpans = slices.Clone(goSpans)
		slices.SortStableFunc(goSpans, cmpGoSpans)
	}
	type open struct {
		end int64
		id  []byte
	}
	var stack []open
	for _, g := range goSpans {
		w := window{g.StartUnixNano, g.StartUnixNano + max(g.DurationNs, 0)}
		if isGCPause(g.Name) {
			child(gcID, g.Name, w, gcPauseAttrs)
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].end < w.end {
			stack = stack[:len(stack)-1]
		}
		parent := appID
		if len(stack) > 0 {
			parent = stack[len(stack)-1].id
		}
		s := child(parent, g.Name, w, []*commonpb.KeyValue{strKV("code.function.name", g.Name)})
		stack = append(stack, open{w.end, s.SpanId})
	}
	return spans
}

// isGCPause tells the GC stop-the-world spans among the Go spans
// ("runtime.GC stop-the-world (mark termination)").
func isGCPause(name string) bool { return strings.HasPrefix(name, "runtime.GC ") }

var gcPauseAttrs = []*commonpb.KeyValue{strKV(attrPhase, correlate.GCSTW.String())}

// cmpGoSpans orders Go spans by start, a container before what it holds.
func cmpGoSpans(a, b correlate.Span) int {
	if a.StartUnixNano != b.StartUnixNano {
		return cmpInt(a.StartUnixNano, b.StartUnixNano)
	}
	return cmpInt(b.DurationNs, a.DurationNs)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// serverSpanName follows the HTTP semantic conventions: the method
// alone, since tracerd knows no low-cardinality route; a gRPC call is
// "package.Service/Method" (RPC conventions). Other protocols are named
// by the port they came on ("tcp:6379").
func serverSpanName(r *correlate.Request) string {
	if r.RPC != nil {
		if r.RPC.Service != "" {
			return r.RPC.Service + "/" + r.RPC.Method
		}
		return r.RPC.Method
	}
	if r.HTTP != nil && r.HTTP.Method != "" {
		if m, _ := httpMethod(r.HTTP.Method); m != "_OTHER" {
			return m
		}
		return "HTTP"
	}
	return r.Route()
}

var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true, "QUERY": true}

// httpMethod gives http.request.method, and the original when it is not
// one of the known methods.
func httpMethod(m string) (method, original string) {
	if knownMethods[m] {
		return m, ""
	}
	return "_OTHER", m
}

func serverAttributes(r *correlate.Request, keepQueryValues bool) []*commonpb.KeyValue {
	a := newAttrs(34)
	if r.TLS != nil {
		tlsAttributes(a, r.TLS)
	}
	if rpc := r.RPC; rpc != nil {
		a.str("rpc.system", rpc.System)
		if rpc.Service != "" {
			a.str("rpc.service", rpc.Service)
		}
		a.str("rpc.method", rpc.Method)
		if rpc.StatusKnown {
			a.int("rpc.grpc.status_code", int64(rpc.StatusCode))
			if grpcServerError[rpc.StatusCode] {
				a.str("error.type", strconv.Itoa(rpc.StatusCode))
			}
		}
	} else if h := r.HTTP; h != nil {
		if h.Method != "" {
			m, orig := httpMethod(h.Method)
			a.str("http.request.method", m)
			if orig != "" {
				a.str("http.request.method_original", orig)
			}
		}
		if h.Target != "" {
			// The same path and query as the JSON lines' target.
			path, _, _ := httpparse.SplitTarget(h.Target)
			a.str("url.path", path)
			if query, ok := ShownQuery(h.Target, keepQueryValues); ok {
				a.str("url.query", query)
			}
		}
		if r.EndReason != correlate.EndStream {
			// HTTP/1.x: parsed from the bytes on the socket, or under
			// TLS (its bytes TLS records) from probes.
			if r.Encrypted || r.TLS != nil {
				a.str("url.scheme", "https")
			} else {
				a.str("url.scheme", "http")
			}
			a.str("network.protocol.name", "http")
		}
		if h.Status != 0 {
			a.int("http.response.status_code", int64(h.Status))
		}
	}
	server, client := r.Conn.Local, r.Conn.Peer
	clientKey := "client"
	if r.Direction == correlate.DirClient {
		server, client, clientKey = r.Conn.Peer, r.Conn.Local, "network.local"
	}
	if server.IsValid() {
		a.str("server.address", server.Addr().String())
		a.int("server.port", int64(server.Port()))
	}
	if client.IsValid() {
		a.str(clientKey+".address", client.Addr().String())
		if client.Port() != 0 {
			a.int(clientKey+".port", int64(client.Port()))
		}
	}
	a.str("network.transport", "tcp")
	if l := r.Conn.Local; l.IsValid() {
		if l.Addr().Is4() {
			a.str("network.type", "ipv4")
		} else {
			a.str("network.type", "ipv6")
		}
	}
	if h := r.HTTP; h != nil && h.Status >= 500 {
		a.str("error.type", strconv.Itoa(h.Status))
	}
	if r.TID != 0 {
		a.int("thread.id", int64(r.TID))
	}
	a.int(attrRequestIndex, int64(r.Conn.RequestIndex))
	a.str(attrEndReason, r.EndReason.String())
	a.bool(attrAnswered, r.Answered)
	if r.CgroupID != 0 {
		a.int(attrCgroupID, int64(r.CgroupID))
	}
	if r.EndReason == correlate.EndStream {
		return a.list // seen by the Go probes alone: no TCP facts
	}
	if r.TCP.Valid {
		a.int(attrSrttUs, int64(r.TCP.SrttUs))
		a.int(attrSndCwnd, int64(r.TCP.SndCwnd))
	}
	a.int(attrRetransmits, int64(r.TCP.Retransmits))
	if r.Direction == correlate.DirClient && r.Phases.Has(correlate.Connect) {
		a.int(attrSynRetransmits, int64(r.TCP.SynRetransmits))
	}
	a.int(attrZeroWindow, int64(r.TCP.ZeroWindow))
	a.bool(attrNagle, r.TCP.Nagle)
	return a.list
}

// attrs builds a span's attributes from a few slabs instead of three
// allocations per attribute. Pointers into a slab stay valid when it
// grows (the old array lives on); nothing is changed once built.
type attrs struct {
	list []*commonpb.KeyValue
	kv   []commonpb.KeyValue
	av   []commonpb.AnyValue
	sv   []commonpb.AnyValue_StringValue
	iv   []commonpb.AnyValue_IntValue
	bv   []commonpb.AnyValue_BoolValue
}

func newAttrs(n int) *attrs {
	return &attrs{
		list: make([]*commonpb.KeyValue, 0, n),
		kv:   make([]commonpb.KeyValue, 0, n),
		av:   make([]commonpb.AnyValue, 0, n),
		sv:   make([]commonpb.AnyValue_StringValue, 0, n),
		iv:   make([]commonpb.AnyValue_IntValue, 0, n),
		bv:   make([]commonpb.AnyValue_BoolValue, 0, 4),
	}
}

// key adds an attribute whose value is the last of a.av.
func (a *attrs) key(k string) {
	a.kv = append(a.kv, commonpb.KeyValue{Key: k, Value: &a.av[len(a.av)-1]})
	a.list = append(a.list, &a.kv[len(a.kv)-1])
}

func (a *attrs) str(k, v string) {
	a.sv = append(a.sv, commonpb.AnyValue_StringValue{StringValue: v})
	a.av = append(a.av, commonpb.AnyValue{Value: &a.sv[len(a.sv)-1]})
	a.key(k)
}

func (a *attrs) int(k string, v int64) {
	a.iv = append(a.iv, commonpb.AnyValue_IntValue{IntValue: v})
	a.av = append(a.av, commonpb.AnyValue{Value: &a.iv[len(a.iv)-1]})
	a.key(k)
}

func (a *attrs) bool(k string, v bool) {
	a.bv = append(a.bv, commonpb.AnyValue_BoolValue{BoolValue: v})
	a.av = append(a.av, commonpb.AnyValue{Value: &a.bv[len(a.bv)-1]})
	a.key(k)
}

// serverStatus: a 5xx answer is an error of the server span; 4xx are
// the client's (semantic conventions).
func serverStatus(r *correlate.Request) *tracepb.Status {
	if r.RPC != nil {
		if r.RPC.StatusKnown && grpcServerError[r.RPC.StatusCode] {
			return &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
		}
		return nil
	}
	if r.HTTP != nil && r.HTTP.Status >= 500 {
		return &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return nil
}

// grpcServerError: the gRPC status codes that mark a server span as an
// error (RPC semantic conventions): UNKNOWN, DEADLINE_EXCEEDED,
// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
var grpcServerError = map[int]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}

// idBytes copies an id for a span; nil when all zero (absent, invalid
// in W3C trace context and OTLP).
func idBytes(id []byte) []byte {
	for _, c := range id {
		if c != 0 {
			return bytes.Clone(id)
		}
	}
	return nil
}

func randomID(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rand.Uint64() | 1
		var tmp [8]byte
		binary.BigEndian.PutUint64(tmp[:], v)
		copy(b[i:], tmp[:])
	}
	return b
}

// phaseAttrs are the phase spans' attributes, shared by every span of a
// phase (messages are only read once built).
var phaseAttrs = func() (a [correlate.NumPhases][]*commonpb.KeyValue) {
	for p := range correlate.NumPhases {
		a[p] = []*commonpb.KeyValue{strKV(attrPhase, p.String())}
		if p.Nested() {
			a[p] = append(a[p], boolKV(attrPhaseAggregate, true))
		}
	}
	return a
}()

// childID writes the n-th child's span id, derived from the server
// span's id (splitmix64): distinct for distinct n, never zero,
// reproducible.
func childID(b, server []byte, n uint64) {
	z := binary.BigEndian.Uint64(server) + n*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	if z == 0 {
		z = n
	}
	binary.BigEndian.PutUint64(b, z)
}

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intKV(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func boolKV(k string, v bool) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}}
}
