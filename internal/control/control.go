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
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/loader"
)

// Request is what a client asks.
type Request struct {
	Op string `json:"op"` // "status" or "snapshot"
	// snapshot
	Duration time.Duration  `json:"duration,omitempty"`
	Targets  loader.Targets `json:"targets"`
	Top      int            `json:"top,omitempty"`
	JSON     bool           `json:"json,omitempty"`    // stream the records
	Profile  bool           `json:"profile,omitempty"` // send a pprof profile at the end
}

// Line is one line of an answer; one field is set.
type Line struct {
	Error  string          `json:"error,omitempty"`
	Note   string          `json:"note,omitempty"`   // for the user's stderr
	Status json.RawMessage `json:"status,omitempty"` // status answer
	Record json.RawMessage `json:"record,omitempty"` // one request (JSON lines format)
	End    *End            `json:"end,omitempty"`    // snapshot finished
}

// End closes a snapshot.
type End struct {
	Requests int64  `json:"requests"`
	Dropped  int64  `json:"dropped"` // records not sent: the client read too slowly
	Profile  []byte `json:"profile,omitempty"`
	Summary  string `json:"summary"`
	Counters string `json:"counters"`
}

// Handler answers requests. Snapshot streams lines with send until the
// request is done (ctx ends early when the client half-closes or the
// daemon stops).
type Handler interface {
	Status() (any, error)
	Snapshot(ctx context.Context, req Request, send func(Line) error) error
}

// Server serves a Handler on a unix socket.
type Server struct {
	ln   *net.UnixListener
	path string
	h    Handler
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Listen creates the socket, root-only: its directory is made 0700 when
// missing, the socket itself 0600. A stale socket is replaced; a live one
// (another daemon) is an error.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another tracerd answers there", path)
	}
	_ = os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s := &Server{ln: ln, path: path, h: h, log: log}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting, ends running snapshots and removes the socket.
func (s *Server) Close() error {
	s.stop()
	err := s.ln.Close()
	s.wg.Wait()
	return err
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
		b, err := json.Marshal(st)
		if err != nil {
			enc.Encode(Line{Error: err.Error()})
			return
		}
		enc.Encode(Line{Status: b})
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
			send(Line{Error: err.Error()})
		}
		mu.Lock()
		w.Flush()
		mu.Unlock()
	default:
		enc.Encode(Line{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

// ErrDenied means the socket is not this user's to use.
var ErrDenied = errors.New("permission denied")

type deniedError string

func (p deniedError) Error() string {
	return fmt.Sprintf("control socket %s: permission denied (it is root's: use sudo)", string(p))
}

func (p deniedError) Is(target error) bool { return target == ErrDenied }

// ErrNoDaemon means nothing listens on the socket.
var ErrNoDaemon = errors.New("no tracerd daemon")

// Dial connects to a daemon. ErrNoDaemon when there is none; a
// permission error says the socket is root's.
func Dial(path string) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNoDaemon, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, deniedError(path)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return c, nil
}

// Send writes the request.
func Send(c *net.UnixConn, req Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}
