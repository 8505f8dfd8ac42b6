//go:build e2e

package tests

// Prometheus end to end: Prometheus from Debian's packages
// (tests/tools/install-test-services.sh installs it) scrapes `tracerd
// run`, and the test asks Prometheus's HTTP API for the phase histogram.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Prometheus is a Prometheus server scraping one target every second.
type Prometheus struct {
	Port int
	cmd  *exec.Cmd
	log  *syncBuffer
}

func startPrometheus(t *testing.T, target string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: run tests/tools/install-test-services.sh (Debian package prometheus)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tracerd
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{Port: freePort(t), log: &syncBuffer{}}
	p.cmd = exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(p.Port), "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
	})
	waitServes(t, "prometheus", fmt.Sprintf("http://127.0.0.1:%d/-/ready", p.Port), done, p.log, 20*time.Second)
	return p
}

// query runs an instant query; a vector result gives one value per
// series (the first when there are several), or none.
func (p *Prometheus) query(t *testing.T, q string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", p.Port, url.QueryEscape(q)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) == 0 {
		return 0, false
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q", q, s)
	}
	return v, true
}

// waitQuery polls a query until cond holds.
func (p *Prometheus) waitQuery(t *testing.T, q string, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	eventually(t, 20*time.Second, func() error {
		var ok bool
		if v, ok = p.query(t, q); !ok || !cond(v) {
			return fmt.Errorf("query %s = %v (present %v)\n%s", q, v, ok, p.log)
		}
		return nil
	})
	return v
}

// TestPrometheusScrape: Prometheus scrapes tracerd and holds, in
// tracerd_request_phase_seconds, exactly the receive-queue waits of the
// traced requests (tracerd's JSON lines say which), most of them in the
// bucket of the 20 ms the server sleeps before each read; the
// self-metrics are there too.
func TestPrometheusScrape(t *testing.T) {
	needRoot(t)
	const n = 10
	srv := startServer(t, nil, "--read-delay", "20ms")
	rt := startRun(t, nil, "--port", strconv.Itoa(srv.Port))
	prom := startPrometheus(t, rt.MetricsAddr)
	prom.waitQuery(t, `up{job="tracerd"}`, func(v float64) bool { return v == 1 })

	c := dial(t, srv.Addr)
	for range n {
		if _, err := request(c, "/", 0); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	srv.Truths(t, n)
	waitMetric(t, rt, "tracerd_records_read_total", func(v float64) bool { return v >= n })
	recs := flushedRecordsOn(t, rt.JSONPath, srv.Port, n)
	if len(recs) != n {
		t.Fatalf("tracerd recorded %d requests, want %d", len(recs), n)
	}
	// What Prometheus must show, from tracerd's own records.
	var measured, le10, le25 float64
	for _, r := range recs {
		if rq, ok := r.Phases["recv_queue"]; ok {
			measured++
			if rq <= 10e6 {
				le10++
			}
			if rq <= 25e6 {
				le25++
			}
		}
	}
	if le25-le10 < n/2 {
		t.Errorf("only %v of %d requests waited 10-25ms in the receive queue (the server sleeps 20ms)", le25-le10, n)
	}
	sel := `{job="tracerd",service="testserver",phase="recv_queue"}`
	bucket := func(le string) string {
		return `sum(tracerd_request_phase_seconds_bucket{job="tracerd",service="testserver",phase="recv_queue",le="` + le + `"})`
	}
	prom.waitQuery(t, `sum(tracerd_request_phase_seconds_count`+sel+`)`, func(v float64) bool { return v == measured })
	for le, want := range map[string]float64{"0.01": le10, "0.025": le25, "+Inf": measured} {
		if v, _ := prom.query(t, bucket(le)); v != want {
			t.Errorf("bucket le=%s holds %v, tracerd's records say %v", le, v, want)
		}
	}
	median, _ := prom.query(t, `histogram_quantile(0.5, sum by (le) (tracerd_request_phase_seconds_bucket`+sel+`))`)
	t.Logf("Prometheus: %v recv_queue observations, median %.1fms (bucket interpolation)", measured, median*1000)
	if median < 0.01 || median > 0.025 {
		t.Errorf("median recv_queue %vs, want within (0.01, 0.025]", median)
	}
	for q, want := range map[string]float64{
		`tracerd_requests_total{job="tracerd",service="testserver"}`:                 n,
		`tracerd_request_duration_seconds_count{job="tracerd",service="testserver"}`: n,
		`tracerd_records_read_total{job="tracerd"}`:                                  n,
		`tracerd_records_lost_total{job="tracerd",reason="ringbuf_full"}`:            0,
		`tracerd_map_full_total{job="tracerd",map="conns"}`:                          0,
	} {
		prom.waitQuery(t, q, func(v float64) bool { return v == want })
	}
	if v, ok := prom.query(t, `tracerd_kernel_records_total{job="tracerd"}`); !ok || v < 1 {
		t.Errorf("tracerd_kernel_records_total = %v (present %v)", v, ok)
	}
	if v, ok := prom.query(t, `tracerd_map_fill_ratio{job="tracerd",map="conns"}`); !ok || v < 0 || v > 1 {
		t.Errorf("tracerd_map_fill_ratio = %v (present %v)", v, ok)
	}
	rt.Stop(t)
}
