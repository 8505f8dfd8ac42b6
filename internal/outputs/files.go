// Package outputs is where requests go: the output files (created
// safely, since tracerd runs as root), the daemon's exporters fan-out
// (OTLP, Prometheus, JSON lines) built from the configuration, and a
// snapshot's files.
package outputs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Output files (-o, --json of snapshot and run, TRACERD_CPUPROFILE) are
// opened without following a symbolic link and created 0600: tracerd
// runs as root, and a path in a directory others can write to (/tmp)
// may hold a link planted there to make root truncate another file.

// fileMode is the mode of the files tracerd creates; the umask can
// only narrow it.
const fileMode = 0o600

// vetExisting checks an output path that already exists (fi from
// Lstat): no symbolic link, a regular file, and not another user's file
// in a directory every user may write to.
func vetExisting(path string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link: refusing to follow it (give the path of the file itself)", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return vetOwner(path, st.Uid)
	}
	return nil
}

// vetOwner refuses another user's file in a directory every user may
// write to (/tmp, /var/tmp: sticky or not): it can only have been put
// there by that user, for us to write through.
func vetOwner(path string, uid uint32) error {
	if int(uid) == os.Geteuid() {
		return nil
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if di.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s belongs to uid %d, in %s which every user may write to: refusing to write another user's file there", path, uid, dir)
	}
	return nil
}

// Create opens path for writing: created with mode 0600 when missing,
// never through a symbolic link (O_NOFOLLOW), only a regular file, and
// never another user's file in a directory every user may write to. An
// existing file is truncated once it passed these checks (appendTo:
// written at its end instead) and keeps its mode.
func Create(path string, appendTo bool) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil {
		if err := vetExisting(path, fi); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// The checks above say why; these flags hold even if the path was
	// changed in between. O_NONBLOCK: a FIFO must not hang the open.
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	if appendTo {
		flags |= unix.O_APPEND
	}
	fd, err := unix.Open(path, flags, fileMode)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link: refusing to follow it (give the path of the file itself)", path)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	fail := func(err error) (*os.File, error) {
		unix.Close(fd)
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&os.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail(fmt.Errorf("%s is not a regular file", path))
	}
	if err := vetOwner(path, st.Uid); err != nil {
		return fail(err)
	}
	if !appendTo {
		if err := unix.Ftruncate(fd, 0); err != nil {
			return fail(&os.PathError{Op: "truncate", Path: path, Err: err})
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CheckWritable says early, without creating or truncating anything,
// whether Create would accept path: a writable regular file (no
// symbolic link, not another user's file in a directory every user may
// write to), or one that can be created.
func CheckWritable(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if err := vetExisting(path, fi); err != nil {
			return err
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := unix.Access(filepath.Dir(path), unix.W_OK|unix.X_OK); err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	return nil
}
