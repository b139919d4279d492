#!/usr/bin/env python3
"""How cost grows with size: envelopefs (on /dev/fuse) beside gocryptfs and a
plain directory, all over backing on the disk (/var/tmp).

Sections (each size measured in every round; rounds interleave the filesystems):
  untar   tar -xf of generated trees (small files in nested directories, sizes
          drawn from Python's standard library), timed up to a final `sync -f`
  dir     `ls -l` and `find` over one directory of N entries, caches dropped
          before each, and `ls -l` again with warm caches
  big     a file written sequentially (dd bs=1M conv=fsync), then random 4 KiB
          writes into it (fio, --end_fsync=1), at a tenth of the size and full size
  rss     daemon VmRSS with N known nodes (files made through the mount, spread
          over directories, then stat'ed in a fresh mount so the kernel holds them)

On a 2-core VM the default sizes take about 40 minutes (untar 20, rss 8, big 6,
dir 4); --quick-scaling takes about 6, and --sections runs a subset (with --merge,
into an earlier result file).

Writes bench/results/scaling-disk.json and scaling-disk.png (log-log, one line
per filesystem) and prints a table and the log-log slope of each figure between
its smallest and largest size. Run through scripts/bench.sh --scaling.
"""
import argparse, io, json, math, os, random, shutil, signal, statistics, subprocess, sys, tarfile, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (mount helpers shared with the side-by-side benchmark)

ROOT = bench.ROOT
# envelopefs-devfuse: bench.py's name for the daemon kept on /dev/fuse (--io-uring-depth 0).
ENVELOPEFS = "envelopefs-devfuse"
LABEL = {ENVELOPEFS: "envelopefs", "gocryptfs": "gocryptfs", "plain": "plain"}
CMD_TIMEOUT = 1800  # seconds: no single command of the run may hang it
LINEAR_SLOPE = 1.1


def run(cmd):
    subprocess.run(cmd, shell=True, check=True, timeout=CMD_TIMEOUT)


def timed(fs, fn):
    """Wall seconds of fn and the daemon's CPU seconds meanwhile."""
    os.sync()
    c0 = bench.proc_cpu(fs.pid)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, bench.proc_cpu(fs.pid) - c0


def stdlib_sizes(cap):
    """Sizes of the regular files of Python's standard library, up to cap bytes."""
    src = os.path.dirname(os.__file__)
    sizes = []
    for dirpath, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "site-packages"]
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if 0 < st.st_size <= cap and (st.st_mode & 0o170000) == 0o100000:
                sizes.append(st.st_size)
    return sizes or [4096]


def make_tarball(path, entries, seed=17):
    """A tar of `entries` entries shaped like a source tree: one directory per
    26 entries (as in the standard library), up to 8 subdirectories each, the
    files spread at random over the directories, written depth first."""
    rng = random.Random(seed)
    sizes = stdlib_sizes(32768)
    blob = rng.randbytes(1 << 20)
    ndirs = max(1, entries // 26)
    children = [[] for _ in range(ndirs)]
    for d in range(1, ndirs):
        children[(d - 1) // 8].append(d)
    nfiles = [0] * ndirs
    for _ in range(entries - ndirs):
        nfiles[rng.randrange(ndirs)] += 1
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name, size=None):
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid = 1700000000, 0, 0
            if size is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.mode, ti.size = 0o644, size
                off = rng.randrange(len(blob) - size)
                tar.addfile(ti, io.BytesIO(blob[off:off + size]))
        stack = [(0, "tree")]
        while stack:
            d, name = stack.pop()
            add(name)
            for i in range(nfiles[d]):
                add(f"{name}/m{i}.py", rng.choice(sizes))
            stack.extend((c, f"{name}/d{c}") for c in reversed(children[d]))
    return entries


class Mounted:
    """One filesystem mounted over a fresh backing directory; unmounted and
    the backing deleted on exit."""

    def __init__(self, name, work, tag, keep_backing=None):
        self.fs = bench.FS(name, work, work)
        self.fs.backing = keep_backing or os.path.join(work, f"{name}.{tag}.backing")
        self.keep = keep_backing is not None

    def __enter__(self):
        LIVE.append(self.fs)
        self.fs.mount()
        return self.fs

    def __exit__(self, *exc):
        self.fs.umount()
        LIVE.remove(self.fs)
        if not self.keep:
            subprocess.run(["rm", "-rf", "--one-file-system", self.fs.backing], timeout=CMD_TIMEOUT)
        return False


LIVE = []


def sec_untar(name, a, work, tarballs, rec):
    for n, tb in tarballs:
        with Mounted(name, work, f"untar{n}") as fs:
            dest = os.path.join(fs.mnt, "u")
            os.mkdir(dest)
            wall, cpu = timed(fs, lambda: run(f"tar -xf {tb} -C {dest} && sync -f {dest}"))
            rec("untar_s", n, wall)
            print(f"  untar {n}: {LABEL[name]} {wall:.1f} s", file=sys.stderr)
            if fs.pid:
                rec("untar_daemon_cpu_s", n, cpu)
                rec("rss_after_untar_MiB", n, bench.proc_mem(fs.pid, "VmRSS") / 1048576)


def make_files(root, n, per_dir):
    """n empty regular files through the mount, per_dir to a directory."""
    for i in range(n):
        if i % per_dir == 0:
            d = os.path.join(root, f"d{i // per_dir}")
            os.mkdir(d)
        os.mknod(os.path.join(d, f"f{i % per_dir}"), 0o644 | 0o100000)


def stat_files(root, start, end, per_dir):
    for i in range(start, end):
        os.lstat(os.path.join(root, f"d{i // per_dir}", f"f{i % per_dir}"))


def sec_dir(name, a, work, rec):
    for n in a.dir_sizes:
        with Mounted(name, work, f"dir{n}") as fs:
            make_files(fs.mnt, n, n)
            d = os.path.join(fs.mnt, "d0")
            for fig, cmd in (("ls_l_cold", f"ls -l {d} >/dev/null"), ("find_cold", f"find {d} >/dev/null")):
                bench.drop_caches()
                wall, cpu = timed(fs, lambda: run(cmd))
                rec(fig + "_s", n, wall)
                if fs.pid:
                    rec(fig + "_daemon_cpu_s", n, cpu)
            run(f"ls -l {d} >/dev/null")
            wall, _ = timed(fs, lambda: run(f"ls -l {d} >/dev/null"))
            rec("ls_l_warm_s", n, wall)


def sec_big(name, a, work, rec):
    for mib in a.big_mibs:
        with Mounted(name, work, f"big{mib}") as fs:
            f = os.path.join(fs.mnt, "big")
            wall, cpu = timed(fs, lambda: run(f"dd if=/dev/zero of={f} bs=1M count={mib} conv=fsync status=none"))
            rec("seq_write_s", mib, wall)
            if fs.pid:
                rec("seq_write_daemon_cpu_s", mib, cpu)
            bench.drop_caches()
            fio = (f"fio --name=r --filename={f} --rw=randwrite --bs=4k --size={mib}M --io_size={a.rand_ios * 4}k "
                   f"--ioengine=psync --end_fsync=1 --output=/dev/null")
            wall, cpu = timed(fs, lambda: run(fio))
            rec("rand_write_100k_s" if a.rand_ios == 100000 else f"rand_write_{a.rand_ios}_s", mib, wall)
            if fs.pid:
                rec("rand_write_daemon_cpu_s", mib, cpu)


def sec_rss(name, a, work, rnd, rec):
    """Round 0 makes the files (kept for later rounds); every round stats them
    in a fresh mount, growing the known nodes through each size."""
    backing = os.path.join(work, f"{name}.rss.backing")
    per_dir = 1000
    if rnd == 0:
        shutil.rmtree(backing, ignore_errors=True)
        with Mounted(name, work, "rss", keep_backing=backing) as fs:
            make_files(fs.mnt, a.node_sizes[-1], per_dir)
    with Mounted(name, work, "rss", keep_backing=backing) as fs:
        done, cpu_total = 0, 0.0
        for n in a.node_sizes:
            wall, cpu = timed(fs, lambda: stat_files(fs.mnt, done, n, per_dir))
            done, cpu_total = n, cpu_total + cpu
            rec("rss_known_nodes_MiB", n, bench.proc_mem(fs.pid, "VmRSS") / 1048576)
            rec("stat_known_nodes_daemon_cpu_s", n, cpu_total)


def slope(points):
    """log-log slope between the smallest and the largest size of {size: median}."""
    xs = sorted(points)
    if len(xs) < 2 or points[xs[0]] <= 0 or points[xs[-1]] <= 0:
        return None
    return math.log(points[xs[-1]] / points[xs[0]]) / math.log(xs[-1] / xs[0])


UNITS = {"untar": ("entries", "entry"), "rss_after": ("entries untarred", "entry"),
         "ls_l": ("entries in the directory", "entry"), "find": ("entries in the directory", "entry"),
         "seq_write": ("MiB", "MiB"), "rand_write": ("MiB of file (fixed number of writes)", "MiB"),
         "rss_known": ("known nodes", "node"), "stat_known": ("known nodes", "node")}


def unit(fig, singular=False):
    u = next((u for k, u in UNITS.items() if fig.startswith(k)), ("size", "unit"))
    return u[1] if singular else u[0]


def summarize(raw):
    table, slopes = {}, {}
    for fig, per_fs in raw.items():
        table[fig], slopes[fig] = {}, {}
        for name, per_size in per_fs.items():
            table[fig][name] = {str(n): {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                                for n, v in sorted(per_size.items())}
            s = slope({n: statistics.median(v) for n, v in per_size.items()})
            slopes[fig][name] = s
    return table, slopes


def verdict(s):
    if s is None:
        return "-"
    return "linear or better" if s <= LINEAR_SLOPE else "WORSE THAN LINEAR"


def print_table(table, slopes):
    for fig in table:
        print(f"\n{fig}  (x: {unit(fig)})")
        for name, per_size in table[fig].items():
            cells = "  ".join(f"{n:>8}: {c['median']:9.3f} ({c['min']:.3f}-{c['max']:.3f})" for n, c in per_size.items())
            s = slopes[fig][name]
            tail = f"slope {s:5.2f} {verdict(s)}" if s is not None else ""
            xs = [int(x) for x in per_size]
            if fig.startswith("rss") and len(xs) > 1:
                grow = per_size[str(xs[-1])]["median"] - per_size[str(xs[0])]["median"]
                tail += f"; {grow * 1048576 / (xs[-1] - xs[0]):.0f} bytes per added {unit(fig, singular=True)}"
            print(f"  {LABEL[name]:11} {cells}   {tail}")


def plot(table, slopes, path, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = [f for f in table if not f.endswith("_cpu_s") and "cpu" not in f]
    cols = 3
    rows = (len(figs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    colors = {ENVELOPEFS: "#2a7", "gocryptfs": "#c63", "plain": "#777"}
    for ax, name in zip(axes.flat, figs):
        for fs, per_size in table[name].items():
            xs = [int(n) for n in per_size]
            med = [c["median"] for c in per_size.values()]
            lo = [c["median"] - c["min"] for c in per_size.values()]
            hi = [c["max"] - c["median"] for c in per_size.values()]
            s = slopes[name][fs]
            ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, color=colors[fs],
                        label=f"{LABEL[fs]} (slope {s:.2f})" if s is not None else LABEL[fs])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(unit(name), fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", lw=0.3)
    for ax in list(axes.flat)[len(figs):]:
        ax.axis("off")
    fig.suptitle(f"How cost grows, disk backing, {meta['nproc']} cores, {meta['rounds']} rounds (median, min-max)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick-scaling", action="store_true", help="small sizes, for a try-out (a few minutes)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sections", default="untar,dir,big,rss")
    ap.add_argument("--untar-sizes", default="8000,80000,400000")
    ap.add_argument("--dir-sizes", default="10000,100000")
    ap.add_argument("--node-sizes", default="100000,1000000")
    ap.add_argument("--big-gib", type=float, default=10, help="size of the big file (also run at a tenth of it)")
    ap.add_argument("--rand-ios", type=int, default=100000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results"))
    ap.add_argument("--show", action="store_true", help="only print and plot an existing scaling-disk.json")
    ap.add_argument("--merge", action="store_true",
                    help="keep the figures of an earlier scaling-disk.json that this run's sections do not make")
    a = ap.parse_args()
    if a.quick_scaling:
        a.untar_sizes, a.dir_sizes, a.node_sizes, a.big_gib, a.rand_ios = "2000,8000,20000", "2000,10000", \
            "10000,50000", 1, 10000
    ints = lambda s: sorted(int(x) for x in s.split(","))  # noqa: E731
    a.untar_sizes, a.dir_sizes, a.node_sizes = ints(a.untar_sizes), ints(a.dir_sizes), ints(a.node_sizes)
    big = int(a.big_gib * 1024)
    a.big_mibs = sorted({max(16, big // 10), big})
    a.sections = a.sections.split(",")
    return a


def earlier_raw(path):
    """The runs of an earlier result file, as {figure: {fs: {size: [values]}}}."""
    try:
        with open(path) as f:
            table = json.load(f)["table"]
    except (OSError, ValueError, KeyError):
        return {}
    return {fig: {fs: {int(n): c["runs"] for n, c in per_size.items()} for fs, per_size in per_fs.items()}
            for fig, per_fs in table.items()}


def save(path, raw, meta):
    table, slopes = summarize(raw)
    with open(path + ".tmp", "w") as f:
        json.dump({"meta": meta, "table": table, "slopes": slopes}, f, indent=1)
    os.replace(path + ".tmp", path)
    return table, slopes


def on_signal(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # one stop is enough: let the clean-up finish (its waits are bounded)
    raise KeyboardInterrupt(f"signal {signum}")


def show(a):
    """Print the table and draw the plot of an existing result file."""
    path = os.path.join(a.out, "scaling-disk.json")
    with open(path) as f:
        j = json.load(f)
    print(json.dumps(j["meta"]))
    print_table(j["table"], j["slopes"])
    plot(j["table"], j["slopes"], os.path.join(a.out, "scaling-disk.png"), j["meta"])


def main():
    a = parse()
    if a.show:
        return show(a)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    knob = "/sys/module/fuse/parameters/enable_uring"
    if os.path.exists(knob) and open(knob).read().strip() == "Y":
        print("note: enable_uring is Y; envelopefs is still kept on /dev/fuse (--io-uring-depth 0)", file=sys.stderr)
    work = tempfile.mkdtemp(prefix="efsscale.", dir="/var/tmp")
    raw = {}

    def recorder(name):
        def rec(fig, n, v):
            raw.setdefault(fig, {}).setdefault(name, {}).setdefault(n, []).append(v)
        return rec

    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, "scaling-disk.json")
    kept = earlier_raw(out) if a.merge else {}
    meta = {"backing": "disk (/var/tmp)", "rounds": a.rounds, "quick_scaling": a.quick_scaling,
            "sections": a.sections, "untar_entries": a.untar_sizes, "dir_entries": a.dir_sizes,
            "known_nodes": a.node_sizes, "big_file_MiB": a.big_mibs, "random_4k_writes": a.rand_ios,
            "envelopefs_transport": "/dev/fuse",
            "cpu": subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True,
                                  capture_output=True, text=True).stdout.strip(),
            "nproc": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M"),
            "linear_if_slope_at_most": LINEAR_SLOPE, "complete": False, "sections_done": []}

    def save_all():
        meta["run_s"] = round(time.time() - t_start)
        return save(out, {**kept, **raw}, meta)

    try:
        with open(os.path.join(work, "pass"), "w") as f:
            f.write("bench passphrase\n")
        tarballs = []
        if "untar" in a.sections:
            for n in a.untar_sizes:
                tb = os.path.join(work, f"tree{n}.tar")
                tarballs.append((make_tarball(tb, n), tb))
            print(f"tarballs made ({time.time() - t_start:.0f} s)", file=sys.stderr)
        names = [ENVELOPEFS, "gocryptfs", "plain"]
        for sec in a.sections:
            for rnd in range(a.rounds):
                for name in names:
                    t0 = time.time()
                    if sec == "untar":
                        sec_untar(name, a, work, tarballs, recorder(name))
                    elif sec == "dir":
                        sec_dir(name, a, work, recorder(name))
                    elif sec == "big":
                        sec_big(name, a, work, recorder(name))
                    elif sec == "rss" and name != "plain":
                        sec_rss(name, a, work, rnd, recorder(name))
                    print(f"{sec} round {rnd + 1}/{a.rounds}: {LABEL[name]} done ({time.time() - t0:.0f} s, "
                          f"total {time.time() - t_start:.0f} s)", file=sys.stderr)
                save_all()  # partial results survive an interruption
            meta["sections_done"].append(sec)
            save_all()
        meta["complete"] = True
    finally:
        for fs in list(LIVE):
            fs.umount()
        subprocess.run(["rm", "-rf", "--one-file-system", work], timeout=CMD_TIMEOUT)
    table, slopes = save_all()
    print(f"\nscaling, {meta['backing']}, {a.rounds} rounds, median (min-max) per size; seconds unless named; "
          f"slope = log-log slope smallest->largest size ({meta['run_s']} s in all)")
    print_table(table, slopes)
    try:
        plot(table, slopes, os.path.join(a.out, "scaling-disk.png"), meta)
    except ImportError:
        print("(no matplotlib: no plot)", file=sys.stderr)


if __name__ == "__main__":
    main()
