#!/usr/bin/env python
"""``kill -9`` at random moments of real ``heron build-index`` runs, then one rerun: does it succeed, equal a
clean build, and leave nothing behind?

The tests (tests/test_build_resume.py) kill builds at named points through ``HERON_TEST_KILL_AT``; this script
kills them from outside, as an operator would, at a uniformly random moment of the build (imports, docstore,
encoding, every pass of the index build, publish). Per kind (``bm25``, ``splade``, ``dense``, ``bundle``: BM25 +
dense members) on the first ``--docs`` documents of ``--dataset``:

1. a clean build, twice (the second one's wall time T, caches warm, sets the kill window), and its hits
   (doc ids and scores, top 10 of the dataset's first 50 test queries);
2. a previous build at the output with other settings;
3. ``--kills`` times: ``heron build-index`` in its own process group, SIGKILLed after a random delay in
   ``[0, T)``; the previous output must be byte for byte intact (or, killed after the swap, the new one
   complete); then ``heron build-index`` again without a kill: it must exit 0, its hits must equal the clean
   build's, and beside the output there must be nothing but the output. The output is then reset to the
   previous build for the next round.

Dense builds get a fresh embedding cache every other round (so kills land in encoding too). ``--stage pass1``
(inverted kinds) kills instead right after the build's progress file first shows pass 1 under way, at a random
moment of it: what an operator does who kills a build while it reports pass 1. ``--src`` runs another
checkout's heron (e.g. the code before a fix) in the children. JSON to ``bench/out/kill_resume-<kinds>.json``
and a Markdown table on stdout.

    .venv/bin/python bench/kill_resume.py --kinds bm25,splade,dense,bundle --kills 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # killing.py: configs, caches and checks shared with the tests
from killing import beside, build_spec, hits, new_cache, snapshot  # noqa: E402

SPLADE = {"type": "splade", "model": "splade-tiny", "doc_max_length": 128, "threads": 1}
DENSE = {"type": "dense", "model": "minilm", "max_length": 128, "threads": 1}
KINDS = {  # kind → (the new build, the previous one)
    "bm25": ({"encoder": {"type": "bm25"}, "approx": {}}, {"encoder": {"type": "bm25", "k1": 1.5}}),
    "splade": ({"encoder": SPLADE}, {"encoder": SPLADE, "quantization": "uint16"}),
    "dense": ({"encoder": DENSE, "faiss": {"type": "ivf-flat", "nlist": 8, "nprobe": 8}},
              {"encoder": DENSE, "faiss": {"type": "sq8"}}),
    "bundle": ({"indexes": {"bm25": {"encoder": {"type": "bm25"}}, "dense": {"encoder": DENSE}}},
               {"indexes": {"bm25": {"encoder": {"type": "bm25", "k1": 1.5}}, "dense": {"encoder": DENSE}}}),
}


def cut_dataset(name: str, docs: int, root: Path) -> tuple[Path, list[str]]:
    """The first ``docs`` documents of a BEIR dataset as a folder of its own, and 50 test query texts."""
    from heron.eval import load_dataset

    source = load_dataset(name)
    folder = root / f"{source.name}-{docs}"
    if not (folder / "corpus.jsonl").is_file():
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
            for i, doc in enumerate(source.iter_corpus()):
                if i == docs:
                    break
                handle.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
        queries = list(source.queries("test").items())[:50]
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
            for qid, text in queries:
                handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    texts = [json.loads(line)["text"] for line in (folder / "queries.jsonl").read_text().splitlines()]
    return folder, texts


def stage_of(output: Path) -> str:
    """Where the killed build was, read from what it left."""
    names = beside(output)
    progress = output.parent / f".{output.name}.building" / "progress.json"
    partial = output.parent / f".{output.name}.partial"
    if partial.is_dir():
        inner = [p.name for p in partial.iterdir()]
        return "bundle: " + ", ".join(sorted(n for n in inner if not n.startswith(".")) or ["(first member)"])
    if progress.is_file():
        state = json.loads(progress.read_text())
        return f"inverted {state['stage']}"
    if any(n.endswith(".shards") for n in names):
        return "encoding"
    if any(n.endswith(".building") for n in names):
        return "inverted (spool, finalize or publish)"
    if any(".staged-aux-" in n for n in names):
        return "docstore / encoding"
    if any(".staged-" in n for n in names):
        return "index build / publish"
    return "before any output" if not names else ", ".join(names)


def _in_stage(output: Path, stage: str) -> bool:
    try:
        state = json.loads((output.parent / f".{output.name}.building" / "progress.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("stage") == stage and state.get("shard", 0) >= 1


def run_build(spec: dict, env: dict, work: Path, kill_after: float | None, stage: str | None = None,
              jitter: float = 0.0) -> tuple[int, float]:
    path = work.parent / f"{work.name}.yaml"  # not beside the output: only the build may leave things there
    path.write_text(json.dumps(spec))  # JSON is YAML
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "heron", "build-index", str(path)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if stage is not None:  # poll for the stage, then wait a random fraction of a millisecond-scale window
        while child.poll() is None and not _in_stage(Path(spec["output"]), stage):
            time.sleep(0.0005)
        kill_after = jitter
    if kill_after is not None:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    _, err = child.communicate()
    if child.returncode not in (0, -9):
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return child.returncode, time.monotonic() - started


def campaign(kind: str, args, dataset: Path, queries: list[str]) -> dict:
    root = Path(args.work) / kind
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HERON_TEST_KILL_AT", None)
    os.environ["HERON_CACHE"] = env["HERON_CACHE"] = str(new_cache(root / "cache", None))
    clean, previous, out = root / "clean" / "out", root / "previous" / "out", root / "work" / "out"
    for folder in (clean, previous, out):
        folder.parent.mkdir(parents=True)
    for _ in range(2):  # the second time with warm caches (compiled kernels, encoded embeddings): its time is T
        rc, seconds = run_build(build_spec(KINDS, kind, 0, dataset, clean, args.shard_docs), env, clean.parent, None)
        assert rc == 0, f"clean {kind} build failed"
    rc, _ = run_build(build_spec(KINDS, kind, 1, dataset, previous, args.shard_docs), env, previous.parent, None)
    assert rc == 0, f"previous {kind} build failed"
    embeddings = root / "cache" / "embeddings"
    keep = root / "embeddings"
    if embeddings.is_dir():
        shutil.copytree(embeddings, keep)
    clean_hits, previous_hits = hits(clean, queries), hits(previous, queries)
    before = snapshot(previous)
    rng = np.random.default_rng(args.seed)
    rounds = []
    for i in range(args.kills):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(previous, out)
        # dense kinds: no embeddings half the time (kills land in encoding), the finished cache otherwise
        cached = keep if (kind in ("dense", "bundle") and i % 2 and keep.is_dir()) else None
        os.environ["HERON_CACHE"] = env["HERON_CACHE"] = str(new_cache(root / "cache", cached))
        delay = float(rng.uniform(0, seconds if args.stage is None else 0.02))
        rc, _ = run_build(build_spec(KINDS, kind, 0, dataset, out, args.shard_docs), env, out.parent, delay, args.stage, delay)
        assert rc in (0, -9), f"{kind} build failed (exit {rc}) before the kill"
        row = {"delay_s": round(delay, 2), "killed": rc == -9, "stage": stage_of(out) if rc == -9 else "finished"}
        if rc == -9:
            now = snapshot(out) if out.is_dir() else {}
            if now == before:
                row["previous"] = "intact" if hits(out, queries) == previous_hits else "intact, hits differ"
            else:
                row["previous"] = "replaced by the complete new build" if hits(out, queries) == clean_hits \
                    else "DAMAGED"
            rc2, _ = run_build(build_spec(KINDS, kind, 0, dataset, out, args.shard_docs), env, out.parent, None)
            row["rerun_rc"] = rc2
            row["rerun_equal"] = rc2 == 0 and hits(out, queries) == clean_hits
            row["leftovers"] = beside(out)
        rounds.append(row)
        print(f"{kind} #{i + 1}: {row}", file=sys.stderr, flush=True)
    killed = [r for r in rounds if r["killed"]]
    return {"kind": kind, "clean_build_s": round(seconds, 1), "rounds": rounds, "kills": len(killed),
            "previous_intact": sum(r["previous"].startswith(("intact", "replaced")) for r in killed),
            "first_rerun_ok": sum(bool(r["rerun_equal"]) for r in killed),
            "leftovers": sum(bool(r["leftovers"]) for r in killed),
            "stages": sorted({r["stage"] for r in killed})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--kinds", default="bm25,splade,dense,bundle")
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--shard-docs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=["pass1", "pass2", "merge"], help="kill during this inverted-build stage")
    parser.add_argument("--src", default=str(REPO / "src"), help="the heron source the children run")
    parser.add_argument("--work", default=str(HERE / "out" / "kill_resume"))
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    dataset, queries = cut_dataset(args.dataset, args.docs, Path(args.work))
    results = [campaign(kind, args, dataset, queries) for kind in args.kinds.split(",")]
    label = "-".join([*args.kinds.split(","), args.stage or "random", Path(args.src).parent.name])
    out = HERE / "out" / f"kill_resume-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print("| build | clean build (s) | kills | previous intact | first rerun correct | leftovers after rerun | "
          "where the kills landed |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['clean_build_s']} | {r['kills']} | {r['previous_intact']}/{r['kills']} | "
              f"{r['first_rerun_ok']}/{r['kills']} | {r['leftovers']} | {'; '.join(r['stages'])} |")


if __name__ == "__main__":
    main()
