package correlate

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
)

// The remembered last process (Correlator.goProc) never outlives its
// entry: a process forgotten at the horizon and probed again is a new
// one, whose events and records find it.
func TestGoProcLookupAfterForget(t *testing.T) {
	retain := time.Second
	c, _ := newCorrelator(retain)
	c.SetGoProbes(7, goprobe.Probes{Serialization: true}, true)
	old := c.goProc(7)
	if old == nil || old != c.goProcs[7] {
		t.Fatalf("goProc(7) = %p, goProcs[7] = %p", old, c.goProcs[7])
	}
	c.SetGoProbes(7, goprobe.Probes{}, false)       // exited
	c.Expire(time.Now().Add(2 * retain).UnixNano()) // past the horizon: forgotten
	if gp := c.goProc(7); gp != nil || len(c.goProcs) != 0 {
		t.Fatalf("goProc(7) = %p after it was forgotten (%d processes)", gp, len(c.goProcs))
	}
	c.SetGoProbes(7, goprobe.Probes{Serialization: true}, true) // a new process, same pid
	ev := goEvent(goJSONMarshal, 5, 1000, 2000, 0)
	c.AddGo(&ev)
	gp := c.goProcs[7]
	if gp == nil || gp == old || c.goProc(7) != gp || len(gp.callsOf(5)) != 1 {
		t.Fatalf("the new process (%p, old %p) did not get its event", gp, old)
	}
}

// A goroutine's list, emptied and forgotten, is reused for another
// goroutine with none of its calls; the one looked up last is not
// remembered past its end.
func TestCallListReuse(t *testing.T) {
	retain := time.Second
	c, _ := newCorrelator(retain)
	c.SetGoProbes(7, goprobe.Probes{Serialization: true}, true)
	gp := c.goProcs[7]
	for i := range uint64(3) {
		ev := goEvent(goJSONMarshal, 5, 1000+i*100, 1050+i*100, 0)
		c.AddGo(&ev)
	}
	l := gp.list(5)
	if l == nil || len(l.calls) != 3 {
		t.Fatalf("goroutine 5: %v, want 3 calls", l)
	}
	c.Expire(5000 + retain.Nanoseconds()) // their horizon passed
	if gp.list(5) != nil || gp.callsOf(5) != nil || len(gp.byGoid) != 0 {
		t.Fatalf("goroutine 5 kept after its calls went: %v", gp.byGoid)
	}
	if len(gp.freeLists) != 1 || gp.freeLists[0] != l || len(l.calls) != 0 {
		t.Fatalf("free lists %v: want goroutine 5's, empty", gp.freeLists)
	}
	for i, p := range l.calls[:cap(l.calls)] {
		if p != nil {
			t.Fatalf("the free list still points at call %d", i)
		}
	}
	ev := goEvent(goJSONMarshal, 6, 6000, 6050, 0)
	c.AddGo(&ev)
	if got := gp.callsOf(6); len(got) != 1 || got[0].goid != 6 || gp.list(6) != l {
		t.Fatalf("goroutine 6: %v, want its one call in the reused list", got)
	}
	if got := gp.callsOf(5); got != nil {
		t.Fatalf("goroutine 5 has calls again: %v", got)
	}
}

// sortSpans orders spans exactly as slices.SortFunc by start does, equal
// starts included (told apart by name), at every length.
func TestSortSpansAsSortFunc(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 20 {
		for range 500 {
			spans := make([]Span, n)
			for i := range spans {
				spans[i] = Span{Name: strconv.Itoa(i), StartUnixNano: rng.Int64N(5)}
			}
			want := slices.Clone(spans)
			slices.SortFunc(want, func(a, b Span) int { return cmp.Compare(a.StartUnixNano, b.StartUnixNano) })
			sortSpans(spans)
			if !slices.Equal(spans, want) {
				t.Fatalf("sortSpans: %v, want %v", spans, want)
			}
		}
	}
}

// A request's ids are never zero, and new for each request.
func TestAssignIDs(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{1})
	seen := map[TraceID]bool{}
	for range 10_000 {
		var r Request
		assignIDs(&r, rng)
		if r.TraceID.IsZero() || r.SpanID.IsZero() || seen[r.TraceID] {
			t.Fatalf("ids %v %v (seen: %v)", r.TraceID, r.SpanID, seen[r.TraceID])
		}
		seen[r.TraceID] = true
	}
	in := TraceID{15: 1}
	r := Request{TraceID: in, SpanID: SpanID{1}}
	assignIDs(&r, rng)
	if r.TraceID != in || r.SpanID.IsZero() || r.SpanID == (SpanID{1}) {
		t.Fatalf("the caller's trace %v became %v, span %v", in, r.TraceID, r.SpanID)
	}
}

// A GC pause of a reason without a name (never kept: only GC pauses
// are) makes a span without a name rather than a panic.
func TestPauseSpanNames(t *testing.T) {
	spans := appendPauseSpans(nil, []interval{{start: 10, end: 20, reason: 1}, {start: 30, end: 40, reason: 99}}, 0, 100, 0)
	if len(spans) != 2 || spans[0].Name != gcPauseSpans[1] || spans[1].Name != "" {
		t.Errorf("pause spans %+v", spans)
	}
}
