#include "common.h"

#define EX_DRAIN_MS 10000

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

extern char **environ;
#endif

/* What SIGUSR2 starts again: this program's path, read at start (so that
 * a binary replaced since is the one started), and its arguments. */
#ifndef _WIN32
static char ex_exe[PATH_MAX];
#endif
static char **ex_argv;
static atomic_int ex_upgrading_flag;

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
            "  --backend NAME    auto, epoll, io_uring, kqueue, iocp or poll\n"
            "  --batch-us US     io_uring: collect completions for up to US microseconds\n"
            "                    a wake-up (less CPU, longer round trips; default 0)\n"
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
#ifdef _WIN32
    fprintf(f, "  --help            show this\n"
               "stopping:\n"
               "  Ctrl-C, Ctrl-Break or closing the console: stop accepting, let connections\n"
               "                    finish (up to 10 s), exit; a second one stops at once\n"
               "  (Windows has no SIGUSR2 upgrade and no systemd sockets: evn cannot hand\n"
               "  sockets to a new process there.)\n");
#else
    fprintf(f, "  --help            show this\n"
               "signals:\n"
               "  SIGINT, SIGTERM   stop accepting, let connections finish (up to 10 s), exit;\n"
               "                    a second one stops at once\n"
               "  SIGUSR2           upgrade: start this program again (the same path, so a\n"
               "                    binary replaced there takes over, and the same arguments),\n"
               "                    hand it the listening sockets, and once it serves, drain\n"
               "                    and exit; no connection is refused or lost meanwhile. If\n"
               "                    the new copy fails, this one says why and keeps serving.\n"
               "  Listening sockets passed by systemd (LISTEN_FDS) are used for the addresses\n"
               "  they match; see docs/deployment.md.\n");
#endif
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

/* The path of this program, for SIGUSR2: the link /proc/self/exe names
 * now, else argv[0] made absolute. */
static void remember_exe(char **argv)
{
    ex_argv = argv;
#ifndef _WIN32
    ssize_t n = readlink("/proc/self/exe", ex_exe, sizeof ex_exe - 1);
    if (n > 0) {
        ex_exe[n] = '\0';
        return;
    }
    if (!realpath(argv[0], ex_exe))
        snprintf(ex_exe, sizeof ex_exe, "%s", argv[0]);
#endif
}

void ex_parse_more(int argc, char **argv, struct ex_opts *o, const char *name, int allow_udp,
                   const struct ex_option *more, size_t nmore)
{
    int tls_port_set = 0, tls_hs_set = 0;
    remember_exe(argv);
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
        } else if (strcmp(a, "--batch-us") == 0) {
            bad = parse_int(v, 0, 1000000, &o->batch_us);
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

int ex_upgrading(void)
{
    return atomic_load(&ex_upgrading_flag);
}

#ifndef _WIN32

/* The environment of the new copy: this one's, without an earlier
 * hand-off's variables, with the channel's descriptor and a placeholder
 * for the new process's id, filled in after fork. */
static char **child_env(int fd, char *fdvar, size_t fdsize, char *pidvar)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 3) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "EVN_HANDOFF_", 12) != 0)
            env[k++] = environ[i];
    snprintf(fdvar, fdsize, "EVN_HANDOFF_FD=%d", fd);
    env[k++] = fdvar;
    env[k++] = pidvar;
    env[k] = NULL;
    return env;
}

/* Write v's digits at the end of buf (right-aligned over its '0's):
 * async-signal-safe, for the child between fork and exec. */
static void put_pid(char *digits, size_t width, long v)
{
    size_t i = width;
    digits[--i] = '\0';
    do
        digits[--i] = (char)('0' + v % 10), v /= 10;
    while (v && i > 0);
    /* Leading zeros would still parse, but make it a plain number. */
    memmove(digits, digits + i, width - i);
}

/*
 * Start a new copy of this program that takes the sockets over: its pid, or
 * -1 with why (say) filled in. ch receives this side of the channel.
 */
static pid_t spawn_copy(int *ch, char *say, size_t saylen)
{
    int sv[2], ep[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(say, saylen, "socketpair: %s", strerror(errno));
        return -1;
    }
    /* Tells the parent whether exec worked: closed by a successful exec,
     * or given its errno. */
    if (pipe2(ep, O_CLOEXEC) < 0) {
        snprintf(say, saylen, "pipe: %s", strerror(errno));
        close(sv[0]), close(sv[1]);
        return -1;
    }
    char fdvar[32], pidvar[] = "EVN_HANDOFF_PID=0000000000000";
    char **env = child_env(sv[1], fdvar, sizeof fdvar, pidvar);
    pid_t pid = env ? fork() : -1;
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        fcntl(sv[1], F_SETFD, 0);
        put_pid(pidvar + 16, sizeof pidvar - 16, (long)getpid());
        execve(ex_exe, ex_argv, env);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int e = errno;
    free(env);
    close(sv[1]), close(ep[1]);
    if (pid < 0) {
        snprintf(say, saylen, "fork: %s", strerror(env ? e : ENOMEM));
        close(sv[0]), close(ep[0]);
        return -1;
    }
    ssize_t r;
    do
        r = read(ep[0], &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(ep[0]);
    if (r == (ssize_t)sizeof e) {
        snprintf(say, saylen, "cannot execute %.300s: %s", ex_exe, strerror(e));
        waitpid(pid, NULL, 0);
        close(sv[0]);
        return -1;
    }
    *ch = sv[0];
    return pid;
}

/* How a child that did not take over ended, for the message. */
static void describe_exit(pid_t pid, char *buf, size_t size)
{
    int st;
    if (waitpid(pid, &st, 0) != pid)
        snprintf(buf, size, "pid %d", (int)pid);
    else if (WIFEXITED(st))
        snprintf(buf, size, "pid %d exited with status %d", (int)pid, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, size, "pid %d was killed by signal %d", (int)pid, WTERMSIG(st));
    else
        snprintf(buf, size, "pid %d", (int)pid);
}

/*
 * Tell systemd (a Type=notify service: NOTIFY_SOCKET is set) how things
 * stand: READY=1 once serving, MAINPID= when an upgrade hands the service
 * to the new process, so that systemd follows it instead of taking the old
 * one's exit for the service's end. Nothing without NOTIFY_SOCKET.
 */
static void notify_systemd(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = path ? strlen(path) : 0;
    if (!len || len >= sizeof sun.sun_path || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@')
        sun.sun_path[0] = '\0'; /* an abstract socket */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t r = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    (void)r;
    close(fd);
}

/* One upgrade: true once the new copy serves (this one drains now). */
static bool upgrade(const char *name, evn_server *srv)
{
    char why[512], how[96];
    int ch;
    if (evn_server_draining(srv)) {
        fprintf(stderr, "%s: upgrade: already stopping, SIGUSR2 ignored\n", name);
        return false;
    }
    pid_t pid = spawn_copy(&ch, why, sizeof why);
    if (pid < 0) {
        fprintf(stderr, "%s: upgrade failed: %s; pid %d keeps serving\n", name, why, (int)getpid());
        return false;
    }
    atomic_store(&ex_upgrading_flag, 1);
    int rc = evn_server_handoff(srv, ch, EX_DRAIN_MS);
    close(ch);
    if (rc == 0) {
        char msg[32];
        snprintf(msg, sizeof msg, "MAINPID=%d", (int)pid);
        notify_systemd(msg);
        printf("upgrade: pid %d serves now; pid %d drains and exits\n", (int)pid, (int)getpid());
        fflush(stdout);
        return true;
    }
    atomic_store(&ex_upgrading_flag, 0);
    snprintf(why, sizeof why, "%s", evn_errmsg());
    describe_exit(pid, how, sizeof how);
    fprintf(stderr, "%s: upgrade failed: %s (%s); pid %d keeps serving\n", name, why, how,
            (int)getpid());
    return false;
}
#endif

/*
 * SIGUSR2 only marks that an upgrade is asked for; loop 0's ticker (ex_tick,
 * every EX_UPGRADE_POLL_MS) then starts the thread that does it, since a
 * hand-off blocks until the new copy answers. No thread waits beforehand: a
 * process with one loop stays single-threaded, and the C library skips its
 * locking and cancellation work on every system call and allocation.
 */
#define EX_UPGRADE_POLL_MS 100

static volatile sig_atomic_t usr2_seen;

static struct {
    const char *name;
    evn_server *srv;
    pthread_t thread;
    bool started;        /* thread was made and is not joined yet */
    atomic_bool running; /* an upgrade is under way */
    /* The example's own ticker, which ex_tick calls when it falls due. */
    evn_action (*tick)(evn_server *srv, int64_t *delay_ms);
    int64_t tick_delay, tick_due;
} up;

#ifndef _WIN32
static void on_usr2(int sig)
{
    (void)sig;
    usr2_seen = 1;
}

static void *upgrader_main(void *arg)
{
    (void)arg;
    upgrade(up.name, up.srv);
    atomic_store(&up.running, false);
    return NULL;
}
#endif

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#ifdef _WIN32
/* Windows: no SIGUSR2, and evn_server_handoff is not there (-ENOTSUP). */
static void start_upgrade(void)
{
}

static void notify_systemd(const char *msg)
{
    (void)msg;
}
#else
/* SIGUSR2 came: start the upgrade's thread, unless one is under way. */
static void start_upgrade(void)
{
    if (atomic_load(&up.running))
        return;
    usr2_seen = 0;
    if (!ex_argv) {
        fprintf(stderr, "%s: SIGUSR2: this program cannot start itself again\n", up.name);
        return;
    }
    if (up.started)
        pthread_join(up.thread, NULL);
    atomic_store(&up.running, true);
    up.started = pthread_create(&up.thread, NULL, upgrader_main, NULL) == 0;
    if (!up.started) {
        atomic_store(&up.running, false);
        fprintf(stderr, "%s: upgrade failed: cannot start a thread\n", up.name);
    }
}
#endif

static evn_action ex_tick(evn_server *srv, int64_t *delay_ms)
{
    if (usr2_seen)
        start_upgrade();
    evn_action a = EVN_NONE;
    int64_t next = EX_UPGRADE_POLL_MS;
    if (up.tick && up.tick_delay >= 0) {
        int64_t now = mono_ms();
        if (now >= up.tick_due) {
            a = up.tick(srv, &up.tick_delay);
            up.tick_due = now + up.tick_delay;
        }
        if (up.tick_delay >= 0 && up.tick_due - now < next)
            next = up.tick_due > now ? up.tick_due - now : 0;
    }
    *delay_ms = next;
    return a;
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
    ev->batch_us = (uint32_t)o->batch_us;
    if (o->tls_handshake_ms > 0)
        ev->tls_handshake_timeout_ms = o->tls_handshake_ms;
    if (!ev->serving)
        ev->serving = ex_print_serving;
    /* The ticker watches for SIGUSR2, and runs the example's own as due. */
    up.name = name;
    up.tick = ev->tick;
    up.tick_delay = 1000;
    up.tick_due = 0;
    ev->tick = ex_tick;

    evn_server *srv;
    int rc = evn_server_new(&srv, ev, addrs, n);
    /* -ENOTSUP on the tls:// address: this evn has no TLS at all. */
    if (rc == -ENOTSUP && strncmp(evn_errmsg(), "tls://", 6) == 0) {
        fprintf(stderr, "%s: --tls-cert and --tls-key need evn built with OpenSSL 3: %s\n", name,
                evn_errmsg());
        return 1;
    }
    up.srv = rc == 0 ? srv : NULL;
    if (rc < 0) {
        /* The message often ends with the errno's text already. */
        const char *msg = evn_errmsg(), *why = evn_strerror(rc);
        fprintf(stderr, strstr(msg, why) ? "%s: %s\n" : "%s: %s (%s)\n", name, msg, why);
        return 1;
    }
    /* SIGINT or SIGTERM: let connections finish for up to 10 s; a second
     * signal stops at once. */
    rc = evn_server_stop_on_signals(srv, EX_DRAIN_MS);
    /* SIGUSR2: upgrade (see ex_tick). */
#ifndef _WIN32
    struct sigaction sa = {.sa_handler = on_usr2, .sa_flags = SA_RESTART}, oldsa;
    bool upgrader = rc == 0;
    if (upgrader)
        sigaction(SIGUSR2, &sa, &oldsa);
#endif
    /* The listeners are bound (or inherited): connections queue from now. */
    if (rc == 0)
        notify_systemd("READY=1");
    if (rc == 0)
        rc = evn_server_run(srv);
#ifndef _WIN32
    if (upgrader) {
        sigaction(SIGUSR2, &oldsa, NULL);
        if (up.started)
            pthread_join(up.thread, NULL);
        up.started = false;
    }
#endif
    if (stopped)
        stopped(srv);
    evn_server_free(srv);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", name, evn_strerror(rc));
        return 1;
    }
    return 0;
}
