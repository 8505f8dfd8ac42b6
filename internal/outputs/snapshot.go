package outputs

import (
	"fmt"
	"io"
	"os"

	"github.com/tracerd/tracerd/internal/config"
)

// Snapshot are a snapshot's files, standalone or through the daemon:
// the profile (-o) and the JSON lines (--json), with the summary on
// stdout, or on stderr when the JSON lines take stdout.
type Snapshot struct {
	profilePath string
	profile     *os.File  // -o, nil when not asked for
	JSON        io.Writer // --json, nil when not asked for
	Summary     io.Writer
	jsonFile    *os.File // JSON when it is a file of ours
}

// CheckSnapshot says early, without creating or truncating anything,
// whether -o and --json can be written.
func CheckSnapshot(out, jsonOut string) error {
	for flag, path := range map[string]string{"-o": out, "--json": jsonOut} {
		if path == "" || path == "-" {
			continue
		}
		if err := CheckWritable(path); err != nil {
			return config.Usage(fmt.Errorf("%s: %w", flag, err))
		}
	}
	return nil
}

// OpenSnapshot creates the files: out for the profile, jsonOut for the
// JSON lines ("-": stdout); "" is not asked for.
func OpenSnapshot(out, jsonOut string) (*Snapshot, error) {
	o := &Snapshot{profilePath: out, Summary: os.Stdout}
	if out != "" {
		f, err := Create(out, false)
		if err != nil {
			return nil, config.Usage(fmt.Errorf("-o: %w", err))
		}
		o.profile = f
	}
	switch jsonOut {
	case "":
	case "-":
		o.JSON, o.Summary = os.Stdout, os.Stderr
	default:
		f, err := Create(jsonOut, false)
		if err != nil {
			o.Close()
			return nil, config.Usage(fmt.Errorf("--json: %w", err))
		}
		o.jsonFile = f
		if o.JSON, err = FileWriter(f); err != nil {
			o.Close()
			return nil, fmt.Errorf("--json: %w", err)
		}
	}
	return o, nil
}

// Close closes the files (again, after WriteProfile: harmless).
func (o *Snapshot) Close() {
	if o.profile != nil {
		o.profile.Close()
	}
	if o.jsonFile != nil {
		o.jsonFile.Close()
	}
}

// WriteProfile writes the profile with write and closes its file; nil
// without -o.
func (o *Snapshot) WriteProfile(write func(io.Writer) error) error {
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

// SayProfile tells w where the profile went.
func (o *Snapshot) SayProfile(w io.Writer) {
	if o.profile != nil {
		fmt.Fprintf(w, "profile: %s (go tool pprof -http=: %s)\n", o.profilePath, o.profilePath)
	}
}
