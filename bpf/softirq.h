/* NET_RX softirq: how long the segment that woke a socket waited
 * between the softirq being raised and its delivery. */
#pragma once

#include "attach.h"
#include "maps.h"

static __always_inline struct softirq_cpu *softirq_cpu_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&softirq_state, &zero);
}

/* Inside a NET_RX softirq: the delay since it was raised. */
static __always_inline __u8 softirq_delay(__u64 now, __u64 *delay)
{
	struct softirq_cpu *s;

	if (!softirq_enabled)
		return 0;
	s = softirq_cpu_state();
	if (!s || !s->in_net_rx || !s->raised_at || now < s->raised_at)
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

static __always_inline int on_softirq_entry(unsigned int vec)
{
	if (vec != NET_RX_SOFTIRQ)
		return 0;
	struct softirq_cpu *s = softirq_cpu_state();
	if (!s)
		return 0;
	/* raised_at stays 0 when the raise was missed (before attach):
	 * no softirq phase then, rather than a made-up one. */
	s->in_net_rx = 1;
	return 0;
}

static __always_inline int on_softirq_exit(unsigned int vec)
{
	if (vec != NET_RX_SOFTIRQ)
		return 0;
	struct softirq_cpu *s = softirq_cpu_state();
	if (s) {
		s->in_net_rx = 0;
		s->raised_at = 0;
	}
	return 0;
}

TRACEPOINT_PROGS(softirq_raise, softirq_raise, on_softirq_raise(vec), unsigned int vec)

TRACEPOINT_PROGS(softirq_entry, softirq_entry, on_softirq_entry(vec), unsigned int vec)

TRACEPOINT_PROGS(softirq_exit, softirq_exit, on_softirq_exit(vec), unsigned int vec)
