package control

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/live"
	"github.com/tracerd/tracerd/internal/loader"
)

type fake struct{}

func (fake) Status() (Status, error) {
	return Status{PID: 7, Requests: 7, Counters: loader.Counters{Records: 3}, Exporters: Exporters{OTLP: &OTLP{Endpoint: "e", Stats: OTLPStats{ByRatio: 2}}}}, nil
}

func (fake) Snapshot(ctx context.Context, req Request, send func(Line) error) error {
	if req.Top < 0 {
		return Refuse("top %d", req.Top)
	}
	if req.Top > 100 {
		return errors.New("broken")
	}
	send(Line{Note: "note"})
	send(Line{Record: json.RawMessage(`{"pid":1}`)})
	select {
	case <-ctx.Done():
	case <-time.After(req.Duration):
	}
	return send(Line{End: &End{Requests: 1, Summary: "s", Kernel: &loader.Counters{ConnsTraced: 5}}})
}

func (fake) Top(ctx context.Context, req Request, send func(Line) error) error {
	if req.Every <= 0 {
		return Refuse("every %s", req.Every)
	}
	for i := int64(1); ; i++ {
		if err := send(Line{Live: &live.View{Requests: i}}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(req.Every):
		}
	}
}

// TestTop: views stream until the client has enough; a refusal is
// ErrRefused.
func TestTop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, fake{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	enough := errors.New("enough")
	var got []int64
	err = c.Top(Request{Every: time.Millisecond}, func(v live.View) error {
		if got = append(got, v.Requests); len(got) == 3 {
			return enough
		}
		return nil
	})
	c.Close()
	if !errors.Is(err, enough) || !reflect.DeepEqual(got, []int64{1, 2, 3}) {
		t.Errorf("top: %v %v", got, err)
	}
	c, _ = Dial(path)
	defer c.Close()
	if err := c.Top(Request{}, func(live.View) error { return nil }); !errors.Is(err, ErrRefused) {
		t.Errorf("refused top: %v", err)
	}
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
	status, err := c.Status()
	want, _ := fake{}.Status()
	if err != nil || !reflect.DeepEqual(status, want) {
		t.Errorf("status: %v %+v", err, status)
	}
	c.Close()

	// A snapshot ended early by the client's half-close still ends properly.
	c, _ = Dial(path)
	var lines []Line
	start := time.Now()
	end, err := c.Snapshot(Request{Duration: time.Minute}, func(l Line) error {
		lines = append(lines, l)
		if l.Record != nil {
			c.EndEarly()
		}
		return nil
	})
	if err != nil || end == nil || end.Summary != "s" || end.Kernel.ConnsTraced != 5 || len(lines) != 3 || lines[0].Note != "note" || string(lines[1].Record) != `{"pid":1}` {
		t.Fatalf("snapshot: %v %+v, lines %+v", err, end, lines)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("half-close took %s to end the snapshot", time.Since(start))
	}
	c.Close()

	for top, refused := range map[int]bool{-1: true, 101: false} {
		c, _ = Dial(path)
		_, err := c.Snapshot(Request{Top: top}, func(Line) error { return nil })
		if err == nil || errors.Is(err, ErrRefused) != refused {
			t.Errorf("top %d: %v, want refused %v", top, err, refused)
		}
		c.Close()
	}

	raw, _ := net.Dial("unix", path)
	raw.Write([]byte(`{"op":"dance"}` + "\n"))
	var l Line
	json.NewDecoder(raw).Decode(&l)
	if !strings.Contains(l.Error, "unknown op") {
		t.Errorf("unknown op: %+v", l)
	}
	raw.Close()

	s.Close()
	if _, err := Dial(path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("after Close: %v, want ErrNoDaemon", err)
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
