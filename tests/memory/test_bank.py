"""Latent bank: export, resume, checksums, quantisation round trips, multi-shard finalize."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lm_jax.memory import bank as bank_lib
from lm_jax.memory.bank import (
    BankError,
    LatentBank,
    ShardWriter,
    dequantize_latents,
    export_bank,
    finalize_bank,
    quantize_latents,
)

T, H, D = 2, 24, 16


def make_items(n, start=0):
    return [(f"q{i}-s{i % 7}", f"Title {i}", f"Sentence number {i} ü.") for i in range(start, n)]


def encode(pairs):
    """Deterministic per item (seeded by the text), independent of batch composition."""
    lat, keys = [], []
    for _title, text in pairs:
        rng = np.random.default_rng(int(text.split()[2]))
        lat.append(rng.standard_normal((T, H)).astype(np.float32) * 3.0)
        k = rng.standard_normal(D).astype(np.float32)
        keys.append(k / np.linalg.norm(k))
    return np.stack(lat), np.stack(keys)


def tree_bytes(root):
    out = {}
    for r, _, files in os.walk(root):
        for f in files:
            p = os.path.join(r, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


@pytest.mark.parametrize("dtype", ["bfloat16", "int8", "float32"])
def test_export_load_roundtrip(tmp_path, dtype):
    items = make_items(53)
    out = tmp_path / "bank"
    res = export_bank(out, items, encode, batch_size=8, latent_dtype=dtype, progress=False,
                      meta={"step": 7}, items_per_part=20)
    assert res.bank_dir == str(out) and res.num_items == 53 and res.num_resumed == 0
    assert not os.path.exists(str(out) + ".partial")
    b = LatentBank.load(out)
    want_lat, want_keys = encode([(t, x) for _, t, x in items])
    assert b.num_items == len(b) == 53
    assert b.ids == [i for i, _, _ in items]
    assert b.titles[5] == "Title 5" and b.texts[52] == "Sentence number 52 ü."
    np.testing.assert_array_equal(b.keys, want_keys)
    assert b.keys.dtype == np.float32 and b.keys.shape == (53, D)
    got = b.latents(np.arange(53))
    assert got.shape == (53, T, H) and got.dtype == np.float32
    tol = {"float32": 0.0, "bfloat16": 2.0**-8 * np.abs(want_lat).max(), "int8": 0.05}[dtype]
    np.testing.assert_allclose(got, want_lat, atol=tol + 1e-7)
    # Any row shape works, e.g. search results [Q, k].
    assert b.latents(np.array([[0, 52], [21, 40]])).shape == (2, 2, T, H)
    np.testing.assert_array_equal(b.latents([40])[0], got[40])
    lat_bytes = {"float32": 4 * T * H, "bfloat16": 2 * T * H, "int8": T * H + 4 * T}[dtype]
    assert b.bytes_per_item == lat_bytes + 4 * D
    assert b.meta == {"step": 7}
    assert b.manifest["num_latent_tokens"] == T and b.manifest["latent_dtype"] == dtype
    assert list(b.rows_of(["q3-s3", "q50-s1"])) == [3, 50]


def test_int_ids_and_2d_latents(tmp_path):
    w = ShardWriter(tmp_path / "b", latent_dtype="bfloat16", items_per_part=4)
    lat, keys = encode([("t", f"s x {i}") for i in range(6)])
    w.add(np.arange(100, 106, dtype=np.int64), lat[:, 0], keys, ["t"] * 6, ["x"] * 6)
    w.close()
    finalize_bank(tmp_path / "b")
    b = LatentBank.load(tmp_path / "b")
    assert b.ids.dtype == np.int64 and b.ids.tolist() == list(range(100, 106))
    assert b.num_latent_tokens == 1 and b.latents([0]).shape == (1, 1, H)


def test_bf16_and_int8_error_bounds():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 3, 256)) * rng.uniform(0.01, 100, (64, 3, 1))).astype(np.float32)
    x[0, 0] = 0.0  # an all-zero row must survive int8 exactly
    s, sc = quantize_latents(x, "bfloat16")
    assert s.dtype == np.uint16 and sc is None
    y = dequantize_latents(s, sc, "bfloat16")
    # bfloat16 keeps 8 significant bits: round-to-nearest error <= 2^-8 relative.
    assert np.all(np.abs(y - x) <= 2.0**-8 * np.abs(x))
    q, sc = quantize_latents(x, "int8")
    assert q.dtype == np.int8 and sc.shape == (64, 3) and sc.dtype == np.float32
    y = dequantize_latents(q, sc, "int8")
    absmax = np.abs(x).max(-1, keepdims=True)
    # Symmetric absmax per row: error <= half a step = absmax / 254.
    assert np.all(np.abs(y - x) <= absmax / 254 * (1 + 1e-6) + 1e-12)
    assert np.all(y[0, 0] == 0)
    assert np.abs(q).max() == 127


def test_corrupted_shard_file_names_the_file(tmp_path):
    out = tmp_path / "bank"
    export_bank(out, make_items(30), encode, 8, latent_dtype="int8", progress=False,
                items_per_part=10)
    victim = out / "shard-00000-of-00001" / "part-00001" / "latents.npy"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BankError, match=r"shard-00000-of-00001/part-00001/latents\.npy"):
        LatentBank.load(out)
    LatentBank.load(out, verify=False)  # still readable when asked not to verify
    os.remove(victim)
    with pytest.raises(BankError, match="missing bank file .*part-00001/latents.npy"):
        LatentBank.load(out)


def test_resume_after_failure_is_byte_identical(tmp_path):
    items = make_items(47)
    ref = tmp_path / "ref"
    export_bank(ref, items, encode, 4, progress=False, meta={"a": 1}, items_per_part=10)

    out = tmp_path / "resumed"
    calls = {"n": 0}

    def flaky(pairs):
        calls["n"] += 1
        if calls["n"] == 7:  # mid part-00002 (batches of 4 in parts of 10: 3 batches per part)
            raise RuntimeError("preempted")
        return encode(pairs)

    with pytest.raises(RuntimeError, match="preempted"):
        export_bank(out, items, flaky, 4, progress=False, meta={"a": 1}, items_per_part=10)
    assert not os.path.exists(out)
    parts = sorted(os.listdir(str(out) + ".partial/shard-00000-of-00001"))
    assert parts == ["part-00000", "part-00001"]

    seen = []
    res = export_bank(out, items, lambda p: (seen.extend(p), encode(p))[1], 4, progress=False,
                      meta={"a": 1}, items_per_part=10)
    assert res.num_resumed == 20 and res.num_items == 47
    assert len(seen) == 27  # only the items after the complete parts were encoded again
    assert tree_bytes(out) == tree_bytes(ref)


def test_resume_rejects_changed_input(tmp_path):
    items = make_items(30)
    out = tmp_path / "b"

    def fail_late(pairs, state={"n": 0}):  # noqa: B006 - deliberate call counter
        state["n"] += 1
        if state["n"] == 5:
            raise RuntimeError("boom")
        return encode(pairs)

    with pytest.raises(RuntimeError):
        export_bank(out, items, fail_late, 5, progress=False, items_per_part=10)
    changed = [("other", t, x) for _, t, x in items]
    with pytest.raises(BankError, match="input changed"):
        export_bank(out, changed, encode, 5, progress=False, items_per_part=10)


def test_killed_subprocess_resumes_byte_identical(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_bank import encode, make_items
        from lm_jax.memory.bank import export_bank
        slow = sys.argv[2] == "slow"
        def enc(pairs):
            if slow:
                time.sleep(0.05)
            return encode(pairs)
        export_bank(sys.argv[1], make_items(120), enc, 5, progress=False,
                    latent_dtype="int8", items_per_part=10, meta={{"run": "x"}})
    """)
    env = dict(os.environ, PYTHONHASHSEED="0")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(killed), "slow"], env=env)
    shard = str(killed) + ".partial/shard-00000-of-00001"
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(shard, "part-00002")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(killed)
    subprocess.run([sys.executable, "-c", script, str(killed), "fast"], env=env, check=True)
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-c", script, str(ref), "fast"], env=env, check=True)
    assert tree_bytes(killed) == tree_bytes(ref)
    assert LatentBank.load(killed).num_items == 120


def test_two_shards_then_finalize(tmp_path):
    items = make_items(25)
    out = tmp_path / "b"
    r1 = export_bank(out, items, encode, 4, shard_index=1, num_shards=2, progress=False,
                     items_per_part=6)
    assert r1.bank_dir is None and r1.num_items == 12
    with pytest.raises(BankError, match="shard-00000-of-00002"):
        finalize_bank(out, num_shards=2)
    r0 = export_bank(out, items, encode, 4, shard_index=0, num_shards=2, progress=False,
                     items_per_part=6, finalize=True, meta={"hosts": 2})
    assert r0.bank_dir == str(out)
    b = LatentBank.load(out)
    # Rows: shard 0's items (even positions), then shard 1's (odd positions).
    assert b.ids == [items[i][0] for i in range(0, 25, 2)] + [items[i][0] for i in range(1, 25, 2)]
    _, want_keys = encode([(t, x) for _, t, x in items])
    np.testing.assert_array_equal(b.keys[13], want_keys[1])
    assert b.manifest["num_shards"] == 2 and b.meta == {"hosts": 2}
    with pytest.raises(BankError, match="already a finished bank"):
        export_bank(out, items, encode, 4, progress=False)


def test_presharded_items_and_duplicate_ids(tmp_path):
    out = tmp_path / "b"
    export_bank(out, make_items(5), encode, 2, shard_index=0, num_shards=2, progress=False,
                items_are_sharded=True)
    export_bank(out, make_items(7, start=4), encode, 2, shard_index=1, num_shards=2,
                progress=False, items_are_sharded=True)
    with pytest.raises(BankError, match="duplicate ids.*q4-s4"):
        finalize_bank(out)


def test_input_validation(tmp_path):
    w = ShardWriter(tmp_path / "b")
    lat, keys = encode([("t", "s x 1"), ("t", "s x 2")])
    with pytest.raises(BankError, match="unit vectors"):
        w.add(["a", "b"], lat, keys * 2, ["t", "t"], ["x", "x"])
    bad = lat.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(BankError, match="non-finite latents for ids \\['b'\\]"):
        w.add(["a", "b"], bad, keys, ["t", "t"], ["x", "x"])
    with pytest.raises(BankError, match="mix strings and integers"):
        w.add(["a", 3], lat, keys, ["t", "t"], ["x", "x"])
    with pytest.raises(BankError, match="latent_dtype"):
        ShardWriter(tmp_path / "c", latent_dtype="fp8")
    with pytest.raises(BankError, match="no bank at"):
        LatentBank.load(tmp_path / "nowhere")


def test_format_version_checked(tmp_path):
    out = tmp_path / "b"
    export_bank(out, make_items(3), encode, 2, progress=False)
    m = (out / "manifest.json").read_text().replace('"format_version": 1', '"format_version": 99')
    (out / "manifest.json").write_text(m)
    with pytest.raises(BankError, match="format_version 99"):
        LatentBank.load(out)
    assert bank_lib.FORMAT_VERSION == 1


def test_empty_shard_is_allowed(tmp_path):
    out = tmp_path / "b"
    items = make_items(2)
    for shard in range(3):  # more shards than items: shard 2 gets nothing
        export_bank(out, items, encode, 2, shard_index=shard, num_shards=3, progress=False)
    finalize_bank(out)
    b = LatentBank.load(out)
    assert b.ids == ["q0-s0", "q1-s1"] and b.manifest["shards"][2]["num_items"] == 0
    empty = tmp_path / "empty"
    export_bank(empty, [], encode, 2, progress=False, finalize=False)
    with pytest.raises(BankError, match="every shard is empty"):
        finalize_bank(empty)
