package targets

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A process that serves TCP holds a listening socket: that is how
// selections by port (and by cgroup, or none at all) find their running
// processes before their first accept, so that Go probes are on for the
// first request.

// listenInodes adds to inodes the socket inodes of the TCP sockets
// listening in the network namespace that pid's /proc/PID/net shows, on
// one of ports (on any port when ports is empty).
func listenInodes(pid string, ports []uint16, inodes map[uint64]bool) {
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/" + pid + "/net/" + name)
		if err != nil {
			continue
		}
		parseListeners(b, ports, inodes)
	}
}

// tcpListen is TCP_LISTEN in /proc/net/tcp's st column.
const tcpListen = "0A"

// parseListeners reads /proc/net/tcp{,6} text: "sl local_address
// rem_address st tx:rx tr:when retrnsmt uid timeout inode ...", the
// local address as HEX_ADDR:HEX_PORT.
func parseListeners(b []byte, ports []uint16, inodes map[uint64]bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		port, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil {
			continue
		}
		if len(ports) > 0 && !slices.Contains(ports, uint16(port)) {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		inodes[ino] = true
	}
}

// listeners keeps, of pids, those holding one of the listening TCP
// sockets on ports (any port when empty), in whatever network namespace
// each lives in.
func listeners(pids []string, ports []uint16) []string {
	seenNS := map[string]bool{}
	inodes := map[uint64]bool{}
	var out []string
	for _, pid := range pids {
		ns, err := os.Readlink("/proc/" + pid + "/ns/net")
		if err != nil {
			continue // gone, or not ours to read
		}
		if !seenNS[ns] {
			seenNS[ns] = true
			listenInodes(pid, ports, inodes)
		}
		if len(inodes) > 0 && holdsSocket(pid, inodes) {
			out = append(out, pid)
		}
	}
	return out
}

// holdsSocket says whether one of pid's file descriptors is one of the
// sockets inodes.
func holdsSocket(pid string, inodes map[uint64]bool) bool {
	dir := "/proc/" + pid + "/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		l, err := os.Readlink(dir + fd.Name())
		if err != nil || !strings.HasPrefix(l, "socket:[") || !strings.HasSuffix(l, "]") {
			continue
		}
		ino, err := strconv.ParseUint(l[len("socket:["):len(l)-1], 10, 64)
		if err == nil && inodes[ino] {
			return true
		}
	}
	return false
}
