/*
 * The Redis example's data structures on their own, each against a simple
 * model kept beside it, over many random operations with a fixed seed:
 * the open-addressing table (inserts, removes, tombstones, growing and
 * shrinking, SCAN across resizes, the expiry bitmap), packed blobs, lists
 * (both ends, indexes, elements larger than a node), skip-list sorted sets
 * (ranks, order, both directions), entry expiry, and glob matching. Run
 * under AddressSanitizer too: every structure is freed at the end.
 */
#include "cmd.h"
#include "list.h"
#include "pack.h"
#include "store.h"
#include "table.h"
#include "zset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* ---------------------------------------------------------------- table */

#define NKEYS 6000

static unsigned char *item_for(int i, bool volatile_)
{
    char k[32];
    int n = snprintf(k, sizeof k, "key:%d", i);
    unsigned char *it = malloc(item_key_size((size_t)n));
    item_put_key(it, volatile_ ? ITEM_VOLATILE : 0, k, (size_t)n);
    return it;
}

static size_t find_i(struct table *t, int i)
{
    char k[32];
    int n = snprintf(k, sizeof k, "key:%d", i);
    return table_find(t, hash_bytes(k, (size_t)n), k, (size_t)n);
}

static int key_number(void *item)
{
    size_t n;
    const unsigned char *k = item_key(item, &n);
    int v = 0;
    for (size_t i = 4; i < n; i++)
        v = v * 10 + (k[i] - '0');
    return v;
}

struct seen {
    unsigned char *hits; /* per key: reported by the scan */
};

static void scan_mark(void *arg, void *item)
{
    struct seen *s = arg;
    s->hits[key_number(item)] = 1;
}

static void set_key(struct table *t, int i, bool on)
{
    size_t slot = find_i(t, i);
    if (on && slot == TABLE_NONE) {
        char k[32];
        int n = snprintf(k, sizeof k, "key:%d", i);
        table_insert(t, hash_bytes(k, (size_t)n), item_for(i, false));
    } else if (!on && slot != TABLE_NONE) {
        free(table_get(t, slot));
        table_remove(t, slot);
        table_shrink(t);
    }
}

/*
 * SCAN: the keys present throughout are reported, while all the others are
 * deleted (the table shrinks, several times over) and added back (it grows)
 * between the steps.
 */
static void test_scan_resizing(void)
{
    struct table t;
    table_init(&t, false);
    for (int i = 0; i < NKEYS; i++)
        set_key(&t, i, true);
    struct seen sc = {calloc(NKEYS, 1)};
    uint64_t cursor = 0;
    int steps = 0, next = 0;
    size_t smallest = table_slots(&t), largest = table_slots(&t);
    do {
        cursor = table_scan(&t, cursor, scan_mark, &sc);
        /* Each step deletes (then, in the next phase, adds back) 150 of
         * the keys outside the stable ones (every 60th). */
        bool adding = (steps / 40) % 2 == 1;
        for (int k = 0; k < 150; k++, next = (next + 1) % NKEYS) {
            if (next % 60)
                set_key(&t, next, adding);
        }
        if (table_slots(&t) < smallest)
            smallest = table_slots(&t);
        if (table_slots(&t) > largest)
            largest = table_slots(&t);
        steps++;
    } while (cursor != 0 && steps < 1000000);
    int missed = 0;
    for (int i = 0; i < NKEYS; i += 60)
        missed += !sc.hits[i];
    CHECK(missed == 0, "SCAN missed %d of %d keys present throughout (%d steps)", missed,
          NKEYS / 60, steps);
    CHECK(smallest * 4 <= largest, "the table shrank and grew during the scan (%zu to %zu slots)",
          smallest, largest);
    free(sc.hits);
    table_destroy_items(&t);
}

static void test_table(void)
{
    struct table t;
    table_init(&t, true);
    bool in[NKEYS] = {false}, vol[NKEYS] = {false};
    size_t count = 0, nvol = 0;
    for (int step = 0; step < 200000; step++) {
        int i = (int)rnd_below(NKEYS);
        /* Phases that grow and phases that shrink, so both resizes happen. */
        bool add = (step / 20000) % 2 == 0 ? rnd_below(4) != 0 : rnd_below(4) == 0;
        size_t slot = find_i(&t, i);
        CHECK((slot != TABLE_NONE) == in[i], "key %d presence at step %d", i, step);
        if (add && !in[i]) {
            bool v = rnd_below(3) == 0;
            char k[32];
            int n = snprintf(k, sizeof k, "key:%d", i);
            CHECK(table_insert(&t, hash_bytes(k, (size_t)n), item_for(i, v)) != TABLE_NONE,
                  "insert");
            in[i] = true;
            vol[i] = v;
            count++;
            nvol += v;
        } else if (!add && in[i]) {
            free(table_get(&t, slot));
            table_remove(&t, slot);
            table_shrink(&t);
            in[i] = false;
            count--;
            nvol -= vol[i];
        }
        CHECK(t.count == count, "count %zu, model %zu", t.count, count);
        CHECK(t.nvolatile == nvol, "volatile %zu, model %zu", t.nvolatile, nvol);
        CHECK(t.count + t.tombs <= table_slots(&t) * 7 / 8 || !t.slots, "load %zu+%zu of %zu",
              t.count, t.tombs, table_slots(&t));
    }
    /* Iteration and the expiry bitmap see exactly the items. */
    size_t seen = 0, seen_vol = 0;
    for (size_t s = table_next(&t, 0); s != TABLE_NONE; s = table_next(&t, s + 1))
        seen++;
    for (size_t s = table_next_volatile(&t, 0); s != TABLE_NONE;
         s = table_next_volatile(&t, s + 1)) {
        CHECK(vol[key_number(table_get(&t, s))], "bitmap marks a key without expiry");
        seen_vol++;
    }
    CHECK(seen == count && seen_vol == nvol, "iterated %zu/%zu, volatile %zu/%zu", seen, count,
          seen_vol, nvol);

    table_destroy_items(&t);
    test_scan_resizing();
    CHECK(t.count == 0 && !t.slots, "destroyed");
}

/* ---------------------------------------------------------------- pack */

static void test_pack(void)
{
    unsigned char *block = malloc(3 + PK_HEADER);
    memcpy(block, "abc", 3);
    pk_init(block + 3);
    char model[300][200];
    size_t lens[300], n = 0;
    for (int step = 0; step < 3000; step++) {
        unsigned char *b = block + 3;
        if (n < 300 && (n == 0 || rnd_below(3) != 0)) {
            size_t at = rnd_below(n + 1), len = rnd_below(rnd_below(2) ? 10 : 200);
            char v[200];
            for (size_t i = 0; i < len; i++)
                v[i] = (char)rnd();
            unsigned char buf[210];
            size_t sz = pk_write(buf, v, len);
            CHECK(sz == pk_elem_size(len), "element size %zu", len);
            unsigned char *p = at < n ? pk_index(b, at) : pk_end(b);
            CHECK(pk_splice(&block, 3, (size_t)(p - b), 0, buf, sz, 1) == 0, "insert");
            memmove(&model[at + 1], &model[at], (n - at) * sizeof model[0]);
            memmove(&lens[at + 1], &lens[at], (n - at) * sizeof lens[0]);
            memcpy(model[at], v, len);
            lens[at] = len;
            n++;
        } else {
            size_t at = rnd_below(n);
            unsigned char *p = pk_index(b, at);
            CHECK(pk_splice(&block, 3, (size_t)(p - b), (size_t)(pk_next(p) - p), NULL, 0, -1) == 0,
                  "delete");
            memmove(&model[at], &model[at + 1], (n - at - 1) * sizeof model[0]);
            memmove(&lens[at], &lens[at + 1], (n - at - 1) * sizeof lens[0]);
            n--;
        }
        b = block + 3;
        CHECK(pk_count(b) == n && memcmp(block, "abc", 3) == 0, "count %zu, model %zu", pk_count(b),
              n);
        /* Forwards and backwards, every element as the model has it. */
        unsigned char *p = pk_first(b), *data;
        size_t len;
        for (size_t i = 0; i < n; i++) {
            p = pk_read(p, &data, &len);
            CHECK(len == lens[i] && memcmp(data, model[i], len) == 0, "element %zu", i);
        }
        CHECK(p == pk_end(b), "walked to the end");
        for (size_t i = n; i-- > 0;) {
            p = pk_prev(p);
            pk_read(p, &data, &len);
            CHECK(len == lens[i] && memcmp(data, model[i], len) == 0, "element %zu backwards", i);
        }
        if (n && step % 10 == 0) {
            size_t i = rnd_below(n);
            unsigned char *f = pk_find(b, model[i], lens[i], 1);
            CHECK(f != NULL, "find element %zu", i);
        }
    }
    free(block);
}

/* ---------------------------------------------------------------- list */

static void test_list(void)
{
    struct list *l = list_new();
    /* The model: a ring of sizes and a byte each element is filled with. */
    enum { CAP = 40000 };
    static size_t msize[CAP];
    static unsigned char mbyte[CAP];
    size_t head = CAP / 2, n = 0;
    static char buf[20000];
    for (int step = 0; step < 120000; step++) {
        bool front = rnd_below(2);
        bool push = n == 0 || (step / 15000) % 2 == 0 ? rnd_below(5) != 0 : rnd_below(5) == 0;
        if (push && n < CAP / 2 - 1) {
            size_t len = rnd_below(100) == 0 ? 9000 + rnd_below(9000) : rnd_below(12);
            unsigned char c = (unsigned char)rnd();
            memset(buf, c, len);
            CHECK(list_push(l, front, buf, len) == 0, "push");
            size_t at = front ? --head : head + n;
            msize[at % CAP] = len;
            mbyte[at % CAP] = c;
            n++;
        } else if (n) {
            size_t len;
            unsigned char *v = list_peek(l, front, &len);
            size_t at = front ? head : head + n - 1;
            CHECK(len == msize[at % CAP] &&
                      (len == 0 || (v[0] == mbyte[at % CAP] && v[len - 1] == mbyte[at % CAP])),
                  "pop %s at step %d", front ? "front" : "back", step);
            list_drop(l, front);
            if (front)
                head++;
            n--;
        }
        CHECK(l->count == n, "count %zu, model %zu", l->count, n);
        if (n && step % 97 == 0) {
            size_t i = rnd_below(n), k = 0;
            struct list_iter it;
            list_iter_at(l, i, &it);
            unsigned char *v;
            size_t len;
            while (k < 50 && i + k < n && list_next(&it, &v, &len)) {
                size_t at = (head + i + k) % CAP;
                CHECK(len == msize[at] && (len == 0 || v[0] == mbyte[at]), "index %zu", i + k);
                k++;
            }
        }
    }
    list_free(l);
}

/* ---------------------------------------------------------------- zset */

struct zm {
    double score;
    char name[16];
    size_t n;
};

static int zm_cmp(const void *a, const void *b)
{
    const struct zm *x = a, *y = b;
    return zset_cmp(x->score, x->name, x->n, y->score, y->name, y->n);
}

static void test_zset(void)
{
    struct zset *z = zset_new();
    enum { N = 1500 };
    static struct zm model[N];
    static bool in[N];
    static double score[N];
    size_t count = 0;
    for (int step = 0; step < 40000; step++) {
        int i = (int)rnd_below(N);
        char name[16];
        int n = snprintf(name, sizeof name, "m%d", i);
        struct znode *x = zset_find(z, name, (size_t)n);
        CHECK((x != NULL) == in[i], "member %d presence", i);
        double s = (double)(rnd_below(50)) - 25; /* many equal scores */
        int op = (int)rnd_below(3);
        if (!in[i] && op != 2) {
            CHECK(zset_add(z, s, name, (size_t)n) == 0, "add");
            in[i] = true;
            score[i] = s;
            count++;
        } else if (in[i] && op == 1) {
            zset_update(z, x, s);
            score[i] = s;
        } else if (in[i] && op == 2) {
            zset_delete(z, x);
            in[i] = false;
            count--;
        }
        if (step % 1000 != 999)
            continue;
        size_t m = 0;
        for (int j = 0; j < N; j++) {
            if (!in[j])
                continue;
            model[m].score = score[j];
            model[m].n = (size_t)snprintf(model[m].name, sizeof model[m].name, "m%d", j);
            m++;
        }
        qsort(model, m, sizeof model[0], zm_cmp);
        CHECK(z->length == count && m == count, "length %zu, model %zu", z->length, count);
        struct znode *node = z->header->level[0].forward, *prev = NULL;
        for (size_t r = 0; r < m; r++) {
            size_t mn;
            const unsigned char *mem = znode_member(node, &mn);
            CHECK(node->score == model[r].score && mn == model[r].n &&
                      memcmp(mem, model[r].name, mn) == 0,
                  "rank %zu in order", r);
            CHECK(node->backward == prev, "backward link at rank %zu", r);
            if (r % 37 == 0) {
                CHECK(zset_rank(z, node) == r, "zset_rank %zu", r);
                CHECK(zset_at(z, r) == node, "zset_at %zu", r);
            }
            prev = node;
            node = node->level[0].forward;
        }
        CHECK(node == NULL && z->tail == prev, "tail");
    }
    zset_free(z);
}

/* ---------------------------------------------------------------- entries */

static void test_entry_expire(void)
{
    struct store *st = store_new(false);
    const char *keys[] = {"s", "h"};
    struct kref r;
    store_open(st, keys[0], 1, &r);
    CHECK(store_put(st, &r, entry_new_string("s", 1, "value", 5, 0)) == 0, "put");
    /* Adding, changing and removing the expiry moves the value, keeps it. */
    CHECK(store_set_expire(&r, store_now_ms() + 100000) == 0, "expire");
    size_t n;
    unsigned char *v = entry_string(r.e, &n);
    CHECK(n == 5 && memcmp(v, "value", 5) == 0 && entry_expire(r.e) > 0, "value kept");
    CHECK(store_volatile(st) == 1, "one volatile key");
    CHECK(store_set_expire(&r, 0) == 0 && entry_expire(r.e) == 0, "persist");
    v = entry_string(r.e, &n);
    CHECK(n == 5 && memcmp(v, "value", 5) == 0 && entry_size(r.e) == 1 + 1 + 1 + 1 + 5,
          "value kept after persist, size %zu", entry_size(r.e));
    store_close(st, &r);
    /* An expired key is gone on lookup, and counted. */
    store_open(st, keys[1], 1, &r);
    store_put(st, &r, entry_new_string("h", 1, "x", 1, store_now_ms() - 5));
    store_close(st, &r);
    store_open(st, keys[1], 1, &r);
    CHECK(r.e == NULL && store_expired(st) == 1, "expired key absent and counted");
    store_close(st, &r);
    CHECK(store_size(st) == 1, "size %zu", store_size(st));
    /* Expiry times as far off as PEXPIREAT allows: the active cycle's
     * average time to live must not overflow. */
    for (int i = 0; i < 4; i++) {
        char k[8];
        int kn = snprintf(k, sizeof k, "far%d", i);
        store_open(st, k, (size_t)kn, &r);
        store_put(st, &r, entry_new_string(k, (size_t)kn, "v", 1, INT64_MAX));
        store_close(st, &r);
    }
    struct expire_stats es = {0, 0};
    for (int i = 0; i < 3; i++)
        store_expire_cycle(st, 1000, &es);
    CHECK(store_avg_ttl(st) > 0, "avg_ttl %lld", (long long)store_avg_ttl(st));
    CHECK(store_size(st) == 5 && store_volatile(st) == 4, "far keys kept");
    store_free(st);
}

/* ---------------------------------------------------------------- glob */

static void test_glob(void)
{
    static const struct {
        const char *p, *s;
        bool nocase, want;
    } cases[] = {
        {"*", "", false, true},
        {"*", "abc", false, true},
        {"a*c", "abbbc", false, true},
        {"a*c", "abcd", false, false},
        {"?", "", false, false},
        {"a?c", "abc", false, true},
        {"[abc]", "b", false, true},
        {"[^abc]", "b", false, false},
        {"[a-c]x", "bx", false, true},
        {"[c-a]x", "bx", false, true},
        {"\\*", "*", false, true},
        {"\\*", "a", false, false},
        {"a\\", "a\\", false, true},
        {"[abc", "c", false, true},
        {"[a\\]]", "]", false, true},
        {"A*", "abc", true, true},
        {"A*", "abc", false, false},
        {"*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaa", false, false},
        {"h*llo", "heeeello", false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = glob_match(cases[i].p, strlen(cases[i].p), cases[i].s, strlen(cases[i].s),
                              cases[i].nocase);
        CHECK(got == cases[i].want, "glob '%s' on '%s': %d", cases[i].p, cases[i].s, got);
    }
}

int main(void)
{
    hash_seed_set(12345);
    test_table();
    test_pack();
    test_list();
    test_zset();
    test_entry_expire();
    test_glob();
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
