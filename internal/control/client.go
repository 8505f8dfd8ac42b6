package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/live"
)

// ErrDenied means the socket is not this user's to use.
var ErrDenied = errors.New("permission denied")

type deniedError string

func (p deniedError) Error() string {
	return fmt.Sprintf("control socket %s: permission denied (it is root's: use sudo)", string(p))
}

func (p deniedError) Is(target error) bool { return target == ErrDenied }

// ErrNoDaemon means nothing listens on the socket.
var ErrNoDaemon = errors.New("no tracerd daemon")

// Client is one request to a running daemon.
type Client struct {
	conn *net.UnixConn
}

// Dial connects to a daemon. ErrNoDaemon when there is none; ErrDenied
// when the socket is not this user's.
func Dial(path string) (*Client, error) {
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
	return &Client{conn: c}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) send(req Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(append(b, '\n'))
	return err
}

// answerError is the daemon's error line as an error: ErrRefused when it
// refused the request as asked.
func answerError(l Line) error {
	if l.Refused {
		return refusedError{l.Error}
	}
	return errors.New(l.Error)
}

// Status asks for the daemon's status.
func (c *Client) Status() (Status, error) {
	if err := c.send(Request{Op: "status"}); err != nil {
		return Status{}, err
	}
	var l Line
	if err := json.NewDecoder(c.conn).Decode(&l); err != nil {
		return Status{}, fmt.Errorf("control socket: %w", err)
	}
	if l.Error != "" {
		return Status{}, answerError(l)
	}
	if l.Status == nil {
		return Status{}, errors.New("control socket: the answer holds no status")
	}
	return *l.Status, nil
}

// Snapshot runs a snapshot through the daemon: got sees each line of the
// answer as it comes (notes and records, then the end), and the end is
// returned. An error line ends it: ErrRefused when the daemon refused
// the request as asked. EndEarly makes the daemon end it now.
func (c *Client) Snapshot(req Request, got func(Line) error) (*End, error) {
	req.Op = "snapshot"
	if err := c.send(req); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c.conn)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("control socket: bad answer: %w", err)
		}
		if l.Error != "" {
			return nil, answerError(l)
		}
		if err := got(l); err != nil {
			return nil, err
		}
		if l.End != nil {
			return l.End, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return nil, errors.New("control socket: the daemon ended the snapshot without its summary (did it stop?)")
}

// Top asks for a view every req.Every and gives each to got, until got
// returns an error (returned) or the daemon ends the stream (an error:
// ErrRefused when it refused the request as asked).
func (c *Client) Top(req Request, got func(live.View) error) error {
	req.Op = "top"
	if err := c.send(req); err != nil {
		return err
	}
	dec := json.NewDecoder(bufio.NewReaderSize(c.conn, 64<<10))
	for {
		var l Line
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("control socket: the daemon ended the view (did it stop?)")
			}
			return fmt.Errorf("control socket: %w", err)
		}
		if l.Error != "" {
			return answerError(l)
		}
		if l.Live == nil {
			continue
		}
		if err := got(*l.Live); err != nil {
			return err
		}
	}
}

// EndEarly asks the daemon to end a snapshot now (half-close): it then
// sends what it has and the end.
func (c *Client) EndEarly() error { return c.conn.CloseWrite() }
