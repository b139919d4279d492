#!/usr/bin/env python3
"""Prints a bench JSON (bench/results/bench-*.json) as the README's Markdown table."""
import json
import sys

ROWS = [
    ("seq_write_MiBps", "seq write + fsync, MiB/s", "{:.0f}"),
    ("cpu_s_per_GiB_write", "CPU-s per GiB written (client + daemon)", "{:.2f}"),
    ("seq_read_cold_MiBps", "seq read, cold, MiB/s", "{:.0f}"),
    ("cpu_s_per_GiB_read", "CPU-s per GiB read (client + daemon)", "{:.2f}"),
    ("rand_write_4k_iops", "random 4 KiB write IOPS", "k"),
    ("rand_read_4k_iops", "random 4 KiB read IOPS", "k"),
    ("create_files_per_s", "create small files /s", "k"),
    ("stat_files_per_s", "stat /s", "k"),
    ("read_files_per_s", "read small files /s", "k"),
    ("delete_files_per_s", "delete /s", "k"),
    ("untar_s", "untar, s", "{:.1f}"),
    ("rm_rf_s", "rm -rf, s", "{:.2f}"),
    ("daemon_peak_rss_MiB", "daemon peak RSS, MiB", "{:.1f}"),
    ("daemon_rss_after_untar_MiB", "daemon RSS after the untar, MiB", "{:.1f}"),
]
NAMES = [("plain", "plain"), ("envelopefs", "envelopefs (io_uring)"),
         ("envelopefs-devfuse", "envelopefs (/dev/fuse)"), ("gocryptfs", "gocryptfs"),
         ("passthrough", "passthrough")]


def num(v, fmt):
    if fmt == "k":
        return f"{v / 1000:.1f}"
    return fmt.format(v)


def cell(t, fmt):
    """Median, and the range over the rounds when they differ."""
    if not t or t.get("median") is None:
        return "–"
    med = num(t["median"], fmt) + (" k" if fmt == "k" else "")
    lo, hi = num(t["min"], fmt), num(t["max"], fmt)
    return med if lo == hi else f"{med} ({lo}–{hi})"


def main(path):
    j = json.load(open(path))
    t = j["table"]
    names = [(k, h) for k, h in NAMES if k in t["seq_write_MiBps"]]
    if not j.get("meta", {}).get("fuse_io_uring", True):
        names = [(k, "envelopefs (/dev/fuse)" if k == "envelopefs" else h) for k, h in names]
    ratios = [k for k in ("envelopefs", "envelopefs-devfuse") if k in dict(names)]
    hdr = ["figure"] + [h for _, h in names] + [f"{dict(names)[k]} / gocryptfs" for k in ratios]
    vs_pt = "passthrough" in dict(names) and "envelopefs" in dict(names)
    if vs_pt:
        hdr.append(f"{dict(names)['envelopefs']} / passthrough")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for key, label, fmt in ROWS:
        if key not in t:
            continue
        row = [label]
        for k, _ in names:
            row.append("–" if k in ("plain",) and key.startswith("daemon") else cell(t[key].get(k), fmt))
        for k in ratios:
            r = t[key].get(f"{k}_vs_gocryptfs")
            row.append("–" if r is None or key.startswith("daemon") else
                       (f"{1 / r:.2f}× the CPU" if key.startswith("cpu") else f"{r:.2f}×"))
        if vs_pt:
            e, p = t[key].get("envelopefs", {}).get("median"), t[key].get("passthrough", {}).get("median")
            better_high = key.endswith("ps") or key.endswith("iops")
            row.append("–" if not e or not p or key.startswith(("daemon", "cpu")) else
                       f"{(e / p if better_high else p / e) * 100:.0f} %")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/bench-tmpfs.json")
