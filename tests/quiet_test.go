//go:build e2e

package tests

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestIdleEndWhenQuiet: a tracerd with nothing to read for a while looks
// less often (pipeline's quiet period: 350 ms with the default 500 ms
// idle timeout, not 150) and asks the kernel to wake it at the next
// record. Still, after a quiet spell, a request whose connection stays
// open ends by the idle timeout on time (its answer is seen before the
// timeout can pass), and one whose connection closes is out within a
// look (150 ms) of the close, as at the busy pace: the first entry
// after the spell wakes tracerd at once (with a Go server, its
// ServeHTTP's event at the answer may be that entry; the record, at the
// close, then comes at the next look).
func TestIdleEndWhenQuiet(t *testing.T) {
	needRoot(t)
	srv := startServer(t, nil)
	const idleTimeout = 500 * time.Millisecond
	tr := startRun(t, nil, "--pid", strconv.Itoa(srv.PID), "--idle-timeout", idleTimeout.String())
	for round := range 3 {
		time.Sleep(4 * time.Second) // quiet: no event for more than the join horizon (2.5 s)
		idleEndOnTime(t, srv, tr, fmt.Sprintf("/quiet%d", round), idleTimeout)

		time.Sleep(4 * time.Second)
		target := fmt.Sprintf("/closed%d", round)
		c := dial(t, srv.Addr)
		if _, err := request(c, target, 0); err != nil {
			t.Fatal(err)
		}
		c.Close()
		closed := time.Now()
		waitRecords(t, tr.JSONPath, 5*time.Second, target)
		// Within a look of the close: the polling, and slack.
		if late := time.Since(closed); late > 300*time.Millisecond {
			t.Errorf("%s: record out %v after the close, want ≤ 300 ms", target, late)
		} else {
			t.Logf("%s: record out %v after the close", target, late)
		}
	}
	recs := tr.Stop(t)
	ends := map[string]string{}
	for _, r := range recs {
		if r.HTTP != nil {
			ends[r.HTTP.Target] = r.EndReason
		}
	}
	for round := range 3 {
		if e := ends[fmt.Sprintf("/quiet%d", round)]; e != "idle" {
			t.Errorf("/quiet%d ended by %q, want idle", round, e)
		}
		if e := ends[fmt.Sprintf("/closed%d", round)]; e != "close" {
			t.Errorf("/closed%d ended by %q, want close", round, e)
		}
	}
}

// idleEndOnTime asks srv for target on a connection it then leaves open:
// the request's record must be out by the idle timeout, plus a sweep
// period (idle/3), the reader's period (150 ms) and the time to see the
// file (eventually polls): 800 ms.
func idleEndOnTime(t *testing.T, srv *Server, tr *RunTracer, target string, idleTimeout time.Duration) {
	t.Helper()
	c := dial(t, srv.Addr)
	defer c.Close()
	if _, err := request(c, target, 0); err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	waitRecords(t, tr.JSONPath, 5*time.Second, target)
	if late := time.Since(answered); late > idleTimeout+800*time.Millisecond {
		t.Errorf("%s: record out %v after the answer, want ≤ idle timeout %v + 800 ms", target, late, idleTimeout)
	} else {
		t.Logf("%s: record out %v after the answer (idle timeout %v)", target, late, idleTimeout)
	}
}
