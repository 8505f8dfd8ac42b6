package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// quietFake is a source that can be quiet (loader's Quiet and
// WakeOnNextRecord); its sweeps are the session's looks, timed.
type quietFake struct {
	*fakeSource
	quiet   atomic.Bool
	primed  atomic.Int32
	looks   chan time.Time
	primeAt chan time.Time
}

func (q *quietFake) Quiet() bool { return q.quiet.Load() }

func (q *quietFake) WakeOnNextRecord() error {
	q.primed.Add(1)
	q.primeAt <- time.Now()
	return nil
}

func (q *quietFake) SweepIdle() error {
	q.looks <- time.Now()
	return nil
}

func TestQuietPeriod(t *testing.T) {
	for _, c := range []struct{ idle, period, want time.Duration }{
		{500 * time.Millisecond, 150 * time.Millisecond, 350 * time.Millisecond}, // the default
		{time.Minute, 150 * time.Millisecond, time.Second},
		{60 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond},
		{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond},
		{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}, // never below the period
	} {
		if got := quietPeriod(c.idle, c.period); got != c.want {
			t.Errorf("quietPeriod(%v, %v) = %v, want %v", c.idle, c.period, got, c.want)
		}
		// Looking every quietPeriod, a request answered after a look is
		// seen answered before its idle timeout passes.
		if got := quietPeriod(c.idle, c.period); got > c.idle-c.period && got > c.period {
			t.Errorf("quietPeriod(%v, %v) = %v: an answer could be seen after its timeout", c.idle, c.period, got)
		}
	}
}

// A session with no event for quietAfter, whose source's sweep waits for
// nothing, asks for a wake-up at the next record once and looks every
// quietPeriod; a record wakes it and it is busy again (looks every
// period); a source with an answered request waiting keeps it at the
// busy pace.
func TestQuietLooks(t *testing.T) {
	const idle = time.Second // period 150 ms, quiet period 850 ms
	src := &quietFake{fakeSource: newFakeSource(), looks: make(chan time.Time, 1024), primeAt: make(chan time.Time, 16)}
	src.quiet.Store(true)
	sink := newRecorder()
	s := New(src, idle, time.Minute, sink)
	s.quietAfter = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	nextLook := func() time.Time {
		t.Helper()
		select {
		case at := <-src.looks:
			return at
		case <-time.After(3 * time.Second):
			t.Fatal("no look in 3 s")
		}
		return time.Time{}
	}
	drain := func() {
		for len(src.looks) > 0 {
			<-src.looks
		}
	}

	var quietAt time.Time
	select {
	case quietAt = <-src.primeAt:
	case <-time.After(3 * time.Second):
		t.Fatal("never quiet")
	}
	drain()
	last := quietAt
	for range 2 {
		at := nextLook()
		if gap := at.Sub(last); gap < 700*time.Millisecond {
			t.Errorf("quiet looks %v apart, want ≈ 850 ms", gap)
		}
		last = at
	}
	if n := src.primed.Load(); n != 1 {
		t.Errorf("%d wake-ups asked for in one quiet spell, want 1", n)
	}

	// A record wakes the session: read at once, and a look (its flush)
	// at once.
	// (Not while the session is still in the quiet look just seen: a
	// record read by that look's own read is flushed by it, before the
	// look this test waits for. The next quiet look is 850 ms away.)
	time.Sleep(100 * time.Millisecond)
	src.quiet.Store(false)
	drain()
	sent := time.Now()
	src.ring <- record(1, 0, "127.0.0.1:4000")
	sink.wait(t, 1)
	if d := time.Since(sent); d > 100*time.Millisecond {
		t.Errorf("a record after a quiet spell read after %v", d)
	}
	if gap := nextLook().Sub(sent); gap > 100*time.Millisecond {
		t.Errorf("a record after a quiet spell flushed %v after it came, want at once", gap)
	}
	// Busy again, and the source not quiet: looks every period.
	last = nextLook()
	for range 4 {
		at := nextLook()
		if gap := at.Sub(last); gap > 400*time.Millisecond {
			t.Errorf("looks %v apart while an answered request waits, want 150 ms", gap)
		}
		last = at
	}
	if n := src.primed.Load(); n != 1 {
		t.Errorf("%d wake-ups asked for, want 1 (not quiet since)", n)
	}

	// Quiet again.
	src.quiet.Store(true)
	select {
	case <-src.primeAt:
	case <-time.After(3 * time.Second):
		t.Fatal("not quiet again")
	}
}
