package export

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/config"
	"github.com/tracerd/tracerd/internal/correlate"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestResolveOTLPEndpoints(t *testing.T) {
	cases := []struct {
		name     string
		otlp     config.OTLP
		env      []string
		enabled  bool
		url      string
		protocol string
		insecure bool
	}{
		{name: "nothing set: off"},
		{name: "exporter none", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}},
		{name: "exporter otlp: default endpoint", env: []string{"OTEL_TRACES_EXPORTER", "otlp"},
			enabled: true, url: "http://localhost:4318/v1/traces", protocol: ProtocolHTTP, insecure: true},
		{name: "base endpoint gets /v1/traces", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp/"},
			enabled: true, url: "http://c:4318/otlp/v1/traces", protocol: ProtocolHTTP, insecure: true},
		{name: "traces endpoint as is", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c/custom"},
			enabled: true, url: "https://c:443/custom", protocol: ProtocolHTTP},
		{name: "flag wins over env", otlp: config.OTLP{Endpoint: "http://127.0.0.1:9999"}, env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:1", "OTEL_TRACES_EXPORTER", "none"},
			enabled: true, url: "http://127.0.0.1:9999/v1/traces", protocol: ProtocolHTTP, insecure: true},
		{name: "grpc default port, no path", otlp: config.OTLP{Endpoint: "http://c/x", Protocol: "grpc"},
			enabled: true, url: "http://c:4317", protocol: ProtocolGRPC, insecure: true},
		{name: "grpc protocol from env", env: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"},
			enabled: true, url: "http://c:4318/v1/traces", protocol: ProtocolHTTP, insecure: true},
		{name: "grpc host:port is TLS", otlp: config.OTLP{Endpoint: "c:4317", Protocol: "grpc"},
			enabled: true, url: "//c:4317", protocol: ProtocolGRPC},
		{name: "grpc host:port insecure", otlp: config.OTLP{Endpoint: "c:4317", Protocol: "grpc"}, env: []string{"OTEL_EXPORTER_OTLP_INSECURE", "true"},
			enabled: true, url: "//c:4317", protocol: ProtocolGRPC, insecure: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ResolveOTLP(c.otlp, config.Sampling{}, envOf(c.env...))
			if err != nil {
				t.Fatal(err)
			}
			if s.Enabled != c.enabled {
				t.Fatalf("enabled %v, want %v", s.Enabled, c.enabled)
			}
			if !c.enabled {
				return
			}
			if s.URL.String() != c.url || s.Protocol != c.protocol || s.Insecure != c.insecure {
				t.Errorf("got %s %s insecure=%v, want %s %s insecure=%v", s.URL, s.Protocol, s.Insecure, c.url, c.protocol, c.insecure)
			}
			if _, err := s.Client(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestResolveOTLPSettings(t *testing.T) {
	s, err := ResolveOTLP(config.OTLP{Endpoint: "http://c:4318", Headers: []string{"x-token=abc"}, Timeout: "3s", BatchDelay: "250ms"}, config.Sampling{},
		envOf("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=x%20y", "OTEL_EXPORTER_OTLP_TIMEOUT", "500",
			"OTEL_BSP_MAX_QUEUE_SIZE", "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000",
			"OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25",
			"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=a%2Cb"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Headers) != 1 || s.Headers["x-token"] != "abc" {
		t.Errorf("headers %v: the flag should replace the environment's", s.Headers)
	}
	if s.Timeout != 3*time.Second || s.BatchDelay != 250*time.Millisecond || s.QueueSpans != 100 || s.BatchSpans != 100 {
		t.Errorf("timeout %s delay %s queue %d batch %d", s.Timeout, s.BatchDelay, s.QueueSpans, s.BatchSpans)
	}
	if s.Sampler.Ratio != 0.25 || s.Sampler.Budget != DefaultLatencyBudget || s.Compression != "gzip" {
		t.Errorf("sampler %+v compression %s", s.Sampler, s.Compression)
	}
	if len(s.Resource) != 2 || s.Resource[1].Value.GetStringValue() != "a,b" {
		t.Errorf("resource %v", s.Resource)
	}
	s, err = ResolveOTLP(config.OTLP{Endpoint: "http://c:4318"}, config.Sampling{Ratio: "1", LatencyBudget: "0"},
		envOf("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=x%20y", "OTEL_EXPORTER_OTLP_TIMEOUT", "500"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Headers["b"] != "x y" || s.Timeout != 500*time.Millisecond || s.Sampler.Ratio != 1 || s.Sampler.Budget != 0 {
		t.Errorf("headers %v timeout %s sampler %+v", s.Headers, s.Timeout, s.Sampler)
	}
}

// TestResolveOTLPErrors: every mistake is reported at start, naming the
// flag or variable it came from.
func TestResolveOTLPErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o644)
	unreadable := filepath.Join(dir, "missing.pem")
	cases := []struct {
		otlp config.OTLP
		env  []string
		want string
	}{
		{config.OTLP{Endpoint: "collector:4318"}, nil, "--otlp-endpoint"},
		{config.OTLP{Endpoint: "ftp://c:21"}, nil, "scheme"},
		{config.OTLP{Endpoint: "http://:4318"}, nil, "no host"},
		{config.OTLP{Endpoint: "http://c:99999"}, nil, "bad port"},
		{config.OTLP{Endpoint: "http://c:4318?x=1"}, nil, "query"},
		{config.OTLP{Endpoint: "c", Protocol: "grpc"}, nil, "host:port"},
		{config.OTLP{}, []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "::nonsense"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{config.OTLP{Endpoint: "http://c", Protocol: "http/json"}, nil, "http/json is not supported"},
		{config.OTLP{Endpoint: "http://c", Protocol: "thrift"}, nil, "unknown protocol"},
		{config.OTLP{Endpoint: "https://c", Certificate: unreadable}, nil, "--otlp-certificate: reading the CA certificate"},
		{config.OTLP{Endpoint: "https://c", Certificate: garbage}, nil, "holds no PEM certificate"},
		{config.OTLP{Endpoint: "https://c"}, []string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", garbage}, "without a client key"},
		{config.OTLP{Endpoint: "https://c", ClientKey: garbage}, nil, "without a client certificate"},
		{config.OTLP{Endpoint: "https://c", ClientCertificate: unreadable, ClientKey: garbage}, nil, "--otlp-client-certificate"},
		{config.OTLP{Endpoint: "https://c", ClientCertificate: garbage, ClientKey: garbage}, nil, "loading the client certificate"},
		{config.OTLP{Endpoint: "http://c", Certificate: garbage}, nil, "plaintext"},
		{config.OTLP{Endpoint: "http://c", Timeout: "10"}, nil, "--otlp-timeout"},
		{config.OTLP{Endpoint: "http://c"}, []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}, "milliseconds"},
		{config.OTLP{QueueSize: "0"}, nil, "--otlp-queue-size"},
		{config.OTLP{Endpoint: "http://c", Compression: "zstd"}, nil, "compression"},
		{config.OTLP{Endpoint: "http://c", Headers: []string{"novalue"}}, nil, "--otlp-header"},
		{config.OTLP{}, []string{"OTEL_TRACES_EXPORTER", "jaeger"}, "OTEL_TRACES_EXPORTER"},
		{config.OTLP{Endpoint: "http://c"}, []string{"OTEL_RESOURCE_ATTRIBUTES", "noequals"}, "OTEL_RESOURCE_ATTRIBUTES"},
	}
	for _, c := range cases {
		_, err := ResolveOTLP(c.otlp, config.Sampling{}, envOf(c.env...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %v: error %v, want one mentioning %q", c.otlp, c.env, err, c.want)
		}
	}
	for _, c := range []struct {
		sampling config.Sampling
		want     string
	}{
		{config.Sampling{Ratio: "2"}, "--sample-ratio"},
		{config.Sampling{LatencyBudget: "fast"}, "--latency-budget"},
	} {
		_, err := ResolveOTLP(config.OTLP{Endpoint: "http://c"}, c.sampling, envOf())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.sampling, err, c.want)
		}
	}
}

// TestResolveOTLPTLS loads a CA and a client key pair made here.
func TestResolveOTLPTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	s, err := ResolveOTLP(config.OTLP{Endpoint: "https://c:4318"}, config.Sampling{},
		envOf("OTEL_EXPORTER_OTLP_CERTIFICATE", cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert, "OTEL_EXPORTER_OTLP_CLIENT_KEY", keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if s.Insecure || s.TLS == nil || s.TLS.RootCAs == nil || len(s.TLS.Certificates) != 1 {
		t.Fatalf("TLS not set up: %+v", s.TLS)
	}
	if !strings.Contains(s.Endpoint(), "client certificate") {
		t.Errorf("endpoint description %q", s.Endpoint())
	}
}

func TestOTLPParseCgroups(t *testing.T) {
	const id = "8f2b9c6e0d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c"
	cases := []struct {
		name, content, unit, container, pod string
	}{
		{"systemd service (v2)", "0::/system.slice/nginx.service\n", "nginx", "", ""},
		{"user service under the user manager", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/api.service\n", "api", "", ""},
		{"user manager itself is no service", "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n", "", "", ""},
		{"session scope", "0::/user.slice/user-0.slice/session-3.scope\n", "", "", ""},
		{"docker (systemd driver)", "0::/system.slice/docker-" + id + ".scope\n", "", id, ""},
		{"docker (cgroupfs, v1)", "12:pids:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", "", id, ""},
		{"kubernetes, systemd driver",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d6d8e5c_2f1b_4c3a_9e8d_7f6a5b4c3d2e.slice/cri-containerd-" + id + ".scope\n",
			"", id, "0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e"},
		{"kubernetes, cgroupfs driver v1",
			"11:memory:/kubepods/besteffort/pod0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e/" + id + "\n10:cpu:/kubepods/besteffort/pod0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e/" + id + "\n",
			"", id, "0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e"},
		{"crio", "0::/kubepods.slice/kubepods-pod0d6d8e5c_2f1b_4c3a_9e8d_7f6a5b4c3d2e.slice/crio-" + id + ".scope\n", "", id, "0d6d8e5c-2f1b-4c3a-9e8d-7f6a5b4c3d2e"},
		{"a 32-hex-digit name is no container", "4:memory:/process_api/6ac9d0f437f1268e671159aff222b488\n0::/\n", "", "", ""},
		{"a longer hex run is no container", "0::/x/" + id + "ff\n", "", "", ""},
	}
	for _, c := range cases {
		paths, unit, container, pod := ParseCgroups(c.content)
		if unit != c.unit || container != c.container || pod != c.pod || len(paths) == 0 {
			t.Errorf("%s: unit %q container %q pod %q paths %q; want %q %q %q", c.name, unit, container, pod, paths, c.unit, c.container, c.pod)
		}
	}
}

func TestOTLPServiceRules(t *testing.T) {
	if _, err := ParseServiceRule("port:8080"); err == nil {
		t.Error("a rule without a name parsed")
	}
	for _, bad := range []string{"port:0=x", "pid:abc=x", "host:a=x", "cgroup:relative=x", "=x"} {
		if _, err := ParseServiceRule(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	var rules []ServiceRule
	for _, s := range []string{"port:9090=admin", "cgroup:/sys/fs/cgroup/pids/team/a=team-a", "comm:worker=jobs", "comm:averyveryverylongname=long", "pid:7=seven"} {
		r, err := ParseServiceRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	dir := t.TempDir()
	write := func(pid, content string) {
		os.MkdirAll(filepath.Join(dir, pid), 0o755)
		os.WriteFile(filepath.Join(dir, pid, "cgroup"), []byte(content), 0o644)
	}
	write("1", "0::/system.slice/api.service\n")
	write("2", "8:pids:/team/a/job1\n0::/\n")
	write("3", "0::/\n")
	ps := NewProcesses(rules)
	ps.procRoot = dir
	req := func(pid uint32, comm string, port uint16) *correlate.Request {
		return &correlate.Request{PID: pid, Comm: comm, Service: comm, Conn: correlate.Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}}
	}
	for _, c := range []struct {
		r    *correlate.Request
		want string
	}{
		{req(1, "api-bin", 8080), "api"},        // systemd unit
		{req(1, "api-bin", 9090), "admin"},      // port rule first
		{req(2, "job", 80), "team-a"},           // cgroup rule (v1 directory)
		{req(3, "worker", 80), "jobs"},          // comm rule
		{req(3, "other", 80), "other"},          // the process name
		{req(3, "averyveryverylo", 80), "long"}, // comm rule, on the name as the kernel keeps it
		{req(7, "gone", 80), "seven"},           // pid rule, no /proc entry
		{req(8, "vanished", 80), "vanished"},    // no /proc entry
	} {
		p := ps.Identify(c.r)
		if c.r.Service != c.want {
			t.Errorf("pid %d comm %s port %d: service %q, want %q", c.r.PID, c.r.Comm, c.r.Conn.Local.Port(), c.r.Service, c.want)
		}
		if p.PID != c.r.PID {
			t.Errorf("process %d for pid %d", p.PID, c.r.PID)
		}
	}
	// A new program in the same pid is read again.
	write("3", "0::/system.slice/db.service\n")
	r := req(3, "postgres", 5432)
	p3 := ps.Identify(r)
	if r.Service != "db" {
		t.Errorf("after exec: service %q", r.Service)
	}
	// So is a process whose requests end more than the ttl after it was
	// read (it moved to another unit).
	write("3", "0::/system.slice/db2.service\n")
	r.EndUnixNano = p3.read.UnixNano() + int64(ps.ttl) - 1
	if ps.Identify(r) != p3 || r.Service != "db" {
		t.Errorf("read again within the ttl: service %q", r.Service)
	}
	r.EndUnixNano = p3.read.UnixNano() + int64(ps.ttl) + 1
	if ps.Identify(r) == p3 || r.Service != "db2" {
		t.Errorf("past the ttl: service %q, want db2", r.Service)
	}
}
