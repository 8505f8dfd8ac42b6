/* A file descriptor of the current process → its TCP sock, or NULL.
 * Walks task → files → fdt → fd[fd] → file → private_data (struct
 * socket) → sk, reading the slot with bpf_probe_read_kernel. */
#pragma once

#include "maps.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

static __always_inline struct sock *tcp_sock_of_fd(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *f = NULL;

	if (fd < 0 || bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]) || !f)
		return NULL;
	/* Only a socket's private_data is a struct socket. */
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}
