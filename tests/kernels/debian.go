package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// kernelLine is a family of Debian 12 kernel packages: the harness boots
// the newest package of each line it is asked for.
type kernelLine struct {
	name string         // what -kernels calls it: "6.1"
	pkg  *regexp.Regexp // its package names
}

// The cloud flavour: it boots in seconds under TCG (KERNELS.md), and the
// -unsigned packages hold the same kernel as the signed ones.
var kernelLines = []kernelLine{
	{"6.1", regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$`)},
	{"6.12", regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$`)},
}

// kernel is one Debian kernel package, downloaded and unpacked.
type kernel struct {
	pkg     string // package name
	version string // package version
	deb     string // the .deb in the cache
	root    string // where it is unpacked (boot/, lib/modules/)
	release string // uname -r, the directory under lib/modules
	vmlinuz string
}

func (k *kernel) moduleDir() string { return filepath.Join(k.root, "lib/modules", k.release) }

// resolveKernel turns a -kernels entry (a line name or a package name)
// into the package to boot: the newest apt knows, or, when apt cannot
// say (no package lists), the newest one already in the cache.
func resolveKernel(cache, want string) (*kernel, error) {
	pattern := regexp.MustCompile("^" + regexp.QuoteMeta(want) + "$")
	known := false
	for _, l := range kernelLines {
		if l.name == want {
			pattern, known = l.pkg, true
		}
	}
	if !known && !strings.HasPrefix(want, "linux-image-") {
		return nil, fmt.Errorf("-kernels: %q is neither a kernel line (%s) nor a linux-image package", want, lineNames())
	}
	k, aptErr := newestFromApt(pattern)
	if aptErr == nil {
		return k, nil
	}
	k, err := newestCached(cache, pattern)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: apt: %v; cache: %v", want, aptErr, err)
	}
	logf("kernel %s: apt cannot say (%v); using the cached %s %s", want, aptErr, k.pkg, k.version)
	return k, nil
}

func lineNames() string {
	var names []string
	for _, l := range kernelLines {
		names = append(names, l.name)
	}
	return strings.Join(names, ", ")
}

// newestFromApt asks apt for the packages whose names match pattern and
// picks the one with the newest installable version. apt-cache search
// also lists names that no source offers any more (Candidate: (none)),
// hence the policy look-up.
func newestFromApt(pattern *regexp.Regexp) (*kernel, error) {
	names, err := aptNames(pattern)
	if err == nil && len(names) == 0 {
		// A fresh machine has no package lists yet.
		logf("no package matches %s: apt-get update", pattern)
		if _, err = output("apt-get", "update", "-qq"); err == nil {
			names, err = aptNames(pattern)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no package matches")
	}
	out, err := output("apt-cache", append([]string{"policy"}, names...)...)
	if err != nil {
		return nil, err
	}
	var best *kernel
	for name, cand := range candidates(out) {
		if best == nil || debNewer(cand, best.version) {
			best = &kernel{pkg: name, version: cand}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("none of %d matching packages is installable", len(names))
	}
	return best, nil
}

// aptNames lists the packages apt knows whose names match pattern.
func aptNames(pattern *regexp.Regexp) ([]string, error) {
	out, err := output("apt-cache", "search", "--names-only", strings.TrimSuffix(strings.TrimPrefix(pattern.String(), "^"), "$"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, " - "); ok && pattern.MatchString(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// candidates reads `apt-cache policy` output: package → candidate
// version, leaving out packages without one.
func candidates(policy string) map[string]string {
	c := map[string]string{}
	name := ""
	for _, line := range strings.Split(policy, "\n") {
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			name = strings.TrimSuffix(line, ":")
		} else if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate: "); ok && v != "(none)" && name != "" {
			c[name] = v
		}
	}
	return c
}

// debNewer reports whether Debian version a is newer than b.
func debNewer(a, b string) bool {
	return exec.Command("dpkg", "--compare-versions", a, "gt", b).Run() == nil
}

// newestCached picks, among the cached .debs, the newest package whose
// name matches pattern.
func newestCached(cache string, pattern *regexp.Regexp) (*kernel, error) {
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", "*.deb"))
	var best *kernel
	for _, deb := range debs {
		name, version, err := debIdentity(deb)
		if err != nil || !pattern.MatchString(name) {
			continue
		}
		if best == nil || debNewer(version, best.version) {
			best = &kernel{pkg: name, version: version, deb: deb}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no matching package in %s", filepath.Join(cache, "debs"))
	}
	return best, nil
}

func debIdentity(deb string) (name, version string, err error) {
	out, err := output("dpkg-deb", "--show", "--showformat=${Package} ${Version}", deb)
	if err != nil {
		return "", "", err
	}
	name, version, _ = strings.Cut(strings.TrimSpace(out), " ")
	return name, version, nil
}

// fetch makes sure k's .deb is in the cache and unpacked there (never
// installed), and finds its kernel image and module tree. Work already
// done by an earlier run is kept.
func fetch(cache string, k *kernel) error {
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	if k.deb == "" {
		deb, err := download(debs, k.pkg, k.version)
		if err != nil {
			return err
		}
		k.deb = deb
	}
	k.root = filepath.Join(cache, "unpacked", k.pkg+"_"+k.version)
	if err := unpack(k.deb, k.root); err != nil {
		return err
	}
	rels, err := os.ReadDir(filepath.Join(k.root, "lib/modules"))
	if err != nil || len(rels) != 1 {
		return fmt.Errorf("%s: want one directory under lib/modules: %v", k.deb, err)
	}
	k.release = rels[0].Name()
	k.vmlinuz = filepath.Join(k.root, "boot", "vmlinuz-"+k.release)
	if _, err := os.Stat(k.vmlinuz); err != nil {
		return err
	}
	// The packages carry no modules.dep (a postinst makes it).
	if _, err := os.Stat(filepath.Join(k.moduleDir(), "modules.dep")); err != nil {
		if _, err := output("depmod", "-b", k.root, k.release); err != nil {
			return err
		}
	}
	return nil
}

// download fetches pkg=version into dir unless a .deb of that version
// is there already, and returns its path.
func download(dir, pkg, version string) (string, error) {
	if deb := cachedDeb(dir, pkg, version); deb != "" {
		return deb, nil
	}
	logf("downloading %s %s", pkg, version)
	// apt's sandbox user (_apt) cannot write to a root-owned cache: download as root.
	cmd := exec.Command("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg+"="+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %v\n%s", pkg, version, err, out)
	}
	if deb := cachedDeb(dir, pkg, version); deb != "" {
		return deb, nil
	}
	return "", fmt.Errorf("apt-get download %s=%s left no such .deb in %s", pkg, version, dir)
}

// cachedDeb is the .deb of pkg at version in dir, "" when absent.
func cachedDeb(dir, pkg, version string) string {
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	for _, deb := range debs {
		if _, v, err := debIdentity(deb); err == nil && v == version {
			return deb
		}
	}
	return ""
}

// unpack extracts deb into dir once; a finished extraction is marked so
// that an interrupted one is redone.
func unpack(deb, dir string) error {
	done := filepath.Join(dir, ".unpacked")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	logf("unpacking %s", filepath.Base(deb))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := output("dpkg-deb", "-x", deb, dir); err != nil {
		return err
	}
	return os.WriteFile(done, nil, 0o644)
}

// output runs a command and returns its stdout; the error carries its
// stderr.
func output(name string, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
