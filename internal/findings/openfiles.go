package findings

import (
	"errors"
	"io/fs"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openFiles keeps the /proc files a sample reads every second open and
// reads them with pread at offset 0: the kernel makes such a file's
// text again at each read from the start, so the bytes are as fresh as
// a new open's, without the path walk, the open and the close (measured
// on the development VM: /proc/PID/net/netstat 79 → 31 µs a read,
// /proc/stat 29 → 11 µs, /proc/net/softnet_stat 19 → 2 µs). One buffer,
// grown to the largest file, serves every read: a caller parses the
// bytes before the next read.
//
// A file is known by a key, not by its path: a namespace's counters are
// read through whichever of its processes the sample picked, and the
// file opened through one of them reads that namespace for as long as
// it stays open, whether or not the process lives on. The owner closes
// what it no longer reads (forget), and everything at the end (close).
type openFiles struct {
	fds map[string]int
	buf []byte
}

func newOpenFiles() *openFiles { return &openFiles{fds: map[string]int{}, buf: make([]byte, 16<<10)} }

// read returns the file's bytes, valid until the next read. A cached
// file that fails to read (its process exited: ESRCH) is opened again
// from path once.
func (o *openFiles) read(key, path string) ([]byte, error) {
	return o.readWith(key, path, false)
}

// readHost reads a file of the host's own (/proc/stat, /proc/pressure,
// /proc/net/softnet_stat, /proc/sys): made from the kernel's counters,
// it never waits for a disk, a lock another process holds or its memory,
// so it is read with a raw system call. A blocking one (syscall.Syscall)
// wakes Go's monitor thread (sysmon) when tracerd was idle, which then
// polls every 20 µs for a while: on an idle tracerd the sample's four
// host reads each second cost that. A process's files (/proc/PID/...)
// and cgroup files are read with read.
func (o *openFiles) readHost(key, path string) ([]byte, error) {
	return o.readWith(key, path, true)
}

func (o *openFiles) readWith(key, path string, raw bool) ([]byte, error) {
	if fd, ok := o.fds[key]; ok {
		if b, err := o.pread(fd, raw); err == nil {
			return b, nil
		}
		o.forget(key)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	b, err := o.pread(fd, raw)
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	o.fds[key] = fd
	return b, nil
}

// pread reads the whole file from offset 0, growing the buffer while a
// read fills it; raw: with a raw system call (readHost).
func (o *openFiles) pread(fd int, raw bool) ([]byte, error) {
	for {
		var n int
		var err error
		if raw {
			n, err = rawPread(fd, o.buf)
		} else {
			n, err = unix.Pread(fd, o.buf, 0)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n < len(o.buf) {
			return o.buf[:n], nil
		}
		if len(o.buf) >= maxProcFile {
			return nil, errProcFileTooLarge
		}
		o.buf = make([]byte, 2*len(o.buf))
	}
}

// rawPread is pread at offset 0 as a raw system call (not telling Go's
// scheduler: for reads that cannot block, readHost).
func rawPread(fd int, buf []byte) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), 0, 0, 0)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// maxProcFile bounds what one /proc file may take (a /proc/stat with
// thousands of interrupt lines is ≈ 100 KiB).
const maxProcFile = 8 << 20

var errProcFileTooLarge = errors.New("larger than 8 MiB")

// forget closes the file known by key, if open.
func (o *openFiles) forget(key string) {
	if fd, ok := o.fds[key]; ok {
		unix.Close(fd)
		delete(o.fds, key)
	}
}

// close closes every file.
func (o *openFiles) close() {
	for key := range o.fds {
		o.forget(key)
	}
}
