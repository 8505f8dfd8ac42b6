package export

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/targets"
)

// Process is what tracerd knows of a traced process beyond the kernel
// record: its cgroups and what they say (systemd unit, container,
// Kubernetes pod). Values are immutable once made.
type Process struct {
	PID         uint32
	Comm        string
	Cgroups     []string // paths from /proc/PID/cgroup, one per hierarchy
	Unit        string   // systemd service unit without ".service", or ""
	ContainerID string
	PodUID      string
	read        time.Time
}

// ServiceRule names the service of the requests it matches, overriding
// the systemd unit and process name: pid:N, port:N (the local port a
// connection came on), comm:NAME, cgroup:PATH (the process is in PATH or
// below; PATH as in /proc/PID/cgroup, or a directory under /sys/fs/cgroup).
type ServiceRule struct {
	Kind, Value, Name string
}

// ParseServiceRule parses KIND:VALUE=NAME.
func ParseServiceRule(s string) (ServiceRule, error) {
	sel, name, ok := strings.Cut(s, "=")
	kind, value, ok2 := strings.Cut(sel, ":")
	if !ok || !ok2 || name == "" || value == "" {
		return ServiceRule{}, fmt.Errorf("%q is not KIND:VALUE=NAME (KIND: pid, port, comm or cgroup)", s)
	}
	switch kind {
	case "pid", "port":
		bits := 32
		if kind == "port" {
			bits = 16
		}
		if v, err := strconv.ParseUint(value, 10, bits); err != nil || v == 0 {
			return ServiceRule{}, fmt.Errorf("%q: %q is not a valid %s", s, value, kind)
		}
	case "comm":
	case "cgroup":
		if !strings.HasPrefix(value, "/") {
			return ServiceRule{}, fmt.Errorf("%q: the cgroup path must be absolute", s)
		}
		value = path.Clean(value)
	default:
		return ServiceRule{}, fmt.Errorf("%q: unknown selector %q (pid, port, comm or cgroup)", s, kind)
	}
	return ServiceRule{Kind: kind, Value: value, Name: name}, nil
}

func (rule ServiceRule) matches(r *correlate.Request, p *Process) bool {
	switch rule.Kind {
	case "pid":
		return strconv.FormatUint(uint64(r.PID), 10) == rule.Value
	case "port":
		return r.Conn.Local.IsValid() && strconv.Itoa(int(r.Conn.Local.Port())) == rule.Value
	case "comm":
		return r.Comm == targets.Comm(rule.Value)
	case "cgroup":
		for _, cg := range p.Cgroups {
			for a := cg; a != "/" && a != "." && a != ""; a = path.Dir(a) {
				if rule.Value == a || (strings.HasPrefix(rule.Value, "/sys/fs/cgroup/") && strings.HasSuffix(rule.Value, a)) {
					return true
				}
			}
		}
	}
	return false
}

// Processes identifies the process of each request, with a cache: a
// /proc read per new process, then a map lookup. Calls come from one
// goroutine (the pipeline's).
type Processes struct {
	rules    []ServiceRule
	procRoot string
	ttl      time.Duration
	cache    map[uint32]*Process
}

// maxProcesses bounds the cache; past it the cache starts over.
const maxProcesses = 4096

// NewProcesses returns a process cache that names services with rules
// first.
func NewProcesses(rules []ServiceRule) *Processes {
	return &Processes{rules: rules, procRoot: "/proc", ttl: time.Minute, cache: map[uint32]*Process{}}
}

// Identify returns the request's process and sets r.Service: the first
// matching rule, else the systemd unit, else the process name. A process
// is read again once a request of it ends more than the cache's ttl
// after it was read (the request's end, not the clock: no clock read
// per request; a request ends at most seconds before it gets here).
func (ps *Processes) Identify(r *correlate.Request) *Process {
	p := ps.cache[r.PID]
	if p == nil || p.Comm != r.Comm || r.EndUnixNano-p.read.UnixNano() > int64(ps.ttl) {
		if len(ps.cache) >= maxProcesses {
			clear(ps.cache)
		}
		p = ps.read(r.PID, r.Comm)
		ps.cache[r.PID] = p
	}
	r.Service = serviceName(r, p, ps.rules)
	return p
}

func serviceName(r *correlate.Request, p *Process, rules []ServiceRule) string {
	for _, rule := range rules {
		if rule.matches(r, p) {
			return rule.Name
		}
	}
	if p.Unit != "" {
		return p.Unit
	}
	if r.Service != "" {
		return r.Service
	}
	return r.Comm
}

// read looks the process up in /proc. A process gone already keeps its
// name and pid only.
func (ps *Processes) read(pid uint32, comm string) *Process {
	p := &Process{PID: pid, Comm: comm, read: time.Now()}
	if pid == 0 {
		return p
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", ps.procRoot, pid))
	if err != nil {
		return p
	}
	p.Cgroups, p.Unit, p.ContainerID, p.PodUID = ParseCgroups(string(b))
	return p
}

var (
	containerIDRe = regexp.MustCompile(`(?:^|[-/:.])([0-9a-f]{64})(?:$|[./])`)
	podUIDRe      = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:$|[./])`)
)

// ParseCgroups reads /proc/PID/cgroup: the paths of the process's
// cgroups; the systemd service unit (from the unified or name=systemd
// hierarchy: the innermost "*.service" that is not a user manager);
// and the container id (64 hex digits: docker-ID.scope,
// cri-containerd-ID.scope, crio-ID.scope, libpod-ID.scope, /docker/ID)
// and Kubernetes pod uid (kubepods…pod<uid>, underscores or dashes)
// when a path shows them.
func ParseCgroups(content string) (paths []string, unit, containerID, podUID string) {
	for line := range strings.Lines(content) {
		line = strings.TrimSpace(line)
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrl, p := parts[1], parts[2]
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
		if ctrl == "" || ctrl == "name=systemd" {
			if u := systemdUnit(p); u != "" && (unit == "" || ctrl == "") {
				unit = u
			}
		}
		if containerID == "" {
			if m := containerIDRe.FindAllStringSubmatch(p, -1); m != nil {
				containerID = m[len(m)-1][1]
			}
		}
		if podUID == "" {
			if m := podUIDRe.FindStringSubmatch(p); m != nil {
				podUID = strings.ReplaceAll(m[1], "_", "-")
			}
		}
	}
	return paths, unit, containerID, podUID
}

func systemdUnit(p string) string {
	parts := strings.Split(p, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		name, ok := strings.CutSuffix(parts[i], ".service")
		if !ok || name == "" || strings.HasPrefix(name, "user@") {
			continue
		}
		return name
	}
	return ""
}

// ParseResourceAttributes parses OTEL_RESOURCE_ATTRIBUTES
// ("key=value,key2=value2", values percent-encoded).
func ParseResourceAttributes(s string) ([]*commonpb.KeyValue, error) {
	var kvs []*commonpb.KeyValue
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", part)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q: %w", part, err)
		}
		kvs = append(kvs, strKV(k, dv))
	}
	return kvs, nil
}

// resourceKey: a resource is one process under one service name (a
// port rule can name two services in one process).
type resourceKey struct {
	p       *Process
	service string
}

// resources builds and caches OTLP resources (exporter goroutine only).
type resources struct {
	host  string
	extra []*commonpb.KeyValue
	m     map[resourceKey]*resourcepb.Resource
}

func newResources(host string, extra []*commonpb.KeyValue) *resources {
	return &resources{host: host, extra: extra, m: map[resourceKey]*resourcepb.Resource{}}
}

// get returns the resource of a request's process: service.name,
// host.name, process.pid, process.executable.name, container.id and
// k8s.pod.uid when known, then OTEL_RESOURCE_ATTRIBUTES (which cannot
// override what tracerd identified).
func (rs *resources) get(p *Process, service string) *resourcepb.Resource {
	key := resourceKey{p, service}
	if res := rs.m[key]; res != nil {
		return res
	}
	if len(rs.m) >= maxProcesses {
		clear(rs.m)
	}
	res := ResourceOf(p, service, rs.host, rs.extra)
	rs.m[key] = res
	return res
}

// ResourceOf builds the resource of one traced process.
func ResourceOf(p *Process, service, host string, extra []*commonpb.KeyValue) *resourcepb.Resource {
	attrs := []*commonpb.KeyValue{strKV("service.name", service)}
	if host != "" {
		attrs = append(attrs, strKV("host.name", host))
	}
	if p.PID != 0 {
		attrs = append(attrs, intKV("process.pid", int64(p.PID)))
	}
	if p.Comm != "" {
		attrs = append(attrs, strKV("process.executable.name", p.Comm))
	}
	if p.ContainerID != "" {
		attrs = append(attrs, strKV("container.id", p.ContainerID))
	}
	if p.PodUID != "" {
		attrs = append(attrs, strKV("k8s.pod.uid", p.PodUID))
	}
	for _, kv := range extra {
		if !slices.ContainsFunc(attrs, func(a *commonpb.KeyValue) bool { return a.Key == kv.Key }) {
			attrs = append(attrs, kv)
		}
	}
	return &resourcepb.Resource{Attributes: attrs}
}
