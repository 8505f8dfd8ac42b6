package pipeline

import (
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// BenchmarkRequest is one request's user-space work as a snapshot with
// --json and -o does it, for a Go JSON handler with its probes on: the
// kernel record and the three Go events that come before it
// (json.Marshal, WriteHeader, ServeHTTP), correlated, then written as a
// JSON line and added to the profile and the summary. The ring buffer's
// reading and the writes' syscalls are not in it (tests/bench measures
// the whole: go run ./tests/bench -only selfcost).
func BenchmarkRequest(b *testing.B) {
	jl := export.NewJSONLines(io.Discard)
	prof, summary := export.NewProfile(), export.NewSummary(10)
	snap := SinkFunc(func(r *correlate.Request) error {
		prof.Add(r)
		summary.Add(r)
		return nil
	})
	s := New(newFakeSource(), time.Second, time.Minute, jl, snap)
	gm := newFakeGo()
	s.gm = gm
	gm.updates = append(gm.updates, goprobe.Update{PID: pid, OK: true, Probes: goprobe.Probes{
		HTTP: true, GC: true, Serialization: true, AttachedAt: time.Now().Add(-time.Hour).UnixNano()}})
	peer := "127.0.0.1:40000"
	rec := record(7, 11, peer)
	rec.Request.Flags = uint32(loader.TracerdReqFlagsREQ_HAS_TCP | loader.TracerdReqFlagsREQ_HAS_RX | loader.TracerdReqFlagsREQ_HAS_SCHED | loader.TracerdReqFlagsREQ_HAS_SOFTIRQ)
	rec.Request.RespLen = uint16(copy(rec.Request.RespHead[:], "HTTP/1.1 200 OK\r\n"))
	call := func(fn loader.TracerdGoFunc, arg uint32) loader.Event {
		ev := loader.Event{Kind: loader.KindGo}
		ev.Go.Kind, ev.Go.Pid, ev.Go.Goid, ev.Go.Func, ev.Go.Arg = uint32(loader.KindGo), pid, 11, uint32(fn), arg
		return ev
	}
	marshal := call(loader.TracerdGoFuncGO_JSON_MARSHAL, 0)
	header := call(loader.TracerdGoFuncGO_WRITE_HEADER, 200)
	serve := serveHTTP(11, 0, 1, peer, "GET", "/json")
	b.ReportAllocs()
	t0 := uint64(correlate.MonotonicNow())
	for i := range b.N {
		// A request every 50 µs, 20 µs of handling.
		at := t0 + uint64(i)*50_000
		rec.Request.T_rx, rec.Request.T_rd = at, at+1000
		rec.Request.T_wl, rec.Request.T_tx, rec.Request.T_ack = at+20_000, at+20_500, at+40_000
		rec.Request.RequestIndex = uint32(i)
		marshal.Go.Start, marshal.Go.End = at+5000, at+15_000
		header.Go.Start, header.Go.End = at+16_000, at+16_000
		serve.Go.Start, serve.Go.End = at+2000, at+19_000
		s.dispatch(&marshal)
		s.dispatch(&header)
		s.dispatch(&serve)
		s.dispatch(&rec)
		if i%256 == 0 {
			s.flush()
			s.corr.Expire(time.Now().UnixNano())
		}
	}
	if s.Requests() != int64(b.N) {
		b.Fatalf("%d requests for %d records", s.Requests(), b.N)
	}
}

// BenchmarkRequestConns is BenchmarkRequest over 32 keep-alive
// connections served by 32 goroutines in turn, as the self-cost bench's
// load is: per-goroutine state comes and goes.
func BenchmarkRequestConns(b *testing.B) {
	const conns = 32
	jl := export.NewJSONLines(io.Discard)
	s := New(newFakeSource(), time.Second, time.Minute, jl)
	gm := newFakeGo()
	s.gm = gm
	gm.updates = append(gm.updates, goprobe.Update{PID: pid, OK: true, Probes: goprobe.Probes{
		HTTP: true, GC: true, Serialization: true, AttachedAt: time.Now().Add(-time.Hour).UnixNano()}})
	type conn struct{ rec, marshal, header, serve loader.Event }
	var cs [conns]conn
	for k := range cs {
		peer := "127.0.0.1:" + strconv.Itoa(40000+k)
		goid := uint64(100 + k)
		c := &cs[k]
		c.rec = record(uint64(7+k), goid, peer)
		c.rec.Request.Flags = uint32(loader.TracerdReqFlagsREQ_HAS_TCP | loader.TracerdReqFlagsREQ_HAS_RX | loader.TracerdReqFlagsREQ_HAS_SCHED | loader.TracerdReqFlagsREQ_HAS_SOFTIRQ)
		c.rec.Request.RespLen = uint16(copy(c.rec.Request.RespHead[:], "HTTP/1.1 200 OK\r\n"))
		call := func(fn loader.TracerdGoFunc, arg uint32) loader.Event {
			ev := loader.Event{Kind: loader.KindGo}
			ev.Go.Kind, ev.Go.Pid, ev.Go.Goid, ev.Go.Func, ev.Go.Arg = uint32(loader.KindGo), pid, goid, uint32(fn), arg
			return ev
		}
		c.marshal = call(loader.TracerdGoFuncGO_JSON_MARSHAL, 0)
		c.header = call(loader.TracerdGoFuncGO_WRITE_HEADER, 200)
		c.serve = serveHTTP(goid, 0, 1, peer, "GET", "/json")
	}
	b.ReportAllocs()
	t0 := uint64(correlate.MonotonicNow())
	for i := range b.N {
		c := &cs[i%conns]
		at := t0 + uint64(i)*50_000
		c.rec.Request.T_rx, c.rec.Request.T_rd = at, at+1000
		c.rec.Request.T_wl, c.rec.Request.T_tx, c.rec.Request.T_ack = at+20_000, at+20_500, at+40_000
		c.rec.Request.RequestIndex = uint32(i / conns)
		c.marshal.Go.Start, c.marshal.Go.End = at+5000, at+15_000
		c.header.Go.Start, c.header.Go.End = at+16_000, at+16_000
		c.serve.Go.Start, c.serve.Go.End = at+2000, at+19_000
		s.dispatch(&c.marshal)
		s.dispatch(&c.header)
		s.dispatch(&c.serve)
		s.dispatch(&c.rec)
		if i%256 == 0 {
			s.flush()
			s.corr.Expire(time.Now().UnixNano())
		}
	}
	if s.Requests() != int64(b.N) {
		b.Fatalf("%d requests for %d records", s.Requests(), b.N)
	}
}
