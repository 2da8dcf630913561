#!/usr/bin/env bash
# bench/multi.sh K DIR REGEX WAIT_S [--go GO_REGEX TEXT] CMD...: K copies of
# CMD at once, run under tsrun.py by snapshot.sh and scale.sh. Each one's
# stdout and stderr go to ours with the prefix "I: " (and into DIR/I.log and
# DIR/I.err). With --go, each instance's stdin is a pipe that gets TEXT once
# its stdout or stderr has a line matching GO_REGEX (polled every 50 ms);
# else stdin is /dev/null. Once every instance printed a line matching REGEX
# (or after WAIT_S seconds) and 0.2 s later, prints "mem I PID Rss Pss
# Pss_Anon Pss_File Pss_Shmem COMM" (KiB, /proc/PID/smaps_rollup) per
# instance, then ends them.
K=$1 D=$2 RX=$3 WAIT_S=$4
shift 4
GO= GO_TEXT=
if [ "${1:-}" = --go ]; then
    GO=$2 GO_TEXT=$3
    shift 3
fi
mkdir -p "$D"
pids=() fds=() sent=()
for i in $(seq 1 "$K"); do
    in=/dev/null
    if [ -n "$GO" ]; then
        in=$D/$i.in
        mkfifo "$in"
        exec {fd}<> "$in"   # read-write: opening never blocks, no EOF ever
        fds[i]=$fd
    fi
    "$@" < "$in" > >(exec tee "$D/$i.log" | exec sed -u "s/^/$i: /") \
        2> >(exec tee "$D/$i.err" | exec sed -u "s/^/$i: /" >&2) &
    pids+=($!)
done
for _ in $(seq 1 $((WAIT_S * 20))); do
    if [ -n "$GO" ]; then
        for f in $(grep -lE "$GO" "$D"/*.log "$D"/*.err 2>/dev/null); do
            i=${f##*/}
            i=${i%.*}
            [ -n "${sent[i]:-}" ] && continue
            sent[i]=1
            printf '%s' "$GO_TEXT" >&"${fds[i]}"
        done
    fi
    [ "$(grep -lE "$RX" "$D"/*.log 2>/dev/null | wc -l)" -ge "$K" ] && break
    sleep 0.05
done
sleep 0.2
for i in $(seq 1 "$K"); do
    p=${pids[$((i - 1))]}
    comm=gone
    read -r comm < "/proc/$p/comm" || true
    awk -v i="$i" -v p="$p" -v c="$comm" '/^(Rss|Pss|Pss_Anon|Pss_File|Pss_Shmem):/ { v[$1] = $2 }
        END { print "mem", i, p, v["Rss:"]+0, v["Pss:"]+0, v["Pss_Anon:"]+0,
              v["Pss_File:"]+0, v["Pss_Shmem:"]+0, c }' "/proc/$p/smaps_rollup" || echo "mem $i $p gone"
done
kill "${pids[@]}" 2>/dev/null
wait
