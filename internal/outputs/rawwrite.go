package outputs

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FileWriter writes to f, a regular file that Create opened, with raw
// write system calls (syscall.RawSyscall): Go's scheduler is not told
// of them, as it is of os.File.Write's (syscall.Syscall). Telling it
// wakes the runtime's monitor thread (sysmon) whenever tracerd was
// otherwise idle, which then polls every 20 µs until the write
// returns and every goroutine sleeps again: at 1,000 requests/s, where
// the JSON lines are written at each periodic look, those polls were
// most of tracerd's wake-ups. A write to a regular file copies into the
// page cache and does not wait for a reader, so the goroutine keeps its
// P for that short while; should the disk hold it up (dirty-page
// throttling), the other goroutines run on the other Ps (GOMAXPROCS
// ≥ 2), and with one P they wait for it. Not for pipes, terminals or
// sockets (stdout): their writes may wait for a reader without bound.
func FileWriter(f *os.File) (io.Writer, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &rawFile{f: f, rc: rc}, nil
}

type rawFile struct {
	f  *os.File
	rc syscall.RawConn
}

// Write writes all of p (a short write is continued, an interrupted one
// retried) or fails as os.File.Write does.
func (w *rawFile) Write(p []byte) (int, error) {
	n := 0
	var errno unix.Errno
	err := w.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch {
			case e == unix.EINTR:
				continue
			case e != 0:
				errno = e
				return true
			case m == 0:
				return true
			}
			n += int(m)
		}
		return true
	})
	switch {
	case err != nil:
		// A regular file's RawConn fails only once the file is closed
		// (its poll descriptor refuses the write lock).
		return n, &os.PathError{Op: "write", Path: w.f.Name(), Err: os.ErrClosed}
	case errno != 0:
		return n, &os.PathError{Op: "write", Path: w.f.Name(), Err: errno}
	case n < len(p):
		return n, io.ErrShortWrite
	}
	return n, nil
}
