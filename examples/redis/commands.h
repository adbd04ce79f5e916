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

#include <stdint.h>

/* What the server keeps per connection. */
struct client {
    struct resp_parser parser;
    uint64_t id; /* CLIENT ID */
    char *name;  /* CLIENT SETNAME, NULL for none */
    size_t name_len;
};

/*
 * Run the command argv[0..argc) (argc > 0) for cl, writing its reply to r.
 * Returns what the connection should do next: EVN_NONE, EVN_CLOSE after
 * QUIT, EVN_SHUTDOWN after SHUTDOWN.
 */
evn_action redis_execute(struct store *st, struct client *cl, struct reply *r,
                         const struct resp_arg *argv, size_t argc);

#endif
