package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "notify")
		env := path
		if abstract {
			path = "\x00tracerd-test-" + strconv.Itoa(os.Getpid())
			env = "@" + path[1:]
		}
		l := listen(t, path)
		t.Setenv("NOTIFY_SOCKET", env)
		n, err := New()
		if err != nil || n == nil {
			t.Fatal(n, err)
		}
		n.Ready("tracing")
		if got := recv(t, l); got != "READY=1\nSTATUS=tracing" {
			t.Errorf("got %q", got)
		}
		n.Watchdog()
		if got := recv(t, l); got != "WATCHDOG=1" {
			t.Errorf("got %q", got)
		}
		n.Close()
	}
}

func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := New()
	if n != nil || err != nil {
		t.Fatal(n, err)
	}
	if err := n.Ready("x"); err != nil { // nil notifier is a no-op
		t.Fatal(err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", "")
	if d := WatchdogInterval(); d != time.Second {
		t.Errorf("got %s", d)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if d := WatchdogInterval(); d != 0 {
		t.Errorf("other pid's watchdog: got %s", d)
	}
}
