// Package sdnotify speaks systemd's notification protocol: datagrams of
// newline-separated KEY=VALUE assignments sent to the unix socket named
// by $NOTIFY_SOCKET (a path, or an abstract name starting with '@').
package sdnotify

import (
	"errors"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to the service manager; a nil Notifier (no
// NOTIFY_SOCKET) ignores them.
type Notifier struct {
	conn *net.UnixConn
}

// New reads NOTIFY_SOCKET. It returns nil, nil when tracerd does not run
// under a service manager.
func New() (*Notifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	} else if name[0] != '/' {
		return nil, errors.New("NOTIFY_SOCKET must be an absolute path or an abstract name (@...)")
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &Notifier{conn: conn}, nil
}

// Send sends one datagram, e.g. "READY=1\nSTATUS=tracing".
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(state))
	return err
}

// Close releases the socket.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return n.conn.Close()
}

// Ready says startup finished.
func (n *Notifier) Ready(status string) error { return n.Send("READY=1\nSTATUS=" + status) }

// Reloading says a reload started (systemd ≥ 253 wants MONOTONIC_USEC with it).
func (n *Notifier) Reloading() error {
	return n.Send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(MonotonicUsec(), 10))
}

// Stopping says shutdown started.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Watchdog is one keep-alive ping.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// WatchdogInterval is how often to ping: half of $WATCHDOG_USEC when it
// is set for this process (WATCHDOG_PID absent or ours), else 0.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec == 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
