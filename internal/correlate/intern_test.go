package correlate

import (
	"fmt"
	"testing"
)

// The interner gives each byte string its own text back, whichever slot
// of its recent strings it shares with others, invalid UTF-8 made
// valid, and allocates nothing for bytes it has seen.
func TestInternerStrings(t *testing.T) {
	var in interner
	var keys [][]byte
	for i := range 1000 {
		keys = append(keys, fmt.Appendf(nil, "/api/v%d/items/%d", i%7, i))
	}
	keys = append(keys, []byte("/a"), []byte("/b"), []byte("x"), []byte("/bad\xff"), []byte("/bad\xfe"))
	for round := range 3 {
		for _, k := range keys {
			want := string(k)
			if want == "/bad\xff" || want == "/bad\xfe" {
				want = "/bad?"
			}
			if got := in.str(k); got != want {
				t.Fatalf("round %d: str(%q) = %q, want %q", round, k, got, want)
			}
		}
	}
	if got := in.str(nil); got != "" {
		t.Errorf("str(nil) = %q", got)
	}
	hot := [][]byte{[]byte("/json"), []byte("/api/v1/items"), []byte("/healthz")}
	if n := testing.AllocsPerRun(100, func() {
		for _, k := range hot {
			in.str(k)
		}
	}); n != 0 {
		t.Errorf("%v allocations for strings seen before", n)
	}
}
