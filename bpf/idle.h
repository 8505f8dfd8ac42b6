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

/* TCP_RTO_MAX: the longest a retransmitting connection stays quiet. */
#define RETRANSMITTING_QUIET_MAX_NS (120ULL * 1000000000ULL)

struct sweep {
	__u64 now;
};

/* What a sweep found: answered requests not quiet long enough yet, and
 * the last activity of the one quiet longest. Globals, not in struct
 * sweep: the verifier follows a callback's writes to its caller's stack
 * exactly, and a count it must then branch on never converges. Only the
 * sweep, run by one goroutine at a time, uses them. */
__u32 sweep_waiting;
__u64 sweep_oldest;

static long sweep_conn(struct bpf_map *map, __u64 *key, struct traced_conn *c, struct sweep *sw)
{
	/* Answered: a server's request while it writes, a client's once it
	 * reads the answer. */
	if (c->state != (c->req.direction == DIR_CLIENT ? CONN_READING : CONN_WRITING))
		return 0;
	/* Signed: another CPU may have moved last_io past the sweep's now. */
	__s64 quiet = sw->now - c->last_io;

	/* An answer TCP is retransmitting is not idle: the retransmission
	 * timer's waits double up to TCP_RTO_MAX (120 s), past any idle
	 * timeout (a path MTU black hole stalls for seconds). */
	if (c->req.retransmits && !c->req.t_ack && quiet < (__s64)RETRANSMITTING_QUIET_MAX_NS) {
		sweep_waiting++;
		return 0;
	}
	if (quiet >= (__s64)idle_timeout_ns) {
		emit(c, END_IDLE);
		return 0;
	}
	sweep_waiting++;
	if (c->last_io < sweep_oldest)
		sweep_oldest = c->last_io;
	return 0;
}

/* Run by user space (BPF_PROG_RUN), never attached: one pass over the
 * traced connections (≈ 6.6 ns per bucket of the conns map, 0.43 ms for
 * 65,536). Returns 0 when no answered request waits for its timeout
 * (with no answer since, CNT_ANSWERS, user space skips the next sweep),
 * else 1 + the ms until the first of them times out: a request answered
 * later times out later still, so user space skips the sweeps until then
 * (under load: one sweep per timeout instead of one per call). */
SEC("syscall")
int idle_sweep(void *ctx)
{
	struct sweep sw = { .now = bpf_ktime_get_ns() };

	sweep_waiting = 0;
	sweep_oldest = sw.now;
	bpf_for_each_map_elem(&conns, sweep_conn, &sw, 0);
	if (!sweep_waiting)
		return 0;
	__u64 quiet = sw.now - sweep_oldest;
	return 1 + (quiet < idle_timeout_ns ? (idle_timeout_ns - quiet) / 1000000 : 0);
}
