"""Request tables for the Redis example's comparison with a real
redis-server: lists, hashes, sets, sorted sets, key commands, wrong types,
wrong arities, out-of-range indexes and empty results.

A case is (name, requests); each request is a list of arguments. Replies
are compared byte for byte, except where Redis's order is its hash table's:
a request wrapped in U() has an array reply compared as a multiset of
elements, one wrapped in P() (HGETALL of a large hash) as a multiset of
field-value pairs.
"""


class U(list):
    """An array reply in no particular order: compared sorted."""


class P(list):
    """A flat field, value, field, value ... reply in no particular order."""


def elements(raw):
    """The top-level elements of an array reply, each as its raw bytes."""
    if not raw.startswith(b"*"):
        return None
    pos = raw.index(b"\r\n") + 2
    n = int(raw[1:pos - 2])
    out = []
    for _ in range(max(n, 0)):
        start = pos
        pos = _skip(raw, pos)
        out.append(raw[start:pos])
    return out


def _skip(raw, pos):
    end = raw.index(b"\r\n", pos)
    kind, rest = raw[pos:pos + 1], raw[pos + 1:end]
    pos = end + 2
    if kind == b"$" and int(rest) >= 0:
        return pos + int(rest) + 2
    if kind == b"*":
        for _ in range(max(int(rest), 0)):
            pos = _skip(raw, pos)
    return pos


def normalize(req, raw):
    """The reply to compare: sorted for U and P requests."""
    if not isinstance(req, (U, P)):
        return raw
    els = elements(raw)
    if els is None:
        return raw
    if isinstance(req, P):
        els = [els[i] + els[i + 1] for i in range(0, len(els) - 1, 2)]
    return raw[:raw.index(b"\r\n") + 2] + b"".join(sorted(els))


def many(prefix, n, size=1):
    return [("%s%d" % (prefix, i)).ljust(size, "x") for i in range(n)]


ELEMS = list("abcdefghij")
BIG = "9223372036854775807"
LONG64 = "v" * 64
LONG65 = "v" * 65

LIST_CASES = [
    ("list push and pop", [
        ["LPUSH", "l", "a", "b", "c"], ["RPUSH", "l", "d", "e"], ["LRANGE", "l", "0", "-1"],
        ["LLEN", "l"], ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "2"], ["RPOP", "l", "0"],
        ["LRANGE", "l", "0", "-1"], ["RPOP", "l", "5"], ["EXISTS", "l"], ["LPOP", "l"],
        ["LPOP", "l", "3"], ["RPOP", "nope", "0"], ["LLEN", "l"], ["LPUSH", "l", ""],
        ["LRANGE", "l", "0", "-1"], ["RPOP", "l"], ["TYPE", "l"]]),
    ("list ranges", [
        ["RPUSH", "l", *ELEMS], ["LRANGE", "l", "0", "-1"], ["LRANGE", "l", "2", "5"],
        ["LRANGE", "l", "-3", "-1"], ["LRANGE", "l", "-100", "100"], ["LRANGE", "l", "5", "2"],
        ["LRANGE", "l", "10", "20"], ["LRANGE", "l", "-1", "-1"], ["LRANGE", "l", "0", "0"],
        ["LRANGE", "l", "9", "9"], ["LRANGE", "l", "0", "-11"], ["LRANGE", "l", "-11", "0"],
        ["LRANGE", "l", "x", "1"], ["LRANGE", "l", "1", "1.5"], ["LRANGE", "nope", "0", "-1"],
        ["LRANGE", "l", BIG, "-" + BIG], ["LRANGE", "l", "-" + BIG, BIG],
        ["LINDEX", "l", "0"], ["LINDEX", "l", "-1"], ["LINDEX", "l", "9"], ["LINDEX", "l", "10"],
        ["LINDEX", "l", "-10"], ["LINDEX", "l", "-11"], ["LINDEX", "l", "x"],
        ["LINDEX", "nope", "0"], ["LINDEX", "l", BIG], ["LLEN", "nope"]]),
    ("list pop counts", [
        ["LPOP", "nope", "2"], ["LPOP", "nope", "0"], ["RPUSH", "l", "a", "b", "c"],
        ["LPOP", "l", "0"], ["LPOP", "l", "-1"], ["LPOP", "l", "x"], ["LPOP", "l", "1"],
        ["RPOP", "l", "1"], ["LPOP", "l", BIG], ["LPOP", "l", "9223372036854775808"],
        ["RPUSH", "l", "a"], ["RPOP", "l", "-0"], ["RPOP", "l", "01"], ["RPOP", "l", "1", "2"]]),
    ("list arity", [
        ["LPUSH", "l"], ["RPUSH"], ["LPOP"], ["RPOP"], ["LRANGE", "l", "0"],
        ["LRANGE", "l", "0", "1", "2"], ["LINDEX", "l"], ["LINDEX", "l", "0", "1"], ["LLEN"],
        ["LLEN", "a", "b"]]),
    ("list large", [
        ["RPUSH", "l", *many("e", 300, 100)], ["LPUSH", "l", *many("f", 300, 3)],
        ["LLEN", "l"], ["LRANGE", "l", "0", "-1"], ["LRANGE", "l", "295", "310"],
        ["LINDEX", "l", "450"], ["LINDEX", "l", "-450"], ["LPOP", "l", "50"],
        ["RPOP", "l", "50"], ["LRANGE", "l", "-5", "-1"], ["RPUSH", "l", "z" * 20000],
        ["LPUSH", "l", "y" * 20000], ["LINDEX", "l", "0"], ["LINDEX", "l", "-1"],
        ["RPOP", "l"], ["LPOP", "l"], ["LLEN", "l"], ["LRANGE", "l", "0", "2"]]),
]

HASH_CASES = [
    ("hash basics", [
        ["HSET", "h", "f1", "v1", "f2", "v2"], ["HGET", "h", "f1"], ["HGET", "h", "nope"],
        ["HGET", "nope", "f"], ["HGETALL", "h"], ["HSET", "h", "f1", "x", "f3", "y"],
        ["HGETALL", "h"], ["HLEN", "h"], ["HEXISTS", "h", "f1"], ["HEXISTS", "h", "nope"],
        ["HEXISTS", "nope", "f"], ["HDEL", "h", "f1", "nope", "f1"], ["HGETALL", "h"],
        ["HDEL", "h", "f2", "f3"], ["EXISTS", "h"], ["HLEN", "nope"], ["HGETALL", "nope"],
        ["HDEL", "nope", "f"], ["HSET", "h", "", ""], ["HGETALL", "h"], ["HSET", "h", "a", "1", "a", "2"],
        ["HGET", "h", "a"], ["TYPE", "h"], ["HMSET", "h", "b", "2", "c", "3"], ["HMSET", "h", "b"],
        ["HMGET", "h", "a", "nope", "c"], ["HMGET", "nope", "a"], ["HMGET", "h"], ["HKEYS", "h"],
        ["HVALS", "h"], ["HKEYS", "nope"], ["HVALS", "nope"], ["HKEYS"], ["HVALS", "a", "b"]]),
    ("hash incr", [
        ["HINCRBY", "h", "n", "5"], ["HINCRBY", "h", "n", "-10"], ["HINCRBY", "h", "n", "x"],
        ["HINCRBY", "h", "n", "1.5"], ["HSET", "h", "s", "abc"], ["HINCRBY", "h", "s", "1"],
        ["HSET", "h", "big", BIG], ["HINCRBY", "h", "big", "1"], ["HINCRBY", "h", "big", "-1"],
        ["HSET", "h", "neg", "-9223372036854775808"], ["HINCRBY", "h", "neg", "-1"],
        ["HSET", "h", "sp", " 1"], ["HINCRBY", "h", "sp", "1"], ["HINCRBY", "h2", "f", "0"],
        ["HGETALL", "h"], ["HGETALL", "h2"], ["HINCRBY", "h", "n", "9223372036854775808"]]),
    ("hash arity", [
        ["HSET", "h", "f"], ["HSET", "h", "f", "v", "g"], ["HSET", "h"], ["HGET", "h"],
        ["HGET", "h", "f", "g"], ["HDEL", "h"], ["HGETALL"], ["HGETALL", "a", "b"], ["HLEN"],
        ["HEXISTS", "h"], ["HINCRBY", "h", "f"], ["HINCRBY", "h", "f", "1", "2"]]),
    ("hash size limits", [
        ["HSET", "h", "f", LONG64], ["HGETALL", "h"], ["HSET", "h", LONG64, "v"],
        ["HGETALL", "h"], ["HSET", "h", *[x for i in range(126) for x in ("k%d" % i, "v")]],
        ["HLEN", "h"], ["HGETALL", "h"], ["HGET", "h", "k125"], ["HDEL", "h", "k0", "k1"],
        ["HGETALL", "h"]]),
    ("hash large", [
        ["HSET", "h", *[x for i in range(200) for x in ("f%d" % i, "v%d" % i)]], ["HLEN", "h"],
        P(["HGETALL", "h"]), ["HGET", "h", "f150"], ["HEXISTS", "h", "f199"],
        ["HDEL", "h", *("f%d" % i for i in range(0, 200, 2))], ["HLEN", "h"],
        P(["HGETALL", "h"]), ["HINCRBY", "h", "f1", "1"], ["HINCRBY", "h", "n", "7"],
        ["HGET", "h", "n"], ["HMGET", "h", "f1", "f2", "n", "nope"], U(["HKEYS", "h"]),
        U(["HVALS", "h"]), ["HSET", "h2", "f", LONG65], ["HGET", "h2", "f"],
        ["HSET", "h2", "g", "1"], P(["HGETALL", "h2"]), ["HDEL", "h2", "f", "g"],
        ["EXISTS", "h2"], ["HDEL", "h", *("f%d" % i for i in range(200)), "n"],
        ["EXISTS", "h"]]),
]

SET_CASES = [
    ("set basics", [
        ["SADD", "s", "a", "b", "c", "a"], ["SCARD", "s"], ["SISMEMBER", "s", "a"],
        ["SISMEMBER", "s", "z"], ["SISMEMBER", "nope", "a"], U(["SMEMBERS", "s"]),
        ["SREM", "s", "a", "z", "a"], U(["SMEMBERS", "s"]), ["SREM", "s", "b", "c"],
        ["EXISTS", "s"], ["SCARD", "nope"], ["SMEMBERS", "nope"], ["SREM", "nope", "a"],
        ["SADD", "s", ""], ["SMEMBERS", "s"], ["SADD", "s", "", ""], ["TYPE", "s"]]),
    ("set pop", [
        ["SADD", "s", "only"], ["SPOP", "s"], ["SPOP", "s"], ["SPOP", "nope"],
        ["SPOP", "nope", "2"], ["SPOP", "nope", "0"], ["SADD", "s", "x"], ["SPOP", "s", "0"],
        ["SPOP", "s", "5"], ["EXISTS", "s"], ["SPOP", "s", "-1"], ["SPOP", "s", "x"],
        ["SPOP", "s", "1", "2"], ["SADD", "s", "a", "b", "c"], U(["SPOP", "s", "3"]),
        ["EXISTS", "s"]]),
    ("set integers", [
        ["SADD", "s", "10", "2", "-5", "7", "2"], U(["SMEMBERS", "s"]), ["SISMEMBER", "s", "-5"],
        ["SISMEMBER", "s", "010"], ["SADD", "s", "x"], U(["SMEMBERS", "s"]), ["SCARD", "s"]]),
    ("set arity", [
        ["SADD", "s"], ["SREM", "s"], ["SMEMBERS"], ["SMEMBERS", "a", "b"], ["SISMEMBER", "s"],
        ["SCARD"], ["SPOP"]]),
    ("set large", [
        ["SADD", "s", *many("m", 200)], ["SCARD", "s"], ["SISMEMBER", "s", "m150"],
        U(["SMEMBERS", "s"]), ["SREM", "s", *many("m", 100)], ["SCARD", "s"],
        U(["SMEMBERS", "s"]), ["SADD", "t", LONG65], ["SISMEMBER", "t", LONG65], U(["SPOP", "s", "100"]),
        ["EXISTS", "s"], ["SPOP", "t"], ["EXISTS", "t"]]),
]

ZSET_CASES = [
    ("zset basics", [
        ["ZADD", "z", "1", "a", "2", "b", "3", "c"], ["ZRANGE", "z", "0", "-1"],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZSCORE", "z", "b"], ["ZSCORE", "z", "nope"],
        ["ZSCORE", "nope", "a"], ["ZCARD", "z"], ["ZCARD", "nope"], ["ZRANK", "z", "c"],
        ["ZRANK", "z", "nope"], ["ZRANK", "nope", "a"], ["ZINCRBY", "z", "10", "a"],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZREM", "z", "b", "nope"],
        ["ZRANGE", "z", "0", "-1"], ["ZPOPMIN", "z"], ["ZPOPMIN", "z", "5"], ["EXISTS", "z"],
        ["ZPOPMIN", "nope"], ["ZPOPMIN", "nope", "0"], ["ZPOPMIN", "nope", "-1"],
        ["ZPOPMIN", "nope", "x"], ["ZREM", "nope", "a"], ["ZADD", "z", "1", "a"],
        ["ZPOPMIN", "z", "0"], ["ZPOPMIN", "z", "1", "2"], ["TYPE", "z"]]),
    ("zset scores", [
        ["ZADD", "z", "1.1", "a", "0", "b", "1e20", "c", "1.5e-300", "d", "inf", "e", "-inf", "f",
         "-0", "g", "3", "h", "0x10", "i", "123456789012345678", "j", "+2.5", "k", ".5", "l"],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZADD", "z", "nan", "x"],
        ["ZADD", "z", " 1", "q"], ["ZADD", "z", "1 ", "q"], ["ZADD", "z", "", "q"],
        ["ZADD", "z", "1e400", "q"], ["ZADD", "z", "1e-400", "q"], ["ZADD", "z", "INCR", "inf", "e"],
        ["ZADD", "z", "INCR", "-inf", "e"], ["ZINCRBY", "z", "-inf", "e"],
        ["ZINCRBY", "z", "x", "a"], ["ZINCRBY", "z", "0", "a"], ["ZINCRBY", "nope", "1.5", "a"],
        ["ZSCORE", "z", "g"], ["ZSCORE", "z", "c"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"]]),
    ("zset add options", [
        ["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"], ["ZADD", "z", "NX", "XX", "1", "a"],
        ["ZADD", "z", "GT", "LT", "1", "a"], ["ZADD", "z", "NX", "GT", "1", "a"],
        ["ZADD", "z", "INCR", "1", "a", "2", "b"], ["ZADD", "z", "x", "a"],
        ["ZADD", "z", "FOO", "1", "q"], ["ZADD", "z", "XX", "5", "nope"],
        ["ZADD", "z", "XX", "INCR", "5", "nope"], ["ZADD", "z", "NX", "INCR", "5", "a"],
        ["ZADD", "z", "GT", "CH", "0", "a", "10", "b", "7", "new"],
        ["ZADD", "z", "LT", "INCR", "-1", "a"], ["ZADD", "z", "LT", "INCR", "1", "a"],
        ["ZADD", "nope2", "XX", "1", "a"], ["ZADD", "nope2", "XX", "INCR", "1", "a"],
        ["EXISTS", "nope2"], ["ZADD", "z", "CH"], ["ZADD", "z", "1", "a", "2"],
        ["ZADD", "z", "CH", "1", "a", "1", "b", "1", "zz"], ["ZADD", "z", "NX", "9", "a", "9", "yy"],
        ["ZADD", "z", "XX", "CH", "9", "a", "9", "xx"], ["ZADD", "z", "gt", "ch", "incr", "1", "a"],
        ["ZADD", "z", "INCR", "0", "a"], ["ZADD", "z", "GT", "INCR", "0", "a"],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES"]]),
    ("zset range options", [
        ["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "4", "e"],
        ["ZRANGE", "z", "1", "3", "BYSCORE", "LIMIT", "1", "-1"],
        ["ZRANGE", "z", "1", "3", "BYSCORE", "LIMIT", "-1", "2"],
        ["ZRANGE", "z", "3", "1", "BYSCORE", "REV", "LIMIT", "0", "2", "WITHSCORES"],
        ["ZRANGE", "z", "(1", "+inf", "BYSCORE"], ["ZRANGE", "z", "-inf", "(4", "BYSCORE"],
        ["ZRANGE", "z", "(1", "(1", "BYSCORE"], ["ZRANGE", "z", "4", "4", "BYSCORE", "WITHSCORES"],
        ["ZRANGE", "z", "x", "+inf", "BYSCORE"], ["ZRANGE", "z", "1", "nan", "BYSCORE"],
        ["ZRANGE", "z", "[a", "[c", "BYLEX"], ["ZRANGE", "z", "[c", "[a", "BYLEX", "REV"],
        ["ZRANGE", "z", "-", "+", "BYLEX", "LIMIT", "1", "2"], ["ZRANGE", "z", "(a", "(c", "BYLEX"],
        ["ZRANGE", "z", "x", "+", "BYLEX"], ["ZRANGE", "z", "+", "-", "BYLEX"],
        ["ZRANGE", "z", "0", "-1", "BYSCORE", "BYLEX"], ["ZRANGE", "z", "0", "-1", "LIMIT", "1"],
        ["ZRANGE", "z", "0", "1", "LIMIT", "0", "1"], ["ZRANGE", "z", "0", "1", "BYLEX", "WITHSCORES"],
        ["ZRANGE", "z", "0", "-1", "WITHSCORES", "WITHSCORES"],
        ["ZRANGE", "z", "1", "2", "BYSCORE", "LIMIT", "x", "1"], ["ZRANGE", "z", "x", "1"],
        ["ZRANGE", "z", "0", "-1", "REV", "REV"], ["ZRANGE", "z", "0", "-1", "FOO"],
        ["ZRANGE", "z", "1", "3", "BYSCORE", "LIMIT", "0", "1", "LIMIT", "1", "1"],
        ["ZRANGE", "z", "-1", "0", "REV"], ["ZRANGE", "z", "0", "-1", "REV", "WITHSCORES"],
        ["ZRANGE", "z", "1", "2", "REV"], ["ZRANGE", "z", "5", "10"], ["ZRANGE", "z", "-100", "1"],
        ["ZRANGE", "nope", "0", "-1"], ["ZRANGE", "nope", "0", "-1", "BYSCORE"],
        ["ZREVRANGE", "z", "0", "1"], ["ZREVRANGE", "z", "0", "-1", "WITHSCORES"],
        ["ZREVRANGE", "z", "0", "-1", "REV"], ["ZREVRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
        ["ZREVRANGE", "z", "0", "-1", "BYSCORE"], ["ZRANGEBYSCORE", "z", "2", "4"],
        ["ZRANGEBYSCORE", "z", "(2", "+inf", "WITHSCORES", "LIMIT", "1", "1"],
        ["ZRANGEBYSCORE", "z", "2", "4", "REV"], ["ZRANGEBYSCORE", "z", "2", "4", "BYSCORE"],
        ["ZRANGEBYSCORE", "z", "x", "4"], ["ZREVRANGEBYSCORE", "z", "4", "2"],
        ["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "WITHSCORES", "LIMIT", "0", "2"],
        ["ZREVRANGEBYSCORE", "z", "2", "4"], ["ZREVRANK", "z", "a"], ["ZREVRANK", "z", "e"],
        ["ZREVRANK", "z", "nope"], ["ZREVRANK", "nope", "a"], ["ZREVRANGE", "z", "0"]]),
    ("zset arity", [
        ["ZADD", "z", "1"], ["ZREM", "z"], ["ZRANGE", "z", "0"], ["ZSCORE", "z"], ["ZCARD"],
        ["ZINCRBY", "z", "1"], ["ZPOPMIN"], ["ZRANK", "z"], ["ZRANK", "z", "a", "WITHSCORE"]]),
    ("zset large", [
        ["ZADD", "z", *[x for i in range(200) for x in (str(i % 17), "m%03d" % i)]],
        ["ZCARD", "z"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZRANGE", "z", "50", "60"],
        ["ZRANGE", "z", "-10", "-1", "REV", "WITHSCORES"], ["ZRANK", "z", "m100"],
        ["ZSCORE", "z", "m100"], ["ZREM", "z", *("m%03d" % i for i in range(0, 200, 3))],
        ["ZRANGE", "z", "0", "-1"], ["ZRANK", "z", "m199"], ["ZINCRBY", "z", "100", "m001"],
        ["ZRANGE", "z", "-3", "-1", "WITHSCORES"], ["ZPOPMIN", "z", "3"],
        ["ZRANGE", "z", "(5", "8", "BYSCORE", "LIMIT", "2", "5", "WITHSCORES"],
        ["ZRANGE", "z", "[m100", "(m120", "BYLEX"], ["ZADD", "z", "-0", "neg"],
        ["ZSCORE", "z", "neg"], ["ZADD", "z2", "1", LONG65], ["ZRANGE", "z2", "0", "-1"],
        ["ZPOPMIN", "z", "1000"], ["EXISTS", "z"]]),
]

ZSET_CASES += [
    ("zset lex ranges on different scores", [
        ["ZADD", "z", "3", "a", "1", "b", "2", "c", "1", "d", "5", "e"],
        ["ZRANGE", "z", "[b", "[d", "BYLEX"], ["ZRANGE", "z", "[d", "[b", "BYLEX", "REV"],
        ["ZRANGE", "z", "-", "(c", "BYLEX"], ["ZRANGE", "z", "(a", "+", "BYLEX", "LIMIT", "1", "3"],
        ["ZRANGE", "z", "+", "-", "BYLEX", "REV"], ["ZRANGE", "z", "[e", "[a", "BYLEX"],
        ["ZRANGE", "z", "[a", "[a", "BYLEX"], ["ZRANGE", "z", "(a", "[a", "BYLEX"],
        # A large set is a skip list whose shape is random (in Redis too), so
        # BYLEX over different scores has no one answer there: BYSCORE only.
        ["ZADD", "big", *[x for i in range(150) for x in (str((i * 7) % 13), "m%03d" % i)]],
        ["ZRANGE", "big", "(3", "5", "BYSCORE", "LIMIT", "3", "4"],
        ["ZRANGE", "big", "5", "(3", "BYSCORE", "REV", "WITHSCORES"],
        ["ZRANGE", "big", "100", "200", "BYSCORE"], ["ZRANGE", "big", "(2", "2", "BYSCORE"]]),
]

KEY_CASES = [
    ("types", [
        ["SET", "s", "v"], ["LPUSH", "l", "a"], ["HSET", "h", "f", "v"], ["SADD", "st", "m"],
        ["ZADD", "z", "1", "m"], ["TYPE", "s"], ["TYPE", "l"], ["TYPE", "h"], ["TYPE", "st"],
        ["TYPE", "z"], ["TYPE", "nope"], ["DBSIZE"], ["TYPE"], ["TYPE", "a", "b"]]),
    ("wrong types", [
        ["SET", "s", "v"], ["LPUSH", "l", "a"], ["HSET", "h", "f", "v"], ["SADD", "st", "m"],
        ["ZADD", "z", "1", "m"], ["GET", "l"], ["GET", "h"], ["INCR", "l"], ["INCRBY", "h", "1"],
        ["DECR", "z"], ["APPEND", "st", "x"], ["STRLEN", "z"], ["SET", "l", "x", "GET"],
        ["LPUSH", "s", "a"], ["RPUSH", "h", "a"], ["LPOP", "s"], ["RPOP", "h", "1"],
        ["LRANGE", "st", "0", "1"], ["LLEN", "z"], ["LINDEX", "s", "0"], ["HSET", "l", "f", "v"],
        ["HGET", "s", "f"], ["HDEL", "z", "f"], ["HGETALL", "st"], ["HLEN", "l"],
        ["HEXISTS", "s", "f"], ["HINCRBY", "l", "f", "1"], ["SADD", "h", "m"], ["SREM", "l", "m"],
        ["SMEMBERS", "z"], ["SISMEMBER", "s", "m"], ["SCARD", "h"], ["SPOP", "l"],
        ["SPOP", "l", "2"], ["ZADD", "st", "1", "m"], ["ZREM", "h", "m"], ["ZRANGE", "l", "0", "1"],
        ["ZSCORE", "s", "m"], ["ZCARD", "st"], ["ZINCRBY", "h", "1", "m"], ["ZPOPMIN", "s"],
        ["ZRANK", "l", "m"], ["MGET", "s", "l", "h", "st", "z", "nope"], ["SET", "l", "now a string"],
        ["GET", "l"], ["EXISTS", "s", "l", "h", "st", "z"], ["DEL", "s", "l", "h", "st", "z", "nope"],
        ["DBSIZE"]]),
    ("expire", [
        ["SET", "k", "v"], ["EXPIRE", "k", "100"], ["TTL", "k"], ["EXPIRE", "k", "200", "NX"],
        ["EXPIRE", "k", "200", "XX"], ["TTL", "k"], ["EXPIRE", "k", "100", "GT"],
        ["EXPIRE", "k", "300", "GT"], ["TTL", "k"], ["EXPIRE", "k", "500", "LT"],
        ["EXPIRE", "k", "50", "LT"], ["TTL", "k"], ["PERSIST", "k"], ["TTL", "k"],
        ["PERSIST", "k"], ["PERSIST", "nope"], ["EXPIRE", "k", "100", "XX"],
        ["EXPIRE", "k", "100", "GT"], ["EXPIRE", "k", "100", "LT"], ["TTL", "k"],
        ["EXPIRE", "nope", "100"], ["TTL", "nope"], ["PTTL", "nope"], ["PEXPIRE", "k", "100000"],
        ["TTL", "k"], ["EXPIREAT", "k", "99999999999"], ["PEXPIREAT", "k", "99999999999999"],
        # Not TTL: a far-off time's TTL depends on the second it is read in,
        # and the two servers are asked at different moments. Later than
        # now: a relative expiry even later (GT) replaces it.
        ["EXPIRE", "k", "99999999999", "GT"], ["EXPIRE", "k", "-1"], ["EXISTS", "k"], ["SET", "k", "v"],
        ["PEXPIRE", "k", "0"], ["EXISTS", "k"], ["SET", "k", "v"], ["EXPIREAT", "k", "1"],
        ["GET", "k"], ["SET", "k", "v"], ["PEXPIREAT", "k", "-5"], ["DBSIZE"]]),
    ("expire errors", [
        ["SET", "k", "v"], ["EXPIRE", "k", "100", "NX", "XX"], ["EXPIRE", "k", "100", "GT", "LT"],
        ["EXPIRE", "k", "100", "FOO"], ["EXPIRE", "k", "100", "NX", "GT"], ["EXPIRE", "k", "x"],
        ["EXPIRE", "k", "1.5"], ["EXPIRE", "k", BIG], ["EXPIRE", "k", "9223372036854775"],
        ["EXPIRE", "k", "-9223372036854775808"], ["PEXPIRE", "k", BIG], ["EXPIREAT", "k", BIG],
        ["PEXPIREAT", "k", BIG], ["EXPIRE", "k"], ["PEXPIRE"], ["EXPIREAT", "k"],
        ["PEXPIREAT", "k"], ["TTL"], ["PTTL", "a", "b"], ["PERSIST"], ["EXPIRE", "k", "10", "nx"],
        ["TTL", "k"], ["PEXPIRE", "k", "1", "xx", "gt"], ["TTL", "k"]]),
    ("expire keeps the value", [
        ["RPUSH", "l", "a", "b"], ["EXPIRE", "l", "100"], ["LRANGE", "l", "0", "-1"],
        ["HSET", "h", "f", "v"], ["EXPIRE", "h", "100"], ["HGETALL", "h"], ["HSET", "h", "g", "w"],
        ["PERSIST", "h"], ["HGETALL", "h"], ["TTL", "h"], ["ZADD", "z", "1", "a"],
        ["PEXPIRE", "z", "100000"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["TTL", "z"],
        ["SET", "s", "v", "EX", "100"], ["APPEND", "s", "w"], ["GET", "s"], ["TTL", "s"],
        ["SET", "s", "new"], ["TTL", "s"], ["SADD", "st", "m"], ["EXPIRE", "st", "100"],
        ["SADD", "st", "n"], ["SCARD", "st"], ["TTL", "st"]]),
    ("rename", [
        ["SET", "a", "1"], ["RENAME", "a", "b"], ["GET", "b"], ["EXISTS", "a"],
        ["RENAME", "b", "b"], ["GET", "b"], ["RENAME", "nope", "x"], ["RENAME", "nope", "nope"],
        ["SET", "t", "v", "EX", "100"], ["RENAME", "t", "t2"], ["TTL", "t2"],
        ["RPUSH", "l", "x", "y"], ["HSET", "h", "f", "v"], ["RENAME", "l", "h"], ["TYPE", "h"],
        ["LRANGE", "h", "0", "-1"], ["EXISTS", "l"], ["ZADD", "z", "1", "m"],
        ["RENAME", "z", "a-much-longer-name-than-before-for-the-sorted-set"],
        ["ZRANGE", "a-much-longer-name-than-before-for-the-sorted-set", "0", "-1"],
        ["RENAME", "a"], ["RENAME", "a", "b", "c"], ["DBSIZE"]]),
    ("keys patterns", [
        ["MSET", "hello", "1", "hallo", "2", "hxllo", "3", "hllo", "4", "heeeello", "5",
         "a*b", "6", "a?b", "7", "[x]", "8", "ab\\", "9", "Hello", "10"],
        U(["KEYS", "*"]), U(["KEYS", "h?llo"]), U(["KEYS", "h*llo"]), U(["KEYS", "h[ae]llo"]),
        U(["KEYS", "h[^e]llo"]), U(["KEYS", "h[a-b]llo"]), U(["KEYS", "h[b-a]llo"]),
        U(["KEYS", "a\\*b"]), U(["KEYS", "a\\?b"]), U(["KEYS", "\\[x\\]"]), U(["KEYS", "[[]x]"]),
        U(["KEYS", "ab\\"]), U(["KEYS", "ab\\\\"]), U(["KEYS", "h[ae"]), U(["KEYS", "HELLO"]),
        U(["KEYS", "[H]ello"]), U(["KEYS", "nomatch*"]), U(["KEYS", ""]), U(["KEYS", "**"]),
        U(["KEYS", "*l*l*o"]), ["KEYS"], ["KEYS", "a", "b"]]),
    ("del unlink exists", [
        ["MSET", "a", "1", "b", "2", "c", "3"], ["RPUSH", "l", "x"], ["EXISTS", "a", "a", "l", "zz"],
        ["UNLINK", "a", "a", "zz"], ["DEL", "b", "l"], ["EXISTS", "a", "b", "c", "l"],
        ["UNLINK"], ["DEL"], ["DBSIZE"]]),
    ("scan errors", [
        ["SCAN", "x"], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "COUNT", "-1"],
        ["SCAN", "0", "COUNT", "x"], ["SCAN", "0", "FOO"], ["SCAN", "0", "MATCH"],
        ["SCAN", " 0"], ["SCAN", "18446744073709551616"], ["SCAN", "0x"], ["SCAN"],
        ["SCAN", "0", "TYPE"], ["SCAN", "0", "COUNT", "10", "MATCH"], ["SCAN", "0", "TYPE", "foo"]]),
    ("strings", [
        ["APPEND", "s", "ab"], ["APPEND", "s", "cd"], ["GET", "s"], ["STRLEN", "s"],
        ["STRLEN", "nope"], ["APPEND", "s", ""], ["SET", "n", "10"], ["APPEND", "n", "5"],
        ["INCR", "n"], ["APPEND"], ["STRLEN", "a", "b"], ["SET", "e", ""], ["STRLEN", "e"],
        ["SET", "big", "x" * 200], ["SET", "big", "y"], ["GET", "big"], ["SET", "big", "z" * 200],
        ["STRLEN", "big"], ["INCR", "cnt"], ["SET", "cnt", "99"], ["INCR", "cnt"], ["GET", "cnt"]]),
]

CASES = LIST_CASES + HASH_CASES + SET_CASES + ZSET_CASES + KEY_CASES
