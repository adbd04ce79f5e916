#!/usr/bin/env bash
# Starts one of the comparison servers from Debian's packages in the
# foreground, as a single process serving on one thread, so that its
# utime+stime in /proc/PID/stat is all the server's work:
#
#   bench/peer.sh nginx|h2o|haproxy|redis PORT [--big]
#   bench/peer.sh nginx PORT --tls CERT KEY     (HTTPS on PORT, same routes)
#   bench/peer.sh haproxy-tcp PORT --to BACKEND_PORT
#
# It writes the server's configuration (and the files it serves) under
# $BENCH_TMP/NAME-PORT (or a new directory in $TMPDIR when BENCH_TMP is not
# set) and then execs the server, so the PID it was started with is the
# server's. The directory is left for the caller to remove (bench/run.sh
# removes its BENCH_TMP).
#
# Every HTTP server answers
#   GET /      200 "Hello World!\r\n" (14 bytes)
#   GET /16k   200 with a 16384-byte body, from a file
#   GET /1m    200 with a 1 MiB body, from a file (nginx only: sendfile on)
# nginx: one process (master_process off, one worker's work), `return 200`
#        for /, a static file for /16k (sendfile, open_file_cache),
#        access_log off, keepalive_requests unlimited in practice.
# h2o:   num-threads 1, as the user running this (not nobody); h2o has no way to send a fixed body without mruby,
#        so / is a 14-byte static file (file.file), as is /16k.
# haproxy: nbthread 1, `http-request return` with the fixed string for /;
#        /16k (the file) only with --big, which also sets tune.bufsize 32768
#        so that 16 KiB fit (the default 16384 otherwise). maxconn 9990: with
#        the fd limit of 20000 haproxy takes no more (it keeps 2 fds a
#        connection in reserve).
# haproxy-tcp: nbthread 1, mode tcp, relaying every connection to
#        127.0.0.1:BACKEND_PORT (the layer-4 proxy evn's tcp-proxy races).
# nginx --tls: the same server block on "listen ... ssl" with CERT and KEY,
#        TLS 1.2 and 1.3 (nginx 1.22's default list stops at 1.2; evn's
#        listener offers 1.3, and newer nginx does by default), nginx's
#        default ciphers, session cache (none) and tickets (on).
# redis: redis-server --save '' --appendonly no, no config file.
# All raise the soft fd limit to the hard one and take 20000 connections
# (haproxy: 9990).
set -euo pipefail
usage="usage: peer.sh nginx|h2o|haproxy|haproxy-tcp|redis PORT [--big] [--tls CERT KEY] [--to PORT]"
name=${1:?$usage}
port=${2:?$usage}
shift 2
big=0 cert="" key="" to=""
while (($#)); do
    case $1 in
    --big) big=1; shift ;;
    --tls) cert=${2:?$usage} key=${3:?$usage}; shift 3 ;;
    --to) to=${2:?$usage}; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
if [[ -n ${BENCH_TMP:-} ]]; then
    dir=$BENCH_TMP/$name-$port
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/evn-peer.XXXXXX")
fi
mkdir -p "$dir/www"
ulimit -n "$(ulimit -Hn)"

# The bodies: "Hello World!\r\n", and 16384 bytes of it repeated (as
# bench/floor --body 16384 sends).
printf 'Hello World!\r\n' >"$dir/www/hello.txt"
if [[ ! -f $dir/www/16k ]]; then
    for _ in $(seq 1171); do printf 'Hello World!\r\n'; done | head -c 16384 >"$dir/www/16k" || true
fi
[[ -f $dir/www/1m ]] || head -c 1048576 /dev/urandom >"$dir/www/1m"

case $name in
nginx)
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 20000;
    use epoll;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 120s;
    sendfile on;
    tcp_nodelay on;
    open_file_cache max=64;
    default_type text/plain;
    server {
        listen [::]:$port ipv6only=off backlog=4096${cert:+ ssl};
        ${cert:+ssl_certificate $cert;}
        ${cert:+ssl_certificate_key $key;}
        ${cert:+ssl_protocols TLSv1.2 TLSv1.3;}
        location = / {
            return 200 "Hello World!\r\n";
        }
        location = /16k {
            alias $dir/www/16k;
        }
        location = /1m {
            alias $dir/www/1m;
        }
    }
}
CONF
    exec nginx -p "$dir" -c "$dir/nginx.conf"
    ;;
h2o)
    cat >"$dir/h2o.conf" <<CONF
listen:
  port: $port
num-threads: 1
max-connections: 20000
http1-request-timeout: 120
user: $(id -un)
error-log: $dir/error.log
hosts:
  default:
    paths:
      /16k:
        file.file: $dir/www/16k
      /:
        file.file: $dir/www/hello.txt
CONF
    exec h2o -c "$dir/h2o.conf"
    ;;
haproxy)
    bufsize="" route=""
    if ((big)); then
        bufsize="tune.bufsize 32768"
        route="http-request return status 200 content-type application/octet-stream file $dir/www/16k if { path /16k }"
    fi
    cat >"$dir/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 9990
    $bufsize
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-request 120s
    timeout http-keep-alive 120s
frontend bench
    bind :::$port v4v6 backlog 4096
    http-request return status 200 content-type text/plain string "Hello World!\r\n" if { path / }
    $route
    http-request return status 404
CONF
    exec haproxy -db -f "$dir/haproxy.cfg"
    ;;
haproxy-tcp)
    [[ -n $to ]] || { echo "peer.sh: haproxy-tcp needs --to BACKEND_PORT" >&2; exit 2; }
    cat >"$dir/haproxy-tcp.cfg" <<CONF
global
    nbthread 1
    maxconn 9990
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend bench
    bind :::$port v4v6 backlog 4096
    default_backend relay
backend relay
    server b1 127.0.0.1:$to
CONF
    exec haproxy -db -f "$dir/haproxy-tcp.cfg"
    ;;
redis)
    exec redis-server --port "$port" --save '' --appendonly no --maxclients 20000 \
        --dir "$dir" --logfile "$dir/redis.log"
    ;;
*)
    echo "peer.sh: unknown server $name" >&2
    exit 2
    ;;
esac
