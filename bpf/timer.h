/* Idle timeout: a keep-alive request whose connection stays quiet is
 * finished by a timer instead of by the next request. */
#pragma once

#include "request.h"

#define CLOCK_MONOTONIC 1

static int idle_timer_fired(void *map, __u64 *key, struct idle_slot *it)
{
	struct traced_conn *c = bpf_map_lookup_elem(&conns, key);
	__u64 now = bpf_ktime_get_ns();

	if (!c)
		return 0;
	if (c->state == CONN_WRITING && now - c->last_io < idle_timeout_ns) {
		/* Still busy: look again when it could have gone idle. */
		bpf_timer_start(&it->timer, c->last_io + idle_timeout_ns - now, 0);
		return 0;
	}
	c->timer_armed = 0;
	if (c->state == CONN_WRITING)
		emit(c, END_IDLE);
	return 0;
}

/* Called from tp_btf programs only (see idle_timers). A pending timer
 * re-arms itself while the connection is busy, so a keep-alive
 * connection costs a timer start per idle period, not per request. */
static __always_inline void arm_idle_timer(__u64 key, struct traced_conn *c)
{
	if (c->timer_armed)
		return;
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
	else
		c->timer_armed = 1;
}
