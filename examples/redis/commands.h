/*
 * The commands: looking a request up, checking its arguments and running it
 * against the store, with Redis 7's replies and error messages.
 */
#ifndef EVN_EXAMPLES_COMMANDS_H
#define EVN_EXAMPLES_COMMANDS_H

#include "evn.h"
#include "reply.h"
#include "resp.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * What the server keeps per connection, allocated only while it is needed:
 * while the connection has a name (CLIENT SETNAME) or a command cut off at
 * the end of its input, whose parse state must survive until the rest comes.
 * An idle connection without a name has none, only its id (see client_id).
 */
struct client {
    uint64_t id; /* CLIENT ID */
    char *name;  /* CLIENT SETNAME, NULL for none */
    size_t name_len;
    bool parsing; /* parser holds a command cut off at the end of the input */
    struct resp_parser parser;
};

/* The connection's state, NULL while it has none. */
struct client *client_get(evn_conn *c);
/* The connection's state, made if needed; NULL if out of memory. */
struct client *client_make(evn_conn *c);
/* The connection's CLIENT ID. */
uint64_t client_id(evn_conn *c);

struct loop_stats;

/* Build the command index; once, before the first redis_execute(). */
void commands_init(void);

/*
 * Run the command argv[0..argc) (argc > 0) for c, writing its reply to r
 * and counting it in stats (which may be NULL). Returns what the connection
 * should do next: EVN_NONE, EVN_CLOSE after QUIT (or when out of memory),
 * EVN_SHUTDOWN after SHUTDOWN.
 */
evn_action redis_execute(struct store *st, evn_conn *c, struct reply *r, struct loop_stats *stats,
                         const struct resp_arg *argv, size_t argc);

#endif
