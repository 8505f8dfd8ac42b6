package export

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/tracerd/tracerd/internal/correlate"
)

// distinctRequests are n requests of one service, each on its own path:
// numeric ids (what normalisation folds) or words (what only the cap
// bounds). Each target is a string of its own, as decoding makes them.
func distinctRequests(n int, words bool) []correlate.Request {
	base := correlate.Request{
		StartUnixNano: 1_700_000_000_000_000_000, EndUnixNano: 1_700_000_000_001_000_000, DurationNs: 1_000_000,
		PID: 42, Comm: "api", Service: "api",
		Conn: correlate.Conn{Local: netip.MustParseAddrPort("127.0.0.1:8080")},
	}
	base.Phases.Set(correlate.RecvQueue, 1000)
	base.Phases.Set(correlate.App, 900_000)
	base.Phases.Set(correlate.SendQueue, 1000)
	reqs := make([]correlate.Request, n)
	for i := range reqs {
		r := base
		target := fmt.Sprintf("/users/%d/orders?page=%d", 1_000_000+i, i%7)
		if words {
			target = "/wiki/" + letters(i) + "?page=1"
		}
		r.HTTP = &correlate.HTTP{Method: "GET", Target: target, Status: 200}
		reqs[i] = r
	}
	return reqs
}

// letters spells i in base 26 with a to z.
func letters(i int) string {
	b := []byte{'a' + byte(i%26)}
	for i /= 26; i > 0; i /= 26 {
		b = append(b, 'a'+byte(i%26))
	}
	return "page-" + string(b)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkProfile60kPaths measures what a profile keeps for 60,000
// requests on distinct paths: the heap it retains once the requests are
// gone, and the size of the profile it writes.
func BenchmarkProfile60kPaths(b *testing.B) {
	for _, words := range []bool{false, true} {
		name := "ids"
		if words {
			name = "words"
		}
		b.Run(name, func(b *testing.B) {
			var retained, size float64
			for b.Loop() {
				before := heapInUse()
				reqs := distinctRequests(60_000, words)
				p := NewProfile()
				for i := range reqs {
					p.Add(&reqs[i])
				}
				reqs = nil
				retained = float64(heapInUse() - before)
				var buf bytes.Buffer
				if err := p.WriteProfile(&buf); err != nil {
					b.Fatal(err)
				}
				size = float64(buf.Len())
				runtime.KeepAlive(p)
			}
			b.ReportMetric(retained/(1<<20), "retained-MB")
			b.ReportMetric(size/(1<<20), "profile-MB")
		})
	}
}

// BenchmarkProfileAdd is the reader goroutine's cost of a request in a
// profile that already has its route.
func BenchmarkProfileAdd(b *testing.B) {
	reqs := distinctRequests(1, false)
	p := NewProfile()
	b.ReportAllocs()
	for b.Loop() {
		p.Add(&reqs[0])
	}
}
