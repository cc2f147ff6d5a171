#!/bin/sh
# httpd against nginx (Debian's, configured by bench/nginx.conf like httpd's
# defaults), both serving the same root on loopback, one thread against one
# worker. Load from Debian's wrk with one thread.
#
# Rows, each the median of BENCH_ROUNDS rounds (default 3) of BENCH_SECONDS
# (default 3) per server, the servers alternating: requests/s, p99 latency,
# and the server's CPU time per request (user + system time of the server
# process over the run, from /proc/PID/stat, divided by the requests wrk
# completed) for a 13-byte and a 4 KiB file at 64 and 256 connections;
# large files (1 MiB and 64 MiB, 4 connections): MB/s and the server's CPU
# time per MB sent; then the idle memory per keep-alive connection: the
# server's RSS delta with 10,000 connections that each made one request
# and went quiet.
#
# Prints a table and writes build/bench-httpd.tsv (the columns of
# build/bench.tsv; the ratio favours httpd above 1: nginx / httpd for the
# rows where lower is better).
#
# BENCH_ROWS=small measures the 13 B and 4 KiB rows alone (requests/s, p99,
# CPU per request): on a shared machine the p99 moves most between runs,
# and more rounds of these rows alone (BENCH_ROUNDS=7) say more about it
# than one round of everything.
#
# Usage: sh bench/httpd_bench.sh   (from the top directory, after make)
set -eu

rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECONDS:-3}
rows=${BENCH_ROWS:-all}
case $rows in
all | small) ;;
*) echo "bench: BENCH_ROWS is all or small, not '$rows'" >&2; exit 2 ;;
esac
idle_conns=${BENCH_IDLE_CONNS:-10000}
hport=18480
nport=18481
tck=$(getconf CLK_TCK)
nginx=$(command -v nginx || echo /usr/sbin/nginx)

# 10,000 connections on each side of loopback, plus the servers' own.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/pd-httpd-bench.XXXXXX)
# nginx's worker runs as nobody: the root must be readable by others.
chmod 755 "$work"
root=$work/www
mkdir -p "$root" "$work/nginx"
printf 'hello, world\n' >"$root/13b.txt"
head -c 4096 /dev/urandom >"$root/4k.bin"
if [ "$rows" = all ]; then
    head -c 1048576 /dev/urandom >"$root/1m.bin"
    head -c 67108864 /dev/urandom >"$root/64m.bin"
fi
hpid=""
npid=""

cleanup() {
    [ -n "$hpid" ] && kill "$hpid" 2>/dev/null && wait "$hpid" 2>/dev/null
    [ -n "$npid" ] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Waits until something accepts connections on port $1.
wait_port() {
    python3 - "$1" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("bench: nothing listens on port " + sys.argv[1])
EOF
}

# Starts both servers with keep-alive idle time $1 seconds; sets hpid and
# npid (nginx's master) and hsrv / nsrv, the processes that serve.
start_servers() {
    ./build/httpd -q -p "$hport" -r "$root" -k "$(($1 * 1000))" &
    hpid=$!
    sed -e "s|@ROOT@|$root|" -e "s|@PORT@|$nport|" -e "s|@PREFIX@|$work/nginx|g" \
        -e "s|@IDLE_S@|$1|" -e "s|@WORKERS@|1|" bench/nginx.conf >"$work/nginx/nginx.conf"
    "$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
    npid=$!
    wait_port "$hport"
    wait_port "$nport"
    hsrv=$hpid
    nsrv=$(pgrep -P "$npid" | head -n 1)
}

stop_servers() {
    kill "$hpid" "$npid"
    wait "$hpid" || { echo "bench: httpd did not exit 0" >&2; exit 1; }
    wait "$npid" || true
    hpid=""
    npid=""
}

cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Runs wrk against port $1 for path $2 with $3 connections, charging the CPU
# of process $4; appends "rps p99_us cpu_us_per_request" to file $5.
run_wrk() {
    t0=$(cpu_ticks "$4")
    out=$(wrk -t1 -c"$3" -d"${secs}s" --latency "http://127.0.0.1:$1$2")
    t1=$(cpu_ticks "$4")
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v tck="$tck" -v port="$1" '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx|Socket errors/ { bad = bad $0 " " }
        $1 == "99%" {
            v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
            p99 = u == "us" ? v : u == "ms" ? v * 1000 : v * 1000000
        }
        END {
            if (bad != "") { print "bench: wrk on port " port ": " bad > "/dev/stderr"; exit 1 }
            printf "%.0f %.0f %.2f\n", rps, p99, (t1 - t0) * 1000000 / tck / n
        }' >>"$5"
}

# Runs wrk against port $1 for the large file $2 ($3 bytes) with 4
# connections, charging the CPU of process $4; appends "MB/s cpu_us_per_MB"
# to file $5.
run_wrk_large() {
    t0=$(cpu_ticks "$4")
    out=$(wrk -t1 -c4 -d"${secs}s" "http://127.0.0.1:$1$2")
    t1=$(cpu_ticks "$4")
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v tck="$tck" -v port="$1" -v size="$3" \
                      -v secs="$secs" '
        / requests in / { n = $1 }
        /Non-2xx|Socket errors/ { bad = bad $0 " " }
        END {
            if (bad != "") { print "bench: wrk on port " port ": " bad > "/dev/stderr"; exit 1 }
            mb = n * size / 1000000
            printf "%.0f %.1f\n", mb / secs, (t1 - t0) * 1000000 / tck / mb
        }' >>"$5"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

start_servers 5
for r in $(seq "$rounds"); do
    for size in 13b.txt 4k.bin; do
        for c in 64 256; do
            run_wrk "$hport" "/$size" "$c" "$hsrv" "$work/h-$size-$c"
            run_wrk "$nport" "/$size" "$c" "$nsrv" "$work/n-$size-$c"
        done
    done
    [ "$rows" = small ] && continue
    for large in 1m.bin:1048576 64m.bin:67108864; do
        run_wrk_large "$hport" "/${large%%:*}" "${large##*:}" "$hsrv" "$work/h-${large%%:*}"
        run_wrk_large "$nport" "/${large%%:*}" "${large##*:}" "$nsrv" "$work/n-${large%%:*}"
    done
done
stop_servers

# Idle memory: 30 s keep-alive on both so that no connection times out
# while the RSS is read; the reading comes 2 s after the last response,
# once httpd has given back the blocks of its connections.
idle_rss() {
    before=$(rss_kib "$2")
    mkfifo "$work/hold"
    ./build/idle_conns "$1" "$idle_conns" /13b.txt <"$work/hold" >"$work/idle.out" &
    cpid=$!
    exec 3>"$work/hold"
    while ! grep -q ready "$work/idle.out" 2>/dev/null; do
        kill -0 "$cpid" 2>/dev/null || { echo "bench: idle_conns failed" >&2; exit 1; }
        sleep 0.1
    done
    sleep 2
    after=$(rss_kib "$2")
    exec 3>&-
    wait "$cpid"
    rm -f "$work/hold" "$work/idle.out"
    echo $(((after - before) * 1024 / idle_conns))
}
if [ "$rows" = all ]; then
    start_servers 30
    hmem=$(idle_rss "$hport" "$hsrv")
    nmem=$(idle_rss "$nport" "$nsrv")
    stop_servers
fi

tsv=build/bench-httpd.tsv
printf 'benchmark\tpolldrop\tbaseline\tbaseline_value\tratio\n' >"$tsv"
printf '%-26s %12s %12s %8s\n' benchmark httpd nginx ratio
row() { # name httpd nginx higher-is-better(1/0)
    ratio=$(awk -v h="$2" -v n="$3" -v hb="$4" \
            'BEGIN { printf "%.3f", hb ? h / n : (h > 0 ? n / h : 0) }')
    printf '%-26s %12s %12s %8s\n' "$1" "$2" "$3" "$ratio"
    printf '%s\t%s\tnginx\t%s\t%s\n' "$1" "$2" "$3" "$ratio" >>"$tsv"
}
for size in 13b.txt 4k.bin; do
    for c in 64 256; do
        tag=httpd_${size%%.*}_c$c
        h=$work/h-$size-$c
        n=$work/n-$size-$c
        row "${tag}_rps" "$(cut -d' ' -f1 "$h" | median)" "$(cut -d' ' -f1 "$n" | median)" 1
        row "${tag}_p99_us" "$(cut -d' ' -f2 "$h" | median)" "$(cut -d' ' -f2 "$n" | median)" 0
        row "${tag}_cpu_us" "$(cut -d' ' -f3 "$h" | median)" "$(cut -d' ' -f3 "$n" | median)" 0
    done
done
for large in 1m 64m; do
    [ "$rows" = small ] && break
    h=$work/h-$large.bin
    n=$work/n-$large.bin
    row "httpd_${large}_c4_mb_per_s" "$(cut -d' ' -f1 "$h" | median)" \
        "$(cut -d' ' -f1 "$n" | median)" 1
    row "httpd_${large}_c4_cpu_us_per_mb" "$(cut -d' ' -f2 "$h" | median)" \
        "$(cut -d' ' -f2 "$n" | median)" 0
done
[ "$rows" = all ] && row httpd_idle_bytes_per_conn "$hmem" "$nmem" 0
echo "wrote $tsv"
