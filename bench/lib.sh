# bench/lib.sh — shell helpers shared by the bench scripts (sourced, not run).

# wrk's --latency output on stdin -> "rps p50_ms p99_ms non2xx errors"
wrk_summary() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
            if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
        }
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
        END { printf "%s %.3f %.3f %d %d\n", rps + 0, p50 + 0, p99 + 0, bad + 0, err + 0 }
    '
}

# numbers on stdin, one per line -> their median (0 when none)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Every benchmark keeps the pids it started in PIDS. stop_all ends them: TERM to all, then up to
# 3 s each before KILL, and reaps them. Only these pids, never by name.
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# A free TCP port on 127.0.0.1 (the kernel's pick; another process may take it before use).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
