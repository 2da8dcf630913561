"""What bench/exec.sh and bench/apps.sh share: the split of `smolvm exec -v`
runs (a TSV of total, restore, agent sync and command milliseconds, one run
a line) into figures, and their lines in the table."""
import statistics


def fig(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def split(path):
    """Figures of each part, plus 'rest' (VMM start and teardown), 'host'
    (restore + rest) and 'guest' (sync + command) medians, and the run count."""
    rows = [[float(x) for x in l.split("\t")[:4]] for l in open(path).read().split("\n") if l]
    total, restore, sync, cmd = ([r[i] for r in rows] for i in range(4))
    rest = [t - a - b - c for t, a, b, c in zip(total, restore, sync, cmd)]
    return {"end_to_end_ms": fig(total), "restore_ms": fig(restore), "agent_sync_ms": fig(sync),
            "command_ms": fig(cmd), "vmm_rest_ms": fig(rest),
            "host_ms": statistics.median([a + r for a, r in zip(restore, rest)]),
            "guest_ms": statistics.median([s + c for s, c in zip(sync, cmd)]), "runs": len(rows)}


def line(name, f, note="", width=34):
    print(f"  {name:<{width}} {f['median']:10.1f} ms  [{f['min']:.1f}..{f['max']:.1f}]  {note}")


def print_split(s, title, command, width=34):
    line(title, s["end_to_end_ms"], width=width)
    line("  restore (VMM)", s["restore_ms"], width=width)
    line("  agent sync (guest kernel)", s["agent_sync_ms"], width=width)
    line(f"  {command}", s["command_ms"], width=width)
    line("  the rest (VMM start, teardown)", s["vmm_rest_ms"], width=width)
