package ticker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Ticks come every period, from the timerfd; Stop ends a blocked Wait.
func TestTicker(t *testing.T) {
	tk := New(20 * time.Millisecond)
	if tk.tm != nil {
		t.Fatal("fell back to a time.Ticker")
	}
	start := time.Now()
	for range 3 {
		if err := tk.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 55*time.Millisecond {
		t.Fatalf("3 ticks of 20 ms in %s", d)
	}
	stopped := make(chan error)
	go func() { stopped <- tk.Wait() }()
	time.Sleep(5 * time.Millisecond)
	tk.Stop()
	select {
	case err := <-stopped:
		if err != ErrStopped {
			t.Fatalf("Wait after Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end a blocked Wait")
	}
}

// The fallback behaves the same.
func TestTickerFallback(t *testing.T) {
	tk := &Ticker{tm: time.NewTicker(10 * time.Millisecond), done: make(chan struct{})}
	if err := tk.Wait(); err != nil {
		t.Fatal(err)
	}
	tk.Stop()
	if err := tk.Wait(); err != ErrStopped {
		t.Fatalf("Wait after Stop: %v", err)
	}
}

// Run calls fn each period and returns once ctx is done.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		Run(ctx, 10*time.Millisecond, func() {
			if n.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n.Load() != 3 {
		t.Fatalf("fn ran %d times, want 3", n.Load())
	}
}
