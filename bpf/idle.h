/* Idle timeout: a keep-alive request whose connection stays quiet is
 * finished by a sweep that user space runs every few tens of ms, rather
 * than by the client's next request or the close.
 *
 * Not bpf_timer: on 6.18 a timer's memory is allocated without locks
 * when it is first armed, and with many connections arriving at once
 * the kernel refuses almost all of them (9,700 of 10,000 failed in the
 * benchmark); a sweep allocates nothing. */
#pragma once

#include "request.h"

static long sweep_conn(struct bpf_map *map, __u64 *key, struct traced_conn *c, __u64 *now)
{
	/* Signed: another CPU may have moved last_io past the sweep's now. */
	if (c->state == CONN_WRITING && (__s64)(*now - c->last_io) >= (__s64)idle_timeout_ns)
		emit(c, END_IDLE);
	return 0;
}

/* Run by user space (BPF_PROG_RUN), never attached: one pass over the
 * traced connections. */
SEC("syscall")
int idle_sweep(void *ctx)
{
	__u64 now = bpf_ktime_get_ns();

	bpf_for_each_map_elem(&conns, sweep_conn, &now, 0);
	return 0;
}
