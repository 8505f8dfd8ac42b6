package loader

// sweepSched decides when the idle sweep runs. A pass over the conns
// map costs its whole size (≈ 0.9 ms for 65,536 entries on our VM), whatever
// few connections wait: at ten a second that alone is 4 µs per request
// at 1,000 requests/s. Yet under load almost every answered request is
// ended by its connection's next one, never by the sweep, and tracerd
// sees that end: its record. So the sweep runs only when an answered
// request may have been quiet for the idle timeout and its record has
// not come.
//
// Every tick (IdleSweepEvery) notes the kernel's count of answered
// requests (CNT_ANSWERS) at a time `at`; each answered record is counted
// against the ticks at or after the moment the kernel counted it
// (answeredAt): a served request's T_wr (its answer's first write), a
// client record's T_rd (the first byte of the answer to the call read).
// A client record's T_wr is its request's write, set whether or not an
// answer ever comes: counting it would claim answers the kernel never
// counted and resolve ticks that still hold a waiting request. A tick
// whose answers outnumber the records seen for them has requests still
// in progress or waiting; those it did not have at the tick before
// (`from`) were answered after it, so none can be due before from + idle: the sweep
// runs from then on while the tick stays unresolved. A request whose
// activity went on after its answer (a long body, late ACKs) is due
// later: the sweep keeps running each tick until it ends.
//
// Ticks need not be evenly spaced: a quiet reader (pipeline: no event
// for the join horizon and Tracer.Quiet) ticks every idle timeout less a period.
// A request answered after a tick is counted at the next, which comes
// before that request's timeout can pass, and the reader ticks at the
// busy pace from there (Quiet is false while a tick is unresolved or a
// sweep left requests waiting): it still ends within the timeout plus a
// period of its last activity.
//
// What counting cannot see — an answer counted a moment after a tick
// read the counter though its time (T_wr, T_rd) is before (the program
// takes the time, copies the answer's head, then counts: a window of
// a few hundred ns, longer when an interrupt lands in it), whose record
// then resolves a tick that still holds another, quiet request — is
// caught by a slow sweep (slowSweepEvery) whenever answers came or
// requests waited, and by one more sweep before the reader goes quiet
// (quiet): the requests of connections that fall silent when the load
// stops end within the idle timeout and a period or two, as always;
// one that fell silent in the middle of a load, in that window, within
// slowSweepEvery.
type sweepSched struct {
	idle      uint64    // the idle timeout, ns
	ticks     []answers // unresolved ticks, oldest first
	lastAt    uint64    // the previous tick's time
	lastCount uint64    // and its count
	seen      uint64    // answered records seen so far

	lastSweep      uint64 // when the last sweep ran
	answersAtSweep uint64 // CNT_ANSWERS then
	waiting        uint32 // answered requests it left waiting
	confirm        bool   // sweep at the next tick: quiet asked for it
}

// answers is what one tick saw.
type answers struct {
	from, at uint64 // the previous tick's time and this one's (CLOCK_MONOTONIC ns)
	count    uint64 // CNT_ANSWERS read just after at
	ended    uint64 // answered records seen, answered (answeredAt) ≤ at
}

// slowSweepEvery is how often a sweep runs anyway while answers come
// or requests wait (what counting cannot see). Each costs the conns
// map's whole size (≈ 1 ms for 65,536 entries on our VM): every 5 s,
// as it was, that was ≈ 0.2 µs of tracerd's CPU per record at 1,000
// requests/s, for a race a few hundred ns wide; the sweep before the
// reader goes quiet (quiet) covers what matters most of it, the
// connections left silent when a load stops.
const slowSweepEvery = 30_000_000_000

// maxTicks bounds the unresolved ticks kept: past it the oldest go
// (the newer ones hold their requests too: counts are cumulative).
const maxTicks = 64

func (s *sweepSched) unresolved(a *answers) bool { return a.count > a.ended }

func newSweepSched(idle, now uint64) *sweepSched {
	return &sweepSched{idle: idle, lastAt: now, lastSweep: now}
}

// answeredAt says when the kernel counted the record's request as
// answered (CNT_ANSWERS), and whether it did: a served request's answer
// is counted at its first write (T_wr), a call's (direction DIR_CLIENT)
// when its answer's first byte is read (T_rd, set at that moment; a call
// without an answer has T_wr but no T_rd).
func answeredAt(r *Record) (uint64, bool) {
	if r.Direction == uint8(TracerdDirectionDIR_CLIENT) {
		return r.T_rd, r.T_rd != 0
	}
	return r.T_wr, r.T_wr != 0
}

// ended counts a record whose request the kernel counted as answered at
// `at` (answeredAt).
func (s *sweepSched) ended(at uint64) {
	s.seen++
	for i := len(s.ticks) - 1; i >= 0 && s.ticks[i].at >= at; i-- {
		s.ticks[i].ended++
	}
}

// tick notes the count of answered requests read just after now and
// says whether the sweep must run.
func (s *sweepSched) tick(now, count uint64) bool {
	if count != s.lastCount {
		if len(s.ticks) == maxTicks {
			s.ticks = append(s.ticks[:0], s.ticks[1:]...)
		}
		s.ticks = append(s.ticks, answers{from: s.lastAt, at: now, count: count, ended: s.seen})
	}
	s.lastAt, s.lastCount = now, count
	// Resolved ticks go, with those before them.
	for i := len(s.ticks) - 1; i >= 0; i-- {
		if !s.unresolved(&s.ticks[i]) {
			s.ticks = append(s.ticks[:0], s.ticks[i+1:]...)
			break
		}
	}
	if s.confirm || len(s.ticks) > 0 && s.ticks[0].from+s.idle <= now {
		return true
	}
	return now-s.lastSweep >= slowSweepEvery && (count != s.answersAtSweep || s.waiting > 0)
}

// swept notes a sweep that began at now, with count answers then,
// leaving waiting answered requests not yet due. With none waiting,
// every request answered before it has ended (the records are in the
// ring buffer): its ticks are resolved.
func (s *sweepSched) swept(now, count uint64, waiting uint32) {
	s.lastSweep, s.answersAtSweep, s.waiting = now, count, waiting
	s.confirm = false
	if waiting == 0 {
		i := 0
		for i < len(s.ticks) && s.ticks[i].at <= now {
			i++
		}
		s.ticks = append(s.ticks[:0], s.ticks[i:]...)
	}
}

// quiet says whether no sweep is needed until the count changes: no
// unresolved tick, no request left waiting, and no answer counted since
// the last sweep. With answers counted since, it asks for a sweep at the
// next tick (confirm) and says no: a quiet reader looks seldom, and an
// answer counting missed (see sweepSched) would otherwise wait for the
// slow sweep.
func (s *sweepSched) quiet() bool {
	if len(s.ticks) > 0 || s.waiting > 0 {
		return false
	}
	if s.lastCount != s.answersAtSweep {
		s.confirm = true
		return false
	}
	return true
}
