"""The datasets benchmark on a fake shared_dir: one JSON line per build and per recall."""

import json
import os

from lm_jax.bench.datasets import main, pool_and_corpus_recall


def test_fake_shared_dir(tmp_path, capsys):
    shared = tmp_path / "shared"
    os.makedirs(shared / "musique")
    os.makedirs(shared / "nq_open")
    paras = [{"idx": i, "title": f"T{i}", "paragraph_text": f"Paragraph {i} about topic {i}.",
              "is_supporting": i in (1, 2)} for i in range(6)]
    with open(shared / "musique" / "musique_ans_v1.0_dev.subset50.jsonl", "w") as f:
        for q in range(3):
            f.write(json.dumps({"id": f"2hop__{q}", "paragraphs": paras,
                                "question": "What about topic 1 and topic 2?",
                                "question_decomposition": [], "answer": "x",
                                "answer_aliases": [], "answerable": True}) + "\n")
        f.write("{broken\n")
    with open(shared / "nq_open" / "NQ-open.dev.jsonl", "w") as f:
        f.write(json.dumps({"question": "who", "answer": ["me"]}) + "\n")
    main([f"--shared_dir={shared}", f"--workdir={tmp_path / 'work'}", "--k=2"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert all(rec["bench"] == "datasets" for rec in lines)
    builds = {r["dataset"]: r for r in lines if r["measure"] == "build"}
    assert builds["musique"]["read"] == 4 and builds["musique"]["kept"] == 3
    assert builds["musique"]["dropped"] == {"invalid_json": 1}
    assert builds["nq_open"]["kept"] == 1
    recall = {r["protocol"]: r for r in lines if r["measure"] == "bm25_recall"}
    assert recall["pool"]["recall_at_k"] == 1.0 and recall["pool"]["n"] == 3
    assert recall["corpus"]["corpus_items"] == 6
    skipped = {r["dataset"] for r in lines if r["measure"] == "skipped"}
    assert "2wiki" in skipped and "popqa" in skipped


def test_recall_counts_only_questions_with_gold(tmp_path):
    pools = [("red apple", ["a red apple", "a blue sky", "green grass"], {0}),
             ("blue", ["a red apple", "a blue sky", "green grass"], {0}),
             ("none", ["x y"], set())]
    r = pool_and_corpus_recall(pools, k=1, workdir=str(tmp_path))
    assert r["pool"] == {"recall_at_k": 0.5, "n": 2}
    assert r["corpus"]["recall_at_k"] == 0.5 and r["corpus"]["corpus_items"] == 3
