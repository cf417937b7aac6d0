"""Retrieval benchmark: ScaNN vs exact search (and FAISS as a yardstick) over unit keys.

    python -m lm_jax.bench.retrieval --num_items=1000000 --dim=512
    python -m lm_jax.bench.retrieval --bank_dir=/path/to/bank          # keys of a real bank

Keys are clustered random unit vectors (or a bank's retrieval keys); queries are noisy copies of
random keys, so each has a meaningful neighbourhood. Prints one JSON line per measurement and a
final ``"measure": "summary"`` line with ``scann_qps``, ``exact_qps`` and ``recall_at_10``
(batched figures; ``*_single_qps`` are one query per call). Recall is measured against the exact
top-10. Never asserts on time.

Exact batched search is a float32 BLAS matmul (numpy, all cores) with argpartition top-k, blocked
to bound memory: the honest brute-force baseline. FAISS IVF-PQ (4-bit fast-scan PQ, float refine)
is tuned by sweeping nprobe to the first value whose recall reaches ScaNN's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

from lm_jax.memory.index import ExactIndex, build_scann_index


def emit(measure: str, **fields) -> dict:
    """Prints one JSON line ``{"bench": "retrieval", "measure": measure, ...}`` and returns it."""
    rec = {"bench": "retrieval", "measure": measure, **fields}
    print(json.dumps(rec, sort_keys=False), flush=True)
    return rec


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_keys(
    num_items: int, dim: int, num_clusters: int, noise: float, seed: int, chunk: int = 131072
) -> np.ndarray:
    """[N, D] float32 unit keys: normalise(center + noise * g), g ~ N(0, I/D), random centers.

    With noise 1.0 a key's cosine to its center is ~0.7 and to a cluster-mate ~0.5.
    """
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((num_clusters, dim), dtype=np.float32))
    out = np.empty((num_items, dim), np.float32)
    scale = np.float32(noise / np.sqrt(dim))
    for s in range(0, num_items, chunk):
        e = min(s + chunk, num_items)
        c = rng.integers(0, num_clusters, e - s)
        g = rng.standard_normal((e - s, dim), dtype=np.float32)
        out[s:e] = _unit(centers[c] + scale * g)
    return out


def noisy_queries(keys: np.ndarray, num_queries: int, noise: float, seed: int) -> np.ndarray:
    """[Q, D] unit queries: normalise(key + noise * g) for random keys."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.integers(0, keys.shape[0], num_queries)
    g = rng.standard_normal((num_queries, keys.shape[1]), dtype=np.float32)
    return _unit(keys[rows] + np.float32(noise / np.sqrt(keys.shape[1])) * g)


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean |approx[:, :k] & exact[:, :k]| / k over queries."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k)


def _time_batched(search, queries: np.ndarray, repeats: int = 1):
    search(queries[: min(len(queries), 8)])  # warm-up: lazy allocations, thread pools
    best, res = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = search(queries)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best, best, res


def _time_single(search_ids, queries: np.ndarray):
    """search_ids: [1, D] -> ids [1, k]; one call per query."""
    search_ids(queries[:1])
    out = []
    t0 = time.perf_counter()
    for q in queries:
        out.append(np.asarray(search_ids(q[None]))[0])
    dt = time.perf_counter() - t0
    return len(queries) / dt, dt, np.stack(out)


def _loadavg() -> list[float] | None:
    # Other processes on the machine skew every timing; record how busy it was.
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def run_scann(keys, queries, singles, exact_idx, args) -> dict:
    """Builds ScaNN with the library defaults (or the flags' overrides) and times it.

    A function of its own so the searcher (and its copy of the keys) is freed before FAISS.
    """
    k = args.k
    index = build_scann_index(
        keys, num_neighbors=k, num_leaves=args.num_leaves,
        num_leaves_to_search=args.num_leaves_to_search,
        reorder_num_neighbors=args.reorder_num_neighbors,
        training_sample_size=args.training_sample_size,
        spherical=args.spherical, soar_lambda=args.soar_lambda,
    )
    index.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="scann_bench_")
    try:
        index.searcher.serialize(tmp, relative_path=True)
        index_bytes = _dir_bytes(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("scann_build", build_seconds=index.params["build_seconds"], index_bytes=index_bytes,
         params=index.params)
    scann_qps, _, (scann_idx, _) = _time_batched(
        lambda q: index.search(q, k), queries, args.repeats
    )
    recall = recall_at(scann_idx, exact_idx, k)
    emit("scann_batched", qps=round(scann_qps, 1), recall_at_10=round(recall, 4))
    scann_single_qps, _, single_idx = _time_single(lambda q: index.search(q, k)[0], singles)
    emit("scann_single", qps=round(scann_single_qps, 1),
         recall_at_10=round(recall_at(single_idx, exact_idx[: len(singles)], k), 4))
    if args.sweep:
        base = index.params["num_leaves_to_search"]
        for leaves in sorted({max(1, base // 4), max(1, base // 2), base, 2 * base}):
            leaves = min(leaves, index.params["num_leaves"])
            qps, _, (idx, _) = _time_batched(
                lambda q, n=leaves: index.search(q, k, leaves_to_search=n), queries, args.repeats
            )
            emit("scann_sweep", leaves_to_search=leaves, qps=round(qps, 1),
                 recall_at_10=round(recall_at(idx, exact_idx, k), 4))
    p = index.params
    return {"scann_qps": round(scann_qps, 1), "scann_single_qps": round(scann_single_qps, 1),
            "recall_at_10": recall, "scann_build_seconds": p["build_seconds"],
            "scann_index_bytes": index_bytes, "scann_num_leaves": p["num_leaves"],
            "scann_leaves_to_search": p["num_leaves_to_search"],
            "scann_reorder": p["reorder_num_neighbors"]}


def run_faiss(keys, queries, exact_idx, k, target_recall, threads, seed, repeats=1):
    """FAISS IVF-PQ fast-scan + float refine, nprobe swept to reach ``target_recall``.

    Given what helped ScaNN, so the comparison is of engines, not of settings: sqrt(N) lists,
    spherical k-means on 250 keys per list, 2 dims per 4-bit PQ code, 10x float refine.
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    n, d = keys.shape
    nlist = int(max(1, min(round(np.sqrt(n)), n // 39)))
    m = d // 2 if d % 2 == 0 else d
    t0 = time.perf_counter()
    index = faiss.index_factory(d, f"IVF{nlist},PQ{m}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.spherical = True
    ivf.cp.max_points_per_centroid = 250  # else FAISS subsamples to 256/list anyway
    rng = np.random.default_rng(seed + 2)
    sample = keys[np.sort(rng.choice(n, min(n, 250 * nlist), replace=False))]
    index.train(sample)
    index.add(keys)
    build_s = time.perf_counter() - t0
    index_bytes = int(faiss.serialize_index(index).nbytes)
    refine = faiss.downcast_index(index)
    refine.k_factor = 10
    emit("faiss_build", index=f"IVF{nlist},PQ{m}x4fs,RFlat", build_seconds=round(build_s, 3),
         index_bytes=index_bytes, k_factor=refine.k_factor)
    chosen = None
    # 1, 2, 3, 4, 6, 8, 12, ...: steps of ~1.4x so the chosen point does not overshoot much.
    probes = sorted({v for e in range(0, 20) for v in (2**e, 3 * 2**e // 2) if 1 <= v <= nlist})
    for nprobe in probes:
        ivf.nprobe = nprobe
        qps, _, (_, idx) = _time_batched(lambda q: index.search(q, k), queries, repeats)
        rec = recall_at(idx, exact_idx, k)
        emit("faiss_sweep", nprobe=nprobe, recall_at_10=round(rec, 4), qps=round(qps, 1))
        chosen = (nprobe, qps, rec, idx)
        if rec >= target_recall:
            break
    nprobe, qps, rec, _ = chosen
    ivf.nprobe = nprobe
    single_qps, _, _ = _time_single(
        lambda q: index.search(q, k)[1], queries[: min(len(queries), 200)]
    )
    emit("faiss_batched", nprobe=nprobe, qps=round(qps, 1), recall_at_10=round(rec, 4))
    emit("faiss_single", nprobe=nprobe, qps=round(single_qps, 1))
    flat = faiss.IndexFlatIP(d)
    flat.add(keys)
    flat_qps, _, _ = _time_batched(lambda q: flat.search(q, k), queries)
    emit("faiss_flat_batched", qps=round(flat_qps, 1))
    return {"faiss_qps": round(qps, 1), "faiss_single_qps": round(single_qps, 1),
            "faiss_recall_at_10": round(rec, 4), "faiss_nprobe": nprobe,
            "faiss_build_seconds": round(build_s, 3), "faiss_index_bytes": index_bytes,
            "faiss_flat_qps": round(flat_qps, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--num_queries", type=int, default=1000)
    p.add_argument("--num_single_queries", type=int, default=100,
                   help="queries timed one call at a time")
    p.add_argument("--bank_dir", default=None, help="use a LatentBank's keys instead of random")
    p.add_argument("--num_clusters", type=int, default=None, help="default N // 100, >= 1")
    p.add_argument("--cluster_noise", type=float, default=1.0)
    p.add_argument("--query_noise", type=float, default=0.5)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_leaves", type=int, default=None)
    p.add_argument("--num_leaves_to_search", type=int, default=None)
    p.add_argument("--reorder_num_neighbors", type=int, default=None)
    p.add_argument("--training_sample_size", type=int, default=None)
    p.add_argument("--spherical", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--soar_lambda", type=float, default=None)
    p.add_argument("--no_faiss", action="store_true")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True,
                   help="also time ScaNN at 1/4, 1/2, 1 and 2x the default leaves_to_search")
    p.add_argument("--repeats", type=int, default=3, help="batched timings: best of n")
    args = p.parse_args(argv)
    k = args.k

    t0 = time.perf_counter()
    if args.bank_dir:
        from lm_jax.memory.bank import LatentBank

        bank = LatentBank.load(args.bank_dir, verify=False)
        keys, source = np.ascontiguousarray(bank.keys, np.float32), os.path.abspath(args.bank_dir)
        del bank
    else:
        nc = args.num_clusters or max(1, args.num_items // 100)
        keys = clustered_keys(args.num_items, args.dim, nc, args.cluster_noise, args.seed)
        source = f"synthetic: {nc} clusters, noise {args.cluster_noise}"
    queries = noisy_queries(keys, args.num_queries, args.query_noise, args.seed)
    n, d = keys.shape
    emit("data", source=source, num_items=n, dim=d, num_queries=len(queries),
         query_noise=args.query_noise, seconds=round(time.perf_counter() - t0, 3),
         threads=args.threads, cpus=os.cpu_count(), machine=platform.machine(),
         python=sys.version.split()[0], loadavg=_loadavg())
    singles = queries[: min(len(queries), args.num_single_queries)]

    exact = ExactIndex(keys)
    exact_qps, exact_s, (exact_idx, _) = _time_batched(lambda q: exact.search(q, k), queries, 1)
    emit("exact_batched", qps=round(exact_qps, 1), seconds=round(exact_s, 3))
    exact_single_qps, _, _ = _time_single(lambda q: exact.search(q, k)[0], singles)
    emit("exact_single", qps=round(exact_single_qps, 1), num_queries=len(singles))

    sc = run_scann(keys, queries, singles, exact_idx, args)
    recall = sc["recall_at_10"]

    faiss_fields = {}
    if not args.no_faiss:
        faiss_fields = run_faiss(keys, queries, exact_idx, k, recall, args.threads, args.seed,
                                 args.repeats)

    summary = emit(
        "summary",
        num_items=n, dim=d, num_queries=len(queries), threads=args.threads,
        scann_qps=sc["scann_qps"], exact_qps=round(exact_qps, 1),
        recall_at_10=round(recall, 4),
        speedup=round(sc["scann_qps"] / exact_qps, 2),
        scann_single_qps=sc["scann_single_qps"],
        exact_single_qps=round(exact_single_qps, 1),
        speedup_single=round(sc["scann_single_qps"] / exact_single_qps, 2),
        **{k_: v for k_, v in sc.items() if k_ not in ("scann_qps", "scann_single_qps",
                                                      "recall_at_10")},
        **faiss_fields,
        loadavg=_loadavg(),
    )
    return summary


if __name__ == "__main__":
    main()
