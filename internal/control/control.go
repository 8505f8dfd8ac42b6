// Package control is the daemon's control socket: a unix stream socket
// (mode 0600, owner root) where each connection sends one JSON request
// and reads JSON lines back. `tracerd status` and `tracerd snapshot` use
// it to talk to a running `tracerd run`.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/targets"
)

// Request is what a client asks.
type Request struct {
	Op string `json:"op"` // "status", "snapshot" or "top"
	// snapshot and top: the requests of Targets (top: all the daemon
	// traces when empty).
	Targets targets.Targets `json:"targets"`
	// snapshot
	Duration time.Duration `json:"duration,omitempty"`
	Top      int           `json:"top,omitempty"`
	JSON     bool          `json:"json,omitempty"`    // stream the records
	Profile  bool          `json:"profile,omitempty"` // send a pprof profile at the end
	// top: a view every Every (default a second).
	Every time.Duration `json:"every,omitempty"`
}

// Line is one line of an answer; one field is set.
type Line struct {
	Error string `json:"error,omitempty"`
	// Refused goes with Error when the request cannot be served as
	// asked (the client's to change: exit code 2), e.g. a selection the
	// daemon's does not cover.
	Refused bool            `json:"refused,omitempty"`
	Note    string          `json:"note,omitempty"`   // for the user's stderr
	Status  *Status         `json:"status,omitempty"` // status answer
	Record  json.RawMessage `json:"record,omitempty"` // one request (JSON lines format)
	End     *End            `json:"end,omitempty"`    // snapshot finished
	Live    *live.View      `json:"live,omitempty"`   // top: the current view
}

// End closes a snapshot.
type End struct {
	Requests int64  `json:"requests"`
	Dropped  int64  `json:"dropped"` // records not sent: the client read too slowly
	Profile  []byte `json:"profile,omitempty"`
	// Summary is the snapshot's summary as a standalone snapshot prints
	// it (export.Summary).
	Summary string `json:"summary"`
	// Kernel are the daemon's kernel counters since it started; nil when
	// they could not be read.
	Kernel *loader.Counters `json:"kernel,omitempty"`
}

// Handler answers requests. Snapshot and Top stream lines with send
// until the request is done (ctx ends early when the client half-closes
// or the daemon stops); Top until ctx ends.
type Handler interface {
	Status() (Status, error)
	Snapshot(ctx context.Context, req Request, send func(Line) error) error
	Top(ctx context.Context, req Request, send func(Line) error) error
}

// Server serves a Handler on a unix socket.
type Server struct {
	ln   *net.UnixListener
	path string
	made fs.FileInfo // the socket Listen made, to remove only it
	h    Handler
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Listen creates the socket, root-only: its directory is made 0700 when
// missing, the socket itself 0600. Only a socket tracerd may have made
// is ever removed: a stale one (a socket of this user on which nothing
// answers); a live one (another daemon) is an error, and so is anything
// else at path — a regular file, a symbolic link (never followed), a
// directory, another user's socket — which is left as it is
// (ErrUnsafePath).
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// Close removes the socket itself, not whatever may be at path then.
	ln.SetUnlinkOnClose(false)
	s := &Server{ln: ln, path: path, h: h, log: log}
	if s.made, err = os.Lstat(path); err != nil || s.made.Mode()&fs.ModeSocket == 0 {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: changed while it was created", path)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		s.unlink()
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// ErrUnsafePath means the socket's path holds something tracerd may not
// remove; it was left as it is.
var ErrUnsafePath = errors.New("not a socket tracerd may replace")

type unsafePathError struct{ path, why string }

func (e *unsafePathError) Error() string {
	return fmt.Sprintf("control socket %s: %s: left as it is (remove it yourself or choose another path)", e.path, e.why)
}

func (e *unsafePathError) Is(target error) bool { return target == ErrUnsafePath }

// removeStale removes a socket left at path by a daemon that died: a
// socket (lstat: a symbolic link is not followed), this user's, on which
// nothing answers. Nothing at path: nil.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &unsafePathError{path, "is a symbolic link, not a socket"}
	case fi.Mode()&fs.ModeSocket == 0:
		return &unsafePathError{path, fmt.Sprintf("exists and is not a socket (%s)", describeMode(fi.Mode()))}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return &unsafePathError{path, fmt.Sprintf("is a socket of uid %d, not tracerd's", st.Uid)}
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another tracerd answers there", path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		// Busy, or something this code does not know: not stale.
		return fmt.Errorf("control socket %s: in use or unusable, left as it is: %w", path, err)
	}
	// Stale. Remove it only if it is still the socket checked above.
	if again, err := os.Lstat(path); err != nil || !os.SameFile(fi, again) {
		return fmt.Errorf("control socket %s: changed while it was checked", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
	}
	return nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.String()
}

// Close stops accepting, ends running snapshots and removes the socket
// (only if path still is the socket Listen made).
func (s *Server) Close() error {
	s.stop()
	s.unlink()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) unlink() {
	if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.made) {
		_ = os.Remove(s.path)
	}
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

// peerAllowed accepts root and the daemon's own user only (the file
// mode already refuses others; this holds when the mode was changed).
func peerAllowed(c *net.UnixConn) (uint32, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil || cred == nil {
		return 0, false
	}
	return cred.Uid, cred.Uid == 0 || int(cred.Uid) == os.Geteuid()
}

func (s *Server) handle(c *net.UnixConn) {
	enc := json.NewEncoder(c)
	if uid, ok := peerAllowed(c); !ok {
		s.log.Warn("control socket: refused a client", "uid", uid)
		enc.Encode(Line{Error: "permission denied: the control socket is for root"})
		return
	}
	br := bufio.NewReader(c)
	var req Request
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return
	}
	if err := json.Unmarshal(line, &req); err != nil {
		enc.Encode(Line{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "status":
		st, err := s.h.Status()
		if err != nil {
			enc.Encode(Line{Error: err.Error()})
			return
		}
		enc.Encode(Line{Status: &st})
	case "snapshot":
		ctx, cancel := context.WithCancel(s.ctx)
		defer cancel()
		// The client half-closes (or goes away) to end the snapshot early.
		go func() {
			io.Copy(io.Discard, br)
			cancel()
		}()
		w := bufio.NewWriterSize(c, 64<<10)
		var mu sync.Mutex
		// Records are flushed within 100 ms (batched under load); other
		// lines at once.
		pending := false
		send := func(l Line) error {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
			if l.Record == nil {
				return w.Flush()
			}
			if !pending {
				pending = true
				time.AfterFunc(100*time.Millisecond, func() {
					mu.Lock()
					defer mu.Unlock()
					pending = false
					w.Flush()
				})
			}
			return nil
		}
		if err := s.h.Snapshot(ctx, req, send); err != nil {
			send(Line{Error: err.Error(), Refused: errors.Is(err, ErrRefused)})
		}
		mu.Lock()
		w.Flush()
		mu.Unlock()
	case "top":
		ctx, cancel := context.WithCancel(s.ctx)
		defer cancel()
		go func() {
			io.Copy(io.Discard, br)
			cancel()
		}()
		send := func(l Line) error { return enc.Encode(l) }
		if err := s.h.Top(ctx, req, send); err != nil {
			send(Line{Error: err.Error(), Refused: errors.Is(err, ErrRefused)})
		}
	default:
		enc.Encode(Line{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

// ErrRefused marks a Handler's error about the request itself: the
// client is told it is its to change (Line.Refused).
var ErrRefused = errors.New("refused")

type refusedError struct{ msg string }

func (e refusedError) Error() string        { return e.msg }
func (e refusedError) Is(target error) bool { return target == ErrRefused }

// Refuse is an error that says the request cannot be served as asked.
func Refuse(format string, args ...any) error {
	return refusedError{fmt.Sprintf(format, args...)}
}
