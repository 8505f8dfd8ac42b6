/* Idle timeout: a keep-alive request whose connection stays quiet is
 * finished by a timer instead of by the next request. */
#pragma once

#include "request.h"

#define CLOCK_MONOTONIC 1

static int idle_timer_fired(void *map, __u64 *key, struct idle_slot *it)
{
	struct traced_conn *c = bpf_map_lookup_elem(&conns, key);
	__u64 now = bpf_ktime_get_ns();

	if (!c || c->state != CONN_WRITING)
		return 0;
	if (now - c->last_io < idle_timeout_ns) {
		bpf_timer_start(&it->timer, c->last_io + idle_timeout_ns - now, 0);
		return 0;
	}
	emit(c, END_IDLE);
	return 0;
}

/* Called from tp_btf programs only (see idle_timers). */
static __always_inline void arm_idle_timer(__u64 key)
{
	struct idle_slot *it = bpf_map_lookup_elem(&idle_timers, &key);

	if (!it) {
		struct idle_slot zero = {};

		bpf_map_update_elem(&idle_timers, &key, &zero, BPF_NOEXIST);
		it = bpf_map_lookup_elem(&idle_timers, &key);
		if (!it) {
			count(CNT_TIMER_FAILS);
			return;
		}
		bpf_timer_init(&it->timer, &idle_timers, CLOCK_MONOTONIC);
		bpf_timer_set_callback(&it->timer, idle_timer_fired);
	}
	if (bpf_timer_start(&it->timer, idle_timeout_ns, 0))
		count(CNT_TIMER_FAILS);
}
