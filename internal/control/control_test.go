package control

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fake struct{}

func (fake) Status() (any, error) { return map[string]int{"requests": 7}, nil }

func (fake) Snapshot(ctx context.Context, req Request, send func(Line) error) error {
	send(Line{Record: json.RawMessage(`{"pid":1}`)})
	select {
	case <-ctx.Done():
	case <-time.After(req.Duration):
	}
	return send(Line{End: &End{Requests: 1, Summary: "s"}})
}

func TestServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	s, err := Listen(path, fake{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	dir, _ := os.Stat(filepath.Dir(path))
	if st.Mode().Perm() != 0o600 || dir.Mode().Perm() != 0o700 {
		t.Errorf("socket %s, dir %s: want 0600 and 0700", st.Mode(), dir.Mode())
	}
	if _, err := Listen(path, fake{}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another tracerd") {
		t.Errorf("second daemon on the socket: %v", err)
	}

	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	Send(c, Request{Op: "status"})
	var l Line
	if err := json.NewDecoder(c).Decode(&l); err != nil || string(l.Status) != `{"requests":7}` {
		t.Errorf("status: %v %+v", err, l)
	}
	c.Close()

	// A snapshot ended early by the client's half-close still ends properly.
	c, _ = Dial(path)
	Send(c, Request{Op: "snapshot", Duration: time.Minute})
	dec := json.NewDecoder(c)
	if err := dec.Decode(&l); err != nil || l.Record == nil {
		t.Fatalf("first line: %v %+v", err, l)
	}
	start := time.Now()
	c.CloseWrite()
	if err := dec.Decode(&l); err != nil || l.End == nil || l.End.Summary != "s" {
		t.Fatalf("end: %v %+v", err, l)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("half-close took %s to end the snapshot", time.Since(start))
	}
	c.Close()

	c, _ = Dial(path)
	Send(c, Request{Op: "dance"})
	json.NewDecoder(c).Decode(&l)
	if !strings.Contains(l.Error, "unknown op") {
		t.Errorf("unknown op: %+v", l)
	}
	c.Close()

	s.Close()
	if _, err := Dial(path); err == nil {
		t.Error("socket still answers after Close")
	}
}

func TestStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	// A socket file left by a daemon that died.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := Dial(path); err == nil {
		t.Fatal("stale socket answers")
	}
	s, err := Listen(path, fake{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s.Close()
}
