"""Exact and ScaNN indexes: agreement, save/load beside a bank, mismatch detection."""

import numpy as np
import pytest

from lm_jax.bench.retrieval import clustered_keys, noisy_queries, recall_at
from lm_jax.memory.bank import LatentBank, export_bank
from lm_jax.memory.index import (
    EXACT_MAX_ITEMS,
    ExactIndex,
    IndexFormatError,
    IndexMismatchError,
    ScannIndex,
    build_index,
    build_scann_index,
    load_index,
    save_index,
)


def brute_force(keys, queries, k):
    s = queries @ keys.T
    order = np.lexsort((np.broadcast_to(np.arange(keys.shape[0]), s.shape), -s), axis=-1)[:, :k]
    return order, np.take_along_axis(s, order, 1)


def test_exact_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((1000, 32)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    q = rng.standard_normal((37, 32)).astype(np.float32)
    idx = ExactIndex(keys, query_block=8, key_block=97)  # odd blocks exercise the merging
    got_i, got_s = idx.search(q, 10)
    want_i, want_s = brute_force(keys, q, 10)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    assert got_i.dtype == np.int64 and got_s.dtype == np.float32
    one_i, _ = idx.search(q[3], 4)  # a single [D] query
    np.testing.assert_array_equal(one_i, want_i[3:4, :4])
    assert idx.search(q, 5000)[0].shape == (37, 1000)  # k capped at N
    with pytest.raises(IndexMismatchError, match="queries must be"):
        idx.search(q[:, :16], 3)


@pytest.fixture(scope="module")
def clustered():
    keys = clustered_keys(5000, 64, num_clusters=20, noise=1.0, seed=1)
    queries = noisy_queries(keys, 300, noise=0.5, seed=1)
    return keys, queries


@pytest.fixture(scope="module")
def scann_index(clustered):
    return build_scann_index(clustered[0], num_neighbors=10)


def test_scann_agrees_with_exact(clustered, scann_index):
    keys, queries = clustered
    exact_i, exact_s = ExactIndex(keys).search(queries, 10)
    got_i, got_s = scann_index.search(queries, 10)
    assert got_i.shape == (300, 10) and got_i.dtype == np.int64
    assert recall_at(got_i, exact_i, 10) >= 0.95
    # Reordering rescored candidates exactly: the top hit's score is the true dot product.
    np.testing.assert_allclose(got_s[:, 0], np.sum(queries * keys[got_i[:, 0]], 1), atol=1e-4)
    single_i, _ = scann_index.search(queries[0], 10)
    assert single_i.shape == (1, 10)
    assert scann_index.params["num_leaves"] >= 2 and "build_seconds" in scann_index.params


def test_build_index_auto_kind(clustered):
    small = build_index(clustered[0][:EXACT_MAX_ITEMS - 1])
    assert isinstance(small, ExactIndex)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(clustered[0], kind="hnsw")


def _bank(path, keys, prefix="id"):
    def encode(pairs):
        rows = [int(text) for _, text in pairs]
        return np.zeros((len(rows), 1, 4), np.float32), keys[rows]

    items = [(f"{prefix}{i}", "t", str(i)) for i in range(len(keys))]
    export_bank(path, items, encode, batch_size=1024, progress=False)
    return LatentBank.load(path)


def test_save_load_scann_beside_bank(tmp_path, clustered, scann_index):
    keys, queries = clustered
    bank = _bank(tmp_path / "bank", keys)
    path = save_index(scann_index, tmp_path / "bank.index", bank)
    loaded = load_index(path, bank)
    assert isinstance(loaded, ScannIndex) and loaded.params == scann_index.params
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], scann_index.search(queries, 10)[0])
    with pytest.raises(IndexFormatError, match="exists"):
        save_index(scann_index, path, bank)
    save_index(scann_index, path, bank, overwrite=True)

    other = _bank(tmp_path / "other", keys, prefix="x")  # same keys, other ids
    with pytest.raises(IndexMismatchError, match="ids sha256"):
        load_index(path, other)


def test_exact_index_save_load_and_count_mismatch(tmp_path):
    rng = np.random.default_rng(3)
    keys = rng.standard_normal((50, 16)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    bank = _bank(tmp_path / "bank", keys)
    path = save_index(build_index(bank.keys), tmp_path / "idx", bank.manifest)
    loaded = load_index(path, bank)
    assert isinstance(loaded, ExactIndex)
    np.testing.assert_array_equal(loaded.search(keys[:5], 1)[0][:, 0], np.arange(5))
    smaller = _bank(tmp_path / "smaller", keys[:40])
    with pytest.raises(IndexMismatchError, match="item count 50 vs 40"):
        load_index(path, smaller)
    with pytest.raises(IndexMismatchError, match="the bank has 40"):
        save_index(ExactIndex(keys), tmp_path / "idx2", smaller)
    with pytest.raises(IndexFormatError, match="index.json missing"):
        load_index(tmp_path / "bank", bank)
