package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// usageError marks errors that are the caller's to fix (exit 2).
type usageError struct{ error }

type uintList[T uint16 | uint32] struct {
	vals *[]T
	bits int
	name string
}

func (l uintList[T]) String() string { return "" }
func (l uintList[T]) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, l.bits)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a valid %s", part, l.name)
		}
		*l.vals = append(*l.vals, T(v))
	}
	return nil
}

// stringList is a repeatable flag; check, when set, vets each value.
type stringList struct {
	vals  *[]string
	check func(string) error
}

func (l stringList) String() string { return "" }
func (l stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	if l.check != nil {
		if err := l.check(s); err != nil {
			return err
		}
	}
	*l.vals = append(*l.vals, s)
	return nil
}

// targetFlags registers the selection flags shared by run and snapshot.
func targetFlags(fs *flag.FlagSet, t *loader.Targets) {
	fs.Var(uintList[uint32]{&t.PIDs, 32, "pid"}, "pid", "trace this process (repeatable, or comma-separated)")
	fs.Var(uintList[uint16]{&t.Ports, 16, "port"}, "port", "trace connections accepted on this local port (repeatable)")
	fs.Var(stringList{vals: &t.Comms}, "comm", "trace processes with this name (repeatable)")
	fs.Var(stringList{vals: &t.Cgroups}, "cgroup", "trace processes in this cgroup v1 or v2 directory and below (repeatable)")
}

// engineFlags registers the kernel engine's limits (and the log level).
func engineFlags(fs *flag.FlagSet, cfg *loader.Config) {
	logFlag(fs)
	fs.Func("idle-timeout", fmt.Sprintf("a keep-alive request is finished after this long without activity, %s (default %s)", config.IdleTimeout, cfg.IdleTimeout), func(s string) error {
		d, err := config.IdleTimeout.ParseDuration(s)
		if err != nil {
			return err
		}
		cfg.IdleTimeout = d
		return nil
	})
	fs.Var(stringList{vals: &cfg.SkipHooks, check: config.CheckSkipHook}, "skip-hook", "do not attach this optional hook (hook name from 'tracerd check'); its phases go absent")
	fs.Func("max-conns", fmt.Sprintf("traced connections held at once, %s (default %d)", config.MaxConns, cfg.MaxConns), func(s string) error {
		v, err := config.MaxConns.ParseCount(s)
		if err != nil {
			return err
		}
		cfg.MaxConns = uint32(v)
		return nil
	})
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stderr)
		fs.Usage()
		return err
	}
	if err != nil {
		return usageError{fmt.Errorf("%s (see 'tracerd %s -h')", flagError(err), fs.Name())}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (see 'tracerd %s -h')", fs.Arg(0), fs.Name())}
	}
	return nil
}

var invalidValueRe = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -(\S+): (.*)$`)

// flagError names the flag as the user spells it: the flag package's
// 'invalid value "x" for flag -name: why' becomes '--name: why' (with
// the value when why does not already show it).
func flagError(err error) string {
	m := invalidValueRe.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	val, _ := strconv.Unquote(m[1])
	if strings.Contains(m[3], val) {
		return fmt.Sprintf("--%s: %s", m[2], m[3])
	}
	return fmt.Sprintf("--%s %s: %s", m[2], m[1], m[3])
}

// fail prints err and returns its exit code.
func fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "tracerd:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// goOptions is Go awareness as flags and config set it.
type goOptions struct {
	Enabled bool
	// MaxCallsPerSecond bounds one probed function's calls per second
	// in one process before its probes go (0: no bound).
	MaxCallsPerSecond int
}

// goFlags registers --go and --go-max-calls, starting from def.
func goFlags(fs *flag.FlagSet, def goOptions) *goOptions {
	o := def
	fs.BoolVar(&o.Enabled, "go", def.Enabled, "attach uprobes to traced Go processes (GC pauses, serialization, net/http, gRPC); --go=false for the kernel engine alone")
	fs.Func("go-max-calls", fmt.Sprintf("a probed Go function firing more than this many times a second in one process has its probes switched off, %s (default %d)", config.GoMaxCalls, def.MaxCallsPerSecond), func(s string) error {
		n, err := config.GoMaxCalls.ParseCount(s)
		if err != nil {
			return err
		}
		o.MaxCallsPerSecond = int(n)
		return nil
	})
	return &o
}

// defaultGo is Go awareness unless told otherwise.
var defaultGo = goOptions{Enabled: true, MaxCallsPerSecond: goprobe.DefaultMaxCallsPerSecond}

// logLevel is set by --log-level (all commands that trace).
var logLevel = new(slog.LevelVar)

func logFlag(fs *flag.FlagSet) {
	fs.Func("log-level", "debug, info (default), warn or error", func(s string) error {
		return logLevel.UnmarshalText([]byte(s))
	})
}

// snapshotOutputs are a snapshot's files, opened before tracing (a bad
// path must not cost a trace), standalone or through the daemon.
type snapshotOutputs struct {
	profilePath string
	profile     *os.File  // -o, nil when not asked for
	json        io.Writer // --json, nil when not asked for
	summary     io.Writer // stdout, or stderr when the JSON lines take stdout
	jsonFile    *os.File  // json when it is a file of ours
}

// checkSnapshotOutputs says early, without creating or truncating
// anything, whether -o and --json can be written.
func checkSnapshotOutputs(out, jsonOut string) error {
	for flag, path := range map[string]string{"-o": out, "--json": jsonOut} {
		if path == "" || path == "-" {
			continue
		}
		if err := checkWritable(path); err != nil {
			return usageError{fmt.Errorf("%s: %w", flag, err)}
		}
	}
	return nil
}

// checkWritable: path is a writable regular file that createOutput
// accepts (no symbolic link, not another user's file in a directory
// every user may write to), or can be created.
func checkWritable(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if err := vetExisting(path, fi); err != nil {
			return err
		}
		if err := unix.Access(path, unix.W_OK); err != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := unix.Access(filepath.Dir(path), unix.W_OK|unix.X_OK); err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	return nil
}

func openSnapshotOutputs(out, jsonOut string) (*snapshotOutputs, error) {
	o := &snapshotOutputs{profilePath: out, summary: os.Stdout}
	if out != "" {
		f, err := createOutput(out, false)
		if err != nil {
			return nil, usageError{fmt.Errorf("-o: %w", err)}
		}
		o.profile = f
	}
	switch jsonOut {
	case "":
	case "-":
		o.json, o.summary = os.Stdout, os.Stderr
	default:
		f, err := createOutput(jsonOut, false)
		if err != nil {
			o.close()
			return nil, usageError{fmt.Errorf("--json: %w", err)}
		}
		o.json, o.jsonFile = f, f
	}
	return o, nil
}

// close closes the files (again, after writeProfile: harmless).
func (o *snapshotOutputs) close() {
	if o.profile != nil {
		o.profile.Close()
	}
	if o.jsonFile != nil {
		o.jsonFile.Close()
	}
}

// writeProfile writes the profile with write and closes its file; nil
// without -o.
func (o *snapshotOutputs) writeProfile(write func(io.Writer) error) error {
	if o.profile == nil {
		return nil
	}
	err := write(o.profile)
	if err == nil {
		err = o.profile.Close()
	}
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	return nil
}

// sayProfile tells where the profile went.
func (o *snapshotOutputs) sayProfile() {
	if o.profile != nil {
		fmt.Fprintf(os.Stderr, "profile: %s (go tool pprof -http=: %s)\n", o.profilePath, o.profilePath)
	}
}
