#include "common.h"

#define EX_DRAIN_MS 10000

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f, const char *name, int allow_udp, const struct ex_option *more,
                  size_t nmore)
{
    fprintf(f,
            "usage: %s [options]\n"
            "  --port N          listen on TCP port N on every interface (0: any free port)\n"
            "  --unixsocket P    also listen on the unix socket P\n"
            "%s"
            "  --loops N         event loops (threads); -1 for one per CPU (default 1)\n"
            "  --balance MODE    random, round-robin or least-connections\n"
            "  --reuseport       one listening socket per loop (SO_REUSEPORT)\n"
            "  --tcp-options Q   URL options for the TCP and TLS listeners, such as\n"
            "                    'deferaccept=1&fastopen=64&keepalive=60' (see evn.h)\n"
            "  --backend NAME    auto, epoll, io_uring, kqueue or poll\n"
            "  --tls-cert FILE   also serve TLS (1.2 or later) on --tls-port with this\n"
            "                    PEM certificate chain; needs --tls-key\n"
            "  --tls-key FILE    the PEM private key of --tls-cert\n"
            "  --tls-port N      port of the TLS listener (default 0: any free port; the\n"
            "                    port chosen is printed as 'listening on tls://...')\n"
            "  --tls-handshake-ms MS  close a TLS connection whose handshake has not\n"
            "                    finished within MS milliseconds (default 10000)\n",
            name, allow_udp ? "  --udp N           also serve UDP on port N\n" : "");
    for (size_t i = 0; i < nmore; i++)
        fprintf(f, "  %s\n", more[i].help);
    fprintf(f, "  --help            show this\n");
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* Longest certificate or key path evn takes (see cert= in evn.h's URLs). */
#define EX_TLS_PATH_MAX 255

/*
 * The paths travel inside the tls:// URL's query string, where '&' ends a
 * value and there is no escaping ('?', '=' and '%' arrive unchanged), so a
 * path with '&' cannot be passed: say so instead of failing on a wrong name.
 */
static void check_tls_path(const char *name, const char *flag, const char *path)
{
    const char *why = NULL;
    if (!*path)
        why = "is empty";
    else if (strchr(path, '&'))
        why = "contains '&', which an evn address URL cannot carry (rename or link the file)";
    else if (strlen(path) > EX_TLS_PATH_MAX)
        why = "is longer than 255 bytes";
    if (why) {
        fprintf(stderr, "%s: %s '%s' %s\n", name, flag, path, why);
        exit(2);
    }
}

static void usage_error(const char *name, const char *msg, int allow_udp,
                        const struct ex_option *more, size_t nmore)
{
    fprintf(stderr, "%s: %s\n", name, msg);
    usage(stderr, name, allow_udp, more, nmore);
    exit(2);
}

void ex_parse(int argc, char **argv, struct ex_opts *o, const char *name, int allow_udp)
{
    ex_parse_more(argc, argv, o, name, allow_udp, NULL, 0);
}

static const struct ex_option *find_option(const char *a, const struct ex_option *more,
                                           size_t nmore)
{
    for (size_t i = 0; i < nmore; i++) {
        if (strcmp(a, more[i].flag) == 0)
            return &more[i];
    }
    return NULL;
}

void ex_parse_more(int argc, char **argv, struct ex_opts *o, const char *name, int allow_udp,
                   const struct ex_option *more, size_t nmore)
{
    int tls_port_set = 0, tls_hs_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const struct ex_option *opt;
        int bad = 0, used = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, name, allow_udp, more, nmore);
            exit(0);
        } else if (strcmp(a, "--reuseport") == 0) {
            o->reuseport = 1;
            used = 0;
        } else if (!v) {
            bad = 1;
        } else if ((opt = find_option(a, more, nmore)) != NULL) {
            bad = opt->set(v);
        } else if (strcmp(a, "--port") == 0) {
            bad = parse_int(v, 0, 65535, &o->port);
        } else if (allow_udp && strcmp(a, "--udp") == 0) {
            bad = parse_int(v, 0, 65535, &o->udp_port);
        } else if (strcmp(a, "--loops") == 0) {
            bad = parse_int(v, -1, 255, &o->loops);
        } else if (strcmp(a, "--unixsocket") == 0) {
            o->unixsock = v;
        } else if (strcmp(a, "--backend") == 0) {
            o->backend = v;
        } else if (strcmp(a, "--tcp-options") == 0) {
            o->tcp_options = v;
            bad = !*v || strchr(v, '?') != NULL;
        } else if (strcmp(a, "--tls-cert") == 0) {
            o->tls_cert = v;
        } else if (strcmp(a, "--tls-key") == 0) {
            o->tls_key = v;
        } else if (strcmp(a, "--tls-port") == 0) {
            bad = parse_int(v, 0, 65535, &o->tls_port);
            tls_port_set = 1;
        } else if (strcmp(a, "--tls-handshake-ms") == 0) {
            bad = parse_int(v, 1, 3600000, &o->tls_handshake_ms);
            tls_hs_set = 1;
        } else if (strcmp(a, "--balance") == 0) {
            if (strcmp(v, "random") == 0)
                o->balance = EVN_BALANCE_RANDOM;
            else if (strcmp(v, "round-robin") == 0)
                o->balance = EVN_BALANCE_ROUND_ROBIN;
            else if (strcmp(v, "least-connections") == 0)
                o->balance = EVN_BALANCE_LEAST_CONNECTIONS;
            else
                bad = 1;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", name, a);
            usage(stderr, name, allow_udp, more, nmore);
            exit(2);
        }
        if (bad) {
            fprintf(stderr, "%s: bad or missing value for %s\n", name, a);
            usage(stderr, name, allow_udp, more, nmore);
            exit(2);
        }
        i += used;
    }
    if (!o->tls_cert != !o->tls_key)
        usage_error(name, "--tls-cert and --tls-key go together", allow_udp, more, nmore);
    if (tls_port_set && !o->tls_cert)
        usage_error(name, "--tls-port needs --tls-cert and --tls-key", allow_udp, more, nmore);
    if (tls_hs_set && !o->tls_cert)
        usage_error(name, "--tls-handshake-ms needs --tls-cert and --tls-key", allow_udp, more,
                    nmore);
    if (o->tls_cert) {
        check_tls_path(name, "--tls-cert", o->tls_cert);
        check_tls_path(name, "--tls-key", o->tls_key);
    }
}

evn_action ex_print_serving(evn_server *srv)
{
    for (size_t i = 0; i < evn_server_naddrs(srv); i++)
        printf("listening on %s\n", evn_server_url(srv, i));
    printf("%d loop%s, %s backend\n", evn_server_nloops(srv),
           evn_server_nloops(srv) == 1 ? "" : "s", evn_server_backend(srv));
    fflush(stdout);
    return EVN_NONE;
}

/* What ex_run adds to an extra address: tq (reuseport and --tcp-options)
 * to a TCP or TLS one, rp (reuseport) to a UDP one, and nothing to a unix
 * socket or to a URL with a query of its own. */
static const char *extra_query(const char *url, const char *tq, const char *rp)
{
    if (strchr(url, '?') || strncmp(url, "unix:", 5) == 0 || strncmp(url, "tls+unix:", 9) == 0)
        return "";
    return strncmp(url, "udp", 3) == 0 ? rp : tq;
}

int ex_run(const char *name, evn_events *ev, const struct ex_opts *o)
{
    return ex_run_ext(name, ev, o, NULL, 0, NULL);
}

/* The largest number of addresses an example serves. */
#define EX_MAX_ADDRS 16

int ex_run_ext(const char *name, evn_events *ev, const struct ex_opts *o, const char *const *urls,
               size_t nurls, void (*stopped)(evn_server *srv))
{
    char bufs[EX_MAX_ADDRS][512];
    char tlsurl[64 + 2 * EX_TLS_PATH_MAX + 256];
    const char *addrs[EX_MAX_ADDRS];
    size_t n = 0;
    const char *rp = o->reuseport ? "?reuseport=true" : "";
    /* The TCP listeners' query: reuseport and --tcp-options, '&'-joined. */
    char tq[256] = "";
    if (o->reuseport || o->tcp_options) {
        int len = snprintf(tq, sizeof tq, "?%s%s%s", o->reuseport ? "reuseport=true" : "",
                           o->reuseport && o->tcp_options ? "&" : "",
                           o->tcp_options ? o->tcp_options : "");
        if (len < 0 || (size_t)len >= sizeof tq) {
            fprintf(stderr, "%s: --tcp-options too long\n", name);
            return 1;
        }
    }
    if (o->port >= 0) {
        snprintf(bufs[n], sizeof bufs[n], "tcp://:%d%s", o->port, tq);
        addrs[n] = bufs[n], n++;
    }
    if (o->unixsock) {
        snprintf(bufs[n], sizeof bufs[n], "unix://%s", o->unixsock);
        addrs[n] = bufs[n], n++;
    }
    if (o->udp_port >= 0) {
        snprintf(bufs[n], sizeof bufs[n], "udp://:%d%s", o->udp_port, rp);
        addrs[n] = bufs[n], n++;
    }
    /* ex_parse checked the paths: no '&', at most 255 bytes each. */
    if (o->tls_cert) {
        snprintf(tlsurl, sizeof tlsurl, "tls://:%d?cert=%s&key=%s%s%s", o->tls_port, o->tls_cert,
                 o->tls_key, *tq ? "&" : "", *tq ? tq + 1 : "");
        addrs[n++] = tlsurl;
    }
    for (size_t i = 0; i < nurls; i++) {
        if (n == EX_MAX_ADDRS) {
            fprintf(stderr, "%s: at most %d addresses\n", name, EX_MAX_ADDRS);
            return 1;
        }
        int len = snprintf(bufs[n], sizeof bufs[n], "%s%s", urls[i], extra_query(urls[i], tq, rp));
        if (len < 0 || (size_t)len >= sizeof bufs[n]) {
            fprintf(stderr, "%s: address too long: %s\n", name, urls[i]);
            return 1;
        }
        addrs[n] = bufs[n], n++;
    }
    ev->nloops = o->loops;
    ev->balance = o->balance;
    ev->backend = o->backend;
    if (o->tls_handshake_ms > 0)
        ev->tls_handshake_timeout_ms = o->tls_handshake_ms;
    if (!ev->serving)
        ev->serving = ex_print_serving;

    evn_server *srv;
    int rc = evn_server_new(&srv, ev, addrs, n);
    /* -ENOTSUP on the tls:// address: this evn has no TLS at all. */
    if (rc == -ENOTSUP && strncmp(evn_errmsg(), "tls://", 6) == 0) {
        fprintf(stderr, "%s: --tls-cert and --tls-key need evn built with OpenSSL 3: %s\n", name,
                evn_errmsg());
        return 1;
    }
    if (rc < 0) {
        /* The message often ends with the errno's text already. */
        const char *msg = evn_errmsg(), *why = evn_strerror(rc);
        fprintf(stderr, strstr(msg, why) ? "%s: %s\n" : "%s: %s (%s)\n", name, msg, why);
        return 1;
    }
    /* SIGINT or SIGTERM: let connections finish for up to 10 s; a second
     * signal stops at once. */
    rc = evn_server_stop_on_signals(srv, EX_DRAIN_MS);
    if (rc == 0)
        rc = evn_server_run(srv);
    if (stopped)
        stopped(srv);
    evn_server_free(srv);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", name, evn_strerror(rc));
        return 1;
    }
    return 0;
}
