/*
 * What the example servers share: their command-line flags, printing the
 * addresses they listen on, and stopping cleanly on SIGINT or SIGTERM.
 */
#ifndef EVN_EXAMPLES_COMMON_H
#define EVN_EXAMPLES_COMMON_H

#include "compat.h"
#include "evn.h"

struct ex_opts {
    int port;             /* TCP port on every interface, -1 for none */
    int udp_port;         /* -1 for none */
    const char *unixsock; /* NULL for none */
    int loops;
    evn_balance balance;
    int reuseport;
    const char *backend;
    /* With both set, also listen on tls://:tls_port (0, the default: any
     * free port, printed at start) with this PEM certificate chain and key. */
    const char *tls_cert;
    const char *tls_key;
    int tls_port;
    /* Close a TLS connection whose handshake takes longer than this; 0 (the
     * default) leaves evn's own default, 10 s. */
    int tls_handshake_ms;
    /* URL options for the tcp:// and tls:// listeners, "deferaccept=1&fastopen=64"
     * (see evn.h's address list); NULL for none. */
    const char *tcp_options;
};

/*
 * Parse the common flags (--port, --loops, --balance, --unixsocket,
 * --reuseport, --backend, --tcp-options, --udp if allow_udp, --tls-cert,
 * --tls-key, --tls-port, --tls-handshake-ms, --help) into o, whose fields hold
 * the defaults on entry. On a bad flag, print the usage and exit 2;
 * --tls-cert and --tls-key go together, and --tls-port and --tls-handshake-ms
 * need them.
 */
void ex_parse(int argc, char **argv, struct ex_opts *o, const char *name, int allow_udp);

/* A flag of one example's own, taking a value: "--max-body BYTES". */
struct ex_option {
    const char *flag; /* "--max-body" */
    const char *help; /* its usage line, "--max-body BYTES  largest request body ..." */
    /* Take the value; return 0, or -1 if it is bad (usage, exit 2). */
    int (*set)(const char *value);
};

/*
 * ex_parse, also accepting the nmore flags in more[] (each followed by a
 * value), which the usage lists before --help.
 */
void ex_parse_more(int argc, char **argv, struct ex_opts *o, const char *name, int allow_udp,
                   const struct ex_option *more, size_t nmore);

/*
 * Non-zero once SIGUSR2 has handed the listening sockets to a new copy of
 * the program: the drain under way is an upgrade, and clients have a server
 * to go on with. (ex_run starts the copy: the same path, read at start, and
 * arguments; it waits for it to serve, then drains and exits. A copy that
 * fails leaves this one serving, with the reason on stderr.)
 */
int ex_upgrading(void);

/* The serving callback the examples use: one line per listening address. */
evn_action ex_print_serving(evn_server *srv);

/*
 * Build the address list from o (tcp, unix, udp, then tls), run the server
 * until SIGINT or SIGTERM (or a shutdown action), and return the process exit
 * status. SIGUSR2 upgrades (see ex_upgrading); sockets passed by systemd are
 * used for the addresses they match.
 */
int ex_run(const char *name, evn_events *ev, const struct ex_opts *o);

/*
 * ex_run with more: the nurls addresses in urls[] are served too, after those
 * o asks for. One without a query string of its own gets the same options as
 * o's TCP listener (reuseport, --tcp-options) if it is TCP or TLS, reuseport
 * if it is UDP, and none if it is a unix socket. stopped(srv), if not NULL,
 * is called once the server has stopped and before it is freed: the place to
 * stop threads of the application's own that may still call evn_send or
 * evn_wake.
 */
int ex_run_ext(const char *name, evn_events *ev, const struct ex_opts *o, const char *const *urls,
               size_t nurls, void (*stopped)(evn_server *srv));

#endif
