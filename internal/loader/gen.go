package loader

//go:generate go tool bpf2go -tags linux -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target amd64 -type req_record -type traced_conn -type req_flags -type end_reason -type addr_family -type counter -type capture_size -type conn_state -type direction -type event_kind -type go_func -type go_cookie -type probe_site -type stw_reason -type go_capture -type proc_what -type go_event -type go_proc -type proc_note -type filter_config -type go_tls_flags Tracerd ../../bpf/tracerd.c -- -I../../bpf -I/usr/include/x86_64-linux-gnu
