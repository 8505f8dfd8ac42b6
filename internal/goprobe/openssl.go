package goprobe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/tracerd/tracerd/internal/loader"
)

// errNoOpenSSL: the process has no libssl mapped.
var errNoOpenSSL = errors.New("no libssl mapped")

// libsslOf finds the libssl shared object the process has mapped (from
// /proc/PID/maps), as a path through the process's root (a container's
// file is the container's).
func libsslOf(pid uint32) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if strings.HasPrefix(filepath.Base(path), "libssl.so") && strings.HasPrefix(path, "/") {
			return fmt.Sprintf("/proc/%d/root%s", pid, path), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errNoOpenSSL
}

// sslProbe is one libssl function probed: at its entry or its return.
type sslProbe struct {
	symbol string
	prog   string
	ret    bool
	cookie uint64
}

// sslProbes: handshakes end where SSL_do_handshake returns 1 (SSL_accept
// calls it); reads and writes of both APIs (the _ex ones: cookie 1).
var sslProbes = []sslProbe{
	{"SSL_do_handshake", loader.TracerdProgSslHandshakeRet, true, 0},
	{"SSL_read", loader.TracerdProgSslReadEntry, false, 0},
	{"SSL_read", loader.TracerdProgSslReadRet, true, 0},
	{"SSL_read_ex", loader.TracerdProgSslReadEntry, false, 1},
	{"SSL_read_ex", loader.TracerdProgSslReadRet, true, 1},
	{"SSL_write", loader.TracerdProgSslWriteEntry, false, 0},
	{"SSL_write_ex", loader.TracerdProgSslWriteEntry, false, 1},
}

// sslTarget stands for every libssl probe in the rate bound (Enforce):
// past it, all of them go.
var sslTarget = target{symbol: "libssl SSL_*", group: "openssl"}

// attachOpenSSL probes the libssl a process that is not a Go executable
// has mapped, for that process alone. errNoOpenSSL when it has none.
func (m *Manager) attachOpenSSL(pid uint32) error {
	lib, err := libsslOf(pid)
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable(lib)
	if err != nil {
		return fmt.Errorf("libssl of pid %d: %w", pid, err)
	}
	progs := m.tracer.Programs()
	var links []link.Link
	var errs []error
	for _, sp := range sslProbes {
		prog := progs[sp.prog]
		if prog == nil {
			errs = append(errs, fmt.Errorf("program %s not loaded", sp.prog))
			continue
		}
		opts := &link.UprobeOptions{PID: int(pid), Cookie: sp.cookie}
		var l link.Link
		if sp.ret {
			l, err = ex.Uretprobe(sp.symbol, prog, opts)
		} else {
			l, err = ex.Uprobe(sp.symbol, prog, opts)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sp.symbol, err))
			continue
		}
		links = append(links, l)
	}
	if len(errs) > 0 {
		for _, l := range links {
			l.Close()
		}
		return fmt.Errorf("libssl probes of pid %d (%s): %w", pid, lib, errors.Join(errs...))
	}
	p := &proc{links: map[string][]link.Link{"openssl": links}}
	p.probes = Probes{TLS: true, OpenSSL: true, AttachedAt: time.Now().UnixNano()}
	m.mu.Lock()
	if old := m.procs[pid]; old != nil {
		closeLinks(old.links)
	}
	m.procs[pid] = p
	m.tell(Update{PID: pid, Probes: p.probes, OK: true})
	m.mu.Unlock()
	m.log.Info("libssl probes attached", "pid", pid, "lib", lib, "links", len(links))
	return nil
}
