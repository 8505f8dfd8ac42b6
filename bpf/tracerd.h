/* Structs and constants shared by the BPF programs and Go.
 * bpf2go -type generates the Go twins; never copy these by hand. */
#pragma once

/* Which kinds of target selection are on; kinds combine with AND,
 * values of one kind (the target_* maps) with OR. */
struct filter_config {
	__u8 pids;
	__u8 ports;
	__u8 comms;
	__u8 cgroups;
	__s32 cgroup_v1_subsys; /* -1: --cgroup ids are cgroup v2's; else a v1 subsystem */
};

/* Bytes of a request / response head copied for the HTTP parser. */
enum capture_size {
	REQ_HEAD_CAP = 512,
	RESP_HEAD_CAP = 32,
};

/* Which measurements of a request are valid (a phase without its
 * bit was not measured and must be absent, not zero). */
enum req_flags {
	REQ_HAS_EST = 1 << 0,     /* t_est seen: accept_queue measurable */
	REQ_HAS_RX = 1 << 1,      /* t_rx seen (data arrived while traced) */
	REQ_HAS_SOFTIRQ = 1 << 2, /* first segment queued from NET_RX softirq */
	REQ_HAS_SCHED = 1 << 3,   /* runqueue and cfs_throttle valid */
	REQ_HAS_TCP = 1 << 4,     /* srtt/cwnd read from an incoming segment */
};

/* Why a request ended. */
enum end_reason {
	END_NEXT_REQUEST = 1, /* the app consumed new data after answering */
	END_CLOSE = 2,        /* the connection closed */
	END_IDLE = 3,         /* nothing happened for idle_timeout_ns */
	END_FLUSH = 4,        /* user space drained it at shutdown */
	END_STREAM = 5,       /* user space: a Go call no record claimed (HTTP/2 stream, gRPC call) */
};

/* req_record.family: the kernel's AF_* values (macros, which vmlinux.h
 * does not carry). */
enum addr_family {
	FAMILY_INET = 2,
	FAMILY_INET6 = 10,
};

/* Per-CPU counters, indexes into the counters map. */
enum counter {
	CNT_CONNS_TRACED = 0,    /* accepted connections that passed the filter */
	CNT_RECORDS = 1,         /* records written to the ring buffer */
	CNT_RINGBUF_DROPS = 2,   /* records lost: ring buffer full */
	CNT_CONN_MAP_FULL = 3,   /* connections not traced: conns map full */
	CNT_TASK_MAP_FULL = 4,   /* threads whose scheduling was not timed */
	CNT_ANSWERS = 5,         /* requests answered (READING -> WRITING): the idle sweep's hint */
	CNT_UNANSWERED_WRITES = 6, /* writes outside any request (server-first) */
	CNT_CAPTURE_FAILS = 7,   /* HTTP head copies that failed */
	CNT_GO_DROPS = 8,        /* Go events lost: ring buffer full */
	CNT_GO_MAP_FULL = 9,     /* Go calls not timed: map full */
	CNT_QUOTA_SEEN = 10,     /* serving threads found under a CPU quota while the scheduler hooks were off */
	NR_COUNTERS = 11,
};

/* What a ring-buffer entry is: its first __u32. */
enum event_kind {
	EV_REQUEST = 1, /* struct req_record */
	EV_GO = 2,      /* struct go_event */
	EV_PROC = 3,    /* struct proc_note */
	EV_TLS_WIRE = 4, /* struct tls_wire */
};

/* The bytes of a TLS handshake's exchanges (tlswire in user space reads
 * version, cipher, resumption, client certificate from them): only on a
 * connection's first exchanges whose first bytes read are a TLS
 * handshake record (16 03): TLS_WIRE_READS reads and the first write of
 * each, TLS_WIRE_CAP bytes of each. */
enum tls_wire_size {
	TLS_WIRE_CAP = 2048,
	TLS_WIRE_READS = 6,     /* reads captured per exchange (OpenSSL reads a record's header, then its body) */
	TLS_WIRE_EXCHANGES = 3, /* request_index below this: the handshake's exchanges */
};

enum tls_wire_dir {
	TLS_WIRE_READ = 1,  /* bytes the server read (the client's stream) */
	TLS_WIRE_WRITE = 2, /* bytes it wrote */
};

/* One read's or write's bytes; only len bytes of b go out. */
struct tls_wire {
	__u32 kind; /* EV_TLS_WIRE */
	__u8 dir;   /* enum tls_wire_dir */
	__u8 pad;
	__u16 len;  /* bytes in b */
	__u64 sk;
	__u32 pid;
	__u32 seq;  /* TCP sequence number of b[0] in its direction */
	__u32 total; /* bytes the read/write moved (len < total: cut) */
	__u32 pad2;
	__u8 b[TLS_WIRE_CAP];
};

/* One finished request, as written to the ring buffer. Times are
 * CLOCK_MONOTONIC ns; 0 means not seen. */
struct req_record {
	__u32 kind; /* EV_REQUEST */
	__u32 pad0;
	__u64 sk; /* kernel sock address: connection identity in one run */
	__u64 cgroup_id;
	__u64 t_est;
	__u64 t_acc;
	__u64 t_rx;
	__u64 t_rd;
	__u64 t_wr;
	__u64 t_wl;
	__u64 t_tx;
	__u64 t_ack;
	__u64 softirq_ns;
	__u64 runq_ns;
	__u64 throttle_ns;
	__u64 goid; /* Go: goroutine that read the request (client: that wrote it last), 0 if not Go */
	__u32 pid;
	__u32 tid;
	__u32 request_index;
	__u32 flags; /* enum req_flags */
	__u32 srtt_us;
	__u32 snd_cwnd;
	__u32 retransmits;
	__u32 zero_window;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u8 end_reason; /* enum end_reason */
	__u8 nagle;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
	__u16 req_len;
	__u16 resp_len;
	__u8 resp_head[RESP_HEAD_CAP];
	/* The retransmissions' shape (pmtu_blackhole; 0 when none): */
	__u32 rt_max_seg;    /* largest segment retransmitted (bytes of payload) */
	__u32 rt_repeats;    /* most retransmissions in a row of one sequence number */
	__u32 rt_repeat_seg; /* that segment's largest size */
	__u32 rt_mss_first;  /* mss_cache at the request's first retransmission */
	__u32 rt_mss_last;   /* and at its last */
	__u32 rt_pmtu_first; /* icsk_pmtu_cookie (the path MTU TCP knows) then */
	__u32 rt_pmtu_last;
	/* The server's own receive window (own_receive_window): */
	__u32 rwnd_zero;        /* times it advertised a zero window */
	__u64 rwnd_unread_ns;   /* closed while the request waited for its first read */
	__u64 rwnd_reading_ns;  /* closed while the app was reading and handling it */
	/* The listener when accept() took the connection (accept_backlog): */
	__u32 acc_queue;        /* its accept queue, this connection included */
	__u32 acc_queue_max;    /* sk_max_ack_backlog: listen()'s backlog capped by somaxconn */
	/* Outbound calls (enum direction): the record is one request the
	 * traced process sent on a connection it opened (client.h). */
	__u8 direction;
	__u8 pad1;
	__u16 syn_retrans; /* SYNs sent again before ESTABLISHED (client) */
	__u32 pad2;
	__u64 t_syn; /* client: connect() sent the SYN (T_est: it completed) */
	__u64 t_rl;  /* client: the app's last read of the answer */
	/* Last: only req_len bytes of it go to the ring buffer. */
	__u8 req_head[REQ_HEAD_CAP];
};

/* Which side of the connection the traced process is. */
enum direction {
	DIR_SERVER = 0, /* it accepted the connection: records are requests it served */
	DIR_CLIENT = 1, /* it connected: records are requests it sent */
};

/* Where a connection's current request stands. */
enum conn_state {
	CONN_IDLE = 0,    /* no request in progress */
	CONN_READING = 1, /* the app consumed request bytes, no answer yet (client: reads the answer) */
	CONN_WRITING = 2, /* the app is answering (client: sends its request, then waits) */
};

/* Per-connection state: the request being built plus bookkeeping.
 * Shared with Go so that shutdown can drain requests in progress. */
struct traced_conn {
	struct req_record req;
	__u64 rx_ts;        /* arrival of the oldest unread byte, 0 if none */
	__u64 rx_softirq;   /* softirq time of the segment that set rx_ts */
	__u64 est_softirq;  /* softirq time of the segment that completed the handshake */
	__u64 last_io;      /* last app read/write or transmit, for idle */
	__u64 last_tx_ts;   /* when last_tx_end went out */
	__u64 task;         /* the serving thread's task_struct (read again at T_wl) */
	__u64 runq_base;    /* its run_delay at T_rd */
	__u64 throttle_base; /* and its throttled total then */
	__u32 last_tx_end;  /* highest end seq transmitted through a device */
	__u32 resp_end;     /* write_seq after the app's latest write */
	__u8 state;         /* enum conn_state */
	__u8 rx_has_softirq;
	__u8 peer_zero_window;
	__u8 est_has_softirq;
	__u8 sched_base;    /* throttle_base is the tasks entry's (else the sched programs waited at T_rd) */
	__u8 pad[3];
	__u64 fence; /* target of full_barrier()'s locked add */
	__u32 rt_seq;      /* start of the segment retransmitted last */
	__u32 rt_run;      /* its retransmissions in a row */
	__u32 rt_run_seg;  /* and its largest size then */
	__u32 rwnd_carry_zero;  /* zero windows advertised before the request's first read */
	__u64 rwnd_carry_ns;    /* and the time closed then */
	__u64 rwnd_closed_ts;   /* when the advertised window closed, 0 while open */
	__u8 rwnd_closed_reading; /* it closed while the app was reading a request */
	__u8 tls_reads;     /* the exchange's reads still to capture (tls_wire), 0: none */
	__u8 tls_write;     /* its first write is to be captured */
	__u8 pad3[5];
	/* A client connection: the first arrival since the request's last
	 * write (0: none yet), the answer's first byte when the first read
	 * took bytes that arrived before that write (client.h). */
	__u64 rx_answer;
};

/* Go functions probed: the low bits of a Go uprobe's cookie (enum go_cookie). */
enum go_func {
	GO_JSON_MARSHAL = 1,
	GO_JSON_UNMARSHAL = 2,
	GO_JSON_ENCODE = 3,
	GO_JSON_DECODE = 4,
	GO_PROTO_MARSHAL = 5,
	GO_PROTO_UNMARSHAL = 6,
	GO_SERVE_HTTP = 7,     /* net/http.serverHandler.ServeHTTP */
	GO_WRITE_HEADER = 8,   /* (*response|*http2responseWriter).WriteHeader: where ServeHTTP's exit cannot read the status */
	GO_STW = 9,            /* stopTheWorldWithSema → startTheWorldWithSema */
	GO_CALIBRATE = 10,     /* tracerd's own empty function: probe cost */
	GO_GRPC_METHOD = 11,   /* grpc-go server: (*Server).handleStream, one RPC */
	GO_GRPC_STATUS = 12,   /* grpc-go HTTP/2 transport: final status written */
	GO_TLS_HANDSHAKE = 13, /* crypto/tls (*Conn).serverHandshake: one per TLS connection */
	/* OpenSSL servers (libssl uprobes; goid = the thread id) */
	SSL_HANDSHAKE_DONE = 14, /* SSL_do_handshake/SSL_accept returned 1 */
	SSL_READ_LINE = 15,      /* SSL_read(_ex) plaintext: its first line, in path */
	SSL_WRITE_STATUS = 16,   /* SSL_write(_ex) of an HTTP/1 status line: arg = status */
	GO_TLS_CLIENT_HANDSHAKE = 17, /* crypto/tls (*Conn).clientHandshake: an outbound TLS connection's */
	GO_HTTP_CLIENT_REQUEST = 18,  /* Go net/http client: a request about to be written ((*Request).write) */
	GO_HTTP_CLIENT_RESPONSE = 19, /* Go net/http client: a response's status line read (ReadResponse) */
	SSL_WRITE_LINE = 20,          /* libssl: SSL_write(_ex) plaintext that is not a status line: its first line, in path */
	GO_FUNC_MAX = 21,
};

/* A Go uprobe's BPF cookie: the function (enum go_func) in the low 32
 * bits, the probe's site (enum probe_site) from GO_COOKIE_SITE_SHIFT,
 * and for an exit shared by two functions' calls (one worker both call),
 * the other function from GO_COOKIE_ALT_SHIFT (8 bits). An exit's probe
 * also carries runtime.g.goid's offset ÷ 8 from GO_COOKIE_GOID_SHIFT
 * (0: not carried), so that the end of a call without strings needs no
 * lookup of its process. */
enum go_cookie {
	GO_COOKIE_SITE_SHIFT = 32,
	GO_COOKIE_ALT_SHIFT = 40,
	GO_COOKIE_RW_SHIFT = 48, /* ServeHTTP's exits: enum go_rw_kind */
	GO_COOKIE_GOID_SHIFT = 56,
};

/* Which ResponseWriter a ServeHTTP exit probe's call has (from where
 * the exit lies): its status is read there. 0: not known (no read). */
enum go_rw_kind {
	GO_RW_RESPONSE = 1, /* in net/http.(*conn).serve: a *net/http.response (HTTP/1) */
	GO_RW_HTTP2 = 2,    /* at (*http2responseWriter).handlerDone's entry: a *http2responseWriter */
};

enum probe_site {
	PROBE_AT_ENTRY = 1, /* the function's entry (after its stack check) */
	PROBE_AT_RET = 2,   /* one of its RET instructions (single-stepped) */
	PROBE_AT_EXIT = 3,  /* an emulated instruction run once the call's work returned */
};

/* runtime.stwReason of the pauses that are garbage collection (Go ≥ 1.21);
 * others (ReadMemStats, traces, profiles) are not GC. */
enum stw_reason {
	STW_GC_MARK_TERM = 1,
	STW_GC_SWEEP_TERM = 2,
};

enum go_capture {
	GO_METHOD_CAP = 16,
	GO_PATH_CAP = 128,
	GO_REMOTE_CAP = 48,
	GO_QUERY_CAP = 96,
	GO_PATTERN_CAP = 64,
};

/* A Go event: a timed call on a goroutine, a stop-the-world pause
 * (arg = enum stw_reason), or a status written (arg = status code). */
struct go_event {
	__u32 kind; /* EV_GO */
	__u32 pid;
	__u64 goid;
	__u64 start;
	__u64 end;
	__u32 func; /* enum go_func */
	__u32 arg;
	__u32 tid;
	__u8 method_len;
	__u8 path_len;
	__u8 remote_len;
	__u8 proto_major;
	__u8 query_len;
	__u8 pattern_len;
	__u8 tls_flags; /* GO_TLS_(CLIENT_)HANDSHAKE: enum go_tls_flags */
	__u8 status_flags; /* GO_SERVE_HTTP: enum go_status_flags (arg = the status read at its exit) */
	__u8 pad[4];
	__u64 req; /* ServeHTTP: the *http.Request, read again at the return; the client's events: the *http.Request */
	__u64 rw;  /* ServeHTTP: the ResponseWriter's data word (RCX at the entry), whose status is read at the exit */
	char method[GO_METHOD_CAP];
	char path[GO_PATH_CAP];
	char remote[GO_REMOTE_CAP];
	char query[GO_QUERY_CAP]; /* net/url.URL.RawQuery */
	char pattern[GO_PATTERN_CAP]; /* net/http.Request.Pattern, set by ServeMux inside ServeHTTP */
};

/* An event without strings goes out as its head alone (the reader
 * zeroes the rest). */
#define GO_EVENT_HEAD __builtin_offsetof(struct go_event, method)

/* Where to find things in a Go process's memory (from its binary's
 * DWARF or a per-version table; set by Go per process). */
struct go_proc {
	__u64 g_goid;
	__u64 req_method;      /* net/http.Request.Method (string) */
	__u64 req_url;         /* net/http.Request.URL (*url.URL) */
	__u64 req_proto_major; /* net/http.Request.ProtoMajor (int) */
	__u64 req_remote_addr; /* net/http.Request.RemoteAddr (string) */
	__u64 url_path;        /* net/url.URL.Path (string) */
	__u64 url_raw_query;   /* net/url.URL.RawQuery (string; 0: unknown) */
	__u64 req_pattern;     /* net/http.Request.Pattern (string; 0: unknown) */
	/* grpc-go (0 when not linked in; see goinspect.GRPCLayout) */
	__u64 grpc_stream_deref;  /* 1: the embedded transport.Stream is a pointer */
	__u64 grpc_stream_embed;  /* transport.ServerStream's embedded Stream */
	__u64 grpc_stream_method; /* transport.Stream.method (string) */
	__u64 grpc_status_proto;  /* internal/status.Status.s (*spb.Status) */
	__u64 grpc_status_code;   /* spb.Status.Code (int32) */
	/* crypto/tls.Conn (0: unknown, stripped binary: the handshake is
	 * timed, its parameters left out) */
	__u64 tls_vers;        /* vers (uint16) */
	__u64 tls_did_resume;  /* didResume (bool) */
	__u64 tls_cipher;      /* cipherSuite (uint16) */
	__u64 tls_peer_certs;  /* peerCertificates ([]*x509.Certificate) */
	/* bufio.Reader (bufio_w 0: unknown, the client's statuses are not read) */
	__u64 bufio_buf;       /* buf ([]byte) */
	__u64 bufio_r;         /* r (int): the read position */
	__u64 bufio_w;         /* w (int): the write position */
	/* The response status, read at ServeHTTP's exit (the exit probe's
	 * cookie says which ResponseWriter it is: enum go_rw_kind). */
	__u64 resp_status;     /* net/http.response.status (int; 0: unknown) */
	__u64 resp_conn;       /* response.conn (*conn) */
	__u64 conn_hijacked;   /* conn.hijackedv (bool; 0: unknown, DWARF only) */
	__u64 h2_rws;          /* http2responseWriter.rws (*http2responseWriterState; 0 is a valid offset) */
	__u64 h2_rws_status;   /* http2responseWriterState.status (int; 0: unknown) */
};

/* What ServeHTTP's exit read of the status (go_event.status_flags). */
enum go_status_flags {
	GO_STATUS_READ = 1,         /* arg is the ResponseWriter's status at the exit (0: none written yet) */
	GO_STATUS_HTTP2 = 2,        /* an HTTP/2 stream's (http2responseWriterState) */
	GO_STATUS_HIJACK_KNOWN = 4, /* whether the HTTP/1 connection was hijacked was read */
	GO_STATUS_HIJACKED = 8,     /* it was: the handler took the connection over */
};

/* A TLS handshake's event: arg = version | cipher suite << 16. */
enum go_tls_flags {
	GO_TLS_KNOWN = 1,     /* the fields below were read */
	GO_TLS_RESUMED = 2,   /* a resumed session */
	GO_TLS_PEER_CERT = 4, /* the client sent a certificate (server handshakes) */
	GO_TLS_FAILED = 8,    /* the handshake returned an error */
};

enum proc_what {
	PROC_TRACED = 1, /* a process got its first traced connection */
	PROC_EXEC = 2,   /* a selected or traced process exec'd */
	PROC_EXIT = 3,   /* a traced process exited */
	PROC_CALLS = 4,  /* a traced process opened its first outbound connection */
};

struct proc_note {
	__u32 kind; /* EV_PROC */
	__u32 pid;
	__u32 what; /* enum proc_what */
	__u32 pad;
};

/* connect() failures with EADDRNOTAVAIL (no local port left for the
 * destination), counted per process, network namespace and destination
 * (connect_fail.h). port is in host order; addr holds 4 bytes for
 * FAMILY_INET, 16 for FAMILY_INET6. family 0: destinations past the
 * map's capacity. */
struct connect_fail_key {
	__u32 tgid;
	__u32 netns; /* inode of the caller's network namespace */
	__u16 family;
	__u16 port;
	__u8 addr[16];
};
