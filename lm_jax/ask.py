"""Mode `ask`: answer one question from the exported bank, showing the retrieved evidence."""

from __future__ import annotations

import numpy as np


def ask(runner, bank, index, question: str, k: int) -> dict:
    """Retrieves top-k latents for `question` from the bank and greedily answers.

    Returns {"question", "answer", "evidence": [{"title", "text", "score"}, ...]}.
    """
    q = runner.encode_queries([question])
    rows, scores = index.search(q, k)
    rows, scores = rows[0], scores[0]
    z = bank.latents(np.asarray(rows)).astype(np.float32)[None]
    prompt = runner.builder.latent(question, list(range(len(rows))))
    answer = runner.generate([prompt], z)[0]
    evidence = [{"title": bank.titles[r], "text": bank.texts[r], "score": float(s)}
                for r, s in zip(rows, scores)]
    return {"question": question, "answer": answer, "evidence": evidence}
