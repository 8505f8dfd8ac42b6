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
// Waiting goes through Go's netpoller (the map's fd is pollable): the
// reading goroutine parks like one on a socket, rather than holding an
// OS thread in epoll_wait, which keeps the runtime's monitor thread
// polling every few tens of µs while tracerd sleeps.
type ring struct {
	file *os.File // a duplicate of the map's fd, registered with the netpoller
	raw  syscall.RawConn
	// The kernel's layout: the consumer position's page (read-write),
	// then the producer position's page and the data area mapped twice
	// in a row (read-only), so that an entry that wraps around is
	// contiguous.
	consPage, prodPages []byte
	consPos, prodPos    *uint64
	data                []byte
	mask                uint64
	woken               atomic.Bool
}

// Entry header (struct bpf_ringbuf_hdr): its length word's top bits.
const (
	ringHeaderSize  = 8
	ringBusyBit     = 1 << 31 // reserved, not committed yet
	ringDiscardBit  = 1 << 30 // committed as discarded: skipped
	ringBusySpins   = 1 << 12 // a producer commits right after it copies
	ringBatchUpdate = 256     // entries between consumer position updates
)

func newRing(m *ebpf.Map) (*ring, error) {
	size := uint64(m.MaxEntries())
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicating the ring buffer's fd: %w", err)
	}
	r := &ring{mask: size - 1}
	fail := func(err error) (*ring, error) {
		r.unmap()
		if r.file != nil {
			r.file.Close()
		} else {
			unix.Close(fd)
		}
		return nil, err
	}
	if r.consPage, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("mapping the ring buffer's consumer page: %w", err))
	}
	if r.prodPages, err = unix.Mmap(fd, int64(page), page+2*int(size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("mapping the ring buffer's data: %w", err))
	}
	r.consPos = (*uint64)(unsafe.Pointer(&r.consPage[0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.prodPages[0]))
	r.data = r.prodPages[page:]
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(err)
	}
	// Non-blocking: os.NewFile registers it with the netpoller.
	r.file = os.NewFile(uintptr(fd), "ringbuf")
	if err := r.file.SetReadDeadline(time.Time{}); err != nil {
		return fail(fmt.Errorf("the ring buffer cannot be polled: %w", err))
	}
	if r.raw, err = r.file.SyscallConn(); err != nil {
		return fail(err)
	}
	return r, nil
}

// available says whether an entry (committed or not) waits.
func (r *ring) available() bool {
	return atomic.LoadUint64(r.prodPos) != atomic.LoadUint64(r.consPos)
}

// wait blocks until the kernel wakes readers (an entry written with a
// wake-up, since the last wait), deadline passes or wake is called.
// Entries written without a wake-up do not end it: they wait for the
// deadline, so that they are read in batches. ErrClosed once closed.
func (r *ring) wait(deadline time.Time) error {
	if r.woken.Swap(false) {
		return nil
	}
	if err := r.file.SetReadDeadline(deadline); err != nil {
		return r.closedErr(err)
	}
	if r.woken.Swap(false) { // wake came before the deadline was set
		return nil
	}
	// The netpoller waits once for the fd's readiness: an event from a
	// wake-up since the last wait, else the next one.
	waited := false
	err := r.raw.Read(func(uintptr) bool {
		done := waited
		waited = true
		return done
	})
	r.woken.Store(false)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return r.closedErr(err)
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
	r.file.SetReadDeadline(time.Now())
}

// read hands each committed entry, in order, to fn, at most max of them,
// and returns how many. The bytes are the kernel's: valid during the
// call only. An entry still being written stops the batch after a
// short spin (the next batch takes it).
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
			runtime.Gosched()
			hdr = atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
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
			start := off + ringHeaderSize
			if err := fn(r.data[start : start+size : start+size]); err != nil {
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

// close wakes a blocked wait (with ErrClosed) and unmaps the ring; no
// read may run concurrently.
func (r *ring) close() error {
	err := r.file.Close()
	r.unmap()
	return err
}
