package loader

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring reads the events ring buffer (BPF_MAP_TYPE_RINGBUF) where the
// kernel maps it: a batch of entries at a time, each decoded straight
// from the shared pages, the consumer position advanced once per batch.
//
// Waiting costs one wake-up per period and no OS thread: an epoll
// instance of its own holds the ring buffer (the kernel's wake-ups) and
// a timerfd (the period), and Go's netpoller waits on that epoll fd
// like on a socket. No Go timer is involved: the runtime's monitor
// thread, which wakes for every timer and then polls every few tens of
// µs while tracerd runs, stays asleep.
type ring struct {
	file    *os.File // the epoll fd, registered with the netpoller
	raw     syscall.RawConn
	epfd    int
	timerFD int
	events  [2]unix.EpollEvent
	// The kernel's layout: the consumer position's page (read-write),
	// then the producer position's page and the data area (read-only).
	// The kernel maps the data area twice in a row, so that an entry
	// that wraps around is contiguous; tracerd maps it once (its pages
	// count once in RSS: 16 MiB, not 32) and copies the rare entry that
	// wraps into wrapped.
	consPage, prodPages []byte
	consPos, prodPos    *uint64
	data                []byte
	mask                uint64
	wrapped             []byte
	woken               atomic.Bool
	// patient: wait for an entry still being written (yielding, up to
	// ringPatientSpins times) rather than leave it to the next batch:
	// set once the hooks are detached, for the last reads.
	patient atomic.Bool
}

// Entry header (struct bpf_ringbuf_hdr): its length word's top bits.
const (
	ringHeaderSize   = 8
	ringBusyBit      = 1 << 31 // reserved, not committed yet
	ringDiscardBit   = 1 << 30 // committed as discarded: skipped
	ringBusySpins    = 1024    // re-reads of a busy header (≈ 1 µs) before the batch stops there
	ringPatientSpins = 1 << 12 // yields, once patient: a producer commits right after it copies
	ringBatchUpdate  = 256     // entries between consumer position updates
)

func newRing(m *ebpf.Map) (_ *ring, err error) {
	size := uint64(m.MaxEntries())
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	r := &ring{mask: size - 1, epfd: -1, timerFD: -1}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.consPage, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring buffer's consumer page: %w", err)
	}
	if r.prodPages, err = unix.Mmap(m.FD(), int64(page), page+int(size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring buffer's data: %w", err)
	}
	r.consPos = (*uint64)(unsafe.Pointer(&r.consPage[0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.prodPages[0]))
	r.data = r.prodPages[page:]
	if r.timerFD, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	// Edge-triggered: each kernel wake-up is one event.
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, m.FD(), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(m.FD())}); err != nil {
		return nil, fmt.Errorf("polling the ring buffer: %w", err)
	}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, r.timerFD, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.timerFD)}); err != nil {
		return nil, fmt.Errorf("polling the timerfd: %w", err)
	}
	if err := unix.SetNonblock(r.epfd, true); err != nil {
		return nil, err
	}
	// Non-blocking: os.NewFile registers it with the netpoller.
	r.file = os.NewFile(uintptr(r.epfd), "ringbuf-epoll")
	if err := r.file.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("the ring buffer cannot be polled: %w", err)
	}
	if r.raw, err = r.file.SyscallConn(); err != nil {
		return nil, err
	}
	return r, nil
}

// arm sets the timerfd to fire once, after d (at least 1 ns).
func (r *ring) arm(d time.Duration) {
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))}
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(r.timerFD), 0, uintptr(unsafe.Pointer(&its)), 0, 0, 0)
}

// ready takes what the epoll fd holds: whether the kernel woke readers
// or the timer fired.
func (r *ring) ready() bool {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(r.epfd), uintptr(unsafe.Pointer(&r.events[0])), uintptr(len(r.events)), 0, 0, 0)
	if errno != 0 || n == 0 {
		return false
	}
	for _, ev := range r.events[:n] {
		if int(ev.Fd) == r.timerFD {
			var buf [8]byte
			unix.RawSyscall(unix.SYS_READ, uintptr(r.timerFD), uintptr(unsafe.Pointer(&buf[0])), 8)
		}
	}
	return true
}

// wait blocks until the kernel wakes readers (an entry written with a
// wake-up, since the last wait), deadline passes or wake is called.
// Entries written without a wake-up do not end it: they wait for the
// deadline, so that they are read in batches. ErrClosed once closed.
func (r *ring) wait(deadline time.Time) error {
	if r.woken.Swap(false) {
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil
	}
	r.arm(d)
	if r.woken.Swap(false) { // wake came before the timer was armed
		return nil
	}
	err := r.raw.Read(func(uintptr) bool { return r.ready() || r.woken.Load() })
	r.woken.Store(false)
	if err != nil {
		return r.closedErr(err)
	}
	return nil
}

func (r *ring) closedErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return err
}

// wake makes a blocked wait return now (safe from any goroutine).
func (r *ring) wake() {
	r.woken.Store(true)
	r.arm(0)
}

// read hands each committed entry, in order, to fn, at most max of them,
// and returns how many. The bytes are the kernel's: valid during the
// call only. An entry still being written stops the batch after
// re-reading its header for about a µs, without yielding (a kernel
// program commits within a µs or two of reserving, but a uprobe's
// program may be preempted in between: yielding, a trip through Go's
// scheduler each time, cost ≈ 2 % of tracerd's CPU at 20,000
// requests/s); the next batch takes it, at the next look. Once patient
// (the hooks detached: the last reads), it yields up to
// ringPatientSpins times for the entry instead.
func (r *ring) read(max int, fn func([]byte) error) (int, error) {
	if r.data == nil {
		return 0, ErrClosed
	}
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	n := 0
	defer func() { atomic.StoreUint64(r.consPos, cons) }()
	for cons != prod && n < max {
		off := cons & r.mask
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		for spin := 0; hdr&ringBusyBit != 0 && spin < ringBusySpins; spin++ {
			hdr = atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		}
		if hdr&ringBusyBit != 0 && r.patient.Load() {
			for spin := 0; hdr&ringBusyBit != 0 && spin < ringPatientSpins; spin++ {
				runtime.Gosched()
				hdr = atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
			}
		}
		if hdr&ringBusyBit != 0 {
			break
		}
		size := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		next := cons + (ringHeaderSize+size+7)&^7
		if next-cons > prod-cons {
			return n, fmt.Errorf("ring buffer entry of %d bytes past the producer position", size)
		}
		if hdr&ringDiscardBit == 0 {
			start := (off + ringHeaderSize) & r.mask // a header never wraps: 8-aligned
			entry := r.data[start:min(start+size, r.mask+1)]
			if uint64(len(entry)) < size {
				r.wrapped = append(append(r.wrapped[:0], entry...), r.data[:size-uint64(len(entry))]...)
				entry = r.wrapped
			}
			if err := fn(entry[:size:size]); err != nil {
				cons = next
				return n, err
			}
			n++
		}
		cons = next
		if n%ringBatchUpdate == 0 {
			// Give the kernel its space back as a long batch goes.
			atomic.StoreUint64(r.consPos, cons)
		}
	}
	return n, nil
}

func (r *ring) unmap() {
	if r.consPage != nil {
		unix.Munmap(r.consPage)
	}
	if r.prodPages != nil {
		unix.Munmap(r.prodPages)
	}
	r.consPage, r.prodPages, r.data = nil, nil, nil
}

// close wakes a blocked wait (with ErrClosed) and releases the ring; no
// read may run concurrently.
func (r *ring) close() error {
	var err error
	switch {
	case r.file != nil:
		err = r.file.Close() // waits for a blocked wait to return
	case r.epfd >= 0:
		unix.Close(r.epfd)
	}
	if r.timerFD >= 0 {
		unix.Close(r.timerFD)
	}
	r.unmap()
	return err
}
