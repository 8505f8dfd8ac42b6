/* NET_RX softirq: how long the segment that woke a socket waited
 * between the softirq being raised and its delivery.
 *
 * Two hooks: the raise (its time, the first since the softirq last ran)
 * and the exit (nothing pending any more). No entry hook: a segment is
 * delivered to TCP either inside the NET_RX softirq or, when the app owns
 * the socket then, later from its backlog in process context, which the
 * socket's owned flag tells (softirq_delay). */
#pragma once

#include "attach.h"
#include "maps.h"

static __always_inline struct softirq_cpu *softirq_cpu_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&softirq_state, &zero);
}

/* A segment of sk being delivered now: the delay since the NET_RX
 * softirq delivering it was raised, unless it comes from the socket's
 * backlog (the app owned the socket when it arrived) or the raise was
 * missed (before attach). */
static __always_inline __u8 softirq_delay(const struct sock *sk, int btf, __u64 now, __u64 *delay)
{
	struct softirq_cpu *s;

	if (!softirq_enabled || KREAD(btf, sk, sk_lock.owned))
		return 0;
	s = softirq_cpu_state();
	if (!s || !s->raised_at || now < s->raised_at)
		return 0;
	*delay = now - s->raised_at;
	return 1;
}

static __always_inline int on_softirq_raise(unsigned int vec)
{
	if (vec != NET_RX_SOFTIRQ)
		return 0;
	struct softirq_cpu *s = softirq_cpu_state();
	if (s && !s->raised_at)
		s->raised_at = bpf_ktime_get_ns();
	return 0;
}

/* The softirq ran: the next raise starts a new wait. (Raises while it
 * runs are not timed, as when the entry hook marked the run: segments of
 * its restart, or of ksoftirqd's run after it, have no softirq phase.) */
static __always_inline int on_softirq_exit(unsigned int vec)
{
	if (vec != NET_RX_SOFTIRQ)
		return 0;
	struct softirq_cpu *s = softirq_cpu_state();
	if (s)
		s->raised_at = 0;
	return 0;
}

TRACEPOINT_PROGS(softirq_raise, softirq_raise, on_softirq_raise(vec), unsigned int vec)

TRACEPOINT_PROGS(softirq_exit, softirq_exit, on_softirq_exit(vec), unsigned int vec)
