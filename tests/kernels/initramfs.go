package main

import (
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// guestBinDir is where the guest finds the binaries built on the host.
const guestBinDir = "/opt/tracerd"

// marker starts every line /init prints for the host to parse.
const marker = "@@tracerd-kernels@@"

//go:embed init.sh.tmpl
var initScript string

// guestTools are the host's programs the tests exec (by PATH) or /init
// calls, at the path they get in the guest. Busybox has applets of the
// same names, but not the options the tests use (taskset -c) nor nft.
var guestTools = map[string]string{
	"nft":     "/usr/sbin/nft",
	"tc":      "/usr/sbin/tc",
	"ip":      "/usr/sbin/ip",
	"taskset": "/usr/bin/taskset",
	"ss":      "/usr/bin/ss",
}

// stageBase lays out the part of the initramfs every kernel shares:
// directories, busybox, the tools with their libraries, the binaries
// from binDir and /init.
func stageBase(dst, binDir string, scenarios []scenario, testTimeout string) error {
	for dir, mode := range map[string]os.FileMode{
		".": 0o755, "bin": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
		"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "root": 0o700,
		"tmp": 0o1777, "var/tmp": 0o1777, strings.TrimPrefix(guestBinDir, "/"): 0o755,
	} {
		p := filepath.Join(dst, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		// Explicitly: MkdirAll's mode goes through the umask, and the
		// tests run processes as uid 65534 that need / and /tmp.
		if err := os.Chmod(p, mode|os.ModeDir); err != nil {
			return err
		}
	}
	if err := stageBusybox(dst); err != nil {
		return err
	}
	for name, guestPath := range guestTools {
		if err := stageTool(dst, name, guestPath); err != nil {
			return err
		}
	}
	if err := stageEtc(dst); err != nil {
		return err
	}
	bins, err := os.ReadDir(binDir)
	if err != nil {
		return err
	}
	for _, b := range bins {
		if err := copyFile(filepath.Join(binDir, b.Name()), filepath.Join(dst, guestBinDir, b.Name())); err != nil {
			return err
		}
	}
	return writeInit(filepath.Join(dst, "init"), scenarios, testTimeout)
}

// stageBusybox installs the static busybox with a symlink per applet in
// /bin; /sbin is /bin, where the kernel looks for modprobe.
func stageBusybox(dst string) error {
	host, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w (install busybox-static)", err)
	}
	if err := checkStatic(host); err != nil {
		return fmt.Errorf("%w: install busybox-static", err)
	}
	if err := copyFile(host, filepath.Join(dst, "bin/busybox")); err != nil {
		return err
	}
	list, err := output(host, "--list")
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(list) {
		link := filepath.Join(dst, "bin", applet)
		if applet == "busybox" || exists(link) {
			continue
		}
		if err := os.Symlink("busybox", link); err != nil {
			return err
		}
	}
	return os.Symlink("bin", filepath.Join(dst, "sbin"))
}

// lddLine matches the libraries ldd lists: "libc.so.6 => /lib/…/libc.so.6 (0x…)"
// and the loader, "/lib64/ld-linux-x86-64.so.2 (0x…)".
var lddLine = regexp.MustCompile(`(?:=> )?(/\S+) \(0x[0-9a-f]+\)`)

// stageTool copies a host program and the shared libraries ldd names,
// each to the path the program will ask for.
func stageTool(dst, name, guestPath string) error {
	host, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s: %w (tests/tools/install-deps.sh kernels installs it)", name, err)
	}
	if err := copyFile(host, filepath.Join(dst, guestPath)); err != nil {
		return err
	}
	out, err := output("ldd", host)
	if err != nil {
		return err
	}
	for _, m := range lddLine.FindAllStringSubmatch(out, -1) {
		if err := copyFile(m[1], filepath.Join(dst, m[1])); err != nil {
			return err
		}
	}
	return nil
}

// stageEtc writes the few files of /etc that programs look up: users
// for uid 65534, protocol and service names for nft.
func stageEtc(dst string) error {
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dst, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, name := range []string{"etc/protocols", "etc/services"} {
		if exists("/" + name) {
			if err := copyFile("/"+name, filepath.Join(dst, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeInit(path string, scenarios []scenario, testTimeout string) error {
	t := template.Must(template.New("init").Funcs(template.FuncMap{"quote": shellQuote}).Parse(initScript))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	defer f.Close()
	err = t.Execute(f, struct {
		BinDir, Marker, TestTimeout string
		Scenarios                   []scenario
	}{guestBinDir, marker, testTimeout, scenarios})
	if err != nil {
		return err
	}
	return f.Close()
}

// shellQuote makes s one word for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeCpio archives the tree at dir as cpio newc, owned by root, gzip
// -1 (the kernel unpacks it at boot; fast to make, small enough), and
// appends it to w. The kernel unpacks concatenated archives in turn, so
// the shared part and a kernel's modules are archived once each.
func writeCpio(w io.Writer, dir string, withRoot bool) error {
	var names []string // WalkDir's lexical order: directories before their entries
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel != "." || withRoot {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	cmd := exec.Command("cpio", "--create", "--format=newc", "--owner=0:0", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	cmd.Stdout = zw
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio in %s: %v: %s", dir, err, stderr.String())
	}
	return zw.Close()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// copyFile copies src (following links) to dst with src's permissions,
// making dst's directory.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
