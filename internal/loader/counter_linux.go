package loader

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// answerCounter reads one per-CPU counter every tick of the reading
// loop, which otherwise sleeps: a raw system call (a map lookup returns
// at once), so that the Go runtime does not wake its monitor thread for
// it, and into a buffer of its own, so that it allocates nothing.
type answerCounter struct {
	fd     int
	key    uint32
	perCPU []uint64
}

func newAnswerCounter(m *ebpf.Map, c TracerdCounter) (*answerCounter, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	return &answerCounter{fd: m.FD(), key: uint32(c), perCPU: make([]uint64, n)}, nil
}

// bpfMapLookupAttr is union bpf_attr for BPF_MAP_LOOKUP_ELEM.
type bpfMapLookupAttr struct {
	mapFD uint32
	_     uint32
	key   uint64
	value uint64
	flags uint64
}

func (a *answerCounter) read() (uint64, error) {
	attr := bpfMapLookupAttr{
		mapFD: uint32(a.fd),
		key:   uint64(uintptr(unsafe.Pointer(&a.key))),
		value: uint64(uintptr(unsafe.Pointer(&a.perCPU[0]))),
	}
	_, _, errno := unix.RawSyscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_ELEM, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return 0, fmt.Errorf("reading counter %d: %w", a.key, errno)
	}
	var sum uint64
	for _, v := range a.perCPU {
		sum += v
	}
	return sum, nil
}
