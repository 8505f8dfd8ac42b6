package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"unsafe"
)

// fakeRing is a ring whose data area and positions are plain memory,
// written as the kernel writes them: an 8-byte header (length, busy and
// discard bits), the entry, padding to 8 bytes, wrapping at the end.
type fakeRing struct {
	r          ring
	cons, prod uint64
}

func newFakeRing(size int) *fakeRing {
	f := &fakeRing{}
	f.r = ring{data: make([]byte, size), mask: uint64(size - 1)}
	f.r.consPos, f.r.prodPos = &f.cons, &f.prod
	return f
}

// put writes an entry with header flags; it returns where it starts.
func (f *fakeRing) put(payload []byte, flags uint32) uint64 {
	at := f.prod
	size := uint64(len(f.r.data))
	binary.LittleEndian.PutUint32(f.r.data[at&f.r.mask:], uint32(len(payload))|flags)
	for i, c := range payload {
		f.r.data[(at+ringHeaderSize+uint64(i))%size] = c
	}
	f.prod += (ringHeaderSize + uint64(len(payload)) + 7) &^ 7
	return at
}

func (f *fakeRing) readAll(t *testing.T, max int) []string {
	t.Helper()
	var got []string
	if _, err := f.r.read(max, func(b []byte) error {
		got = append(got, string(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// Entries come out in order, whole when they wrap around the end of
// the data area, discarded ones skipped; a batch stops at max, and at
// an entry still being written (until it is committed).
func TestRingRead(t *testing.T) {
	f := newFakeRing(256)
	f.cons, f.prod = 160, 160
	f.put([]byte("first"), 0)
	f.put([]byte("dropped"), ringDiscardBit)
	wrapping := bytes.Repeat([]byte("w"), 70) // from 200 over the end at 256
	f.put(wrapping, 0)
	busy := f.put([]byte("late"), ringBusyBit)
	if got := f.readAll(t, 1); len(got) != 1 || got[0] != "first" {
		t.Fatalf("first batch %q", got)
	}
	got := f.readAll(t, 10)
	if len(got) != 1 || got[0] != string(wrapping) {
		t.Fatalf("second batch %q, want the wrapping entry whole", got)
	}
	if f.cons != busy {
		t.Fatalf("consumer at %d, want at the uncommitted entry (%d)", f.cons, busy)
	}
	binary.LittleEndian.PutUint32(f.r.data[busy&f.r.mask:], 4) // committed
	if got := f.readAll(t, 10); len(got) != 1 || got[0] != "late" || f.cons != f.prod {
		t.Fatalf("after the commit %q, consumer %d producer %d", got, f.cons, f.prod)
	}
}

// A length past the producer position is corruption: an error, not a
// read out of bounds.
func TestRingReadCorrupt(t *testing.T) {
	f := newFakeRing(256)
	f.put([]byte("ok"), 0)
	binary.LittleEndian.PutUint32(f.r.data[0:], 1000)
	if _, err := f.r.read(10, func([]byte) error { return nil }); err == nil {
		t.Fatal("no error for an entry longer than what was written")
	}
}

// A failing consumer stops the batch after its entry, which counts as read.
func TestRingReadError(t *testing.T) {
	f := newFakeRing(256)
	f.put([]byte("a"), 0)
	f.put([]byte("b"), 0)
	n, err := f.r.read(10, func(b []byte) error { return fmt.Errorf("bad %s", b) })
	if err == nil || n != 0 || f.cons != 16 {
		t.Fatalf("n %d err %v consumer %d", n, err, f.cons)
	}
}

// Once patient (the hooks detached), a batch waits for an entry still
// being written instead of stopping there.
func TestRingReadPatient(t *testing.T) {
	f := newFakeRing(256)
	busy := f.put([]byte("late"), ringBusyBit)
	if got := f.readAll(t, 10); len(got) != 0 || f.cons != busy {
		t.Fatalf("impatient read %q, consumer %d", got, f.cons)
	}
	f.r.patient.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&f.r.data[busy&f.r.mask])), 4) // committed
	}()
	var got []string
	for len(got) == 0 {
		got = f.readAll(t, 10)
	}
	<-done
	if got[0] != "late" || f.cons != f.prod {
		t.Fatalf("patient read %q, consumer %d producer %d", got, f.cons, f.prod)
	}
}
