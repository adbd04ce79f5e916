/*
 * The HTTP example's static-file helpers on their own, by tables: Range
 * values and how they apply to files of a few sizes, HTTP dates both ways,
 * Content-Type by extension, and the status sf_open gives for paths that
 * need no file tree to judge (the tree itself is tests/http's
 * test_http_static.py).
 */
#include "static_files.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures, checks;

#define CHECK_INT(what, got, want)                                                                 \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        checks++;                                                                                  \
        if (g_ != w_) {                                                                            \
            failures++;                                                                            \
            fprintf(stderr, "FAIL [%s]: %s:%d: %s is %lld, expected %lld\n", (what), __FILE__,     \
                    __LINE__, #got, g_, w_);                                                       \
        }                                                                                          \
    } while (0)

static void test_ranges(void)
{
    /* value, file size, then the expected status, offset and length */
    static const struct {
        const char *value;
        uint64_t size;
        int status;
        uint64_t off, len;
    } cases[] = {
        {"bytes=0-99", 1000, 206, 0, 100},
        {"bytes=0-0", 1000, 206, 0, 1},
        {"bytes=999-999", 1000, 206, 999, 1},
        {"bytes=500-", 1000, 206, 500, 500},
        {"bytes=0-", 1000, 206, 0, 1000},
        {"bytes=-1", 1000, 206, 999, 1},
        {"bytes=-1000", 1000, 206, 0, 1000},
        {"bytes=-5000", 1000, 206, 0, 1000},
        {"bytes=900-5000", 1000, 206, 900, 100},
        {"Bytes=1-2", 1000, 206, 1, 2},
        {"bytes= 1-2 ", 1000, 206, 1, 2},
        {"bytes=99999999999999999999999-", 1000, 416, 0, 1000},
        {"bytes=1000-", 1000, 416, 0, 1000},
        {"bytes=1000-2000", 1000, 416, 0, 1000},
        {"bytes=-0", 1000, 416, 0, 1000},
        {"bytes=0-0", 0, 416, 0, 0},
        {"bytes=-1", 0, 416, 0, 0},
        /* Ignored: the whole file. */
        {"bytes=0-1,3-4", 1000, 200, 0, 1000},
        {"bytes=0-1, 3-4", 1000, 200, 0, 1000},
        {"bytes=5-4", 1000, 200, 0, 1000},
        {"bytes=-", 1000, 200, 0, 1000},
        {"bytes=", 1000, 200, 0, 1000},
        {"bytes=a-b", 1000, 200, 0, 1000},
        {"bytes=1-2x", 1000, 200, 0, 1000},
        {"bytes=--1", 1000, 200, 0, 1000},
        {"items=0-1", 1000, 200, 0, 1000},
        {"bytes", 1000, 200, 0, 1000},
        {"", 1000, 200, 0, 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sf_range r;
        uint64_t off, len;
        sf_parse_range(cases[i].value, strlen(cases[i].value), &r);
        int status = sf_resolve_range(&r, cases[i].size, &off, &len);
        CHECK_INT(cases[i].value, status, cases[i].status);
        if (status != 416) {
            CHECK_INT(cases[i].value, off, cases[i].off);
            CHECK_INT(cases[i].value, len, cases[i].len);
        }
    }
}

static void test_dates(void)
{
    static const struct {
        const char *text;
        int64_t t; /* -1: not a date it takes */
    } cases[] = {
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777},
        {"Thu, 02 Jan 2020 03:04:05 GMT", 1577934245},
        {"Sat, 29 Feb 2020 23:59:59 GMT", 1583020799},
        {"Sunday, 06-Nov-94 08:49:37 GMT", -1},
        {"Sun Nov  6 08:49:37 1994", -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
        {"Sun, 06 Nov 1994 08:49:37", -1},
        {"Sun, 06 Xyz 1994 08:49:37 GMT", -1},
        {"Sun, 6 Nov 1994 08:49:37 GMT ", -1},
        {"Sun, 06 Nov 1994 24:49:37 GMT", -1},
        {"Sun, 00 Nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 19x4 08:49:37 GMT", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t t = -1;
        bool ok = sf_parse_date(cases[i].text, strlen(cases[i].text), &t);
        CHECK_INT(cases[i].text, ok, cases[i].t >= 0);
        if (ok) {
            char buf[SF_DATE_LEN];
            CHECK_INT(cases[i].text, t, cases[i].t);
            /* And back: the same text. */
            sf_format_date(buf, t);
            CHECK_INT(cases[i].text, memcmp(buf, cases[i].text, SF_DATE_LEN), 0);
        }
    }
}

static void test_types(void)
{
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"/index.html", "text/html; charset=utf-8"},
        {"/a/B.HTM", "text/html; charset=utf-8"},
        {"/s.css", "text/css; charset=utf-8"},
        {"/app.js", "text/javascript; charset=utf-8"},
        {"/d.json", "application/json"},
        {"/t.txt", "text/plain; charset=utf-8"},
        {"/i.png", "image/png"},
        {"/i.jpg", "image/jpeg"},
        {"/i.JPEG", "image/jpeg"},
        {"/i.gif", "image/gif"},
        {"/i.svg", "image/svg+xml"},
        {"/favicon.ico", "image/vnd.microsoft.icon"},
        {"/m.wasm", "application/wasm"},
        {"/d.pdf", "application/pdf"},
        {"/f.woff2", "font/woff2"},
        {"/v.mp4", "video/mp4"},
        {"/archive.tar.gz", "application/gzip"},
        {"/noext", "application/octet-stream"},
        {"/dir.html/file", "application/octet-stream"},
        {"/trailing.", "application/octet-stream"},
        {"/x.htmlx", "application/octet-stream"},
        {"/x.ht", "application/octet-stream"},
        {".js", "text/javascript; charset=utf-8"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = sf_content_type(cases[i].name, strlen(cases[i].name));
        checks++;
        if (strcmp(got, cases[i].type) != 0) {
            failures++;
            fprintf(stderr, "FAIL [types]: %s is '%s', expected '%s'\n", cases[i].name, got,
                    cases[i].type);
        }
    }
}

/* Paths refused before any file is looked at; the root is a directory that
 * has none of these names. */
static void test_refused_paths(void)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"", 400},
        {"relative", 400},
        {"*", 400},
        {"/%", 400},
        {"/%4", 400},
        {"/%4g", 400},
        {"/%00", 403},
        {"/a%00b", 403},
        {"/..", 403},
        {"/../x", 403},
        {"/%2e%2e/x", 403},
        {"/%2E%2e%2Fx", 403},
        /* The walk stops at the first name that is not there. */
        {"/a/b/../../..", 404},
        {"/./.././x", 403},
        {"/no-such-name-here", 404},
        {"/no-such-name-here/", 404},
        {"/a%2fb", 404},
    };
    char tmpl[] = "/tmp/evn-static-files-XXXXXX";
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        failures++;
        return;
    }
    int root = open(tmpl, O_RDONLY | O_DIRECTORY);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = 0;
        struct stat st;
        const char *type = NULL;
        int status = sf_open(root, cases[i].path, strlen(cases[i].path), &fd, &st, &type);
        CHECK_INT(cases[i].path, status, cases[i].status);
        CHECK_INT(cases[i].path, fd, -1);
    }
    /* An over-long path is simply not there. */
    static char longpath[SF_PATH_MAX + 10];
    longpath[0] = '/';
    memset(longpath + 1, 'a', sizeof longpath - 1);
    int fd;
    struct stat st;
    const char *type;
    CHECK_INT("long path", sf_open(root, longpath, sizeof longpath, &fd, &st, &type), 404);
    close(root);
    rmdir(tmpl);
}

int main(void)
{
    test_ranges();
    test_dates();
    test_types();
    test_refused_paths();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
