"""
From the runs to the results: per-variant summaries, the same-run ratios and
their targets, and the three outputs (JSON, a Markdown table, a PNG chart).

A repetition with any error is not a result: it is left out of every
summary and ratio, and counted.
"""

import json
import os

from bench import stats
from bench.variants import BY_NAME, RATIOS


def _valid(phase):
    return bool(phase) and phase.get("valid", False)


def _metric(outcome, metric):
    """One repetition's value of C{metric}, or C{None} when it has none."""
    if "failed" in outcome:
        return None
    if metric in ("calls", "jobs"):
        closed = outcome["closed"]
        return closed[f"{metric}_per_s"] if _valid(closed) else None
    opened = outcome.get("open", {})
    return opened["latency"][metric] if _valid(opened) else None


def summarize_variant(entry) -> dict:
    reps = entry["reps"]
    closed = [r["closed"] for r in reps if "closed" in r]
    valid = [c for c in closed if _valid(c)]
    opened = [r["open"] for r in reps if _valid(r.get("open"))]
    summary = {
        "reps": len(reps),
        "valid_closed": len(valid),
        "valid_open": len(opened),
        "errors": sum(c["errors"] for c in closed)
        + sum(r["open"].get("errors", 0) for r in reps if "open" in r),
        "failed": [r["failed"] for r in reps if "failed" in r],
    }
    for key in ("calls_per_s", "jobs_per_s", "server_cores", "load_cores",
                "helper_cores", "other_cores", "server_cpu_us_per_job"):
        values = [c[key] for c in valid]
        summary[key] = stats.median(values)
        summary[f"{key}_range"] = stats.spread(values)
    if opened:
        merged = stats.merge(o["latency_hist"] for o in opened)
        summary["open_rate"] = stats.median(o["rate"] for o in opened)
        summary["open_basis"] = opened[0].get("basis")
        # The median repetition's percentiles: on a shared machine one
        # disturbed repetition would otherwise make the whole tail.
        summary["latency"] = {
            key: stats.median(o["latency"][key] for o in opened)
            for key in ("p50", "p99", "p99.9", "max")
        }
        summary["latency_merged"] = stats.summarize(merged)
        summary["p99_per_rep"] = [o["latency"]["p99"] for o in opened]
        summary["lag_p99_per_rep"] = [o["lag"]["p99"] for o in opened]
        summary["lag"] = {"p99": stats.median(o["lag"]["p99"] for o in opened)}
    return summary


def ratio(document, spec) -> dict:
    """One `Ratio` per repetition (where both sides are results) and its median."""
    variants = document["variants"]
    result = {"name": spec.name, "numerator": spec.numerator,
              "denominator": spec.denominator,
              "metric": [spec.numerator_metric, spec.denominator_metric],
              "goal": list(spec.goal) if spec.goal else None}
    if spec.numerator not in variants or spec.denominator not in variants:
        result.update(per_rep=[], median=None, verdict="not run")
        return result
    by_rep = {r["rep"]: r for r in variants[spec.denominator]["reps"]}
    per_rep = []
    for outcome in variants[spec.numerator]["reps"]:
        other = by_rep.get(outcome["rep"])
        if other is None:
            continue
        top = _metric(outcome, spec.numerator_metric)
        bottom = _metric(other, spec.denominator_metric)
        if top is not None and bottom:
            per_rep.append(top / bottom)
    result["per_rep"] = per_rep
    result["median"] = stats.median(per_rep)
    if result["median"] is None:
        result["verdict"] = "no result"
    elif spec.goal is None:
        result["verdict"] = "reported"
    else:
        op, bound = spec.goal
        met = result["median"] >= bound if op == ">=" else result["median"] <= bound
        result["verdict"] = "met" if met else "missed"
    return result


def analyse(document) -> None:
    """Add C{summary} to each variant and C{ratios} and C{summary} to C{document}."""
    for entry in document["variants"].values():
        entry["summary"] = summarize_variant(entry)
    document["ratios"] = [ratio(document, spec) for spec in RATIOS]
    others = [
        entry["summary"]["other_cores"] for entry in document["variants"].values()
        if entry["summary"].get("other_cores") is not None
    ]
    document["summary"] = {
        "complete": all(
            e["summary"]["valid_closed"] == e["summary"]["reps"] and e["summary"]["reps"]
            for e in document["variants"].values() if "skipped" not in e
        ),
        "other_cores_median": stats.median(others),
        "targets_met": sum(1 for r in document["ratios"] if r["verdict"] == "met"),
        "targets_missed": sum(1 for r in document["ratios"] if r["verdict"] == "missed"),
        "targets_without_result": sum(
            1 for r in document["ratios"]
            if r["goal"] and r["verdict"] in ("no result", "not run")
        ),
    }


# Text ----------------------------------------------------------------------


def _n(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ms(value):
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def one_line(outcome) -> str:
    """A progress line for one repetition of one variant."""
    if "failed" in outcome:
        return f"FAILED: {outcome['failed']}"
    closed, opened = outcome["closed"], outcome["open"]
    text = (f"closed {closed['calls_per_s']:,.0f} calls/s {closed['jobs_per_s']:,.0f} jobs/s "
            f"errors {closed['errors']} server {closed['server_cores']:.2f} "
            f"load {closed['load_cores']:.2f} emulator {closed.get('helper_cores', 0):.2f} "
            f"other {closed['other_cores']:.2f} cores")
    if "skipped" in opened:
        return text + f"; open skipped: {opened['skipped']}"
    latency = opened["latency"]
    text += (f"; open {opened['rate']:,.0f}/s p50 {_ms(latency['p50'])} "
             f"p99 {_ms(latency['p99'])} p99.9 {_ms(latency['p99.9'])} ms "
             f"errors {opened['errors']}")
    if closed["errors"] or opened["errors"]:
        samples = {**closed["error_samples"], **opened["error_samples"]}
        text += f" {samples}"
    return text


def _verdict(result):
    return {"met": "**met**", "missed": "**missed**"}.get(result["verdict"], result["verdict"])


def markdown(document) -> str:
    machine = document["machine"]
    config = document["config"]
    lines = [
        (f"### Jack enqueue benchmark, {document['started_at'][:16].replace('T', ' ')} UTC, "
         f"host `{document['host']}`"),
        "",
        f"{machine['cpus']} CPUs ({machine['cpu_model']}); "
        + (f"server pinned to CPU {machine['server_cpus']}, load to CPU {machine['load_cpus']}"
           if machine["pinned"] else "not pinned")
        + f"; {config['reps']} interleaved repetitions, {config['warmup_s']:g} s warm-up, "
        f"{config['duration_s']:g} s windows; payload {config['payload_bytes']} bytes; "
        f"load average {machine['loadavg_start'][0]:.1f} at the start, "
        f"{machine['loadavg_end'][0]:.1f} at the end; other processes used a median "
        f"{_n(document['summary']['other_cores_median'], 2)} cores during the windows.",
        "",
        ("| variant | jobs/s | calls/s | range (calls/s) | server CPU µs/job "
         "| cores: server / load / others | open-loop rate | p50 ms | p99 ms | p99.9 ms "
         "| send lag p99 ms | valid reps: closed, open |"),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for entry in document["variants"].values():
        s = entry["summary"]
        if "skipped" in entry:
            lines.append(f"| {entry['label']} | skipped: {entry['skipped']} "
                         "| | | | | | | | | | |")
            continue
        low, high = s["calls_per_s_range"]
        latency = s.get("latency", {})
        rate = s.get("open_rate")
        rate_text = "–" if rate is None else (
            f"{rate:,.0f}/s" + (" (own ½)" if s.get("open_basis") == "own" else ""))
        cores = (f"{_n(s['server_cores'], 2)} / {_n(s['load_cores'], 2)} / "
                 f"{_n(s['other_cores'], 2)}")
        if s.get("helper_cores"):
            cores += f" (+ emulator {s['helper_cores']:.2f})"
        lines.append(
            f"| {entry['label']} | {_n(s['jobs_per_s'])} | {_n(s['calls_per_s'])} "
            f"| {_n(low)}–{_n(high)} | {_n(s['server_cpu_us_per_job'])} | {cores} "
            f"| {rate_text} "
            f"| {_ms(latency.get('p50'))} | {_ms(latency.get('p99'))} "
            f"| {_ms(latency.get('p99.9'))} | {_ms(s.get('lag', {}).get('p99'))} "
            f"| {s['valid_closed']}/{s['reps']}, {s['valid_open']}/{s['reps']} |"
        )
    lines += [
        "",
        "| same-run ratio | median | per repetition | target | |",
        "|---|--:|---|---|---|",
    ]
    for result in document["ratios"]:
        if result["verdict"] == "not run":
            continue
        goal = " ".join(str(x) for x in result["goal"]) if result["goal"] else ""
        per_rep = ", ".join(f"{x:.2f}" for x in result["per_rep"])
        lines.append(
            f"| {result['name']} | {_n(result['median'], 2)} | {per_rep} | {goal} "
            f"| {_verdict(result)} |"
        )
    lines += [
        "",
        ("jobs/s and calls/s: closed-loop maximum, median of the repetitions "
         "without errors. Latency: open loop, measured from each call's intended "
         "send time, median of the valid repetitions (the JSON also has all "
         "repetitions merged; send lag: how late the load "
         "process sent the calls, part of that latency; large means the load "
         "core was starved); the rate is half the grpc.aio "
         "echo's maximum calls/s of the same repetition, or (own ½) half the "
         "variant's own maximum where the echo's rate is not a sensible load "
         "(bulk calls, Celery, RQ). Server CPU: the pinned server process "
         "(Jack, the echo, the run's own Redis; RabbitMQ's beam.smp, unpinned); "
         "cores: CPU used during the closed-loop window by the server, the load "
         "processes and everything else on the machine (other people's work, "
         "unpinned brokers); the Pub/Sub emulator is counted apart. A repetition "
         "with any error is not a result."),
    ]
    return "\n".join(lines) + "\n"


# Files ---------------------------------------------------------------------


def chart(document, path) -> None:
    """A PNG: jobs/s per variant (log scale) and open-loop p50/p99."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    entries = [
        (entry["label"], entry["summary"]) for entry in document["variants"].values()
        if "skipped" not in entry and entry["summary"]["jobs_per_s"]
    ]
    figure, (left, right) = pyplot.subplots(
        1, 2, figsize=(14, 0.5 * len(entries) + 2), sharey=True
    )
    labels = [label for label, _ in entries]
    positions = range(len(entries))
    colours = {"ceiling": "#999999", "jack": "#1f77b4", "other": "#d62728"}
    groups = [BY_NAME[name].group for name, entry in document["variants"].items()
              if "skipped" not in entry and entry["summary"]["jobs_per_s"]]
    values = [s["jobs_per_s"] for _, s in entries]
    lows = [v - s["jobs_per_s_range"][0] for v, (_, s) in zip(values, entries)]
    highs = [s["jobs_per_s_range"][1] - v for v, (_, s) in zip(values, entries)]
    left.barh(positions, values, xerr=[lows, highs],
              color=[colours[g] for g in groups])
    left.set_xscale("log")
    left.set_xlabel("jobs/s, closed-loop maximum (median, min–max)")
    left.set_yticks(list(positions), labels)
    left.invert_yaxis()
    for y, value in zip(positions, values):
        left.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    p50 = [s.get("latency", {}).get("p50") or 0 for _, s in entries]
    p99 = [s.get("latency", {}).get("p99") or 0 for _, s in entries]
    right.barh([p - 0.2 for p in positions], p99, height=0.4, label="p99", color="#ff7f0e")
    right.barh([p + 0.2 for p in positions], p50, height=0.4, label="p50", color="#2ca02c")
    right.set_xscale("log")
    right.set_xlabel("open-loop latency, ms (from intended send time)")
    right.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8)
    figure.suptitle(
        f"Jack enqueue benchmark, {document['started_at'][:10]}, {document['host']} "
        f"({document['machine']['cpus']} CPUs, "
        + ("server and load pinned apart" if document["machine"]["pinned"] else "not pinned")
        + ")"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def write(document, directory, stem):
    """
    Write C{stem}.json, C{stem}.md and (when matplotlib is installed)
    C{stem}.png into C{directory}.

    @return: the paths written.
    """
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, stem)
    paths = []
    with open(base + ".json", "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    paths.append(base + ".json")
    with open(base + ".md", "w") as f:
        f.write(markdown(document))
    paths.append(base + ".md")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        document.setdefault("notes", []).append("no chart: matplotlib is not installed")
    else:
        chart(document, base + ".png")
        paths.append(base + ".png")
    return paths
