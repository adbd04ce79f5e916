/*
 * An incremental parser for the requests of Redis's protocol (RESP2): the
 * multibulk form clients send ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and the
 * inline form people type ("GET k\r\n", with "double" and 'single' quotes).
 *
 * It never allocates per command in the common case: the arguments point
 * into the caller's buffer, and the argument array (and, for quoted inline
 * arguments, a scratch buffer) belongs to the parser and is reused.
 *
 * Usage: resp_parse() is given the unconsumed input, starting at the first
 * byte of a command. It returns
 *   RESP_COMPLETE   one command was parsed: argv[0..argc) hold it (argc may
 *                   be 0 for an empty request, which Redis ignores), *used
 *                   its length in bytes;
 *   RESP_INCOMPLETE more input is needed; call again with the same bytes and
 *                   more after them (at the same address or another): the
 *                   parser resumes where it stopped instead of starting over;
 *   RESP_ERROR      the input is not the protocol; error holds Redis's own
 *                   message ("Protocol error: invalid bulk length") and the
 *                   connection should be closed. resp_reset() makes the
 *                   parser usable again.
 * The arguments stay valid until the next call or until the buffer changes.
 * A parser that returned RESP_INCOMPLETE must next see the same input (or be
 * reset).
 *
 * What it accepts is what Redis 7 accepts, quirks included: the two bytes
 * after a bulk are skipped unchecked, a line end is found by its '\r' alone,
 * a NUL byte before a header's line end hides that line end, counts are
 * strict decimals ("01", "+1", "-0" and " 1" are errors).
 */
#ifndef EVN_EXAMPLES_RESP_H
#define EVN_EXAMPLES_RESP_H

#include <stddef.h>

enum resp_result { RESP_ERROR = -1, RESP_INCOMPLETE = 0, RESP_COMPLETE = 1 };

/* The longest inline request line, and the longest count line ("*N", "$N"). */
#define RESP_INLINE_MAX (64 * 1024)
/* Arguments that fit in the parser itself before the array is allocated. */
#define RESP_SMALL_ARGS 8

struct resp_arg {
    const char *ptr; /* set when the command is complete */
    size_t len;
    size_t off; /* where it starts in the command (parser's own use) */
};

struct resp_parser {
    size_t max_bulk; /* the largest bulk taken; larger is "invalid bulk length" */

    /* The command, once RESP_COMPLETE is returned. */
    struct resp_arg *argv;
    size_t argc;
    const char *error; /* after RESP_ERROR */
    char errbuf[48];   /* holds error when it names a byte of the input */

    /* Where a RESP_INCOMPLETE stopped: the parser's own. */
    size_t pos;      /* bytes of the command parsed or scanned so far */
    long long nargs; /* arguments announced by "*N", 0 before the header */
    size_t cap;      /* room in argv */
    char *scratch;   /* unescaped quoted inline arguments */
    size_t scratch_cap;
    struct resp_arg small[RESP_SMALL_ARGS];
};

/* Set up p, taking bulks of at most max_bulk bytes. */
void resp_init(struct resp_parser *p, size_t max_bulk);
/* Forget any partly parsed command (the memory is kept for reuse). */
void resp_reset(struct resp_parser *p);
/* Free what the parser allocated; p can be set up again with resp_init. */
void resp_free(struct resp_parser *p);

/* Parse the command at the start of buf[0..len); see above. */
int resp_parse(struct resp_parser *p, const char *buf, size_t len, size_t *used);

/*
 * Redis's strict decimal integer: an optional '-', then "0" or a digit 1-9
 * followed by digits, no spaces or '+', within long long. Returns 1 and sets
 * *out, or 0.
 */
int resp_strtoll(const char *s, size_t len, long long *out);

#endif
