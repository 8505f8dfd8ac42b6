package loader

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// rawCounter reads one per-CPU counter of the counters map with one raw
// bpf system call into buffers of its own. The idle sweep's schedule
// reads CNT_ANSWERS at every periodic look: through cilium/ebpf that
// allocated and decoded the values by reflection, and as a blocking
// system call (syscall.Syscall) it woke Go's monitor thread (sysmon),
// which then polls every 20 µs while tracerd works. A map lookup never
// blocks: RawSyscall is safe, like the ring buffer's epoll_wait.
type rawCounter struct {
	attr mapLookupAttr
	key  uint32
	vals []uint64 // one per possible CPU (a per-CPU value is 8-byte aligned)
}

// mapLookupAttr is union bpf_attr for BPF_MAP_LOOKUP_ELEM.
type mapLookupAttr struct {
	mapFD uint32
	_     uint32
	key   uint64 // pointer
	value uint64 // pointer
	flags uint64
}

func newRawCounter(m *ebpf.Map, key uint32) (*rawCounter, error) {
	if m.Type() != ebpf.PerCPUArray || m.ValueSize() != 8 {
		return nil, fmt.Errorf("map %s: want a per-CPU array of 8-byte values, have %s of %d", m, m.Type(), m.ValueSize())
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	c := &rawCounter{key: key, vals: make([]uint64, max(cpus, 1))}
	c.attr = mapLookupAttr{mapFD: uint32(m.FD())}
	return c, nil
}

// read sums the counter over the CPUs. The map must stay open.
func (c *rawCounter) read() (uint64, error) {
	c.attr.key = uint64(uintptr(unsafe.Pointer(&c.key)))
	c.attr.value = uint64(uintptr(unsafe.Pointer(&c.vals[0])))
	_, _, errno := unix.RawSyscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_ELEM, uintptr(unsafe.Pointer(&c.attr)), unsafe.Sizeof(c.attr))
	runtime.KeepAlive(c)
	if errno != 0 {
		return 0, fmt.Errorf("reading counter %d: %w", c.key, errno)
	}
	var sum uint64
	for _, v := range c.vals {
		sum += v
	}
	return sum, nil
}
