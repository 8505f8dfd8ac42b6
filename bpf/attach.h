/* Ways of attaching one handler. Kernels differ in which they offer, so
 * a handler is built once per way and the loader keeps the best one the
 * running kernel accepts (internal/loader/hooks.go lists the order). */
#pragma once

/* A tracepoint handler, twice: tp_btf (typed arguments; needs the event
 * in the kernel's BTF) and raw_tp (the same argument array, attached by
 * the event's name). The handler body is shared; `btf` (a constant in
 * each) says whether the arguments are typed pointers, which the body
 * may then read with plain loads (KREAD) instead of probe reads. */
#define TRACEPOINT_PROGS(prog, event, call, ...)                         \
	SEC("tp_btf/" #event)                                            \
	int BPF_PROG(prog, __VA_ARGS__)                                  \
	{                                                                \
		const int btf = 1;                                       \
		(void)btf;                                               \
		return call;                                             \
	}                                                                \
	SEC("raw_tp/" #event)                                            \
	int BPF_PROG(prog##_raw, __VA_ARGS__)                            \
	{                                                                \
		const int btf = 0;                                       \
		(void)btf;                                               \
		return call;                                             \
	}

/* A kernel field: a plain load where ptr has its BTF type (btf: typed
 * programs), a CO-RE probe read elsewhere (raw_tp, classic tracepoints:
 * their pointers are plain numbers to the verifier). A probe read is a
 * helper call; a plain load is one instruction. btf must be a constant. */
#define KREAD(btf, ptr, ...) ((btf) ? (ptr)->__VA_ARGS__ : BPF_CORE_READ(ptr, __VA_ARGS__))

/* sk as a tcp_sock the verifier can read with plain loads (typed
 * programs: NULL when sk is not a full TCP socket), or as it is. */
#define TCP_SK(btf, sk) ((btf) ? bpf_skc_to_tcp_sock((void *)(sk)) : (struct tcp_sock *)(sk))
