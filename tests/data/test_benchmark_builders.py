"""The benchmark builders (2Wiki, MuSiQue, NQ-open, TriviaQA, PopQA, FlashRAG, Qasper, WiCE,
DPR corpus) on small fixture files in each official format: valid records kept exactly,
malformed ones (missing fields, bad supporting indices, empty answers, broken lines) dropped
with their reasons."""

from __future__ import annotations

import csv
import json

import pytest
import tensorflow_datasets as tfds

from lm_jax.data.builders import ALIASES, DataQualityError, RawFormatError
from lm_jax.data.builders.open_qa import gold_answers
from lm_jax.data.prepare import prepare_dataset
from lm_jax.data.records import from_tfds_record

from .conftest import write_json


def _jsonl(path, values):
    """JSON lines; a str value is written verbatim (a broken line)."""
    with open(path, "w", encoding="utf-8") as f:
        for v in values:
            f.write((v if isinstance(v, str) else json.dumps(v)) + "\n")


def _build(tmp_path, name, **kw):
    report = prepare_dataset(name, tmp_path / "manual", tmp_path / "data", **kw)
    source = tfds.builder(ALIASES.get(name, name), data_dir=tmp_path / "data").as_data_source()
    return report, source


@pytest.fixture
def manual(tmp_path):
    (tmp_path / "manual").mkdir()
    return tmp_path / "manual"


def two_wiki(i, **kw):
    rec = {
        "_id": f"w{i}",
        "type": "compositional",
        "question": f"Who directed film {i}?",
        "context": [[f"Film {i}", ["Film is a movie.", " It was directed by Ann."]],
                    [f"Ann {i}", ["Ann is a director."]]],
        "entity_ids": "Q1_Q2",
        "supporting_facts": [[f"Film {i}", 1], [f"Ann {i}", 0]],
        "evidences": [[f"Film {i}", "director", "Ann"]],
        "answer": "Ann",
    }
    rec.update(kw)
    return rec


def test_two_wiki(manual, tmp_path):
    recs = [two_wiki(i) for i in range(8)]
    recs.append({k: v for k, v in two_wiki(8).items() if k != "evidences"})
    recs.append(two_wiki(9, supporting_facts=[["Film 9", 5]]))
    recs.append(two_wiki(10, answer=" "))
    write_json(manual / "dev.json", recs)
    report, source = _build(tmp_path, "2wiki", max_drop_fraction=0.5)
    split = report["splits"]["validation"]
    assert split["read"] == 11 and split["kept"] == 8
    assert split["dropped"] == {"empty_answer": 1, "missing_field:evidences": 1,
                                "supporting_index_out_of_range": 1}
    dev = source["validation"]
    ex = from_tfds_record(dev[3])
    assert ex.id == "w3" and ex.type == "compositional"
    assert [(e.text, e.is_supporting) for e in ex.evidence] == [
        ("Film is a movie.", False), ("It was directed by Ann.", True),
        ("Ann is a director.", True)]
    assert dev[3]["evidences"]["relation"][0] == b"director"


def musique(i, **kw):
    paras = [
        {"idx": 0, "title": "Van Hook", "paragraph_text": "Van Hook is in Mountrail County.",
         "is_supporting": True},
        {"idx": 1, "title": "Stanley", "paragraph_text": "Stanley is a city.",
         "is_supporting": False},
        {"idx": 2, "title": "Van Hook", "paragraph_text": "Van Hook has a lake.",
         "is_supporting": False},
        {"idx": 3, "title": "Mountrail", "paragraph_text": "Its seat is Stanley.",
         "is_supporting": True},
    ]
    rec = {
        "id": f"2hop__{i}_9", "paragraphs": paras, "question": f"Seat of county {i}?",
        "question_decomposition": [
            {"id": 1, "question": "q1", "answer": "Mountrail County", "paragraph_support_idx": 0},
            {"id": 2, "question": "q2", "answer": "Stanley", "paragraph_support_idx": 3}],
        "answer": "Stanley", "answer_aliases": ["Stanley, ND"], "answerable": True,
    }
    rec.update(kw)
    return rec


def test_musique_groups_repeated_titles_and_drops_bad_records(manual, tmp_path):
    bad_support = musique(5)
    bad_support["question_decomposition"][1]["paragraph_support_idx"] = 40
    lines = [musique(i) for i in range(5)] + [
        bad_support,
        '{"id": "broken", "paragraphs": [',
        {k: v for k, v in musique(7).items() if k != "paragraphs"},
        musique(8, paragraphs=[dict(p, is_supporting=False) for p in musique(8)["paragraphs"]]),
        musique(1),  # duplicate id
    ]
    _jsonl(manual / "musique_ans_v1.0_dev.jsonl", lines)
    report, source = _build(tmp_path, "musique", max_drop_fraction=0.6)
    split = report["splits"]["validation"]
    assert split["read"] == 10 and split["kept"] == 5
    assert split["dropped"] == {"duplicate_id": 1, "invalid_json": 1,
                                "missing_field:paragraphs": 1, "no_supporting_sentence": 1,
                                "supporting_index_out_of_range": 1}
    raw = source["validation"][2]
    ex = from_tfds_record(raw)
    # Both "Van Hook" paragraphs are one title group; only the first is supporting.
    assert [(e.title, e.text, e.is_supporting) for e in ex.evidence] == [
        ("Van Hook", "Van Hook is in Mountrail County.", True),
        ("Van Hook", "Van Hook has a lake.", False),
        ("Stanley", "Stanley is a city.", False),
        ("Mountrail", "Its seat is Stanley.", True)]
    assert [int(i) for i in raw["paragraph_idx"]] == [0, 2, 1, 3]
    assert ex.type == "2hop"
    assert gold_answers(raw) == ["Stanley", "Stanley, ND"]


def test_nq_open_and_flashrag(manual, tmp_path):
    _jsonl(manual / "NQ-open.dev.jsonl", [
        {"question": "who wrote it", "answer": ["Bobby Scott", "Bob Russell", "Bobby Scott"]},
        {"question": "when", "answer": []},
        {"question": "where", "answer": "Paris"},
        "{not json",
        {"answer": ["x"]},
        *[{"question": f"q{i}", "answer": [f"a{i}", " "]} for i in range(10)],
    ])
    report, source = _build(tmp_path, "nq", max_drop_fraction=0.3)
    split = report["splits"]["validation"]
    assert (split["read"], split["kept"]) == (15, 11)
    assert split["dropped"] == {"empty_answer": 1, "invalid_json": 1,
                                "missing_field:question": 1, "wrong_type:answer": 1}
    assert split["notes"] == {"blank_answer": 10, "duplicate_answer": 1}
    rec = source["validation"][0]
    assert rec["id"] == b"validation-0"
    assert gold_answers(rec) == ["Bobby Scott", "Bob Russell"]

    fr = tmp_path / "fr"
    (fr / "manual").mkdir(parents=True)
    _jsonl(fr / "manual" / "test.jsonl", [
        {"id": "test_1", "question": "Who composed Easy Living?",
         "golden_answers": ["Ralph Rainger"], "metadata": {"s_pop": 1381}},
        {"id": "test_2", "question": "q?", "golden_answers": [""]},
        {"id": "test_3", "question": "q3?", "golden_answers": ["x"]},
    ])
    report, source = _build(fr, "flashrag", max_drop_fraction=0.5)
    assert report["splits"]["test"]["dropped"] == {"empty_answer": 1}
    assert report["missing_splits"] == {"train": "train.jsonl", "validation": "dev.jsonl"}
    rec = source["test"][0]
    assert json.loads(rec["metadata"]) == {"s_pop": 1381}


def trivia_item(i, **kw):
    item = {
        "Answer": {"Aliases": ["Sunset Blvd", "Sunset Boulevard"], "NormalizedAliases":
                   ["sunset blvd", "sunset boulevard"], "Type": "WikipediaEntity",
                   "Value": "Sunset Boulevard"},
        "EntityPages": [{"DocSource": "TagMe", "Filename": "Andrew_Lloyd_Webber.txt",
                         "Title": "Andrew Lloyd Webber"}],
        "Question": f"Which musical premiered in 1993 ({i})?",
        "QuestionId": f"tc_{i}", "QuestionSource": "http://www.triviacountry.com/",
        "SearchResults": [{"Filename": "35/35_995.txt", "Rank": 0}],
    }
    item.update(kw)
    return item


def test_trivia_qa(manual, tmp_path):
    (manual / "qa").mkdir()
    data = [trivia_item(i) for i in range(6)] + [
        {k: v for k, v in trivia_item(6).items() if k != "Answer"},
        trivia_item(7, Answer={"Value": 3}),
        "not an object",
    ]
    with open(manual / "qa" / "wikipedia-dev.json", "w") as f:
        json.dump({"Data": data, "Domain": "Wikipedia", "VerifiedEval": False,
                   "Version": 1.0}, f)
    report, source = _build(tmp_path, "trivia_qa/rc_wikipedia", max_drop_fraction=0.5)
    split = report["splits"]["validation"]
    assert split["dropped"] == {"missing_field:Answer": 1, "not_an_object": 1,
                                "wrong_type:Answer": 1}
    rec = source["validation"][0]
    assert gold_answers(rec) == ["Sunset Boulevard", "Sunset Blvd", "sunset blvd",
                                 "sunset boulevard"]
    assert json.loads(rec["metadata"])["entity_pages"] == ["Andrew_Lloyd_Webber.txt"]
    with open(manual / "qa" / "wikipedia-dev.json", "w") as f:
        f.write('{"Data": [')
    with pytest.raises(RawFormatError, match="wikipedia-dev.json"):
        prepare_dataset("trivia_qa/rc_wikipedia", manual, tmp_path / "data", force=True)


def test_pop_qa_tsv(manual, tmp_path):
    from lm_jax.data.builders.pop_qa import COLUMNS

    def row(i, answers='["politician", "political leader"]'):
        return [str(i), "George Rankin", "occupation", "politician", "1850297", "22", "2834605",
                '["George James Rankin"]', '["political leader"]', "http://s", "http://o",
                "George Rankin", "Politician", "142", "25692",
                "What is George Rankin's occupation?", answers]

    with open(manual / "popQA.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(COLUMNS)
        for i in range(6):
            w.writerow(row(i))
        w.writerow(row(6, answers="[]"))
        w.writerow(row(7, answers="not json"))
        w.writerow(row(8)[:5])  # a broken line
    report, source = _build(tmp_path, "popqa", max_drop_fraction=0.4)
    split = report["splits"]["test"]
    assert (split["read"], split["kept"]) == (9, 6)
    assert split["dropped"] == {"empty_answer": 1, "wrong_column_count": 1,
                                "wrong_type:possible_answers": 1}
    rec = source["test"][1]
    assert rec["id"] == b"1" and gold_answers(rec) == ["politician", "political leader"]
    meta = json.loads(rec["metadata"])
    assert meta["s_pop"] == 142 and meta["s_aliases"] == ["George James Rankin"]


def test_qasper_and_wice(manual, tmp_path):
    _jsonl(manual / "qasper.jsonl", [
        {"input": "What dataset do they use?", "context": "We use SQuAD. " * 50,
         "answers": ["SQuAD"], "length": 100, "dataset": "qasper", "language": "en",
         "all_classes": None, "_id": "abc"},
        {"input": "q", "context": " ", "answers": ["x"], "_id": "e"},
        {"input": "q2", "context": "doc", "answers": ["unanswerable"], "_id": "f"},
    ])
    report, source = _build(tmp_path, "qasper", max_drop_fraction=0.5)
    assert report["splits"]["test"]["dropped"] == {"empty_context": 1}
    assert source["test"][0]["context"].startswith(b"We use SQuAD.")

    w = tmp_path / "w"
    (w / "manual" / "claim").mkdir(parents=True)
    ok = {"label": "partially_supported", "supporting_sentences": [[0, 2], [1]],
          "claim": "Arnold is the publisher.", "evidence": ["A.", "B.", "C."],
          "meta": {"id": "dev1", "claim_title": "Roger", "claim_context": "ctx"}}
    _jsonl(w / "manual" / "claim" / "dev.jsonl", [
        ok, dict(ok, meta={"id": "dev2"}, label="not_supported", supporting_sentences=[]),
        dict(ok, meta={"id": "dev3"}, supporting_sentences=[[7]]),
        dict(ok, meta={"id": "dev4"}, label="maybe"),
        dict(ok, meta={"id": "dev5"}, evidence=[]),
    ])
    report, source = _build(w, "wice", max_drop_fraction=0.7)
    split = report["splits"]["validation"]
    assert split["dropped"] == {"empty_context": 1, "supporting_index_out_of_range": 1,
                                "unknown_label": 1}
    rec = source["validation"][0]
    assert rec["label"] == b"partially_supported"
    assert [int(i) for i in rec["supporting_sentences"]] == [0, 2, 1]
    assert [int(i) for i in rec["supporting_set_sizes"]] == [2, 1]


def test_dpr_corpus_streams_and_rejects(manual, tmp_path):
    with open(manual / "psgs_w100.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "text", "title"])
        for i in range(1, 41):
            w.writerow([str(i), f'Passage {i} says "hello"\twith a tab.', f"Title {i}"])
        w.writerow(["41", "", "Empty"])
        f.write("42\tonly two fields\n")
        w.writerow(["43", "No title here.", ""])
    report, source = _build(tmp_path, "dpr_corpus")
    split = report["splits"]["train"]
    assert (split["read"], split["kept"]) == (43, 41)
    assert split["dropped"] == {"empty_text": 1, "wrong_column_count": 1}
    assert split["notes"] == {"empty_title": 1}
    p = source["train"][4]
    assert (p["id"], p["title"]) == (b"5", b"Title 5")
    assert p["text"] == b'Passage 5 says "hello"\twith a tab.'
    # Too many bad rows: rejected, nothing written.
    with open(manual / "psgs_w100.tsv", "a") as f:
        f.write("x\n" * 10)
    with pytest.raises(DataQualityError, match="wrong_column_count"):
        prepare_dataset("dpr_corpus", manual, tmp_path / "data2")
    assert not (tmp_path / "data2" / "dpr_corpus" / "psgs_w100" / "1.0.0").exists()
    with open(manual / "psgs_w100.tsv", "w") as f:
        f.write("pid\tpassage\n1\tx\n")
    with pytest.raises(RawFormatError, match="header"):
        prepare_dataset("dpr_corpus", manual, tmp_path / "data3")
