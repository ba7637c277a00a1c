#!/usr/bin/env python3
"""Plots for the benchmark report: HTTP latency against throughput, and engine time against N.

Usage: python bench/plot.py RESULTS.json OUT_PREFIX   (writes OUT_PREFIX-http.png and OUT_PREFIX-n.png)
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def main() -> None:
    data = json.load(open(sys.argv[1]))
    prefix = sys.argv[2]
    mode = "" if data["mode"] == "full" else f" ({data['mode']} run)"

    # time against N: fused N=1,2,5,8 per shape (int8: N=2,5,8), with plain and literal N=5 as reference marks
    times = data["engine"]["times"]
    shapes = [s for s in data["engine"]["shapes"] if s.startswith("32x") or s in ("8x64", "1x16")]
    if shapes:
        plot_n(data, times, shapes, prefix, mode)
    plot_http(data, prefix, mode)


def plot_n(data, times, shapes, prefix, mode) -> None:
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    ns = [1, 2, 5, 8]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, shape in enumerate(shapes):
        c = colors[i % len(colors)]
        label = shape.replace("x", " × ")
        plain = median(times["plain"][shape])
        ys = [median(times[f"fused{n}"][shape]) for n in ns]
        ax.plot(ns, ys, "o-", color=c, label=f"fused, {label}")
        ax.axhline(plain, color=c, ls=":", lw=1)
        ax.plot([5], [median(times["literal5"][shape])], "x", color=c, ms=9, mew=2)
        rel.plot(ns, [y / plain for y in ys], "o-", color=c, label=f"fused, {label}")
        rel.plot([5], [median(times["literal5"][shape]) / plain], "x", color=c, ms=9, mew=2)
        if shape in times.get("fused5_int8", {}):
            n8 = [2, 5, 8]
            plain8 = median(times["plain_int8"][shape])
            ys8 = [median(times[f"fused{n}_int8"][shape]) for n in n8]
            ax.plot(n8, ys8, "^--", color=c, alpha=0.8)
            ax.axhline(plain8, color=c, ls="-.", lw=1, alpha=0.8)
            rel.plot(n8, [y / plain8 for y in ys8], "^--", color=c, alpha=0.8)
    ax.plot([], [], "k:", lw=1, label="plain backbone (same colour)")
    ax.plot([], [], "kx", ms=9, mew=2, label="literal fusion, N = 5")
    if "fused5_int8" in times:
        ax.plot([], [], "k^--", label="fused, --precision int8 (same colour)")
        ax.plot([], [], "k-.", lw=1, label="plain backbone, int8")
    ax.set_yscale("log")
    ax.set_ylabel("ms per batch (median, log scale)")
    ax.set_title("Time per batch")
    rel.axhline(1.0, color="k", lw=1)
    rel.axhline(1.3, color="red", ls=":", lw=1, label="target: fused N=5 ≤ 1.3 × plain")
    rel.set_ylabel("time / plain backbone time (same shape and precision)")
    rel.set_title("Relative to the plain backbone")
    rel.set_ylim(bottom=0.8)
    for a in (ax, rel):
        a.set_xticks(ns)
        a.set_xlabel("adapters fused (N)")
        a.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    rel.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Engine time against N, {data['threads']} threads, CPU{mode}")
    fig.tight_layout()
    fig.savefig(f"{prefix}-n.png")
    plt.close(fig)


def plot_http(data, prefix, mode) -> None:
    http = data.get("http", {})
    if "steps" in http:
        steps = http["steps"]
        fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
        rps = [s["rps"] for s in steps]
        ax.plot(rps, [s["p50"] for s in steps], "o-", label="p50")
        ax.plot(rps, [s["p99"] for s in steps], "s--", label="p99")
        for s in steps:
            ax.annotate(f"c={s['concurrency']}", (s["rps"], s["p99"]), textcoords="offset points", xytext=(4, 6), fontsize=8)
        eo = http["engineOnly"]["seqPerSec"]
        ax.axvline(eo, color="gray", ls=":", label=f"engine only, same tweets ({eo:.0f}/s)")
        ax.axvline(0.85 * eo, color="red", ls=":", lw=1, label="85 % of engine only")
        srt = http["engineOnly"].get("sorted", {}).get("seqPerSec")
        if srt:
            ax.axvline(srt, color="green", ls="-.", lw=1, label=f"engine only, length-sorted batches ({srt:.0f}/s)")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (requests/s)")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(f"HTTP: latency against throughput, concurrency sweep{mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(f"{prefix}-http.png")
        plt.close(fig)


if __name__ == "__main__":
    main()
