// SPDX-License-Identifier: GPL-2.0
/* tracerd's kernel engine: per-connection state machines that emit one
 * record per finished request. Each included file is one concern. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "tracerd.h"
#include "maps.h"
#include "filter.h"
#include "request.h"
#include "softirq.h"
#include "idle.h"
#include "client.h"
#include "accept.h"
#include "recv.h"
#include "send.h"
#include "tcp.h"
#include "sched.h"
#include "proc.h"
#include "goruntime.h"
#include "openssl.h"
#include "syscalls.h"
#include "connect_fail.h"

char LICENSE[] SEC("license") = "GPL";

/* Keep the shared enums in BTF so that bpf2go -type emits them for Go. */
const enum capture_size *unused_capture_size __attribute__((unused));
const enum req_flags *unused_req_flags __attribute__((unused));
const enum end_reason *unused_end_reason __attribute__((unused));
const enum addr_family *unused_addr_family __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum conn_state *unused_conn_state __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum go_func *unused_go_func __attribute__((unused));
const enum go_cookie *unused_go_cookie __attribute__((unused));
const enum probe_site *unused_probe_site __attribute__((unused));
const enum stw_reason *unused_stw_reason __attribute__((unused));
const enum go_capture *unused_go_capture __attribute__((unused));
const enum proc_what *unused_proc_what __attribute__((unused));
const enum go_tls_flags *unused_go_tls_flags __attribute__((unused));
const enum go_status_flags *unused_go_status_flags __attribute__((unused));
const enum go_rw_kind *unused_go_rw_kind __attribute__((unused));
const enum tls_wire_size *unused_tls_wire_size __attribute__((unused));
const enum tls_wire_dir *unused_tls_wire_dir __attribute__((unused));
const struct tls_wire *unused_tls_wire __attribute__((unused));
const struct go_event *unused_go_event __attribute__((unused));
const struct proc_note *unused_proc_event __attribute__((unused));
const struct filter_config *unused_filter_config __attribute__((unused));
const struct connect_fail_key *unused_connect_fail_key __attribute__((unused));
