// Package ticker ticks without a Go timer, for tracerd's once-a-second
// background work (the findings and port-pressure samplers, the
// exporter watch).
//
// A Go timer wakes the runtime's monitor thread (sysmon) when it is
// due: sysmon sleeps only until the next timer, and once up it polls
// every 20 µs until every goroutine sleeps again, so each tick of a
// time.Ticker costs tracerd a few context switches more than the work
// it runs. A Ticker here is a timerfd that Go's netpoller waits on, as
// it waits on a socket, and that is read with a raw system call (a
// blocking one, syscall.Syscall, wakes sysmon as well): sysmon is not
// involved, and an idle tracerd's only wake-ups are its ticks and the
// ring buffer reader's looks.
package ticker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ticker ticks every period from its start.
type Ticker struct {
	f    *os.File
	rc   syscall.RawConn
	tm   *time.Ticker  // where no timerfd can be made
	done chan struct{} // closed by Stop (with tm)
}

// New starts a ticker. Where the timerfd cannot be made or polled, it
// falls back to a time.Ticker.
func New(every time.Duration) *Ticker {
	if t, err := newTimerFD(every); err == nil {
		return t
	}
	return &Ticker{tm: time.NewTicker(every), done: make(chan struct{})}
}

func newTimerFD(every time.Duration) (*Ticker, error) {
	if every <= 0 {
		return nil, fmt.Errorf("ticker: period %s", every)
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(every)), Interval: unix.NsecToTimespec(int64(every))}
	if err := unix.TimerfdSettime(fd, 0, &its, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking: os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "ticker")
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails where it is not polled
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Ticker{f: f, rc: rc}, nil
}

// ErrStopped is what Wait returns once Stop was called.
var ErrStopped = errors.New("ticker stopped")

// Wait blocks until the next tick (ticks missed while the caller was
// busy count as one) or Stop; safe to call from one goroutine at a time.
func (t *Ticker) Wait() error {
	if t.tm != nil {
		select {
		case <-t.tm.C:
			return nil
		case <-t.done:
			return ErrStopped
		}
	}
	var buf [8]byte
	err := t.rc.Read(func(fd uintptr) bool {
		_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return errno != unix.EAGAIN
	})
	if err != nil {
		return ErrStopped
	}
	return nil
}

// Stop ends the ticks: a blocked Wait returns ErrStopped, as every
// later one does. Safe from any goroutine, once.
func (t *Ticker) Stop() {
	if t.tm != nil {
		t.tm.Stop()
		close(t.done)
		return
	}
	t.f.Close()
}

// Run calls fn every period until ctx is done.
func Run(ctx context.Context, every time.Duration, fn func()) {
	t := New(every)
	stop := context.AfterFunc(ctx, t.Stop)
	defer func() {
		if stop() { // ctx not done: Stop is ours to call
			t.Stop()
		}
	}()
	for t.Wait() == nil && ctx.Err() == nil {
		fn()
	}
}
