/* Request boundaries on kernels with neither the sock_recv_length /
 * sock_send_length tracepoints (Linux ≥ 6.3) nor fexit: the exits of
 * the socket read and write syscalls, with the fd → sock lookup done at
 * accept. They fire for every such syscall of the host, so the first
 * test is whether the process owns a traced connection at all. */
#pragma once

#include "accept.h"
#include "fd.h"
#include "recv.h"
#include "send.h"

/* The traced sock behind the current syscall's first argument (an fd). */
static __always_inline struct sock *syscall_sock(struct syscall_exit_ctx *ctx, struct pt_regs **regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (ctx->ret <= 0 || !bpf_map_lookup_elem(&traced_tgids, &tgid))
		return NULL;
	*regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return tcp_sock_of_fd(BPF_CORE_READ(*regs, di));
}

static __always_inline int on_syscall_recv(struct syscall_exit_ctx *ctx)
{
	struct pt_regs *regs = NULL;
	struct sock *sk = syscall_sock(ctx, &regs);
	int flags = 0;

	if (!sk)
		return 0;
	/* recvfrom(fd, buf, len, flags, …): flags in the 4th argument (r10);
	 * recvmsg(fd, msg, flags): in the 3rd (dx). */
	if (ctx->nr == NR_recvfrom)
		flags = BPF_CORE_READ(regs, r10);
	else if (ctx->nr == NR_recvmsg)
		flags = BPF_CORE_READ(regs, dx);
	return on_sock_recv(sk, ctx->ret, flags, 0);
}

static __always_inline int on_syscall_send(struct syscall_exit_ctx *ctx)
{
	struct pt_regs *regs = NULL;
	struct sock *sk = syscall_sock(ctx, &regs);

	return sk ? on_sock_send(sk, ctx->ret, 0) : 0;
}

#define SYSCALL_EXIT(name, handler)                                      \
	SEC("tracepoint/syscalls/sys_exit_" #name)                       \
	int sys_exit_##name(struct syscall_exit_ctx *ctx) { return handler(ctx); }

SYSCALL_EXIT(read, on_syscall_recv)
SYSCALL_EXIT(readv, on_syscall_recv)
SYSCALL_EXIT(recvfrom, on_syscall_recv)
SYSCALL_EXIT(recvmsg, on_syscall_recv)
SYSCALL_EXIT(write, on_syscall_send)
SYSCALL_EXIT(writev, on_syscall_send)
SYSCALL_EXIT(sendto, on_syscall_send)
SYSCALL_EXIT(sendmsg, on_syscall_send)
SYSCALL_EXIT(sendfile64, on_syscall_send)
