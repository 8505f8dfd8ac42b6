// Package deploy holds the service files; its test checks the
// Kubernetes manifest against the systemd unit.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tracerd/tracerd/internal/config"
)

// The subset of the Kubernetes API the manifest uses, field names as in
// the API reference. Decoding is strict: a misspelt or misplaced field
// (hostPid, securityContext at the pod level for capabilities, ...) fails.
type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   metadata          `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       *daemonSetSpec    `yaml:"spec"`
}

type metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type daemonSetSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	UpdateStrategy struct {
		Type          string `yaml:"type"`
		RollingUpdate struct {
			MaxUnavailable int `yaml:"maxUnavailable"`
		} `yaml:"rollingUpdate"`
	} `yaml:"updateStrategy"`
	Template struct {
		Metadata metadata `yaml:"metadata"`
		Spec     podSpec  `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	HostPID                       bool        `yaml:"hostPID"`
	AutomountServiceAccountToken  *bool       `yaml:"automountServiceAccountToken"`
	PriorityClassName             string      `yaml:"priorityClassName"`
	TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
	Tolerations                   []any       `yaml:"tolerations"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []volume    `yaml:"volumes"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Args            []string `yaml:"args"`
	Env             []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	SecurityContext struct {
		RunAsUser                *int  `yaml:"runAsUser"`
		Privileged               *bool `yaml:"privileged"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Resources     map[string]map[string]string `yaml:"resources"`
	LivenessProbe map[string]any               `yaml:"livenessProbe"`
	VolumeMounts  []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	HostPath *struct {
		Path string `yaml:"path"`
		Type string `yaml:"type"`
	} `yaml:"hostPath"`
}

func decodeManifest(t *testing.T) []object {
	t.Helper()
	data, err := os.ReadFile("kubernetes/tracerd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var objs []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("kubernetes/tracerd.yaml: %v", err)
		}
		objs = append(objs, o)
	}
	return objs
}

// unitCaps reads AmbientCapabilities= of the systemd unit.
func unitCaps(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("tracerd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "AmbientCapabilities="); ok {
			caps = append(caps, strings.Fields(v)...)
		}
	}
	slices.Sort(caps)
	return caps
}

func TestDaemonSet(t *testing.T) {
	objs := decodeManifest(t)
	var ds, cm *object
	for i := range objs {
		o := &objs[i]
		switch {
		case o.Kind == "DaemonSet" && o.APIVersion == "apps/v1":
			ds = o
		case o.Kind == "ConfigMap" && o.APIVersion == "v1":
			cm = o
		case o.Kind == "Namespace" && o.APIVersion == "v1":
		default:
			t.Errorf("unexpected object %s %s", o.APIVersion, o.Kind)
		}
		if o.Metadata.Name == "" {
			t.Errorf("%s without a name", o.Kind)
		}
	}
	if ds == nil || cm == nil || ds.Spec == nil {
		t.Fatal("want an apps/v1 DaemonSet and a v1 ConfigMap")
	}
	spec := ds.Spec
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	pod := spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID must be true (processes of every pod, /proc/PID/exe)")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must be unprivileged, without privilege escalation")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, "CAP_"+c)
	}
	slices.Sort(add)
	if want := unitCaps(t); len(want) == 0 || !slices.Equal(add, want) {
		t.Errorf("DaemonSet capabilities %v, the systemd unit's %v", add, want)
	}
	// The host paths tracerd reads, mounted read-only.
	vols := map[string]string{}
	for _, v := range pod.Volumes {
		switch {
		case v.HostPath != nil:
			vols[v.Name] = v.HostPath.Path
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != cm.Metadata.Name {
				t.Errorf("volume %s uses ConfigMap %s, not %s", v.Name, v.ConfigMap.Name, cm.Metadata.Name)
			}
			vols[v.Name] = "configmap"
		default:
			t.Errorf("volume %s has no source", v.Name)
		}
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			t.Errorf("mount %s names no volume", m.Name)
		}
		if strings.HasPrefix(src, "/sys/") && (src != m.MountPath || !m.ReadOnly) {
			t.Errorf("%s must be mounted read-only at the same path, got %s ro=%v", src, m.MountPath, m.ReadOnly)
		}
		mounts[m.MountPath] = true
	}
	for _, p := range []string{"/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/etc/tracerd"} {
		if !mounts[p] {
			t.Errorf("%s is not mounted", p)
		}
	}
	// The config in the ConfigMap is a valid tracerd config with OTLP
	// to a collector Service, and the container reads it.
	cfg, err := config.Parse("ConfigMap tracerd.yaml", []byte(cm.Data["tracerd.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Exporters.OTLP.Endpoint, ".svc") {
		t.Errorf("OTLP endpoint %q is not a Service", cfg.Exporters.OTLP.Endpoint)
	}
	if !slices.Contains(c.Args, "/etc/tracerd/tracerd.yaml") {
		t.Errorf("container args %v do not read /etc/tracerd/tracerd.yaml", c.Args)
	}
}
