package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseCheck(t *testing.T) {
	out := `kernel      6.1.0-57-cloud-amd64 x86_64
hooks (each loaded and attached on this kernel, then removed):
  ok       sys_exit_accept4     syscalls/sys_exit_accept4
  ok       sock_recv_length     fexit/tcp_recvmsg
                                fallback, costs: none measurable
                                not tp_btf/sock_recv_length: kernel has no tracepoint sock_recv_length
  ok       tcp_probe            tp_btf/tcp_probe
  missing  softirq_raise        loses softirq: refused
phases      accept_queue, recv_queue, app
`
	k := parseCheck("6.1", strings.Split(out, "\n"))
	want := kernelWays{release: "6.1", fallbacks: []string{"sock_recv_length: fexit/tcp_recvmsg"},
		missing: []string{"softirq_raise"}, phases: "accept_queue, recv_queue, app"}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("parseCheck = %+v, want %+v", k, want)
	}
}
