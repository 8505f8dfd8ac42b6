package goprobe

import (
	"errors"

	"github.com/tracerd/tracerd/internal/goinspect"
)

// Job says what to do with a process's probes.
type Job uint8

const (
	// AttachIfNew attaches unless the process already has probes (its
	// first traced connection, when it was probed at start).
	AttachIfNew Job = iota
	// Reattach replaces the probes (the process exec'd a new binary).
	Reattach
	// Remove detaches (the process exited).
	Remove
)

type job struct {
	pid  uint32
	what Job
}

// Enqueue asks for pid's probes to change, off the caller's goroutine:
// inspecting a binary takes time the ring-buffer reader must not spend.
func (m *Manager) Enqueue(pid uint32, what Job) {
	m.startWorker()
	select {
	case m.jobs <- job{pid, what}:
	default:
		m.log.Warn("Go probe queue full: process left to the kernel engine", "pid", pid)
	}
}

func (m *Manager) startWorker() {
	m.workerOnce.Do(func() {
		m.jobs = make(chan job, 1024)
		go func() {
			for j := range m.jobs {
				switch j.what {
				case AttachIfNew:
					m.mu.Lock()
					_, had := m.procs[j.pid]
					m.mu.Unlock()
					if !had {
						m.attachLogged(j.pid)
					}
				case Reattach:
					m.Detach(j.pid)
					m.attachLogged(j.pid)
				case Remove:
					m.Detach(j.pid)
				}
			}
		}()
	})
}

// attachLogged attaches and says why when it cannot: the process is then
// traced by the kernel engine alone.
func (m *Manager) attachLogged(pid uint32) {
	err := m.Attach(pid)
	switch {
	case err == nil:
	case errors.Is(err, goinspect.ErrNotGo):
		m.log.Debug("not a Go binary: kernel engine only", "pid", pid)
	default:
		m.log.Warn("Go probes incomplete or unavailable: kernel engine only where missing", "pid", pid, "error", err)
	}
}

// AttachNow attaches synchronously (at start, for processes selected by
// pid or name, so that their first requests are covered).
func (m *Manager) AttachNow(pid uint32) { m.attachLogged(pid) }
