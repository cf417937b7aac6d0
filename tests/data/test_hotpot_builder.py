"""The hotpot_qa TFDS builder: exact records, drop reasons, reports, guards, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow_datasets as tfds

import lm_jax.data.builders  # noqa: F401  (registers hotpot_qa)
from lm_jax.data.builders import DataQualityError, MissingSourceFileError
from lm_jax.data.builders.base import JsonValueReader, RawFormatError
from lm_jax.data.builders.hotpot_qa import HotpotQa
from lm_jax.data.prepare import prepare_dataset
from lm_jax.data.records import EvidenceItem, QAExample, from_tfds_record

from .conftest import hotpot_record, write_json

DEV = "hotpot_dev_distractor_v1.json"
TRAIN = "hotpot_train_v1.1.json"


def _version_dir(data_dir, config="distractor"):
    return os.path.join(data_dir, "hotpot_qa", config, "1.0.0")


def test_builds_exact_records_without_tensorflow(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    write_json(manual / TRAIN, [hotpot_record(i) for i in range(4)])
    write_json(manual / DEV, [hotpot_record(i) for i in (10, 11)])
    report = prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data")

    assert "tensorflow" not in sys.modules
    assert report["splits"]["train"]["read"] == 4 and report["splits"]["train"]["kept"] == 4
    assert report["splits"]["validation"]["dropped"] == {}
    assert report["missing_splits"] == {}
    # One blank sentence per record (" " in Gamma): counted, not dropped.
    assert report["splits"]["validation"]["notes"] == {"blank_sentence": 2}
    with open(os.path.join(_version_dir(tmp_path / "data"), "data_report.json")) as f:
        assert json.load(f) == report

    sources = tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").as_data_source()
    assert set(sources) == {"train", "validation"}
    dev = sources["validation"]
    assert len(dev) == 2
    raw = dev[1]  # split order = file order
    assert raw["id"] == b"id011"
    assert [int(n) for n in raw["context"]["num_sentences"]] == [2, 2, 3]
    assert raw["sentences"][1] == b" It is old."  # stored as in the source
    assert [t for t in raw["supporting_facts"]["title"]] == [b"Alpha 11", b"Beta 11"]
    assert int(raw["source_index"]) == 1

    assert from_tfds_record(raw) == QAExample(
        id="id011",
        question="Which city is linked to topic 11?",
        answer="Answer 11",
        type="bridge",
        level="hard",
        evidence=[
            EvidenceItem("Alpha 11", "Alpha 11 was founded by Beta 11.", True),
            EvidenceItem("Alpha 11", "It is old.", False),
            EvidenceItem("Beta 11", "Beta 11 is a person.", False),
            EvidenceItem("Beta 11", "Beta 11 was born in Answer 11.", True),
            EvidenceItem("Gamma 11", "Gamma is unrelated.", False),
            EvidenceItem("Gamma 11", "Gamma has a river.", False),
        ],
    )
    assert from_tfds_record(raw).evidence[3].render() == "Beta 11: Beta 11 was born in Answer 11."
    assert [from_tfds_record(sources["train"][i]).id for i in range(4)] == [
        "id000",
        "id001",
        "id002",
        "id003",
    ]


def _bad_file(path):
    """Good records id000-id002 and id099, plus one bad record of each kind.

    Returns the exact expected {reason: count}.
    """
    r = hotpot_record
    missing = r(20)
    del missing["answer"]
    parts = [
        json.dumps(r(0)),
        json.dumps(missing),
        json.dumps(r(21, supporting_facts=[["Alpha 21", "0"]])),
        json.dumps(r(22, question=5)),
        json.dumps(r(23, context={"Alpha 23": ["x"]})),
        json.dumps(r(24, question="   ")),
        json.dumps(r(25, answer="")),
        json.dumps(r(26, context=[], supporting_facts=[])),
        json.dumps(r(27, supporting_facts=[["Nowhere", 0]])),
        json.dumps(r(28, supporting_facts=[["Alpha 28", 7]])),
        json.dumps(r(29, supporting_facts=[["Alpha 29", -1]])),
        json.dumps(r(1)),
        "42",
        json.dumps(r(30, question="caf\\ud800?")).replace("\\\\ud800", "\\ud800"),
        json.dumps(r(0, question="a duplicate id")),
        json.dumps(r(31, supporting_facts=[])),
        json.dumps(r(32, supporting_facts=[["Gamma 32", 1]])),  # the blank sentence
        json.dumps(r(2)),
    ]
    raw = ("[" + ",\n".join(parts)).encode("ascii")
    # A record whose text has bytes that are not UTF-8.
    raw += b',{"_id":"id033","answer":"x","question":"bad \xff\xfe bytes","supporting_facts":[]'
    raw += b',"context":[],"type":"bridge","level":"hard"}'
    raw += ("," + json.dumps(r(99)) + "]").encode("ascii")
    with open(path, "wb") as f:
        f.write(raw)
    return {
        "duplicate_id": 1,
        "empty_answer": 1,
        "empty_context": 1,
        "empty_question": 1,
        "invalid_utf8": 2,
        "missing_field:answer": 1,
        "no_supporting_sentence": 2,
        "not_an_object": 1,
        "supporting_index_out_of_range": 2,
        "unknown_supporting_title": 1,
        "wrong_type:context": 1,
        "wrong_type:question": 1,
        "wrong_type:supporting_facts": 1,
    }


def test_bad_records_dropped_with_their_reasons(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    expected = _bad_file(manual / DEV)
    report = prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data", 1.0)

    dev = report["splits"]["validation"]
    assert dev["dropped"] == expected
    assert dev["read"] == 4 + sum(expected.values())
    assert dev["kept"] == 4
    tiers = dev["tiers"]
    assert tiers["0_raw"]["dropped"] == {"invalid_utf8": 2, "not_an_object": 1}
    assert tiers["2_training"]["dropped"] == {"no_supporting_sentence": 2}
    assert tiers["0_raw"]["in"] == dev["read"] and tiers["2_training"]["out"] == dev["kept"]
    assert tiers["1_validated"]["in"] == tiers["0_raw"]["out"]
    assert report["missing_splits"] == {"train": TRAIN}

    src = tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").as_data_source(
        split="validation"
    )
    assert [from_tfds_record(src[i]).id for i in range(len(src))] == [
        "id000",
        "id001",
        "id002",
        "id099",
    ]
    assert [int(src[i]["source_index"]) for i in range(4)] == [0, 11, 17, 19]


def test_too_many_drops_fail_and_leave_no_dataset(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    _bad_file(manual / DEV)
    with pytest.raises(DataQualityError, match=r"split 'validation' dropped 16 of 20") as e:
        prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data", 0.5)
    assert e.value.report["splits"]["validation"]["kept"] == 4
    config_dir = os.path.join(tmp_path / "data", "hotpot_qa", "distractor")
    assert not os.path.exists(_version_dir(tmp_path / "data"))
    assert not [d for d in os.listdir(config_dir) if "incomplete" in d]
    assert not tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").is_prepared()


def test_killed_build_never_looks_complete(tmp_path):
    """SIGKILL in the middle of writing: only TFDS's incomplete.* dir is left, which no reader
    takes for the dataset, and the next prepare builds it properly."""
    manual = tmp_path / "manual"
    manual.mkdir()
    write_json(manual / DEV, [hotpot_record(i) for i in range(30)])
    script = textwrap.dedent(
        f"""
        import os, signal
        from lm_jax.data.builders import validation
        from lm_jax.data.prepare import prepare_dataset
        seen = []
        original = validation.check_trainable
        def check_then_die(rec, **kw):
            seen.append(rec.id)
            if len(seen) == 20:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(rec, **kw)
        validation.check_trainable = check_then_die
        prepare_dataset("hotpot_qa/distractor", {str(manual)!r}, {str(tmp_path / "data")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    config_dir = os.path.join(tmp_path / "data", "hotpot_qa", "distractor")
    leftovers = os.listdir(config_dir)
    assert leftovers and all(d.startswith("incomplete.") for d in leftovers), leftovers
    assert not tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").is_prepared()

    report = prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data")
    assert report["splits"]["validation"]["kept"] == 30


def test_missing_split_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(MissingSourceFileError, match=TRAIN.replace(".", r"\.")):
        prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "d0")  # empty manual_dir
    write_json(manual / DEV, [hotpot_record(0)])
    with pytest.raises(MissingSourceFileError, match=r"hotpot_train_v1\.1\.json \(split 'train'\)"):
        prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "d1", require_all_splits=True)
    with pytest.raises(MissingSourceFileError, match="does not exist"):
        prepare_dataset("hotpot_qa/distractor", tmp_path / "nope", tmp_path / "d2")


def test_fast_path_reuses_then_rebuilds_on_change(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    write_json(manual / DEV, [hotpot_record(i) for i in range(3)])
    first = prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data")
    info = os.path.join(_version_dir(tmp_path / "data"), "dataset_info.json")
    stamp = os.stat(info).st_mtime_ns
    assert prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data") == first
    assert os.stat(info).st_mtime_ns == stamp  # not rebuilt

    write_json(manual / DEV, [hotpot_record(i) for i in range(5)])  # changed source
    write_json(manual / TRAIN, [hotpot_record(i) for i in range(2)])  # new split
    second = prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data")
    assert second["splits"]["validation"]["kept"] == 5
    assert second["splits"]["train"]["kept"] == 2
    sources = tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").as_data_source()
    assert len(sources["validation"]) == 5


def test_fullwiki_keeps_gold_missing_from_retrieved_context(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    records = [
        hotpot_record(0),
        hotpot_record(1, supporting_facts=[["Alpha 1", 0], ["Not Retrieved", 2]]),
        hotpot_record(2, supporting_facts=[["Not Retrieved", 0], ["Also Missing", 1]]),
        hotpot_record(3, supporting_facts=[["Alpha 3", 9]]),  # still a data error
    ]
    write_json(manual / "hotpot_dev_fullwiki_v1.json", records)
    report = prepare_dataset("hotpot_qa/fullwiki", manual, tmp_path / "data", 0.5)
    dev = report["splits"]["validation"]
    assert dev["kept"] == 3
    assert dev["dropped"] == {"supporting_index_out_of_range": 1}
    assert dev["notes"]["supporting_fact_not_in_context"] == 3
    src = tfds.builder("hotpot_qa/fullwiki", data_dir=tmp_path / "data").as_data_source(
        split="validation"
    )
    assert [len(from_tfds_record(src[i]).positives) for i in range(3)] == [2, 1, 0]


def test_online_path_downloads_official_urls_with_checksums(tmp_path):
    infos = HotpotQa.url_infos
    base = "http://curtis.ml.cmu.edu/datasets/hotpot/"
    for fname in (TRAIN, DEV, "hotpot_dev_fullwiki_v1.json"):
        info = infos[base + fname]
        assert info.filename == fname and int(info.size) > 40_000_000 and len(info.checksum) == 64

    class FakeDownloadManager:
        _manual_dir = None

        def download(self, urls):
            self.urls = urls
            return {split: tmp_path / os.path.basename(u) for split, u in urls.items()}

    dl = FakeDownloadManager()
    builder = tfds.builder("hotpot_qa/fullwiki", data_dir=tmp_path / "data")
    gens = builder._split_generators(dl)
    assert dl.urls == {"train": base + TRAIN, "validation": base + "hotpot_dev_fullwiki_v1.json"}
    assert set(gens) == {"train", "validation"}


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_json_reader_streams_arrays_and_lines(tmp_path, chunk):
    import hashlib

    values = [{"a": i, "s": "x" * (i * 13) + "\u00e9"} for i in range(20)]
    arr = tmp_path / "a.json"
    arr.write_text(" [\n" + " ,\n".join(json.dumps(v) for v in values) + "\n]\n")
    lines = tmp_path / "l.jsonl"
    lines.write_text("\n".join(json.dumps(v, ensure_ascii=False) for v in values) + "\n")
    for path in (arr, lines):
        reader = JsonValueReader(path, chunk_bytes=chunk)
        assert list(reader) == values
        assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert reader.num_bytes == path.stat().st_size
    assert list(JsonValueReader(_write(tmp_path / "e.json", "[]"), chunk)) == []
    for bad in ('[{"a": 1} {"b": 2}]', '[{"a": 1},', '[{"a": 1}] x', '{"a": '):
        with pytest.raises(RawFormatError, match="bad.json"):
            list(JsonValueReader(_write(tmp_path / "bad.json", bad), chunk))


def _write(path, text):
    path.write_text(text)
    return path
