-- wrk script: POST a 16384-byte body to the URL given (evn's http example
-- and bench/floor answer POST /echo with the body back).
-- wrk -t1 -c50 -d5s -s bench/post-16k.lua http://127.0.0.1:PORT/echo
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
