#!/usr/bin/env python3
"""Side-by-side benchmark: plain directory, envelopefs, gocryptfs (and the fuser
passthrough example, the FUSE ceiling), in interleaved rounds.

Prints one table (median, min-max, ratio to gocryptfs), writes JSON and a PNG
bar chart of the ratios. Run through scripts/bench.sh.
"""
import argparse, json, os, resource, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target/release/envelopefs")
PT = os.path.join(ROOT, "target/release/examples/passthrough")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def proc_cpu(pid):
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick


def proc_mem(pid, field):
    """VmHWM (peak) or VmRSS (now) of a process, in bytes."""
    if not pid:
        return 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def child_cpu(fn):
    """Run fn; return (seconds of wall, CPU seconds of child processes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class FS:
    def __init__(self, name, work, backing_root, mount_args=()):
        self.name, self.work, self.pid, self.proc = name, work, None, None
        self.mount_args = list(mount_args)
        self.backing = os.path.join(backing_root, name + ".backing")
        self.mnt = os.path.join(work, name)
        os.makedirs(self.mnt, exist_ok=True)

    def mount(self):
        env = dict(os.environ, ENVELOPEFS_KEYSTORE=os.path.join(self.work, "ks"),
                   ENVELOPEFS_PASSPHRASE_FILE=os.path.join(self.work, "pass"))
        if self.name == "plain":
            os.makedirs(self.backing, exist_ok=True)
            self.mnt = self.backing
        elif self.name.startswith("envelopefs"):
            if not os.path.exists(os.path.join(self.backing, "envelopefs.conf")):
                subprocess.run([BIN, "init", self.backing], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # envelopefs-devfuse: the same daemon kept on /dev/fuse.
            extra = ["--io-uring-depth", "0"] if self.name == "envelopefs-devfuse" else []
            self.proc = subprocess.Popen([BIN, "mount", self.backing, self.mnt, "--foreground"] + extra + self.mount_args, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        elif self.name == "gocryptfs":
            if not os.path.exists(os.path.join(self.backing, "gocryptfs.conf")):
                os.makedirs(self.backing, exist_ok=True)
                sh(f"gocryptfs -init -q -scryptn 10 -extpass 'echo pw' {self.backing}", stderr=subprocess.DEVNULL)
            self.proc = subprocess.Popen(["gocryptfs", "-f", "-q", "-extpass", "echo pw", self.backing, self.mnt],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        elif self.name == "passthrough":
            os.makedirs(self.backing, exist_ok=True)
            self.proc = subprocess.Popen([PT, self.backing, self.mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        if self.proc:
            t0 = time.time()
            while not os.path.ismount(self.mnt):
                if time.time() - t0 > 30 or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} did not mount")
                time.sleep(0.02)

    def umount(self):
        if self.proc:
            subprocess.run(["umount", self.mnt], stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
            self.proc = None


def fio(path, rw, size_mb, secs):
    out = subprocess.run(
        ["fio", "--name=b", f"--filename={path}", f"--rw={rw}", "--bs=4k", f"--size={size_mb}M",
         f"--runtime={secs}", "--time_based", "--ioengine=psync", "--output-format=json",
         "--end_fsync=1" if rw == "randwrite" else "--invalidate=1"],
        check=True, capture_output=True, text=True).stdout
    j = json.loads(out[out.index("{"):])
    job = j["jobs"][0]
    return job["write" if rw == "randwrite" else "read"]["iops"]


def bench_one(fs, a, tree_tar):
    r = {}
    d = fs.mnt
    big = os.path.join(d, "big")
    mib = a.seq_mib
    c0 = proc_cpu(fs.pid)
    wall, ccpu = child_cpu(lambda: sh(f"dd if=/dev/zero of={big} bs=1M count={mib} conv=fsync status=none"))
    r["seq_write_MiBps"] = mib / wall
    r["cpu_s_per_GiB_write"] = (ccpu + proc_cpu(fs.pid) - c0) * 1024 / mib
    drop_caches()
    c0 = proc_cpu(fs.pid)
    wall, ccpu = child_cpu(lambda: sh(f"dd if={big} of=/dev/null bs=1M status=none"))
    dcpu = proc_cpu(fs.pid) - c0
    r["seq_read_cold_MiBps"] = mib / wall
    r["cpu_s_per_GiB_read"] = (ccpu + dcpu) * 1024 / mib
    os.unlink(big)
    f = os.path.join(d, "rand")
    r["rand_write_4k_iops"] = fio(f, "randwrite", a.rand_mib, a.fio_secs)
    r["rand_read_4k_iops"] = fio(f, "randread", a.rand_mib, a.fio_secs)
    os.unlink(f)
    sd = os.path.join(d, "small")
    os.mkdir(sd)
    n = a.small_files
    t0 = time.perf_counter()
    for i in range(n):
        with open(os.path.join(sd, f"f{i}"), "wb") as fh:
            fh.write(b"x" * 100)
    r["create_files_per_s"] = n / (time.perf_counter() - t0)
    drop_caches()
    t0 = time.perf_counter()
    for i in range(n):
        os.stat(os.path.join(sd, f"f{i}"))
    r["stat_files_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        with open(os.path.join(sd, f"f{i}"), "rb") as fh:
            fh.read()
    r["read_files_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        os.unlink(os.path.join(sd, f"f{i}"))
    r["delete_files_per_s"] = n / (time.perf_counter() - t0)
    os.rmdir(sd)
    ud = os.path.join(d, "untar")
    os.mkdir(ud)
    t0 = time.perf_counter()
    sh(f"tar -xf {tree_tar} -C {ud}")
    sh(f"sync -f {ud}")
    r["untar_s"] = time.perf_counter() - t0
    # The peak includes start-up (envelopefs: the 64 MiB Argon2id key-store
    # unlock, freed before mounting); the RSS after the untar is the working set.
    r["daemon_peak_rss_MiB"] = proc_mem(fs.pid, "VmHWM") / 1048576
    r["daemon_rss_after_untar_MiB"] = proc_mem(fs.pid, "VmRSS") / 1048576
    t0 = time.perf_counter()
    shutil.rmtree(ud)
    r["rm_rf_s"] = time.perf_counter() - t0
    return r


HIGHER_IS_BETTER = {"seq_write_MiBps", "seq_read_cold_MiBps", "rand_write_4k_iops", "rand_read_4k_iops",
                    "create_files_per_s", "stat_files_per_s", "read_files_per_s", "delete_files_per_s"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tmpfs", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-io-uring", action="store_true", help="leave the kernel's FUSE-over-io_uring switch alone")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results"))
    ap.add_argument("--only", help="comma-separated filesystems to run (plain and gocryptfs always run: the ratios need them)")
    ap.add_argument("--mount-args", default="", help="extra arguments for envelopefs mount (A/B of a lever)")
    a = ap.parse_args()
    a.seq_mib, a.rand_mib, a.fio_secs, a.small_files = (256, 32, 3, 2000) if a.quick else (1024, 128, 10, 10000)
    if a.quick:
        a.rounds = min(a.rounds, 2)
    work = tempfile.mkdtemp(prefix="efsbench.", dir="/var/tmp")
    with open(os.path.join(work, "pass"), "w") as f:
        f.write("bench passphrase\n")
    backing_root = work
    if a.tmpfs:
        backing_root = os.path.join(work, "tmpfs")
        os.makedirs(backing_root)
        sh(f"mount -t tmpfs -o size=8g tmpfs {backing_root}")
    # A source tree to untar: Python's standard library without site-packages (~8,000 entries).
    src = os.path.dirname(os.__file__)
    tree_tar = os.path.join(work, "tree.tar")
    sh(f"tar -cf {tree_tar} --exclude=site-packages -C {os.path.dirname(src)} {os.path.basename(src)} 2>/dev/null || true")
    entries = int(subprocess.run(f"tar -tf {tree_tar} | wc -l", shell=True, capture_output=True, text=True).stdout)
    # FUSE over io_uring (Linux 6.14+) is a kernel switch: on for the run when
    # this kernel has it, put back afterwards. envelopefs and the passthrough
    # use it; envelopefs-devfuse and gocryptfs stay on /dev/fuse.
    knob = "/sys/module/fuse/parameters/enable_uring"
    knob_was = open(knob).read().strip() if os.path.exists(knob) else None
    uring = False
    if knob_was is not None and not a.no_io_uring:
        try:
            with open(knob, "w") as f:
                f.write("Y")
            uring = True
        except OSError:
            pass
    names = ["plain", "envelopefs"] + (["envelopefs-devfuse"] if uring else []) + ["gocryptfs"] + \
        (["passthrough"] if os.path.exists(PT) else [])
    if a.only:
        keep = set(a.only.split(",")) | {"plain", "gocryptfs"}
        names = [n for n in names if n in keep]
    fss = [FS(n, work, backing_root, a.mount_args.split()) for n in names]
    results = {n: [] for n in names}
    try:
        for rnd in range(a.rounds):
            for fs in fss:  # interleaved: every round runs every filesystem once
                fs.mount()
                try:
                    results[fs.name].append(bench_one(fs, a, tree_tar))
                finally:
                    fs.umount()
                print(f"round {rnd + 1}/{a.rounds}: {fs.name} done", file=sys.stderr)
    finally:
        for fs in fss:
            fs.umount()
        if a.tmpfs:
            subprocess.run(["umount", "-l", backing_root])
        if uring:
            with open(knob, "w") as f:
                f.write(knob_was)
    figures = list(results["plain"][0].keys())
    table = {}
    for fig in figures:
        table[fig] = {}
        for n in names:
            vals = [r[fig] for r in results[n]]
            table[fig][n] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    # Ratio to gocryptfs: >1 means envelopefs is better.
    for fig in figures:
        g = table[fig]["gocryptfs"]["median"]
        for n in ("envelopefs", "envelopefs-devfuse"):
            e = table[fig].get(n, {}).get("median")
            if g and e:
                table[fig][f"{n}_vs_gocryptfs"] = (e / g) if fig in HIGHER_IS_BETTER else (g / e)
    meta = {"backing": "tmpfs" if a.tmpfs else "disk (" + work + ")", "rounds": a.rounds, "quick": a.quick,
            "untar_entries": entries, "cpu": subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True,
                                                            capture_output=True, text=True).stdout.strip(),
            "nproc": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"), "kernel": os.uname().release,
            "fuse_io_uring": uring}
    os.makedirs(a.out, exist_ok=True)
    tag = "tmpfs" if a.tmpfs else "disk"
    with open(os.path.join(a.out, f"bench-{tag}.json"), "w") as f:
        json.dump({"meta": meta, "table": table, "raw": results}, f, indent=1)
    ratios = [n for n in ("envelopefs", "envelopefs-devfuse") if n in names]
    hdr = f"{'figure':24}" + "".join(f"{n:>26}" for n in names) + "".join(f"{n + '/gocryptfs':>28}" for n in ratios)
    print(f"\n{meta['backing']}, {a.rounds} rounds, medians (min-max); untar tree: {entries} entries; "
          f"FUSE over io_uring: {'on' if uring else 'off'}")
    print(hdr)
    for fig in figures:
        row = f"{fig:24}"
        for n in names:
            t = table[fig][n]
            row += f"{t['median']:>12.1f} ({t['min']:.0f}-{t['max']:.0f})".rjust(26)
        for n in ratios:
            ratio = table[fig].get(f"{n}_vs_gocryptfs")
            row += f"{ratio:>27.2f}x" if ratio else " " * 28
        print(row)
    print("(ratio > 1: envelopefs better; for the time and CPU figures, lower is better and the ratio is inverted)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        figs = [f for f in figures if "envelopefs_vs_gocryptfs" in table[f]]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        w = 0.8 / len(ratios)
        for k, n in enumerate(ratios):
            vals = [table[f].get(f"{n}_vs_gocryptfs", 0) for f in figs]
            ax.bar([i + (k - (len(ratios) - 1) / 2) * w for i in range(len(figs))], vals, width=w,
                   label=n + (" (io_uring)" if n == "envelopefs" and uring else ""),
                   color=["#2a7", "#8bc"][k])
        ax.legend(fontsize=8)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(figs)))
        ax.set_xticklabels(figs, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("envelopefs vs gocryptfs (x, higher is better)")
        ax.set_title(f"envelopefs vs gocryptfs 2.3, {meta['backing'].split(' ')[0]} backing, {meta['nproc']} cores")
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, f"bench-{tag}.png"), dpi=110)
    except ImportError:
        print("(no matplotlib: no chart)", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
