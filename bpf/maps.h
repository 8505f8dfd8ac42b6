/* Maps and configuration shared by every program. Sizes marked
 * "set by Go" are overridden from the loader's config before load. */
#pragma once

#include "tracerd.h"
#include "attach.h"

/* A keep-alive request with no activity for this long is finished. */
const volatile __u64 idle_timeout_ns = 500000000ULL;
/* Whether sched/softirq programs were attached (else phases absent). */
const volatile __u8 sched_enabled = 1;
const volatile __u8 softirq_enabled = 1;
/* Whether tcp_probe, which notes data arrival (T_rx), is attached. */
const volatile __u8 rx_enabled = 1;
/* Whether candidate sockets get a mark (sk_marks) when they become
 * ESTABLISHED: inet_sock_set_state attached with typed arguments. Then a
 * socket without any BPF storage is known untraced at the first load. */
const volatile __u8 sk_marks_on = 0;

/* Which kinds of target selection are on (set by Go, index 0). A map,
 * not constants: a reload that turns a kind on or off changes it in
 * place, with no second engine (whose overlap would trace connections
 * twice and restart every counter). Read at accept and exec only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_config);
} filter SEC(".maps");

static __always_inline struct filter_config *filter_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&filter, &zero);
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} target_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} target_ports SEC(".maps");

struct comm_key {
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, __u8);
} target_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} target_cgroups SEC(".maps");

/* Traced connections by kernel sock address (set by Go). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct traced_conn);
} conns SEC(".maps");

/* Candidate sockets: children of selected listeners, marked when they
 * become ESTABLISHED. The mark is never read: its presence makes
 * sk->sk_bpf_storage non-NULL, which every socket hook tests first, so
 * that the load generator's and other untraced sockets cost one load,
 * not a hash lookup. The kernel frees it with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} sk_marks SEC(".maps");

/* Whether sk may be traced: with marks on, only a socket holding some
 * BPF storage (ours: a candidate) may be. */
static __always_inline int sk_candidate(const struct sock *sk, int btf)
{
	if (!sk_marks_on)
		return 1;
	return KREAD(btf, sk, sk_bpf_storage) != NULL;
}

/* A child socket that became ESTABLISHED but is not accepted yet. */
struct pending {
	__u64 t_est;
	__u64 rx_ts;
	__u64 rx_softirq;
	__u64 est_softirq; /* softirq delay of the segment that completed the handshake */
	__u8 rx_has_softirq;
	__u8 est_has_softirq;
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending);
} pending_est SEC(".maps");

/* Processes that own a traced connection (exec, exit, syscall exits). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} traced_tgids SEC(".maps");

/* Serving threads, marked when they first read a request: as with
 * sk_marks, its presence is what the scheduler programs test
 * (task->bpf_storage non-NULL), so that they leave every other thread of
 * the host at the first load. It also holds what a request's read needs
 * of its thread while the scheduler programs wait: a storage lookup is
 * a few loads from the task, where the tasks hash costs a hash and a
 * bucket walk. */
struct task_mark {
	__u64 quota_checked; /* when its cgroups' CPU quotas were last looked at (quota.h) */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_mark);
} task_marks SEC(".maps");

/* Whether p may be a serving thread (one with a task_marks mark). */
static __always_inline int task_candidate(struct task_struct *p, int btf)
{
	if (!bpf_core_field_exists(p->bpf_storage))
		return 1;
	return KREAD(btf, p, bpf_storage) != NULL;
}

/* Per-thread CFS throttling of serving threads. (Their run-queue wait is
 * the kernel's own: task->sched_info.run_delay.) */
struct task_sched {
	__u64 enqueued_at; /* became runnable (woken or preempted), 0 if running/asleep */
	__u64 thr_cfs_rq;  /* kernels < 6.18: its cfs_rq when it became runnable, */
	__u64 thr_base;    /* and that cfs_rq's throttled time then */
	__u64 throttle_total;
	__u8 throttled;    /* preempted by CFS bandwidth throttling */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct task_sched);
} tasks SEC(".maps");

/* Whether the scheduler programs (sched.h) run (set by Go, index 0: 1
 * once one of them is attached; they stay attached until tracerd
 * detaches everything). While they wait for a CPU quota nothing times a
 * thread's throttling, so a request's read takes no tasks entry and its
 * answer's write no lookup (start_request, update_sched). An array: its
 * lookup is a few instructions the verifier inlines, not a hash walk. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sched_hooks SEC(".maps");

static __always_inline int sched_hooks_attached(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&sched_hooks, &zero);

	return on && *on;
}

/* NET_RX softirq bookkeeping per CPU: the first raise not yet followed
 * by the softirq's exit, 0 when none. */
struct softirq_cpu {
	__u64 raised_at;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct softirq_cpu);
} softirq_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Finished requests (size set by Go). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Wake the reader once per wakeup_every entries a CPU writes (set by Go
 * so that all CPUs together leave a small part of the ring waiting): it
 * also looks every 150 ms, and a wake-up is an interrupt, which costs
 * more than a record. Counted per CPU, not asked of the ring: its fill
 * (bpf_ringbuf_query) is the reader's position, a cache line another CPU
 * writes, and past a threshold every record until the reader caught up
 * woke it again (≈ 0.6 µs per request at max throughput here). */
const volatile __u32 wakeup_every = 256;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ring_writes SEC(".maps");

static __always_inline __u64 ringbuf_flags(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&ring_writes, &zero);

	if (!n || ++*n < wakeup_every)
		return BPF_RB_NO_WAKEUP;
	*n = 0;
	return BPF_RB_FORCE_WAKEUP;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

/* Clamp n to at most max on the very register that is then passed to a
 * helper as a size. A C bound is not enough: clang may test a copy of n,
 * and the 6.1 and 6.12 verifiers do not carry that bound back to n (6.18
 * does). max must be a value the verifier knows (a constant). */
#define CLAMP_LEN(n, max)                                                   \
	asm volatile("if %[v] <= %[m] goto +1; %[v] = %[m];"                \
		     : [v] "+r"(n)                                              \
		     : [m] "r"((__u64)(max)))

/* A full memory barrier between a CPU's earlier stores and later loads
 * (BPF has no fence instruction; x86's JIT makes an atomic add a locked
 * add, which is one). */
static __always_inline void full_barrier(struct traced_conn *c)
{
	__sync_fetch_and_add(&c->fence, 0);
}

/* TCP sequence comparisons, wrap-safe. */
static __always_inline int seq_ge(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0;
}

/* Go processes with their struct offsets (set by Go per process). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct go_proc);
} go_procs SEC(".maps");

/* A call in progress is keyed by its goroutine's g (R14 at a uprobe),
 * not its goid: reading that takes a helper call at each entry. A g is
 * the goroutine's for its whole life; one reused by a later goroutine
 * finds a stale call of it overwritten by its own first entry. */
struct go_call_key {
	__u32 pid;
	__u32 func;
	__u64 g;
};

/* Go calls in progress that carry strings (ServeHTTP, a gRPC method):
 * entry seen, end not yet. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct go_call_key);
	__type(value, struct go_event);
} go_calls SEC(".maps");

/* Every other Go call in progress: a 400-byte value would cost each
 * entry and end a copy of it (the probes run in the traced process).
 * Per-CPU LRU lists: no lock shared by the CPUs on an update. */
struct go_call {
	__u64 start;
	__u32 tid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} go_calls_short SEC(".maps");

/* A stop-the-world pause in progress, per process. */
struct stw_state {
	__u64 start;
	__u32 reason;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct stw_state);
} go_stw SEC(".maps");

/* Copies of the head of an http.Request and of its url.URL, and of an
 * HTTP/1 request line's method, path and query (ServeHTTP's entry reads
 * its fields from them). */
#define GO_LINE_CAP 256

struct go_http_head {
	char req[192];
	char url[128];
	char line[GO_LINE_CAP]; /* an HTTP/1 request's method, path and query (read_line) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_http_head);
} go_http_scratch SEC(".maps");

/* Scratch space for a go_event (too big to build on the stack twice). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_event);
} go_scratch SEC(".maps");
