package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// guestModules are loaded at boot, in this order after their
// dependencies. The cloud kernels build these as modules (KERNELS.md):
// nf_tables (inet tables, filter chains, payload, meta, counter) and
// nft_numgen for TestRetransmits' drop rule; veth and sch_netem for
// tests that build links with delay or loss.
var guestModules = []string{"nf_tables", "nft_numgen", "veth", "sch_netem"}

// moduleDeps reads modules.dep: module path → the paths it needs, all
// relative to the module directory.
func moduleDeps(modDir string) (map[string][]string, error) {
	b, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		mod, need, ok := strings.Cut(line, ":")
		if ok {
			deps[mod] = strings.Fields(need)
		}
	}
	return deps, nil
}

// moduleName is what a module path is called: kernel/net/x/nf_tables.ko.xz → nf_tables.
func moduleName(path string) string {
	base := filepath.Base(path)
	return base[:strings.Index(base, ".ko")]
}

// loadOrder returns the paths of names and everything they need, each
// after its dependencies.
func loadOrder(deps map[string][]string, names []string) ([]string, error) {
	byName := map[string]string{}
	for path := range deps {
		byName[moduleName(path)] = path
	}
	var order []string
	seen := map[string]bool{}
	var visit func(path string)
	visit = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		for _, d := range deps[path] {
			visit(d)
		}
		order = append(order, path)
	}
	for _, n := range names {
		path, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("module %s is not in modules.dep (built into this kernel?)", n)
		}
		visit(path)
	}
	return order, nil
}

// stageModules copies the modules the guest loads under
// dst/lib/modules/RELEASE, uncompressed (busybox insmod cannot read
// .ko.xz), and writes load-order there: one .ko path per line for /init.
func stageModules(k *kernel, dst string) error {
	deps, err := moduleDeps(k.moduleDir())
	if err != nil {
		return err
	}
	order, err := loadOrder(deps, guestModules)
	if err != nil {
		return fmt.Errorf("%s: %w", k.release, err)
	}
	guestDir := filepath.Join("/lib/modules", k.release)
	var list []string
	for _, rel := range order {
		plain := strings.TrimSuffix(strings.TrimSuffix(rel, ".xz"), ".zst")
		out := filepath.Join(dst, guestDir, plain)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := uncompressModule(filepath.Join(k.moduleDir(), rel), out); err != nil {
			return err
		}
		list = append(list, filepath.Join(guestDir, plain))
	}
	return os.WriteFile(filepath.Join(dst, guestDir, "load-order"), []byte(strings.Join(list, "\n")+"\n"), 0o644)
}

func uncompressModule(src, dst string) error {
	switch filepath.Ext(src) {
	case ".ko":
		return copyFile(src, dst)
	case ".xz", ".zst":
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		defer f.Close()
		tool := map[string]string{".xz": "xz", ".zst": "zstd"}[filepath.Ext(src)]
		cmd := exec.Command(tool, "-dc", src)
		cmd.Stdout = f
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s -dc %s: %w", tool, src, err)
		}
		return f.Close()
	}
	return fmt.Errorf("%s: unknown module format", src)
}
