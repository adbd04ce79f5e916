/*
 * evn - a small, fast event-loop networking library.
 *
 * A server is a set of callbacks (serving, opened, closed, detached, data,
 * tick) run by one or more event loops. Each callback returns an action that
 * tells the loop what to do next. Every function returns 0 (or a count) on
 * success and a negative errno value on failure; evn_strerror() names it and
 * evn_errmsg() gives the detail of the last failure on the calling thread.
 *
 * Threads: unless a function says otherwise, call it only from the loop
 * thread that runs the connection or server it is given, which in practice
 * means from inside a callback. The functions marked "any thread" may be
 * called from anywhere while the server exists.
 *
 * The library never prints, never exits or aborts on a runtime condition and
 * never raises SIGPIPE in the process.
 *
 * Windows (64-bit, built with mingw-w64; see README.md): the same API, on
 * the iocp backend (I/O completion ports, the default there) or the poll
 * backend (WSAPoll). Sockets are SOCKETs where this header hands
 * one over (evn_socket_t), errors are the same negative errno values. Not
 * there, each refused where it is asked for and said so below: splicing,
 * the hand-off and systemd's sockets, reuseport, unix sockets where the
 * system has no AF_UNIX (before Windows 10 1803, and under Wine), TLS unless
 * evn was built against an OpenSSL for mingw, and c-ares (host names are
 * resolved with getaddrinfo on threads).
 */
#ifndef EVN_H
#define EVN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <sys/socket.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(EVN_BUILDING)
#define EVN_API __declspec(dllexport)
#elif defined(_WIN32) || !defined(__GNUC__)
#define EVN_API
#else
#define EVN_API __attribute__((visibility("default")))
#endif

/*
 * The version of this header. CMake reads these three lines, so the build,
 * the library's file names, evn.pc and the CMake package all say the same.
 * EVN_VERSION is the number evn_version() returns, for comparisons.
 */
#define EVN_VERSION_MAJOR 0
#define EVN_VERSION_MINOR 2
#define EVN_VERSION_PATCH 0
#define EVN_VERSION (EVN_VERSION_MAJOR * 10000 + EVN_VERSION_MINOR * 100 + EVN_VERSION_PATCH)

typedef struct evn_server evn_server;
typedef struct evn_conn evn_conn;

/*
 * A connection's identity, safe to keep and pass to other threads. Unlike an
 * evn_conn pointer, an id never refers to a different connection: once its
 * connection is gone, functions given the id ignore it.
 */
typedef uint64_t evn_id;

/*
 * The two types where Windows differs. On POSIX systems they are exactly
 * int and off_t, so programs and the ABI there are as they always were.
 *
 * evn_socket_t: the socket handed over by the detached callback, a SOCKET
 * on Windows (close it with closesocket).
 * evn_off_t: a file offset for evn_sendfile, 64 bits on Windows too (where
 * off_t is 32 bits unless _FILE_OFFSET_BITS=64).
 *
 * Windows' C library has no ESHUTDOWN, which evn returns: it is Winsock's
 * value there.
 */
#ifdef _WIN32
typedef SOCKET evn_socket_t;
typedef int64_t evn_off_t;
#ifndef ESHUTDOWN
#define ESHUTDOWN WSAESHUTDOWN
#endif
#else
typedef int evn_socket_t;
typedef off_t evn_off_t;
#endif

/* What the loop does after a callback returns. */
typedef enum evn_action {
    EVN_NONE = 0, /* carry on */
    EVN_CLOSE,    /* close this connection once its pending output is sent */
    EVN_DETACH,   /* hand the socket to the detached callback, see below */
    EVN_SHUTDOWN  /* stop the whole server */
} evn_action;

/* How new connections are shared between loops when nloops > 1. */
typedef enum evn_balance {
    EVN_BALANCE_RANDOM = 0,
    EVN_BALANCE_ROUND_ROBIN,
    EVN_BALANCE_LEAST_CONNECTIONS
} evn_balance;

/* Who stops reading a connection whose queued output is full (out_high). */
typedef enum evn_flow {
    /* evn does: past out_high it stops reading the connection, and at
     * out_low it fires drained and reads again. */
    EVN_FLOW_AUTO = 0,
    /* The application does, with evn_conn_read: evn never stops reading on
     * its own, while evn_conn_full and drained work as above. For a proxy,
     * whose connections' input and output belong to different peers. */
    EVN_FLOW_MANUAL
} evn_flow;

/*
 * The server's configuration and callbacks. Zero-initialise it and set what
 * you need; every callback is optional.
 *
 * evn copies it in evn_server_new, which is a macro passing the size of the
 * struct as this header defines it: a program built against an older evn.h
 * passes the older, shorter size, and the fields it does not know take
 * their zero defaults. New fields are only ever added at the end.
 */
typedef struct evn_events {
    /*
     * Number of event loops: 0 or 1 runs one loop on the thread that calls
     * evn_server_run(); N > 1 runs N loops, loop 0 on the calling thread and
     * the rest on threads of their own; -1 uses one loop per online CPU.
     */
    int nloops;
    /*
     * How a listener that all loops share hands new connections to loops.
     * A listener with ?reuseport=true instead gets one socket per loop and
     * the kernel spreads connections between them.
     */
    evn_balance balance;
    /*
     * The event backend: "epoll", "io_uring", "kqueue", "iocp", "poll" or
     * "auto"; NULL picks the environment variable EVN_BACKEND if set, else
     * the platform's default (epoll on Linux, kqueue on BSD and macOS, iocp
     * on Windows, poll elsewhere; poll is WSAPoll on Windows). Chosen once,
     * when the server is made:
     *
     * - "io_uring" (Linux 6.1 or later, evn built with liburing): the
     *   kernel does the I/O (accepts, receives into a ring of buffers it
     *   picks, sends) and reports completions. If it cannot be set up here
     *   (a kernel too old, kernel.io_uring_disabled, a container's seccomp
     *   profile), evn_server_new fails with that error (-EPERM, -ENOSYS,
     *   -ENOTSUP ...) and evn_errmsg() says why.
     * - "auto": io_uring where it can be set up, else the default; never
     *   fails for io_uring's sake. evn_server_backend() says which runs.
     * - "iocp" (Windows' default): the system does the I/O and reports
     *   completions to a port per loop: accepts (AcceptEx), connects
     *   (ConnectEx), receives and sends, UDP datagrams (WSARecvFrom,
     *   WSASendTo) and file regions on plain TCP connections
     *   (TransmitFile). TLS and PROXY headers go by readiness, a poll that
     *   completes to the same port. It costs 1.5 MiB of receive buffers a
     *   loop (96 of 16 KiB: up to 64 connections receive straight into
     *   one, the rest wait holding none), and 128 KiB for each UDP socket.
     *
     * Everything evn does works the same on every backend. What io_uring
     * costs besides: 4 MiB of receive buffers a loop (256 of 16 KiB, in
     * memory as traffic first passes through each), and the kernel's
     * ring. And one thing to know: once a loop's ring is torn down (when
     * evn_server_run returns), the kernel interrupts each thread that used
     * it once; a blocking socket call with a timeout that this thread makes
     * next (the thread that called evn_server_run ran loop 0) may return
     * EINTR once, as after a signal, and should be retried as such.
     */
    const char *backend;
    /* Server-wide user data, returned by evn_server_udata(). */
    void *udata;

    /*
     * The server is bound and its loops are about to run. Fires once, on
     * loop 0, before any other callback. evn_server_url() and friends give
     * the bound addresses (with the real port where port 0 was asked for).
     */
    evn_action (*serving)(evn_server *srv);
    /*
     * A stream connection was accepted. It may write a greeting and set
     * user data. EVN_DETACH and EVN_CLOSE act as from data. Not fired for UDP.
     * On a tls:// listener it fires once the TLS handshake has completed; a
     * connection whose handshake fails or times out is closed without any
     * event (neither opened nor closed). (A tls:// evn_connect is different:
     * its failures fire closed, see evn_connect.) On a listener with proxy=
     * it fires once the PROXY header has been read (and, for tls://, the
     * handshake that follows it has completed); a connection whose header
     * is refused is closed without any event too. A connection its client
     * resets before the server accepts it is opened on Linux (and then
     * closed with ECONNRESET), but Windows drops it at accept: no event
     * fires for it there.
     */
    evn_action (*opened)(evn_conn *c);
    /*
     * The connection is gone: err is 0 for a clean close (by the peer, by an
     * action or by shutdown), else a negative errno such as -ECONNRESET. The
     * connection's memory is freed when this returns; free your user data
     * here. The return value is ignored except for EVN_SHUTDOWN.
     * Not fired for UDP, for detached connections, or for an accepted TLS
     * connection that never completed its handshake, or one of a proxy=
     * listener whose PROXY header was refused (opened did not fire either).
     */
    evn_action (*closed)(evn_conn *c, int err);
    /*
     * The connection was detached: fd is now in blocking mode, removed from
     * the loop, and owned by the application, which must close it. Pending
     * output was sent first. Bytes kept with evn_keep() are discarded. The
     * evn_conn is freed when this returns (its id goes stale). Only
     * EVN_SHUTDOWN means anything as a return value.
     * A TLS connection cannot be detached (its session lives in evn): there
     * EVN_DETACH closes it instead, and closed gets -EPROTONOSUPPORT.
     * Windows: fd is the SOCKET (evn_socket_t), put back in blocking mode;
     * close it with closesocket().
     */
    evn_action (*detached)(evn_conn *c, evn_socket_t fd);
    /*
     * Input arrived: in[0..len) is valid only during the call and must not be
     * modified. Output written with evn_write() during the call is sent as
     * soon as it returns. After evn_wake(), data fires with in == NULL and
     * len == 0 (kept input, if any, stays kept). For UDP, data fires once per
     * datagram and what it writes goes back to the sender as one datagram.
     */
    evn_action (*data)(evn_conn *c, const char *in, size_t len);
    /*
     * Fires on loop 0 right after serving, then again *delay_ms milliseconds
     * after each return. *delay_ms holds the previous delay on entry (1000
     * the first time); a negative value stops the ticker.
     */
    evn_action (*tick)(evn_server *srv, int64_t *delay_ms);
    /*
     * A connection's queued output has fallen to its low-water mark after
     * having passed its high-water mark (see out_high). A producer that
     * paused on evn_conn_full() resumes here. Input kept with evn_keep() is
     * handed to data again right after this returns.
     */
    evn_action (*drained)(evn_conn *c);
    /*
     * A deadline set with evn_conn_set_deadline() has passed. Without this
     * callback the connection is closed with -ETIMEDOUT.
     */
    evn_action (*timeout)(evn_conn *c);
    /*
     * The peer shut down its sending side (a half-close); no more input
     * will come. Without this callback evn closes the connection once its
     * pending output is sent. With it, the connection stays open for output
     * until the application returns EVN_CLOSE (now or later), or calls
     * evn_conn_shutdown_write(), after which evn closes it once both
     * directions are finished.
     */
    evn_action (*eof)(evn_conn *c);
    /*
     * A graceful shutdown began (evn_shutdown_graceful); fires once for each
     * open connection, and for one that opens during the drain (accepted
     * just before the listeners closed, or whose TLS handshake or outbound
     * connect finished since) right after its opened. Return EVN_CLOSE for an
     * idle one, or let a busy one
     * finish (an HTTP server answers its current request with
     * "Connection: close"). evn_server_draining() tells later callbacks.
     */
    evn_action (*draining)(evn_conn *c);

    /*
     * Flow control. Once a connection's queued output passes out_high bytes
     * evn stops reading from it (evn_conn_full() is then non-zero) until the
     * output drains to out_low, when drained fires and reading resumes.
     * 0 means the defaults, 4 MiB and 1 MiB; per connection see
     * evn_conn_set_watermarks().
     */
    size_t out_high, out_low;
    /*
     * Hard cap: a write that would queue more than this many bytes of unsent
     * output fails with -ENOBUFS and the connection is closed (closed gets
     * -ENOBUFS). 0 means no cap, the default.
     */
    size_t out_cap;
    /*
     * Close connections that neither received input nor sent output for this
     * long (closed gets -ETIMEDOUT). 0 means never; per connection see
     * evn_conn_set_idle_timeout().
     */
    int64_t idle_timeout_ms;
    /*
     * At most this many stream connections at once, across all loops; 0 means
     * no limit. A connection beyond it is sent busy_reply (if not NULL, as
     * much as the socket takes at once) and closed without any event.
     */
    int max_conns;
    const char *busy_reply;
    /*
     * A TLS connection whose handshake has not completed this many
     * milliseconds after it was accepted is closed (without any event).
     * 0 means the default, 10000. Also the connect-and-handshake limit of a
     * tls:// evn_connect given no timeout of its own.
     */
    int64_t tls_handshake_timeout_ms;

    /* Fields added in 0.2. */

    /* The flow control of every connection (see evn_conn_set_flow). */
    evn_flow flow;

    /*
     * Where evn_connect looks host names up (see there); NULL for both is
     * the system's way: /etc/hosts, then the DNS servers of
     * /etc/resolv.conf. evn copies both strings.
     *
     * hosts_file: a file in the format of /etc/hosts that evn reads, each
     * time it looks a name up, before anything else: a name it lists has the
     * addresses given there, in the file's order, and is not kept (the next
     * connect reads the file again); other names are looked up as usual.
     * evn_server_new fails with -ENOENT if it cannot be read. Useful for
     * tests, and to pin a name without touching /etc/hosts.
     *
     * dns_servers: the DNS servers to ask instead of those of
     * /etc/resolv.conf, comma-separated, each an IP address with an
     * optional port: "10.0.0.2,10.0.0.3:5353,[::1]:53". Only with c-ares
     * (EVN_CARES); elsewhere evn_server_new fails with -ENOTSUP, and a
     * malformed list with -EINVAL.
     */
    const char *hosts_file;
    const char *dns_servers;

    /*
     * io_uring only: once a loop's wait has a completion, it goes on
     * collecting completions for up to batch_us microseconds (or until it
     * has about half a turn's worth) before running them, so that each
     * wake-up serves more connections. This trades latency for CPU: each
     * round trip may take up to batch_us longer, and under steady load the
     * loop sleeps and wakes fewer times per request. 0, the default: a
     * loop runs what it has as soon as it has anything. Needs Linux 6.12
     * (a minimum wait for io_uring_enter); on older kernels and on the other
     * backends it has no effect. At most 1000000; more is -EINVAL.
     * See the README's io_uring section for what it saves and costs.
     */
    uint32_t batch_us;
} evn_events;

/*
 * Parse the addresses, create and bind every listener and set up the loops,
 * without running them. Addresses are URLs:
 *
 *   tcp://host:port    tcp4://host:port   tcp6://[::1]:port   host:port (tcp)
 *   udp://host:port    udp4://host:port   udp6://[::1]:port
 *   unix:///path/to/socket   unix://relative/path
 *   tls://host:port?cert=PATH&key=PATH   tls4://...   tls6://...
 *   tls+unix:///path/to/socket?cert=PATH&key=PATH
 *
 * An empty host (tcp://:6380) listens on every interface, IPv6 and IPv4. A
 * host name is resolved here, once, with getaddrinfo. Options go in the query
 * string: reuseport=true|false (one socket per loop, bound with
 * SO_REUSEPORT), backlog=N (listen backlog, default 1024), fdname=NAME (the
 * socket systemd passed under that name, if any). A stale unix socket file
 * is replaced; evn_server_free() removes it. (Windows: reuseport=true
 * fails with -ENOPROTOOPT, there being no SO_REUSEPORT; unix:// with
 * -EAFNOSUPPORT where the system has no AF_UNIX, Wine among them, and a
 * unix socket's file left from before is not replaced.) An address that matches a
 * socket the process inherited, from systemd or from a running evn process,
 * uses it instead of binding: see "Restarts that drop nothing" below.
 *
 * deferaccept=SECONDS on a tcp:// listener (TCP_DEFER_ACCEPT, Linux) has the
 * kernel hand a connection over only once its first bytes have arrived, or
 * once the given time has passed without any. evn then reads at once, right
 * after opened, before the socket is registered with the poller: opened and
 * the first data event fire back to back, and a connection that is answered
 * and closed there costs no poller call at all. Use it where the client
 * speaks first (HTTP, Redis). On a tls:// listener the option applies but
 * the early read does not (the handshake is tried at once there anyway).
 *
 * tls:// is TCP with TLS (1.2 or later, when evn is built with OpenSSL), and
 * tls+unix:// a unix socket with TLS, with the same options:
 * cert= names a PEM certificate chain, key= its PEM private key. Clients may
 * be asked for a certificate with ca=PATH (PEM CAs to verify it against) and
 * verify=optional (checked if sent) or verify=require; the default is
 * verify=none. alpn=h2,http/1.1 lists the application protocols offered, in
 * the server's order of preference: the first one the client also offers is
 * chosen (see evn_conn_alpn); a client offering none of them gets none. The
 * files are read here, once. Under TLS 1.3 the server's order of suites
 * decides: AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305; under 1.2,
 * OpenSSL's default list. No renegotiation; idle connections give their
 * buffers back. The data callback sees plaintext; a peer
 * closing without a TLS close_notify is an ordinary end of input. The
 * client side of TLS (evn_connect's tls:// URLs, which verify the server by
 * default and take sni=) is described at evn_connect.
 *
 * proxy=v1|v2|any on a tcp:// (tcp4, tcp6), unix:// or tls:// listener
 * makes every connection begin with a PROXY protocol header, as HAProxy,
 * nginx, AWS, Azure and GCP load balancers send it to name the client they
 * relay: version 1 (a line of text), version 2 (binary), or either. The
 * header is read before anything else, before the TLS handshake on a
 * tls:// listener and before opened; data never sees it, and sees what
 * follows it, in the same packet or not, intact. From then on
 * evn_conn_remote_addr and evn_conn_remote_str give the client the header
 * names (its address and port), for the connection's whole life, also in
 * closed. A header that names none (v2 LOCAL, the balancer's own health
 * check; v1 "PROXY UNKNOWN"; v2 UNSPEC or unix addresses) leaves the
 * socket's peer, the balancer. evn_conn_local_addr stays the socket's own.
 * TLVs and the destination address in the header are not kept.
 *
 * proxy_from=CIDR,... (tcp:// and tls:// only; up to 32 entries such as
 * 10.0.0.0/8,192.168.1.7,fd00::/8, an address alone meaning just it) takes
 * headers only from peers in those networks: a connection from anywhere
 * else is closed before anything is read, as a client that could claim to
 * be any address. Without it every peer may send a header, so the listener
 * must not be reachable but through the balancers. An IPv4 peer reaching a
 * dual-stack listener (::ffff:a.b.c.d) matches the IPv4 entries.
 *
 * proxy_timeout=MS (default 5000; the specification asks receivers to
 * wait at least 3 s, a lost packet's retransmission) bounds the time from
 * the accept to the header's last byte; a tls:// listener's handshake
 * timeout starts after that.
 *
 * A connection is closed at once, without any event, and counted in its
 * loop's refused_proxy (see evn_server_stats), when: its first bytes
 * are not a header of the accepted version (a client talking to the
 * listener directly, or the wrong version configured); the header breaks
 * the specification; it is longer than 107 bytes (v1, the specification's
 * own limit) or 4096 (v2, with its TLVs; nginx's limit too); the peer ends
 * its input in the middle of it; it is not complete within proxy_timeout;
 * or the peer is outside proxy_from. A peer that closes before sending a
 * byte (a TCP health check, a port scan) is closed without being counted.
 * Other connections of the listener are not affected.
 *
 * On success *srvp holds the server and 0 is returned. On failure *srvp is
 * NULL and a negative errno is returned: -EINVAL for a malformed URL or an
 * unknown option (evn_errmsg() names the bad part), -ENOENT for a missing
 * certificate or key file, -EINVAL for one OpenSSL cannot use or a key that
 * does not match its certificate (evn_errmsg() names the file and OpenSSL's
 * reason), -ENOTSUP for tls:// without OpenSSL, or the errno of the failing
 * call (e.g. -EADDRINUSE). The strings need only live during the call.
 *
 * evn_server_new is a macro over evn_server_new_sized (and evn_serve over
 * evn_serve_sized), which takes the size of *ev, sizeof(evn_events) where the
 * caller was compiled, as ev_size; a binding from another language passes
 * the size of the struct it built. Nothing past that size is read. A size
 * smaller than evn 0.1's struct is -EINVAL; one larger than this library's
 * is accepted if every byte past the fields it knows is zero (a program
 * built against a newer evn.h that sets none of the newer fields), else it
 * is -ENOTSUP, and evn_errmsg() says so.
 */
EVN_API int evn_server_new_sized(evn_server **srvp, const evn_events *ev, size_t ev_size,
                                 const char *const *addrs, size_t naddrs);
#define evn_server_new(srvp, ev, addrs, naddrs)                                                    \
    evn_server_new_sized((srvp), (ev), sizeof *(ev), (addrs), (naddrs))

/*
 * Run the server until it shuts down: loop 0 runs on the calling thread and
 * the others on threads started here. On return every connection has been
 * closed (closed fired for each) and every loop thread joined. Returns 0, or
 * a negative errno if a loop could not start. Call at most once per server.
 */
EVN_API int evn_server_run(evn_server *srv);

/*
 * Close the listeners (removing unix socket files) and free the server.
 * Call after evn_server_run() has returned, or instead of running it. NULL is
 * allowed.
 */
EVN_API void evn_server_free(evn_server *srv);

/* evn_server_new(), evn_server_run() and evn_server_free() in one call. */
EVN_API int evn_serve_sized(const evn_events *ev, size_t ev_size, const char *const *addrs,
                            size_t naddrs);
#define evn_serve(ev, addrs, naddrs) evn_serve_sized((ev), sizeof *(ev), (addrs), (naddrs))

/*
 * Ask the server to stop. Any thread; safe to call several times and before
 * evn_server_run(), which then returns at once. Returns 0.
 */
EVN_API int evn_shutdown(evn_server *srv);

/*
 * Stop gracefully, from any thread: every loop closes its listeners at once
 * (new connections are refused), fires draining for each open connection,
 * and lets the connections finish; a loop ends when it has none left and
 * no more can be handed to it (loop 0 has closed the shared listeners). Those
 * still open after drain_ms milliseconds are closed, with -ETIMEDOUT. Queued
 * output is sent in full by a connection that closes itself meanwhile.
 * evn_shutdown() during the drain stops at once. drain_ms <= 0 is
 * evn_shutdown(). Returns 0.
 */
EVN_API int evn_shutdown_graceful(evn_server *srv, int64_t drain_ms);

/* Non-zero once a graceful shutdown has begun. Any thread. */
EVN_API int evn_server_draining(const evn_server *srv);

/*
 * Restarts that drop nothing. A server may start on listening sockets it
 * inherits instead of binding its own. A connection waiting in a socket's
 * accept queue belongs to the socket, so as long as some process holds the
 * socket, the connection waits to be accepted: none is refused or reset.
 *
 * Windows has neither: there every listener binds its own socket, and
 * evn_server_handoff fails with -ENOTSUP.
 *
 * From systemd (socket activation): evn_server_new reads LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES (only when LISTEN_PID is this process) the
 * first time it finds them, sets the sockets close-on-exec and removes the
 * three variables from the environment, as sd_listen_fds(1) does: call it
 * before starting threads that read the environment. Each address then
 * uses the inherited socket of the same kind (stream and listening for
 * tcp://, tls:// and unix://, datagram for udp://), family, address and
 * port (port 0: the first of that address), or the unix socket of the same
 * path; with the listener option fdname=NAME, the socket LISTEN_FDNAMES
 * calls NAME instead. An address no inherited socket matches is bound as
 * usual, so one configuration serves with and without systemd. Sockets no
 * server takes stay open and are kept for a later evn_server_new; evn never
 * closes one it has not taken. A unix socket's file belongs to systemd and
 * is never removed by evn.
 *
 * From a running evn process (a hand-off): see evn_server_handoff. The new
 * process's evn_server_new finds the channel in EVN_HANDOFF_FD (and, if
 * EVN_HANDOFF_PID is set, only when it names this process), reads the
 * offered sockets, waiting for them if they have not come yet, and removes
 * both variables. The descriptor is evn's from then on (closed once the
 * hand-off is over). Addresses match as for systemd's sockets; offered
 * sockets no address takes are closed (the offering process has its own).
 * If the channel closes before all sockets came, the server binds as
 * usual. The offering process is told "ok" when evn_server_run starts its
 * loops (after serving), or why not: the error of a failed
 * evn_server_new, or the server freed without running.
 *
 * A listener that finds several inherited sockets of its address (the
 * reuseport sockets of the old process's loops) takes them all, and its
 * loops share them out (socket i on loop i % nloops); a reuseport listener
 * with fewer than nloops binds the rest beside them when the inherited
 * sockets have SO_REUSEPORT, and otherwise shares them as a single socket.
 * An inherited socket is used as it is bound (backlog, IPV6_V6ONLY,
 * reuseport); of the URL's options only the TCP ones a listening socket
 * passes to its connections (nodelay, keepalive, fastopen, deferaccept) are
 * applied. evn_server_url gives its real address.
 */

/*
 * Hand this server's listening and UDP sockets to a new process (the
 * offering side) and drain. sock is a connected unix socket, the channel,
 * whose other end the new process has as EVN_HANDOFF_FD, typically one end
 * of a socketpair: the descriptor given to the new process without
 * close-on-exec, the variable set in its environment, this end kept here.
 *
 * Sends every socket (a shared listener's one and each loop's reuseport
 * socket), then waits, blocking, for the new process's answer. Only when it
 * says it serves does this server stop accepting and begin
 * evn_shutdown_graceful(srv, drain_ms): until then both processes accept
 * from the same queues, so no connection waits on a socket nobody accepts
 * on, and those this server accepted it serves through the drain (each is
 * told draining). A unix socket's file is then left for the new process.
 *
 * Returns 0 once the new process serves and the drain has begun. On a
 * failure this server carries on serving as before, and evn_errmsg() says
 * why: -ECANCELED when the new process said it will not serve (with its
 * reason, such as its evn_server_new error), -EPIPE when it closed the
 * channel first (it exited: exec failed, it crashed, or it is no evn
 * server), the errno of a failed send, -ESHUTDOWN if this server is
 * already stopping, -EALREADY while another hand-off is under way, -EDEADLK
 * on a loop thread.
 *
 * Blocks until the answer: call it from a thread of the application's own
 * (not a loop thread, not a callback), while the server runs, and let it
 * return before evn_server_free. sock stays the caller's, who closes it.
 * No timeout: a new process that hangs before it answers holds this call;
 * closing it (killing the process) ends the wait with -EPIPE.
 */
EVN_API int evn_server_handoff(evn_server *srv, int sock, int64_t drain_ms);

/*
 * Stop the server on SIGINT or SIGTERM, safely: call before evn_server_run()
 * on the thread that will run it, before it starts other threads of its own
 * (or block the two signals in them). The signals are blocked on this thread
 * (the loop threads inherit that) and read by loop 0 from a signalfd (Linux)
 * or a self-pipe, never handled inside a signal handler: the first starts
 * evn_shutdown_graceful(srv, drain_ms), a second stops at once. The signal
 * mask is restored when evn_server_run() returns. Returns 0 or a negative
 * errno.
 *
 * Windows has no such signals: there the console's Ctrl-C, Ctrl-Break and
 * close (and log-off or shut-down) do the same, through a console control
 * handler (SetConsoleCtrlHandler) that writes to a socket loop 0 reads.
 * Windows ends a process whose console closes a few seconds after telling
 * it, whatever the drain.
 */
EVN_API int evn_server_stop_on_signals(evn_server *srv, int64_t drain_ms);

/*
 * Make the data callback fire, with no input, for the connection with this
 * id, on its own loop thread. Any thread. Several wakes before the loop gets
 * to them may merge into one event. A wake for a connection that has closed
 * or detached is ignored. Returns 0 when queued, -EINVAL for an id that
 * cannot be this server's, -ESHUTDOWN if the server is stopping, -ENOMEM.
 */
EVN_API int evn_wake(evn_server *srv, evn_id id);

/*
 * Queue output for the connection with this id from any thread, copying
 * buf. The connection's loop appends it to the connection's output and sends
 * it; writes from one thread arrive in the order made (on the connection's
 * own loop thread, also in order with evn_write). Bytes for a
 * connection that has closed by the time its loop sees them are dropped (use
 * evn_send_owned to learn of it). Returns 0 when queued, -EINVAL for an id
 * that cannot be this server's, -ESHUTDOWN if the server is stopping, or
 * -ENOMEM.
 */
EVN_API int evn_send(evn_server *srv, evn_id id, const void *buf, size_t len);

/*
 * Like evn_send, but without a copy: evn takes buf and, once it no longer
 * needs it, calls done(buf, status, arg) on the connection's loop thread
 * (on the calling thread if evn_send_owned fails). status is 0 when every
 * byte was sent, else a negative errno (-ENOTCONN: the connection was gone).
 * done may be NULL. Returns as evn_send; on failure done has been called.
 */
EVN_API int evn_send_owned(evn_server *srv, evn_id id, void *buf, size_t len,
                           void (*done)(void *buf, int status, void *arg), void *arg);

/* evn_conn_listener() of a connection made with evn_connect(). */
#define EVN_OUTBOUND ((size_t)-1)

/*
 * The error closed gets when the host name of an evn_connect did not
 * resolve (no such name, no address of the family asked for, or no answer
 * from the DNS servers). evn's own, outside the range of errno values;
 * evn_strerror() names it, and evn_errmsg() in that closed callback gives
 * the resolver's reason.
 */
#define EVN_ERESOLVE (-10001)

/*
 * Open a client connection to url: tcp://, tcp4://, tcp6:// with an IP
 * address or a host name, unix://path, or tls://, tls4://, tls6:// (TCP with
 * TLS), or tls+unix://path (which has no name of its own to check the
 * server's certificate against: give sni=, or verify=none). Call from a
 * callback of srv (a loop thread): the connection belongs to the calling
 * loop and gets the same events as an accepted one. udata is set before any
 * event. opened fires once connected; if connecting fails or takes longer
 * than timeout_ms (0: no limit but the kernel's), closed fires instead, with
 * the error (-ECONNREFUSED, -ETIMEDOUT...). Output written before opened is
 * sent once connected. Options in the query string are for tls:// only;
 * listener options such as reuseport= are an error here. (Windows: the
 * iocp backend connects with ConnectEx, which reports a failure at once;
 * on the poll backend, WSAPoll before Windows 10 2004 does not report a
 * connect that fails, which then ends only with timeout_ms: give one there.)
 *
 * A host name never blocks the loop. The connection is made at once (its id
 * is valid, evn_send and evn_write queue output for it, evn_conn_fd() is -1
 * until it has a socket) and the name is looked up: with c-ares (evn built
 * with EVN_CARES) by the loop itself, on a resolver channel each loop makes
 * on its first name; otherwise with getaddrinfo on threads of the loop's
 * own (up to 4), whose answer the loop picks up. The system's /etc/hosts is
 * honoured, and evn_events.hosts_file and dns_servers change where names
 * come from. An answer is kept by the loop for its TTL (a day at most;
 * getaddrinfo gives none, so without c-ares nothing is kept), and later
 * connects to the name use it until then and look it up again after: a
 * client that connects for each request follows the name as it is
 * re-pointed. Connects waiting for the same name share one lookup. Every
 * address of the answer is tried, in the order the resolver gives (c-ares
 * and getaddrinfo sort them as RFC 6724 says, IPv6 first where it can be
 * reached; a hosts_file gives them in the file's order), tcp4:// and
 * tcp6:// asking for their family only: when one refuses, or does not
 * connect within timeout_ms (which then applies to each address, and to the
 * lookup), the next is tried, and closed fires only once the last has
 * failed, with the last one's error; evn_errmsg() in that closed callback
 * names each address and its error. A name that does not resolve (no such
 * name, none of the family asked for, no DNS server answering) closes the
 * connection with EVN_ERESOLVE, and evn_errmsg() there gives the
 * resolver's reason, e.g. "tcp://cache-1.internal:6380: cache-1.internal:
 * Domain name not found". evn_server_free waits for getaddrinfo calls under
 * way.
 *
 * tls:// (when evn is built with OpenSSL; TLS 1.2 or later): after the TCP
 * connect, the client handshake runs inside the loop, and opened fires once
 * it is complete; then data sees plaintext and writes are encrypted. The
 * timeout covers connect and handshake together; timeout_ms 0 means
 * evn_events.tls_handshake_timeout_ms (default 10 s) for both, so that a
 * server that never answers cannot hold the connection forever. Options:
 *
 *   verify=require|none  check the server's certificate (the default) or
 *                        accept any certificate at all. Without verify=none
 *                        a connection is only as safe as its CA list.
 *   ca=PATH              PEM CA certificates to check the server's chain
 *                        against; without it, the system's default store
 *                        (OpenSSL's default paths, SSL_CERT_FILE and
 *                        SSL_CERT_DIR).
 *   sni=NAME             the server name: sent in the handshake (SNI) and,
 *                        with verify=require, the name (DNS name, or an IP
 *                        address, checked against the certificate's IP
 *                        entries) the certificate must be for. Without it
 *                        the URL's host takes its place: a host name is
 *                        sent and checked, an IP address only checked.
 *   cert=PATH&key=PATH   a client certificate chain and its key, for
 *                        servers that ask for one (both or neither).
 *   alpn=h2,http/1.1     the application protocols offered, in order; the
 *                        one the server picks is evn_conn_alpn()'s.
 *
 * The files are read on the first evn_connect with a given set of ca=, cert=,
 * key=, verify= and alpn= options, and the resulting OpenSSL context is kept
 * by the server (until evn_server_free) for later connections with the same
 * options; a file changed later is not read again. With it each loop keeps
 * the session of its last connection to each address, port and sni= (up to
 * 32 per option set) and offers it to its next connection there, which then
 * skips the key exchange and certificate check if the server accepts it
 * (evn_conn_tls_resumed). A TLS 1.3 ticket is offered once; the server's next
 * ticket replaces it. Sessions are not shared between loops: each loop's
 * first connection to a server makes a full handshake.
 *
 * A tls:// connection that fails before opened fires closed with: the
 * connect's error (-ECONNREFUSED...), -ETIMEDOUT, -EACCES when the server's
 * certificate did not verify (untrusted, expired, or for another name), or
 * -EPROTO (or a socket error such as -ECONNRESET) when the handshake failed
 * otherwise. For a failed handshake evn_errmsg(), read during that closed
 * callback, says why, e.g.
 * "TLS handshake with 127.0.0.1:443: certificate verify failed: hostname
 * mismatch". Under TLS 1.3 a server that rejects the client's certificate
 * does so after the client's side of the handshake is over: opened fires,
 * then closed with -EPROTO.
 *
 * Returns 0 and the new connection's id in *id (if not NULL), or a negative
 * errno, with no event to follow: -EINVAL for a bad URL, a malformed host
 * name or an unknown or misplaced option (evn_errmsg() says which), -ENOENT for a
 * missing ca, cert or key file, -EINVAL for one OpenSSL cannot use or a key
 * that does not match its certificate (evn_errmsg() names the file and
 * OpenSSL's reason), -ENOTSUP for tls:// without OpenSSL, -EPERM when not
 * called on one of srv's loop threads, -ENOMEM, or the error of a connect
 * to an IP address that failed at once (for a host name, such an error
 * moves on to the next address, and closed reports the last).
 */
EVN_API int evn_connect(evn_server *srv, const char *url, int64_t timeout_ms, void *udata,
                        evn_id *id);

/* PROXY protocol versions, for evn_connect_proxy_header. */
enum { EVN_PROXY_V1 = 1, EVN_PROXY_V2 = 2 };

/*
 * Have the outbound connection id, which evn_connect has just made on this
 * loop, begin with a PROXY protocol header (as a load balancer sends it,
 * see proxy= at evn_server_new), so that the server it reaches learns of
 * the client this connection acts for. Call it right after evn_connect, in
 * the same callback (on the loop thread, before the connection is
 * connected). Once connected the header goes out first, in the clear:
 * before a tls:// URL's handshake, and before any output written with
 * evn_write or evn_send. evn_conn_pending counts it until it is sent.
 *
 * version is EVN_PROXY_V1 (a line of text) or EVN_PROXY_V2 (binary). src
 * is the client and dst the address the client reached (for a proxy, the
 * accepted connection's evn_conn_remote_addr and evn_conn_local_addr, so a
 * chain of proxies passes the first client on), each AF_INET or AF_INET6,
 * read for the call only; a pair of mixed families is written as IPv6, the
 * IPv4 address as ::ffff:a.b.c.d, and an IPv4-mapped pair as IPv4. With
 * both NULL the header names no client: v2 LOCAL, v1 "PROXY UNKNOWN", and
 * the receiver keeps the socket's peer (for a health check, or a client
 * that came over a unix socket).
 *
 * Returns 0; -EINVAL for another version, only one address, or an id that
 * is not an outbound connection of the calling loop; -EAFNOSUPPORT for an
 * address neither IPv4 nor IPv6; -EISCONN once the connection is connected
 * (opened has fired, or is about to); -EALREADY if it has a header already;
 * -EPERM when not called on one of srv's loop threads; -ENOMEM. evn_errmsg()
 * says which. A socket that cannot take the header at once when connected
 * (it always can) fails the connection with -ENOBUFS.
 */
EVN_API int evn_connect_proxy_header(evn_server *srv, evn_id id, int version,
                                     const struct sockaddr *src, const struct sockaddr *dst);

/* The user data given in evn_events.udata. Any thread. */
EVN_API void *evn_server_udata(const evn_server *srv);
/* The number of loops the server runs. Any thread. */
EVN_API int evn_server_nloops(const evn_server *srv);
/* The name of the backend in use: "epoll", "io_uring", "kqueue" or "poll"
 * (never "auto": the one it chose). Any thread. */
EVN_API const char *evn_server_backend(const evn_server *srv);
/* The number of addresses given to evn_server_new(). Any thread. */
EVN_API size_t evn_server_naddrs(const evn_server *srv);
/*
 * The i-th address as bound, as a URL with numeric host and real port, such
 * as "tcp://127.0.0.1:40123", "tcp://[::]:6380" or "unix:///tmp/s.sock".
 * NULL if i is out of range. The string lives as long as the server. Any
 * thread.
 */
EVN_API const char *evn_server_url(const evn_server *srv, size_t i);
/*
 * The i-th bound address as a socket address; *len (if not NULL) receives
 * its length. NULL if i is out of range. Lives as long as the server.
 */
EVN_API const struct sockaddr *evn_server_addr(const evn_server *srv, size_t i, socklen_t *len);

/*
 * A server's statistics, or one loop's, as evn_server_stats fills them.
 * Every field is a count since evn_server_new, and only ever grows, but
 * conns_open. "Connections" are stream connections (TCP, unix, TLS);
 * UDP has none, only bytes.
 *
 * New fields are only ever added at the end (evn_server_stats takes the
 * size of the struct the caller has).
 */
typedef struct evn_stats {
    /* Connections open now: conns_accepted + conns_outbound - conns_closed.
     * A connection counts from when its loop takes it on (before its TLS
     * handshake, before opened) until its socket is closed (after closed
     * fired, and after a lingering close's wait) or detached. */
    uint64_t conns_open;
    /* Connections accepted from the listeners and taken on by this loop,
     * including those whose TLS handshake then fails (refused_tls); not those
     * refused for max_conns. With several loops a connection counts on the
     * loop that runs it, not the one that accepted it. */
    uint64_t conns_accepted;
    /* Connections made with evn_connect, including those whose connect or
     * handshake then fails (closed fires for them). */
    uint64_t conns_outbound;
    /* Connections whose socket was closed, or detached (EVN_DETACH). */
    uint64_t conns_closed;
    /* Connections closed at once because max_conns were open, without any
     * event (busy_reply, if set, sent first); counted by the loop that
     * accepted them (loop 0 for a listener the loops share), and not in
     * conns_accepted. */
    uint64_t refused_max_conns;
    /* Accepted TLS connections closed before their handshake completed:
     * it failed (not TLS, a protocol error, a client certificate that did not
     * verify), timed out (tls_handshake_timeout_ms) or the peer left. No
     * event fired for them; they are counted in conns_accepted and
     * conns_closed too. Not outbound connections: their closed reports it. */
    uint64_t refused_tls;
    /* Connections of proxy= listeners closed for their PROXY header: not a
     * header, malformed, too long, cut short, late, or from a peer outside
     * proxy_from (see the listener option proxy=). */
    uint64_t refused_proxy;
    /* Bytes of input read from the connections (for TLS the plaintext, so
     * neither the handshake nor the records' overhead), including input
     * spliced to another connection (evn_conn_splice) and input read and
     * dropped while a close lingers; and of UDP datagrams received. */
    uint64_t bytes_in;
    /* Bytes of output sent on the connections (for TLS the plaintext),
     * evn_write, evn_send, file regions and spliced bytes alike, as the
     * socket took them (not when queued); and of UDP replies sent. Not a
     * busy_reply. */
    uint64_t bytes_out;
    /* Loop turns: each wait for events, with the work that follows it. */
    uint64_t turns;
    /* Events the waits returned and the loop handled: a socket ready (with
     * epoll and poll its read and write sides count once together, with
     * kqueue as two), or with io_uring an operation completed; the wake-ups
     * of a loop by other threads count too. */
    uint64_t events;
    /* Nanoseconds the loop spent waiting for events, and working: from the
     * end of one wait to the start of the next (callbacks, I/O, timers, the
     * work at the end of the turn). The two add up to the loop's running
     * time; they come from the clock the loop reads around each wait, so a
     * turn's work is counted when the turn ends, and a wait when it ends. */
    uint64_t wait_ns;
    uint64_t work_ns;
    /* Connections the system reported gone at accept, without a socket: the
     * peer reset them while they waited in the listen backlog. No event fires
     * for them, and they are not in conns_accepted. Linux hands such a
     * connection to accept like any other (it opens, then closes with
     * -ECONNRESET), so there this stays 0; BSD, macOS and Windows report it
     * at accept. Counted by the loop that accepted. */
    uint64_t accept_gone;
    /* Accepts that failed for want of descriptors (EMFILE, ENFILE) or
     * kernel memory (ENOBUFS, ENOMEM). Each stops that loop's accepting
     * until one of its connections closes or 100 ms pass; the clients wait
     * in the backlog meanwhile, none is dropped. Counted by the loop that
     * accepted. */
    uint64_t accept_failed;
} evn_stats;

/* evn_server_stats' loop for the whole server. */
#define EVN_STATS_ALL (-1)

/*
 * Fill *out with loop's statistics (0 .. nloops-1), or with the whole
 * server's (EVN_STATS_ALL), whose every field is the sum of the loops'.
 * Any thread, at any time between evn_server_new and evn_server_free:
 * while the server runs (from its callbacks too), before it runs (all
 * zero) and after evn_server_run has returned (the final counts).
 *
 * Each loop counts on its own thread and the call reads without stopping
 * it, so each counter is exact as of some moment during the call, but the
 * counters are not all read at one moment: while the loops run, two of them
 * may disagree by what happened meanwhile (conns_open with conns_accepted -
 * conns_closed, or the totals with a per-loop call made just before). Read
 * on a loop's own thread, that loop's counters agree; once the server has
 * stopped, all of them do. Seen from another thread, a loop's bytes_in and
 * bytes_out are brought up to date at the end of each of its turns (before
 * it waits) and whenever one of its connections closes, so they can lag by
 * the turn under way: a reply can reach its client a moment before its
 * bytes show, but not after the connection's closed callback has run.
 *
 * evn_server_stats is a macro over evn_server_stats_sized that passes
 * sizeof *out, the size of evn_stats where the caller was compiled: the
 * library fills that many bytes, so a program built against an older
 * evn.h gets the fields it knows, and one built against a newer evn.h
 * gets 0 in the fields this library does not know. Returns 0, or -EINVAL
 * for a NULL srv or out or a loop out of range.
 */
EVN_API int evn_server_stats_sized(const evn_server *srv, int loop, evn_stats *out, size_t size);
#define evn_server_stats(srv, loop, out) evn_server_stats_sized((srv), (loop), (out), sizeof *(out))

/* The server this connection belongs to. */
EVN_API evn_server *evn_conn_server(const evn_conn *c);
/* The connection's id (see evn_id); 0 for a UDP pseudo-connection. */
EVN_API evn_id evn_conn_id(const evn_conn *c);
/* Per-connection user data, NULL until set. */
EVN_API void *evn_conn_udata(const evn_conn *c);
EVN_API void evn_conn_set_udata(evn_conn *c, void *udata);
/* The index, in the address list, of the listener that accepted it, or
 * EVN_OUTBOUND for a connection made with evn_connect(). */
EVN_API size_t evn_conn_listener(const evn_conn *c);
/* The index of the loop that runs it, 0 .. nloops-1. */
EVN_API int evn_conn_loop(const evn_conn *c);
/* The socket. Use it for socket options only; evn owns it (and for TLS,
 * every byte on it is encrypted). Windows: a SOCKET, INVALID_SOCKET where
 * -1 is said. */
EVN_API evn_socket_t evn_conn_fd(const evn_conn *c);
/* Non-zero for a UDP pseudo-connection. */
EVN_API int evn_conn_is_udp(const evn_conn *c);
/* Non-zero for a connection accepted on a tls:// listener or made by
 * evn_connect to a tls:// URL. */
EVN_API int evn_conn_is_tls(const evn_conn *c);
/*
 * The application protocol negotiated with ALPN on a TLS connection (one of
 * the alpn= names of its listener or evn_connect URL, such as "h2"), or
 * NULL if none was (no alpn= option, no protocol in common, or not TLS). The
 * string lives as long as the server.
 */
EVN_API const char *evn_conn_alpn(const evn_conn *c);
/*
 * Non-zero if the connection's TLS handshake is complete and resumed an
 * earlier session (a ticket or session id) instead of making a full one: on
 * an accepted connection, the client came back with a session this server
 * gave it; on one made by evn_connect, evn offered a session kept from an
 * earlier connection to the same address, port and sni= with the same
 * options, and the server took it. 0 for a full handshake, one still under
 * way, or no TLS.
 */
EVN_API int evn_conn_tls_resumed(const evn_conn *c);
/*
 * The connection's local or remote address, copied to *ss with its length in
 * *len. For UDP the remote address is the current datagram's sender. On a
 * listener with proxy= the remote address is the client the PROXY header
 * named, if it named one (see evn_server_new). Returns 0 or a negative errno.
 */
EVN_API int evn_conn_local_addr(const evn_conn *c, struct sockaddr_storage *ss, socklen_t *len);
EVN_API int evn_conn_remote_addr(const evn_conn *c, struct sockaddr_storage *ss, socklen_t *len);
/*
 * The same addresses as text, written NUL-terminated to buf: "1.2.3.4:80",
 * "[::1]:80" or a unix socket path ("" for an unnamed one). Returns the
 * length written or a negative errno (-ENOSPC when buf is too small; 64 bytes
 * always fit an IP address, 110 a unix path).
 */
EVN_API int evn_conn_local_str(const evn_conn *c, char *buf, size_t size);
EVN_API int evn_conn_remote_str(const evn_conn *c, char *buf, size_t size);
/* Format any socket address the same way. */
EVN_API int evn_addr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

/*
 * Queue len bytes of output, copying them; buf may be reused at once. Output
 * is sent in order: for the connection whose callback is running, as soon as
 * the callback returns; for another connection of the same loop, before the
 * loop next waits. Bytes the socket cannot take yet stay queued and are sent
 * when it becomes writable. Returns 0, -ENOMEM, or -EPIPE if the connection
 * is already closing. On -ENOMEM or -ENOBUFS (the out_cap hard cap) the
 * connection is closed with that error once the callback returns.
 */
EVN_API int evn_write(evn_conn *c, const void *buf, size_t len);

/*
 * Queue length bytes of the file fd, starting at offset, as output, in order
 * with evn_write() and the rest. evn duplicates fd, so the caller may close
 * its own descriptor at once; the file's content is read as the socket takes
 * it, so bytes changed before then go out changed. length 0 means up to the
 * end of the file as it is now. On a plain socket the bytes go from the page
 * cache to the socket with sendfile(2), without a copy through user memory;
 * over TLS they are read and encrypted piece by piece. Like evn_write the
 * region counts as queued output (evn_conn_pending, evn_conn_full, drained
 * and out_cap all see it), and it may be called from any callback on the
 * connection's loop thread.
 *
 * fd must be a regular file open for reading and the region must lie within
 * the file. Returns 0; -EINVAL for a bad fd or region or a UDP connection;
 * -EPIPE if the connection is closing or shut down for writing; -EMFILE if
 * no descriptor is left for the duplicate; -ENOMEM or -ENOBUFS (out_cap), on
 * which, as with evn_write, the connection is closed with that error once the
 * callback returns. A file that shrinks before it is sent closes the
 * connection with -EIO. Like splice(2), sendfile(2) raises SIGPIPE when the
 * peer is gone; evn blocks SIGPIPE on the loop's thread from the first such
 * call until the loop ends, as described at evn_conn_splice.
 *
 * Windows: fd is a C runtime descriptor (_open, with _O_BINARY), and offset
 * is 64 bits there whatever off_t is. On the iocp backend a plain TCP
 * connection's region goes with TransmitFile (up to 1 GiB a call), from
 * the system's file cache; otherwise (TLS, a unix socket, the poll
 * backend) it is read and sent piece by piece.
 */
EVN_API int evn_sendfile(evn_conn *c, int fd, evn_off_t offset, size_t length);

/*
 * evn_sendfile, taking ownership of fd instead of duplicating it, for a
 * server that opens a file only to send it: three system calls fewer per
 * file (no fcntl F_GETFL, no dup, and one close instead of the caller's and
 * the duplicate's); the fstat for the type and size remains.
 *
 * From the call on fd is evn's, whatever the call returns. evn closes it
 * once the region is sent, or dropped because the connection closed first;
 * at once, before returning, on every error return (-EINVAL, -EPIPE,
 * -ENOMEM, -ENOBUFS) and for an empty region (0, nothing queued); a
 * negative fd has nothing to close (-EINVAL). So the caller never closes fd
 * nor uses it after the call; a descriptor still needed elsewhere is for
 * evn_sendfile.
 *
 * Returns as evn_sendfile (never -EMFILE: there is no duplicate), with one
 * difference: the access mode is not checked, so a descriptor not open for
 * reading (O_WRONLY, O_PATH) is queued and fails when its turn to be sent
 * comes, closing the connection with -EBADF. fd is used as it is: no
 * close-on-exec flag is added, so open it with O_CLOEXEC if another thread
 * may exec. Call it from the connection's loop thread, like evn_sendfile.
 */
EVN_API int evn_sendfile_owned(evn_conn *c, int fd, evn_off_t offset, size_t length);

/*
 * Call from the data callback: the last n bytes of the input it was given
 * were not consumed. They are kept (copied, once) and handed back, followed by
 * whatever arrives next, at the start of the next data event's input.
 * Without this call all input counts as consumed. Returns 0, -EINVAL if n is
 * larger than the input, or -ENOMEM. Kept input that would pass 4 GiB
 * closes the connection with -ENOBUFS.
 */
EVN_API int evn_keep(evn_conn *c, size_t n);

/* Bytes of output queued for this connection and not yet sent. */
EVN_API size_t evn_conn_pending(const evn_conn *c);

/*
 * Close c once the output queued so far is sent, as EVN_CLOSE from one of
 * its own callbacks would; closed then gets err (0, or a negative errno
 * such as -ECONNRESET to pass on why, for instance from the other half of a
 * proxied pair). c may be any open stream connection of the calling loop,
 * not only the one whose callback is running; its closed callback never
 * runs inside this call, but when the running callback returns (c is the
 * running connection) or before the loop next waits (any other). From now
 * on c is not read and writes to it fail with -EPIPE. A negative err closes
 * at once after the output is sent, without the lingering close that
 * protects a clean one (see evn_conn_shutdown_write and the README).
 * Returns 0; -EINVAL for UDP or a positive err; -EPERM when not called on
 * c's loop thread; -EALREADY if c is already closing or detaching (closed
 * will get the earlier reason).
 */
EVN_API int evn_conn_close(evn_conn *c, int err);

/*
 * Half-close: once the output queued so far is sent, shut down the sending
 * side (the peer reads end-of-file); input keeps arriving. Later writes fail
 * with -EPIPE. When the peer has shut down its side too (see eof), evn
 * closes the connection. Over TLS a close_notify goes first, then the TCP
 * shutdown. Returns 0 or -EINVAL (UDP, or already closing).
 */
EVN_API int evn_conn_shutdown_write(evn_conn *c);

/*
 * Stop (on = 0) or resume (on = 1) reading input from this connection, for
 * backpressure between connections: a proxy stops reading one side while
 * the other side's output is full and resumes in drained. Output still
 * flows while reading is stopped. Returns 0, or -EINVAL for UDP.
 */
EVN_API int evn_conn_read(evn_conn *c, int on);

/*
 * Splice from's input into to's socket, for a proxy: from then on the loop
 * moves the bytes arriving on from to to with splice(2) through a pipe,
 * without copying them to user memory, and the data callback no longer
 * fires for from (wakes still do, with no input). One direction per call;
 * call it again with the two swapped for the other. Order is kept: output
 * already queued on to (evn_write, evn_send, evn_sendfile) goes first, then
 * input kept on from with evn_keep (also when called from from's data
 * callback after evn_keep), then the spliced bytes. Output written to to
 * later goes out between spliced pieces, at no particular byte.
 *
 * Backpressure is the kernel's: when to cannot take more, from is not read
 * until it can; no buffer grows. When from's peer shuts down its side, evn
 * shuts down to's sending side once everything before has been delivered
 * (evn_conn_shutdown_write), then from's end of input goes on as usual (the
 * eof callback, or the close). Errors close the connection concerned as
 * usual. When to closes, the splice ends: bytes still in the pipe are
 * dropped and from's input goes to its data callback again. When from
 * closes, its pipe goes with it.
 *
 * splice(2) into a socket whose peer is gone raises SIGPIPE, which no flag
 * prevents; to keep the promise that evn never raises one in the process,
 * the first call on a loop blocks SIGPIPE on that loop's thread until the
 * loop ends (then restores it), and evn takes back any SIGPIPE a splice
 * raised. The application's own writes on that thread during the loop see
 * EPIPE without a signal too.
 *
 * Cost: a pipe per spliced direction, two descriptors, made here and closed
 * with from (at the pipe's default size, 64 KiB in flight at most). Moving
 * a piece costs two splice calls where relaying costs a read and a write; it
 * pays for bulk transfers, not for small request-reply traffic (see
 * examples/proxy/README.md).
 *
 * Both must be open, plain (not TLS) stream connections of the same loop,
 * called on that loop's thread. Returns 0; -EINVAL for UDP, the same
 * connection twice or two loops; -ENOTSUP for TLS or a platform without
 * splice(2) (only Linux has it: not BSD, macOS or Windows); -ENOTCONN while either is still
 * connecting; -EPIPE if from is closing or to is closing or shut down for writing; -EBUSY if from
 * is already spliced or to already receives a splice; -EMFILE, -ENFILE or -ENOMEM (making the
 * pipe), after which the two are as they were and can still be relayed by hand.
 */
EVN_API int evn_conn_splice(evn_conn *from, evn_conn *to);

/*
 * Non-zero while the connection's queued output is above its high-water
 * mark. A handler that produces output in a loop (pipelined requests, a
 * file) should stop, keep the rest of its input with evn_keep(), and carry on
 * in drained or the next data event.
 */
EVN_API int evn_conn_full(const evn_conn *c);

/*
 * Set who stops reading this connection when its queued output is full
 * (evn_flow; the default is evn_events.flow). Switching to EVN_FLOW_MANUAL
 * while evn has stopped reading it reads it again at once; switching to
 * EVN_FLOW_AUTO while it is above its high-water mark stops reading now.
 * Returns 0, or -EINVAL for UDP or a value not in evn_flow.
 */
EVN_API int evn_conn_set_flow(evn_conn *c, evn_flow flow);

/*
 * Set this connection's high- and low-water marks for queued output (see
 * evn_events.out_high); a mark above 4 GiB counts as 4 GiB. Returns 0,
 * -EINVAL if low > high or high is 0, or -ENOMEM.
 */
EVN_API int evn_conn_set_watermarks(evn_conn *c, size_t high, size_t low);

/*
 * Close the connection (closed gets -ETIMEDOUT) once it has neither received
 * input nor sent output for ms milliseconds; 0 turns it off. Arming costs no
 * system call. Returns 0, or -EINVAL for a negative ms or a UDP connection.
 */
EVN_API int evn_conn_set_idle_timeout(evn_conn *c, int64_t ms);

/*
 * Fire the timeout callback once, ms milliseconds from now (replacing any
 * earlier deadline); 0 cancels. Useful as a read deadline: set it when a
 * request starts, clear it when the request is complete. Returns 0, or
 * -EINVAL for a negative ms or a UDP connection.
 */
EVN_API int evn_conn_set_deadline(evn_conn *c, int64_t ms);

/* EVN_VERSION of the library running, which may be newer than the header
 * the program was built with. Any thread. */
EVN_API int evn_version(void);
/* The same as text, "0.2.0". Any thread. */
EVN_API const char *evn_version_string(void);

/*
 * Route every allocation evn makes through these functions instead of the C
 * library's malloc, realloc, calloc and free: connections, output buffers,
 * kept input, the loops' own tables. All four, or all four NULL to go back to
 * the C library's. They may be called from any loop thread at once, so they
 * must be thread-safe; evn copes with a NULL return as with the C library
 * running out of memory (the connection concerned is closed with -ENOMEM).
 * realloc_fn(NULL, n) must act as malloc_fn(n); evn never asks for 0 bytes.
 * Allocations made by OpenSSL for TLS are OpenSSL's: see its
 * CRYPTO_set_mem_functions.
 *
 * Call it while no server exists, typically first thing in main: returns
 * 0, -EINVAL if only some of the four are NULL, or -EBUSY while a server
 * exists (between evn_server_new and evn_server_free), whose memory came
 * from the functions in place when it was made. Any thread.
 */
EVN_API int evn_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                              void *(*calloc_fn)(size_t, size_t), void (*free_fn)(void *));

/* A static description of a (negative or positive) errno value. */
EVN_API const char *evn_strerror(int err);
/*
 * The detail of the last failure reported by an evn function on the calling
 * thread, e.g. "tcp://:99999: port out of range"; "" if there is none.
 */
EVN_API const char *evn_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif
