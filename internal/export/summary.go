package export

import (
	"container/heap"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/findings"
)

// Summary keeps what the human summary needs in bounded memory: a
// log-bucketed histogram per phase (≈1.6 % resolution) and the N
// slowest requests.
type Summary struct {
	topN     int
	requests int64
	calls    int64 // outbound calls (client records): counted, not summarized
	hist     [correlate.NumPhases]histogram
	duration histogram
	slowest  slowHeap
	findings findings.Table
}

func NewSummary(topN int) *Summary { return &Summary{topN: topN} }

// Add accounts one request.
func (s *Summary) Add(r *correlate.Request) {
	if r.Direction != correlate.DirServer {
		s.calls++
		s.findings.Add(r)
		return
	}
	s.requests++
	s.duration.add(r.DurationNs)
	r.Phases.Each(func(p correlate.Phase, ns int64) { s.hist[p].add(ns) })
	s.findings.Add(r)
	if s.topN <= 0 {
		return
	}
	if len(s.slowest) < s.topN {
		heap.Push(&s.slowest, r.Clone())
	} else if r.DurationNs > s.slowest[0].DurationNs {
		s.slowest[0] = r.Clone()
		heap.Fix(&s.slowest, 0)
	}
}

// Requests is the number of requests seen.
func (s *Summary) Requests() int64 { return s.requests }

// Write prints per-phase p50/p99/max and the slowest requests.
func (s *Summary) Write(w io.Writer) {
	fmt.Fprintf(w, "%d requests\n", s.requests)
	if s.calls > 0 {
		fmt.Fprintf(w, "%d outbound calls (in the JSON lines and traces)\n", s.calls)
	}
	fmt.Fprintln(w)
	if s.requests == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tcount\tp50\tp99\tmax\t")
	row := func(name string, h *histogram) {
		if h.n == 0 {
			return
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", name, h.n, correlate.FormatNs(h.quantile(0.5)), correlate.FormatNs(h.quantile(0.99)), correlate.FormatNs(h.max))
	}
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		name := p.String()
		if p.Nested() {
			name = "  " + name // inside app
		}
		row(name, &s.hist[p])
	}
	row("total", &s.duration)
	tw.Flush()

	defer s.writeFindings(w)
	slow := append([]correlate.Request(nil), s.slowest...)
	sort.Slice(slow, func(i, j int) bool { return slow[i].DurationNs > slow[j].DurationNs })
	if len(slow) == 0 {
		return
	}
	fmt.Fprintf(w, "\nslowest %d:\n", len(slow))
	for _, r := range slow {
		fmt.Fprintf(w, "%s  %-28s %s pid=%d %s→%s #%d\n    %s\n",
			correlate.FormatNs(r.DurationNs), r.Route(), r.Service, r.PID, r.Conn.Peer, r.Conn.Local,
			r.Conn.RequestIndex, Breakdown(&r))
		if len(r.Findings) > 0 {
			fmt.Fprintf(w, "    findings: %s\n", FindingsLine(&r))
		}
	}
}

// Breakdown renders a request's phases on one line, nested ones in
// brackets after their parent.
func Breakdown(r *correlate.Request) string {
	var b strings.Builder
	r.Phases.Each(func(p correlate.Phase, ns int64) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if p.Nested() {
			fmt.Fprintf(&b, "[%s=%s]", p, correlate.FormatNs(ns))
		} else {
			fmt.Fprintf(&b, "%s=%s", p, correlate.FormatNs(ns))
		}
	})
	return b.String()
}

// histogram: 64 linear sub-buckets per power of two.
type histogram struct {
	n, max  int64
	buckets []int64 // allocated on first use: nBuckets
}

const nBuckets = (64 - subBits + 1) << subBits

const subBits = 6

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - subBits - 1
	return (exp+1)<<subBits + int(v>>uint(exp)) - 1<<subBits
}

func bucketMid(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	exp := b>>subBits - 1
	lo := int64(b&(1<<subBits-1)+1<<subBits) << uint(exp)
	return lo + (int64(1)<<uint(exp))/2
}

func (h *histogram) add(v int64) {
	if v < 0 {
		v = 0
	}
	if h.buckets == nil {
		h.buckets = make([]int64, nBuckets)
	}
	h.n++
	h.max = max(h.max, v)
	h.buckets[bucketOf(v)]++
}

func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for k, c := range h.buckets {
		seen += c
		if c > 0 && seen >= rank {
			return min(bucketMid(k), h.max)
		}
	}
	return h.max
}

type slowHeap []correlate.Request

func (h slowHeap) Len() int           { return len(h) }
func (h slowHeap) Less(i, j int) bool { return h[i].DurationNs < h[j].DurationNs }
func (h slowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *slowHeap) Push(x any)        { *h = append(*h, x.(correlate.Request)) }
func (h *slowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
