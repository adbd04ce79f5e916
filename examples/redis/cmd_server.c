/*
 * Connection and server commands: PING, ECHO, SELECT, QUIT, SHUTDOWN,
 * CLIENT SETNAME|GETNAME|ID|HELP and CONFIG GET|HELP.
 */
#include "cmd.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void cmd_ping(struct ctx *x)
{
    if (x->argc > 2)
        reply_wrong_arity(x, "ping", NULL);
    else if (x->argc == 2)
        reply_bulk(x->r, x->argv[1].ptr, x->argv[1].len);
    else
        reply_raw(x->r, "+PONG\r\n", 7);
}

void cmd_echo(struct ctx *x)
{
    reply_bulk(x->r, x->argv[1].ptr, x->argv[1].len);
}

/* One database: SELECT 0 works, any other index is out of range. */
void cmd_select(struct ctx *x)
{
    long long db;
    if (!arg_ll(&x->argv[1], &db))
        reply_err(x, ERR_NOT_INT);
    else if (db < INT_MIN || db > INT_MAX)
        reply_errf(x, "value is out of range, value must between %d and %d", INT_MIN, INT_MAX);
    else if (db != 0)
        reply_errf(x, "DB index is out of range");
    else
        reply_raw(x->r, "+OK\r\n", 5);
}

void cmd_quit(struct ctx *x)
{
    reply_raw(x->r, "+OK\r\n", 5);
    x->action = EVN_CLOSE;
}

/* As Redis (which has nothing to save here): no reply, the server stops. */
void cmd_shutdown(struct ctx *x)
{
    bool save = false, nosave = false, abort_ = false;
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (arg_is(a, "nosave"))
            nosave = true;
        else if (arg_is(a, "save"))
            save = true;
        else if (arg_is(a, "abort"))
            abort_ = true;
        else if (!arg_is(a, "now") && !arg_is(a, "force")) {
            reply_err(x, ERR_SYNTAX);
            return;
        }
    }
    if ((save && nosave) || (abort_ && x->argc > 2)) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    if (abort_) {
        reply_errf(x, "No shutdown in progress.");
        return;
    }
    x->action = EVN_SHUTDOWN;
}

void reply_help(struct ctx *x, const char *const *lines)
{
    size_t n = 0;
    while (lines[n])
        n++;
    reply_array(x->r, n);
    for (size_t i = 0; i < n; i++)
        reply_status(x->r, lines[i]);
}

void cmd_client_setname(struct ctx *x)
{
    const struct resp_arg *a = &x->argv[2];
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] < '!' || a->ptr[i] > '~') {
            reply_error(x->r,
                        "Client names cannot contain spaces, newlines or special characters.");
            return;
        }
    }
    struct client *cl = a->len ? client_make(x->c) : client_get(x->c);
    char *name = NULL;
    if (a->len && cl)
        name = malloc(a->len);
    if (a->len && !name) {
        reply_errf(x, "out of memory");
        return;
    }
    if (name)
        memcpy(name, a->ptr, a->len);
    if (cl) {
        free(cl->name);
        cl->name = name;
        cl->name_len = a->len;
    }
    reply_raw(x->r, "+OK\r\n", 5);
}

void cmd_client_getname(struct ctx *x)
{
    struct client *cl = client_get(x->c);
    if (cl && cl->name)
        reply_bulk(x->r, cl->name, cl->name_len);
    else
        reply_nil(x->r);
}

void cmd_client_id(struct ctx *x)
{
    reply_int(x->r, (long long)client_id(x->c));
}

void cmd_client_help(struct ctx *x)
{
    static const char *const lines[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "HELP",
        "    Print this help.",
        NULL};
    reply_help(x, lines);
}

/*
 * The configuration CONFIG GET shows: what redis-benchmark asks about, with
 * the values of a Redis that neither snapshots nor logs appends. The order
 * is the one Redis 7.0 answers a CONFIG GET of several names in.
 */
static const char *const config_params[][2] = {
    {"appendonly", "no"},
    {"save", ""},
};

static bool is_pattern(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] == '*' || a->ptr[i] == '?' || a->ptr[i] == '[')
            return true;
    }
    return false;
}

/*
 * Each matching parameter once, in the table's order, named as the request
 * spelt it when the name that matched is not a pattern ("SAVE"), as Redis does.
 */
void cmd_config_get(struct ctx *x)
{
    enum { N = sizeof config_params / sizeof config_params[0] };
    const struct resp_arg *by[N] = {NULL};
    size_t nhit = 0;
    for (size_t j = 0; j < N; j++) {
        for (size_t i = 2; i < x->argc && !by[j]; i++) {
            if (glob_match(x->argv[i].ptr, x->argv[i].len, config_params[j][0],
                           strlen(config_params[j][0]), true)) {
                by[j] = &x->argv[i];
                nhit++;
            }
        }
    }
    reply_array(x->r, 2 * nhit);
    for (size_t j = 0; j < N; j++) {
        if (!by[j])
            continue;
        if (is_pattern(by[j]))
            reply_bulk_str(x->r, config_params[j][0]);
        else
            reply_bulk(x->r, by[j]->ptr, by[j]->len);
        reply_bulk_str(x->r, config_params[j][1]);
    }
}

void cmd_config_help(struct ctx *x)
{
    static const char *const lines[] = {
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "HELP",
        "    Print this help.",
        NULL};
    reply_help(x, lines);
}
