#!/usr/bin/env python3
"""report.py RAWDIR OUT.json [--json]: summarize bench/run.sh's raw runs.

Reads RAWDIR/meta.json and RAWDIR/{ticker,tickmem,linux}-{smolvm,qemu}-N.json
(tsrun.py output), writes the summary to OUT.json and prints a table (or,
with --json, the summary) on stdout.
"""
import collections
import glob
import json
import os
import re
import statistics
import sys

VMMS = ("smolvm", "qemu")
KMSG_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def load(raw, case, vmm):
    runs = []
    for p in sorted(glob.glob(os.path.join(raw, "%s-%s-*.json" % (case, vmm)))):
        with open(p) as f:
            runs.append(json.load(f))
    return runs


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "values": vals}


def find_line(run, text, nth):
    """The nth (0-based) console line [t, line, cpu] whose text (kernel
    timestamp stripped) equals text, or None."""
    k = 0
    for e in run["out"]:
        if KMSG_TS.sub("", e[1]).strip() == text:
            if k == nth:
                return e
            k += 1
    return None


def last_console_line(run):
    for e in reversed(run["out"]):
        if e[1].strip():
            return e
    return None


def main():
    raw, out_path = sys.argv[1], sys.argv[2]
    as_json = "--json" in sys.argv[3:]
    with open(os.path.join(raw, "meta.json")) as f:
        meta = json.load(f)
    metrics = collections.OrderedDict()   # key -> {label, unit, smolvm, qemu, ratio}
    notes = []

    def add(key, label, unit, per_vmm):
        m = {"label": label, "unit": unit}
        for vmm in VMMS:
            m[vmm] = stats(per_vmm.get(vmm, []))
        s, q = m["smolvm"], m["qemu"]
        m["ratio_qemu_over_smolvm"] = (q["median"] / s["median"]
                                       if s and q and s["median"] else None)
        metrics[key] = m

    def failures(case, runs, vmm, ok):
        bad = [r for r in runs if not ok(r)]
        if bad:
            notes.append("%s/%s: %d of %d runs did not end as expected (rc %s)"
                         % (case, vmm, len(bad), len(runs), sorted({r["rc"] for r in bad})))

    # ---- ticker
    tick = {v: load(raw, "ticker", v) for v in VMMS}
    for v in VMMS:
        failures("ticker", tick[v], v, lambda r: r["rc"] == 0 and "tick0" in r["marks"])
    ms = lambda x: None if x is None else x * 1000.0
    add("ticker_first_output_ms", 'ticker: first console line ("ticker: start")', "ms",
        {v: [ms(r["marks"].get("start")) for r in tick[v]] for v in VMMS})
    add("ticker_tick0_ms", 'ticker: first "tick 0" line', "ms",
        {v: [ms(r["marks"].get("tick0")) for r in tick[v]] for v in VMMS})
    add("ticker_wall_ms", "ticker: ticks=1 run, start to exit", "ms",
        {v: [ms(r["exit_s"]) if r["rc"] == 0 else None for r in tick[v]] for v in VMMS})
    add("ticker_cpu_ms", "ticker: CPU time (user+sys) of that run", "ms",
        {v: [ms(r["cpu_s"]) if r["rc"] == 0 else None for r in tick[v]] for v in VMMS})

    # ---- memory
    mem = {v: load(raw, "tickmem", v) for v in VMMS}
    for v in VMMS:
        failures("tickmem", mem[v], v, lambda r: r["rc"] == 0 and r["mem"]["samples"] > 0)
    mib = lambda x: None if x is None else x / 1024.0
    add("mem_peak_rss_mib", "ticker ticks=20: VMM peak RSS (VmHWM)", "MiB",
        {v: [mib(r["mem"]["vmhwm_kib"]) for r in mem[v]] for v in VMMS})
    add("mem_guest_resident_mib", "  of which guest RAM resident", "MiB",
        {v: [mib(r["mem"].get("guest_rss_kib")) for r in mem[v]] for v in VMMS})
    add("mem_overhead_mib", "  VMM overhead (RSS - guest RAM)", "MiB",
        {v: [mib(r["mem"]["vmhwm_kib"] - (r["mem"].get("guest_rss_kib") or 0))
             for r in mem[v]] for v in VMMS})
    add("mem_overhead_anon_mib", "    overhead, anonymous", "MiB",
        {v: [mib((r["mem"].get("anon_kib") or 0) - (r["mem"].get("guest_rss_kib") or 0))
             for r in mem[v]] for v in VMMS})
    add("mem_overhead_file_mib", "    overhead, file-backed (binary, libs)", "MiB",
        {v: [mib(r["mem"].get("file_kib")) for r in mem[v]] for v in VMMS})

    # ---- linux
    linux = None
    if meta.get("linux"):
        lx = {v: load(raw, "linux", v) for v in VMMS}
        failures("linux", lx["smolvm"], "smolvm",
                 lambda r: r["rc"] == 0 and "answer" in r["marks"])
        # QEMU's last console line: the most common one over the runs; its nth
        # occurrence (kernel messages repeat while two consoles are active)
        lasts = []
        for r in lx["qemu"]:
            e = last_console_line(r)
            if e is None:
                continue
            text = KMSG_TS.sub("", e[1]).strip()
            nth = sum(1 for x in r["out"] if KMSG_TS.sub("", x[1]).strip() == text) - 1
            lasts.append((text, nth, e))
        common = collections.Counter((a, b) for a, b, _ in lasts).most_common(1)
        qtext, qnth = common[0][0] if common else (None, 0)
        def at_qemu_last(runs, i):   # i = 0: time, 2: CPU time
            es = [find_line(r, qtext, qnth) for r in runs] if qtext else []
            return [e[i] if e else None for e in es]
        first = lambda r, i: r["out"][0][i] if r["out"] else None
        add("linux_first_output_s", "linux: first console line", "s",
            {v: [r["first_out_s"] for r in lx[v]] for v in VMMS})
        add("linux_qemu_last_line_s", "linux: QEMU's last console line (see below)", "s",
            {v: at_qemu_last(lx[v], 0) for v in VMMS})
        add("linux_qemu_kvm_error_s", "linux: QEMU 'KVM internal error' (VM stops)", "s",
            {"qemu": [r["marks"].get("kvmerr") for r in lx["qemu"]]})
        add("linux_ready_s", 'linux: "smolvm guest ready"', "s",
            {v: [r["marks"].get("ready") for r in lx[v]] for v in VMMS})
        add("linux_shell_s", "linux: shell answers `echo` sent at ready", "s",
            {v: [r["marks"].get("answer") for r in lx[v]] for v in VMMS})
        add("linux_exit_s", "linux: exit after end of input (^D)", "s",
            {"smolvm": [r["exit_s"] if r["rc"] == 0 else None for r in lx["smolvm"]]})
        # CPU time (user+sys, 10 ms resolution) of the VMM process, guest
        # included: the emulated guest kernel runs inside the VMM's KVM_RUN,
        # so this hardly depends on what else the host runs, unlike wall time
        add("linux_cpu_first_output_s", "linux CPU: to the first console line", "s",
            {v: [first(r, 2) for r in lx[v]] for v in VMMS})
        add("linux_cpu_qemu_last_line_s", "linux CPU: to QEMU's last console line", "s",
            {v: at_qemu_last(lx[v], 2) for v in VMMS})
        add("linux_cpu_ready_s", 'linux CPU: to "smolvm guest ready"', "s",
            {v: [r["marks_cpu"].get("ready") for r in lx[v]] for v in VMMS})
        add("linux_cpu_total_s", "linux CPU: whole run, to exit", "s",
            {"smolvm": [r["cpu_s"] if r["rc"] == 0 else None for r in lx["smolvm"]]})
        add("linux_peak_rss_mib", "linux: VMM peak RSS (VmHWM)", "MiB",
            {v: [mib(r["mem"]["vmhwm_kib"]) for r in lx[v]] for v in VMMS})
        add("linux_overhead_mib", "  VMM overhead (RSS - guest RAM)", "MiB",
            {v: [mib(r["mem"]["vmhwm_kib"] - (r["mem"].get("guest_rss_kib") or 0))
                 for r in lx[v]] for v in VMMS})
        qend = collections.Counter(
            ("killed 2 s after its KVM internal error (VM paused, QEMU does not exit)"
             if r["stopped_by"] == "kvmerr" else
             "timed out (120 s)" if r["rc"] == 124 or r["rc"] == -9 else
             "exited rc %s" % r["rc"]) for r in lx["qemu"])
        qerr = []
        for r in lx["qemu"][:1]:
            qerr = [e[1] for e in r["err"] if e[1].startswith(
                ("KVM internal error", "emulation failure", "RIP=", "Code="))]
        linux = {"qemu_last_line": lasts[0][2][1] if lasts else None,
                 "qemu_last_line_text": qtext, "qemu_last_line_occurrence": qnth + 1,
                 "qemu_end": dict(qend), "qemu_error": qerr,
                 "smolvm_console_lines": statistics.median([len(r["out"]) for r in lx["smolvm"]])
                 if lx["smolvm"] else None}

    if meta["host"]["other_load_cpus"] > 0.2:
        notes.append("the host was not idle: other processes used %.2f of %d CPUs on average "
                     "during the benchmark; times are inflated and noisy"
                     % (meta["host"]["other_load_cpus"], meta["host"]["cpus"]))
    summary = {"meta": meta, "metrics": metrics, "linux": linux, "notes": notes}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    if as_json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return

    # ---- table
    def fmt(s, unit):
        if not s:
            return "-"
        d = 1 if unit == "ms" else 2
        if s["n"] == 1:
            return "%.*f" % (d, s["median"])
        return "%.*f [%.*f..%.*f]" % (d, s["median"], d, s["min"], d, s["max"])

    h = meta["host"]
    print("smolvm vs %s" % meta["qemu"]["version"])
    print("%s UTC, host %s, %d CPUs (%s), kernel %s; smolvm %s"
          % (meta["date"].replace("T", " ").rstrip("Z"), h["kvm"], h["cpus"], h["cpu"],
             h["kernel"], meta["smolvm"]["git"]))
    print("each: median [min..max] of %d runs; %.0f s; other processes used %.2f CPUs "
          "meanwhile (load average before %s, after %s)"
          % (meta["runs"], h["bench_seconds"], h["other_load_cpus"], h["loadavg_before"],
             h["loadavg_after"]))
    print()
    w = max(len(m["label"]) + len(m["unit"]) + 3 for m in metrics.values())
    print("%-*s  %-24s  %-24s  %s" % (w, "metric", "smolvm", "qemu", "qemu/smolvm"))
    print("-" * (w + 64))
    for m in metrics.values():
        r = m["ratio_qemu_over_smolvm"]
        print("%-*s  %-24s  %-24s  %s" % (w, "%s (%s)" % (m["label"], m["unit"]),
                                         fmt(m["smolvm"], m["unit"]), fmt(m["qemu"], m["unit"]),
                                         "%.2fx" % r if r else "-"))
    print()
    print("kernel command line (both VMMs), ticker: %s" % meta["cmdline"]["ticker"])
    if linux:
        print("kernel command line (both VMMs), linux:  %s" % meta["cmdline"]["linux"])
        print("QEMU's last console line: %s" % (linux["qemu_last_line"] or "(none)"))
        print("QEMU's end: %s" % ", ".join("%s (%d)" % kv for kv in linux["qemu_end"].items()))
        for l in linux["qemu_error"]:
            print("  qemu: %s" % l)
    for n in notes:
        print("NOTE: %s" % n)
    print("\nsummary: %s; per-run data and console transcripts: %s/"
          % (os.path.relpath(out_path), os.path.relpath(raw)))


if __name__ == "__main__":
    main()
