package loader

import "testing"

const (
	ms   = uint64(1_000_000)
	idle = 500 * ms
	tick = 100 * ms
)

// sweepSim drives a sweepSched tick by tick: the kernel's answer
// counter and the records user space reads.
type sweepSim struct {
	t      *testing.T
	s      *sweepSched
	now    uint64
	count  uint64
	sweeps []uint64 // when the sweep ran
}

func newSweepSim(t *testing.T) *sweepSim {
	return &sweepSim{t: t, s: newSweepSched(idle, 1000*ms), now: 1000 * ms}
}

// answer counts a request answered now.
func (m *sweepSim) answer() uint64 { m.count++; return m.now }

// step advances one tick and runs it; waiting is what a sweep would
// find still waiting.
func (m *sweepSim) step(waiting uint32) bool {
	m.now += tick
	if !m.s.tick(m.now, m.count) {
		return false
	}
	m.sweeps = append(m.sweeps, m.now)
	m.s.swept(m.now, m.count, waiting)
	return true
}

// steps runs n ticks, each sweep finding waiting still waiting, and
// says how many sweeps ran.
func (m *sweepSim) steps(n int, waiting uint32) int {
	before := len(m.sweeps)
	for range n {
		m.step(waiting)
	}
	return len(m.sweeps) - before
}

// Under keep-alive load every request ends with the next one on its
// connection, within a tick: no sweep at all, but the slow one.
func TestSweepSteadyLoad(t *testing.T) {
	m := newSweepSim(t)
	var prev []uint64          // answered last tick: their records come this tick
	for i := 0; i < 100; i++ { // 10 s
		for _, at := range prev {
			m.s.ended(at)
		}
		prev = prev[:0]
		for range 50 {
			m.now += ms
			prev = append(prev, m.answer())
		}
		m.now -= 50 * ms
		m.step(32)
	}
	if len(m.sweeps) > int(10_000*ms/slowSweepEvery)+1 {
		t.Errorf("%d sweeps in 10 s of steady load (%v), want only the slow ones", len(m.sweeps), m.sweeps)
	}
}

// A request answered and then quiet is swept once it may be due — not
// before the idle timeout after the tick before its answer — and not
// again once it ended.
func TestSweepQuietRequest(t *testing.T) {
	m := newSweepSim(t)
	m.step(0)
	m.now += 30 * ms
	answered := m.answer()
	m.now -= 30 * ms
	for !m.step(0) {
		if m.now > answered+2*idle {
			t.Fatal("the quiet request was never swept")
		}
	}
	if due := answered + idle; m.now < due-tick || m.now > due+tick {
		t.Errorf("swept at %d ms, want within a tick of %d ms", m.now/ms, due/ms)
	}
	m.s.ended(answered) // the sweep's record
	if n := m.steps(20, 0); n != 0 {
		t.Fatalf("swept %d times more with nothing waiting", n)
	}
}

// A request still active after its answer (its ACKs, a long body) is
// not due yet when first swept: the sweep runs each tick until it ends.
func TestSweepUntilEnded(t *testing.T) {
	m := newSweepSim(t)
	answered := m.answer()
	if n := m.steps(20, 1); n < 10 {
		t.Fatalf("%d sweeps in 2 s with a request waiting, want one a tick once it may be due", n)
	}
	m.s.ended(answered)
	m.step(0)
	if n := m.steps(20, 0); n != 0 {
		t.Errorf("%d sweeps after the request ended", n)
	}
}

// missedAnswer makes the race counting cannot see: an earlier
// request's record comes while the counter has only a later, quiet
// request (its own answer counted just after the tick read it).
func missedAnswer(m *sweepSim) {
	m.s.ended(m.now - ms)
	m.now += 10 * ms
	m.answer()
}

// An answer the counter missed makes the tick look resolved: the slow
// sweep still ends the quiet request, within slowSweepEvery.
func TestSweepSlowCatchesMissed(t *testing.T) {
	m := newSweepSim(t)
	missedAnswer(m)
	var at uint64
	for at = 0; at <= slowSweepEvery+2*tick && !m.step(1); at += tick {
	}
	if at > slowSweepEvery+2*tick {
		t.Fatal("never swept")
	}
}

// A reader about to go quiet (no record for a while) sweeps once more
// when answers were counted since the last sweep: a request the race
// hid ends then, not at the slow sweep; then it may be quiet.
func TestSweepBeforeQuiet(t *testing.T) {
	m := newSweepSim(t)
	missedAnswer(m)
	m.step(1)
	if m.s.quiet() {
		t.Fatal("quiet with an answer counted since the last sweep")
	}
	if !m.step(0) {
		t.Fatal("no sweep at the tick after quiet asked for one")
	}
	if !m.s.quiet() {
		t.Error("not quiet after the confirming sweep")
	}
	if n := m.steps(20, 0); n != 0 {
		t.Errorf("%d sweeps once quiet", n)
	}
}

// An idle host, no answer ever counted: quiet at once, no sweep.
func TestSweepIdleHostQuiet(t *testing.T) {
	m := newSweepSim(t)
	if !m.s.quiet() {
		t.Fatal("not quiet without any answer")
	}
	if n := m.steps(1000, 0); n != 0 {
		t.Errorf("%d sweeps with no answer", n)
	}
}

// A record lost to a full ring buffer leaves its tick unresolved: the
// sweep runs each tick, until one finds nothing waiting.
func TestSweepLostRecord(t *testing.T) {
	m := newSweepSim(t)
	m.answer() // its record is lost
	if n := m.steps(10, 1); n < 4 {
		t.Fatalf("%d sweeps", n)
	}
	m.step(0)
	if n := m.steps(20, 0); n != 0 {
		t.Errorf("%d sweeps after one found nothing waiting", n)
	}
}

// The unresolved ticks kept are bounded.
func TestSweepTicksBounded(t *testing.T) {
	m := newSweepSim(t)
	for range 1000 {
		m.answer()
		m.step(1)
	}
	if len(m.s.ticks) > maxTicks {
		t.Errorf("%d ticks kept", len(m.s.ticks))
	}
}

// Which time of a record the kernel's answer counter counted it at: a
// served request's first write of its answer, a call's first read of
// its answer; a call that wrote and got no answer was never counted.
func TestAnsweredAt(t *testing.T) {
	client := uint8(TracerdDirectionDIR_CLIENT)
	for _, c := range []struct {
		name string
		r    Record
		at   uint64
		ok   bool
	}{
		{"server answered", Record{T_rd: 10, T_wr: 20}, 20, true},
		{"server unanswered", Record{T_rd: 10}, 0, false},
		{"call answered", Record{Direction: client, T_wr: 10, T_rd: 30}, 30, true},
		{"call unanswered", Record{Direction: client, T_wr: 10}, 0, false},
		{"call never written", Record{Direction: client}, 0, false},
	} {
		if at, ok := answeredAt(&c.r); at != c.at || ok != c.ok {
			t.Errorf("%s: answeredAt = %d, %v; want %d, %v", c.name, at, ok, c.at, c.ok)
		}
	}
}

// A call that got no answer (its record ends by close or the sweep,
// T_wr set, T_rd not) is not an answer the kernel counted: it must not
// resolve the tick of a served request still quiet after its answer,
// which the sweep ends once it may be due, not at the slow sweep.
func TestSweepUnansweredCallNotCounted(t *testing.T) {
	m := newSweepSim(t)
	m.step(0)
	m.now += 30 * ms
	answered := m.answer() // the served request, then quiet
	call := Record{Direction: uint8(TracerdDirectionDIR_CLIENT), T_wr: m.now + ms}
	m.now -= 30 * ms
	m.step(1)
	if at, ok := answeredAt(&call); ok {
		m.s.ended(at)
	}
	for !m.step(0) {
		if m.now > answered+2*idle {
			t.Fatal("the quiet request was not swept when due: the unanswered call resolved its tick")
		}
	}
}
