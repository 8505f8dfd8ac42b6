package targets

import (
	"testing"
)

// TestParseListeners: only sockets in LISTEN (0A) on a wanted port are
// taken, IPv4 and IPv6 alike; malformed lines are skipped.
func TestParseListeners(t *testing.T) {
	text := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4444 1
   4: garbage
   5: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1
   6: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1
`
	for _, tc := range []struct {
		ports []uint16
		want  []uint64
	}{
		{[]uint16{8080}, []uint64{1111}},
		{[]uint16{80, 443}, []uint64{3333, 4444}},
		{nil, []uint64{1111, 3333, 4444}},
		{[]uint16{9999}, nil},
	} {
		got := map[uint64]bool{}
		parseListeners([]byte(text), tc.ports, got)
		if len(got) != len(tc.want) {
			t.Errorf("ports %v: inodes %v, want %v", tc.ports, got, tc.want)
			continue
		}
		for _, ino := range tc.want {
			if !got[ino] {
				t.Errorf("ports %v: inodes %v, want %v", tc.ports, got, tc.want)
			}
		}
	}
}
