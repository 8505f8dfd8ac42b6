//go:build e2e

package tests

// Outbound calls: a traced testserver calls a downstream testserver (not
// traced) with net/http for each request it serves, and reports what its
// own httptrace saw of each call (the truth).

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// downstreamDelay: the downstream sleeps this long before answering.
const downstreamDelay = 30 * time.Millisecond

// callChain starts the downstream and a front server that calls it
// (keep-alive or one connection per call), traced by a snapshot.
func callChain(t *testing.T, keepAlive bool) (front, down *Server, tr *Tracer) {
	t.Helper()
	down = startServer(t, nil, "--handle-delay", downstreamDelay.String())
	front = startServer(t, nil, "--call", "http://"+down.Addr+"/down", "--call-keepalive="+strconv.FormatBool(keepAlive))
	// Any connect is a finding's loss (loopback's take tens of µs).
	tr = startTracer(t, "--port", strconv.Itoa(front.Port), "--finding-min-lost", "0", "--finding-min-share", "0")
	return front, down, tr
}

// splitDirections checks that every record says its direction and
// returns the front's served requests and its calls to the downstream.
func splitDirections(t *testing.T, recs []export.JSONRecord, front, down *Server) (served, calls []export.JSONRecord) {
	t.Helper()
	for _, r := range recs {
		switch r.Direction {
		case "server":
			if int(r.PID) == front.PID {
				served = append(served, r)
			}
		case "client":
			if int(r.PID) != front.PID {
				t.Errorf("client record of pid %d, only %d is traced", r.PID, front.PID)
			}
			if r.Conn.Peer != down.Addr {
				t.Errorf("client record's conn.peer %s, the downstream is %s", r.Conn.Peer, down.Addr)
				continue
			}
			calls = append(calls, r)
		default:
			t.Errorf("record without a valid direction %q: %+v", r.Direction, r)
		}
	}
	byStart := func(a, b export.JSONRecord) int { return int(a.StartUnixNano - b.StartUnixNano) }
	slices.SortFunc(served, byStart)
	slices.SortFunc(calls, byStart)
	return served, calls
}

// TestOutboundCalls: each call is one client record with the connect
// it paid (new connections only: httptrace's ConnectStart → ConnectDone
// is the truth), the downstream's delay in its wait phase, its HTTP
// method, target and status, its connection's addresses, and the
// inbound request that made it as its parent.
func TestOutboundCalls(t *testing.T) {
	needRoot(t)
	for _, keepAlive := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepalive=%v", keepAlive), func(t *testing.T) {
			front, down, tr := callChain(t, keepAlive)
			const n = 5
			c := dial(t, front.Addr)
			for i := range n {
				if _, err := request(c, fmt.Sprintf("/front/%d", i), 0); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.Close()
			truths := front.Truths(t, n)
			// The last pooled call ends at the idle sweep.
			time.Sleep(time.Second)
			served, calls := splitDirections(t, tr.Stop(t), front, down)
			if keepAlive && !slices.ContainsFunc(truths, func(tr Truth) bool { return tr.Call != nil && tr.Call.Reused }) {
				t.Error("the client reused no connection with keep-alive")
			}
			if len(served) != n || len(calls) != n {
				t.Fatalf("%d served and %d calls recorded, want %d of each", len(served), len(calls), n)
			}
			for i, call := range calls {
				truth := truths[i].Call
				if truth == nil || truth.Error != "" {
					t.Fatalf("call %d failed: %+v", i, truth)
				}
				checkCall(t, i, call, truth, keepAlive)
				// Calls that each open a connection after the previous one
				// ended could have reused it.
				found := slices.ContainsFunc(call.Findings, func(f export.JSONFinding) bool {
					return f.Code == "new_connection_per_request"
				})
				if want := !keepAlive && i > 0; found != want {
					t.Errorf("call %d: new_connection_per_request %v, want %v (%+v)", i, found, want, call.Findings)
				}
				srv := served[i]
				if call.TraceID != srv.TraceID || call.ParentSpanID != srv.SpanID {
					t.Errorf("call %d: trace %s parent %s; the request that made it is trace %s span %s",
						i, call.TraceID, call.ParentSpanID, srv.TraceID, srv.SpanID)
				}
				if call.StartUnixNano < srv.StartUnixNano || call.EndUnixNano > srv.EndUnixNano {
					t.Errorf("call %d [%d, %d] outside its request [%d, %d]", i, call.StartUnixNano, call.EndUnixNano,
						srv.StartUnixNano, srv.EndUnixNano)
				}
			}
		})
	}
}

// slack is what a client's clock may add to the kernel's view of a call:
// 1 ms on a real CPU, 12 times that emulated (tests/kernels' guests).
func slack() int64 {
	if os.Getenv("TRACERD_E2E_EMULATED") != "" {
		return int64(12 * time.Millisecond)
	}
	return int64(time.Millisecond)
}

func checkCall(t *testing.T, i int, call export.JSONRecord, truth *Call, keepAlive bool) {
	t.Helper()
	if call.Conn.Local != truth.Local {
		t.Errorf("call %d: conn.local %s, the client's socket is %s", i, call.Conn.Local, truth.Local)
	}
	if h := call.HTTP; h == nil || h.Method != "GET" || h.Target != "/down" || h.Status != 200 {
		t.Errorf("call %d: http %+v, want GET /down 200", i, h)
	}
	newConn := !truth.Reused
	if !keepAlive && !newConn {
		t.Errorf("call %d: reused a connection without keep-alive", i)
	}
	connect, hasConnect := call.Phases["connect"]
	switch {
	case newConn && !hasConnect:
		t.Errorf("call %d on a new connection: no connect phase (%v)", i, call.Phases)
	case newConn:
		if call.Conn.RequestIndex != 0 {
			t.Errorf("call %d on a new connection: request_index %d", i, call.Conn.RequestIndex)
		}
		// The kernel's connect (SYN sent → ESTABLISHED) lies inside the
		// client's (ConnectStart → ConnectDone), which adds socket(),
		// the netpoller's registration and the goroutine's wake-up.
		clientConnect := truth.ConnectDone - truth.ConnectStart
		switch {
		case connect <= 0 || connect > clientConnect+int64(100*time.Microsecond):
			t.Errorf("call %d: connect %s, the client's took %s", i, time.Duration(connect), time.Duration(clientConnect))
		case clientConnect-connect > max(slack(), clientConnect/20):
			t.Errorf("call %d: connect %s, %s less than the client's (%s)", i, time.Duration(connect),
				time.Duration(clientConnect-connect), time.Duration(clientConnect))
		default:
			t.Logf("call %d: connect %s, the client's %s (its own part %s)", i, time.Duration(connect),
				time.Duration(clientConnect), time.Duration(clientConnect-connect))
		}
	case hasConnect:
		t.Errorf("call %d on a pooled connection has a connect phase", i)
	case call.Conn.RequestIndex == 0:
		t.Errorf("call %d on a pooled connection: request_index 0", i)
	}
	for _, p := range []string{"send", "wait", "receive"} {
		if _, ok := call.Phases[p]; !ok {
			t.Errorf("call %d: no %s phase (%v)", i, p, call.Phases)
		}
	}
	// The downstream slept before answering: the call waited at least
	// that, and no longer than the client saw from its last write to
	// the answer's first byte.
	wait := call.Phases["wait"]
	clientWait := truth.FirstByte - truth.WroteRequest
	if wait < downstreamDelay.Nanoseconds() || wait > clientWait+slack() {
		t.Errorf("call %d: wait %s; the downstream slept %s, the client waited %s", i, time.Duration(wait),
			downstreamDelay, time.Duration(clientWait))
	} else {
		t.Logf("call %d: wait %s (downstream slept %s, client waited %s)", i, time.Duration(wait), downstreamDelay,
			time.Duration(clientWait))
	}
	if call.DurationNs > truth.EndUnixNano-truth.StartUnixNano+slack() {
		t.Errorf("call %d: %s long, the client's call took %s", i, time.Duration(call.DurationNs),
			time.Duration(truth.EndUnixNano-truth.StartUnixNano))
	}
}

// TestOTLPOutboundCall: in Jaeger, a call is a CLIENT span under the
// SERVER span of the request that made it, with its phases (connect on
// a new connection) as children.
func TestOTLPOutboundCall(t *testing.T) {
	needRoot(t)
	down := startServer(t, nil, "--handle-delay", downstreamDelay.String())
	otlpOutboundCall(t, down, []string{"--call", "http://" + down.Addr + "/down", "--call-keepalive=false"},
		[]string{"connect", "send", "wait", "receive"})
}

// TestOTLPOutboundTLSCall: a call on a new TLS connection (a Go HTTPS
// downstream, its certificate made here) has its tls_handshake child
// too, between connect and send.
func TestOTLPOutboundTLSCall(t *testing.T) {
	needRoot(t)
	certPath, keyPath := writeSelfSigned(t, t.TempDir(), "downstream")
	down := startTLSDownstream(t, certPath, keyPath)
	otlpOutboundCall(t, down, []string{"--call", "https://" + down.Addr + "/down", "--call-keepalive=false",
		"--call-ca", certPath}, []string{"connect", "tls_handshake", "send", "wait", "receive"})
}

// otlpOutboundCall starts a front calling down (frontArgs) traced by
// tracerd run exporting to Jaeger, makes one request and checks its
// call's CLIENT span and its children (in order of start).
func otlpOutboundCall(t *testing.T, down *Server, frontArgs, wantChildren []string) {
	j := startJaeger(t, "")
	front := startServer(t, nil, frontArgs...)
	rt := startRun(t, nil, "--pid", strconv.Itoa(front.PID), "--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.GRPC),
		"--otlp-protocol", "grpc", "--sample-ratio", "1", "--otlp-batch-delay", "100ms", "--log-level", "info")
	rt.waitLog(t, fmt.Sprintf("msg=\"Go probes attached\" pid=%d", front.PID), 1, 5*time.Second)
	c := dial(t, front.Addr)
	if _, err := request(c, "/front", 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	front.Truths(t, 1)
	time.Sleep(time.Second)
	served, calls := splitDirections(t, rt.Stop(t), front, down)
	if len(served) != 1 || len(calls) != 1 {
		t.Fatalf("%d served and %d calls recorded, want 1 of each", len(served), len(calls))
	}
	srv, call := served[0], calls[0]
	tr := j.waitTrace(t, srv.TraceID, 2+len(srv.Phases)+len(srv.Spans)+len(call.Phases), 10*time.Second)
	byID := map[string]JaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	cs, ok := byID[call.SpanID]
	if !ok {
		t.Fatalf("the call's span %s is not in trace %s:\n%s", call.SpanID, srv.TraceID, renderJaeger(tr, srv.SpanID))
	}
	if kind, _ := tag(cs.Tags, "span.kind"); kind != "client" {
		t.Errorf("the call's span kind %q, want client", kind)
	}
	if cs.parent() != srv.SpanID {
		t.Errorf("the call's span parent %q, the server span is %s", cs.parent(), srv.SpanID)
	}
	if addr, _ := tag(cs.Tags, "server.address"); addr != "127.0.0.1" {
		t.Errorf("the call's server.address %q", addr)
	}
	// Method and scheme: from the bytes in plaintext, from Go's
	// net/http client probes under TLS.
	wantScheme := "http"
	if slices.Contains(wantChildren, "tls_handshake") {
		wantScheme = "https"
	}
	if m, _ := tag(cs.Tags, "http.request.method"); m != "GET" {
		t.Errorf("the call's http.request.method %q, want GET", m)
	}
	if s, _ := tag(cs.Tags, "url.scheme"); s != wantScheme {
		t.Errorf("the call's url.scheme %q, want %s", s, wantScheme)
	}
	children := map[string]JaegerSpan{}
	for _, s := range tr.Spans {
		if s.parent() == call.SpanID {
			children[s.OperationName] = s
		}
	}
	var prev JaegerSpan
	for i, name := range wantChildren {
		s, ok := children[name]
		if !ok {
			t.Errorf("the call's span has no %s child", name)
			continue
		}
		if want := call.Phases[name] / 1000; s.Duration < want-1 || s.Duration > want+1 {
			t.Errorf("%s span %d µs, the record says %d µs", name, s.Duration, want)
		}
		if i > 0 && s.StartTime < prev.StartTime+prev.Duration-1 {
			t.Errorf("%s span begins at %d µs, before %s ends (%d µs)", name, s.StartTime, wantChildren[i-1],
				prev.StartTime+prev.Duration)
		}
		prev = s
	}
	if len(children) != len(wantChildren) {
		t.Errorf("the call's span has %d children, want %v", len(children), wantChildren)
	}
	t.Logf("Jaeger's tree:\n%s", renderJaeger(tr, srv.SpanID))
}

// TestOutboundSYNRetransmit: nftables drops every other SYN sent to the
// downstream, so each call's connect waits for its SYN's retransmission
// (the initial RTO, 1 s): connect shows the wait (the client's httptrace
// is the truth) and tcp.syn_retransmits the SYN sent again (the rule's
// own count of the SYNs it dropped is the truth).
func TestOutboundSYNRetransmit(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	down := startServer(t, nil)
	front := startServer(t, nil, "--call", "http://"+down.Addr+"/down", "--call-keepalive=false")
	tr := startTracer(t, "--port", strconv.Itoa(front.Port))
	table := fmt.Sprintf("tracerd_e2e_syn_%d", os.Getpid())
	nft := func(cmd string) string {
		t.Helper()
		out, err := exec.Command("nft", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("nft %s: %v: %s", cmd, err, out)
		}
		return string(out)
	}
	nft("add table inet " + table)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", table).Run() })
	// On input, past the sender: a drop on output is a local error TCP
	// resends without a retransmission.
	nft("add chain inet " + table + " in { type filter hook input priority 0; }")
	nft(fmt.Sprintf("add rule inet %s in tcp dport %d tcp flags & (syn | ack) == syn numgen inc mod 2 == 0 counter drop",
		table, down.Port))
	const n = 2
	c := dial(t, front.Addr)
	for i := range n {
		if _, err := request(c, fmt.Sprintf("/front/%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	truths := front.Truths(t, n)
	listing := nft("list table inet " + table)
	t.Logf("nft rules after the calls:\n%s", listing)
	var dropped int
	if i := strings.Index(listing, "counter packets "); i >= 0 {
		fmt.Sscanf(listing[i+len("counter packets "):], "%d", &dropped)
	}
	nft("delete table inet " + table)
	_, calls := splitDirections(t, tr.Stop(t), front, down)
	if len(calls) != n {
		t.Fatalf("%d calls recorded, want %d", len(calls), n)
	}
	var synRetrans uint32
	for i, call := range calls {
		truth := truths[i].Call
		if truth == nil || truth.Error != "" || truth.Reused {
			t.Fatalf("call %d: %+v", i, truth)
		}
		within(t, fmt.Sprintf("call %d connect (SYN dropped once)", i), phase(t, call, "connect"), truth.ConnectDone-truth.ConnectStart)
		if call.TCP == nil || call.TCP.SynRetransmits == nil {
			t.Fatalf("call %d: no tcp.syn_retransmits", i)
		}
		synRetrans += *call.TCP.SynRetransmits
	}
	// Every call's first SYN is dropped (the rule drops every other SYN
	// and the retransmission passes): each connect costs a second RTO.
	// The first call has no earlier call to the same peer; the second
	// could have reused its connection: new_connection_per_request,
	// the connect's time lost.
	if f := findingOf(calls[0], "new_connection_per_request"); f != nil {
		t.Errorf("call 0 (the first to its peer): %+v", *f)
	}
	if f := findingOf(calls[1], "new_connection_per_request"); f == nil {
		t.Errorf("call 1: no new_connection_per_request finding (findings %+v)", calls[1].Findings)
	} else if connect := phase(t, calls[1], "connect"); f.LostNs != connect || f.Phase != "connect" {
		t.Errorf("call 1: new_connection_per_request %+v, want lost_ns = connect %d", *f, connect)
	} else {
		t.Logf("call 1: new_connection_per_request lost %s (connect)", time.Duration(f.LostNs))
	}
	if dropped == 0 || synRetrans != uint32(dropped) {
		t.Errorf("tcp.syn_retransmits add up to %d; nftables dropped %d SYNs", synRetrans, dropped)
	} else {
		t.Logf("tcp.syn_retransmits add up to %d; nftables dropped %d SYNs", synRetrans, dropped)
	}
}
