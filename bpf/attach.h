/* Ways of attaching one handler. Kernels differ in which they offer, so
 * a handler is built once per way and the loader keeps the best one the
 * running kernel accepts (internal/loader/hooks.go lists the order). */
#pragma once

/* A tracepoint handler, twice: tp_btf (typed arguments; needs the event
 * in the kernel's BTF) and raw_tp (the same argument array, attached by
 * the event's name). Both read every argument the same way, so the
 * handler body is shared. */
#define TRACEPOINT_PROGS(prog, event, call, ...)                         \
	SEC("tp_btf/" #event)                                            \
	int BPF_PROG(prog, __VA_ARGS__) { return call; }                 \
	SEC("raw_tp/" #event)                                            \
	int BPF_PROG(prog##_raw, __VA_ARGS__) { return call; }
