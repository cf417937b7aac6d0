"""Each loss on small hand-made cases equals an independent NumPy computation."""

import numpy as np
import pytest

from lm_jax.train import losses


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_token_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (2, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    loss, acc = losses.token_cross_entropy(logits, targets, mask)
    lp = _log_softmax(logits)
    nll = [-lp[b, t, targets[b, t]] for b in range(2) for t in range(5) if mask[b, t]]
    correct = [logits[b, t].argmax() == targets[b, t] for b in range(2) for t in range(5)
               if mask[b, t]]
    assert float(loss) == pytest.approx(np.mean(nll), rel=1e-6)
    assert float(acc) == pytest.approx(np.mean(correct))


def test_infonce_multi_positive_matches_numpy():
    rng = np.random.default_rng(1)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    q = unit(rng.normal(size=(3, 4))).astype(np.float32)
    keys = unit(rng.normal(size=(8, 4))).astype(np.float32)
    # Question 0 owns keys 0,1; question 1 owns key 2; question 2 owns none; 3..6 are
    # hard negatives; key 7 is padding.
    owner = np.array([0, 0, 1, -1, -1, -1, -1, 2])
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    tau = 0.07
    got = losses.multi_positive_infonce(q, keys, owner, valid, tau)

    per_q = []
    for b in range(3):
        s = q[b] @ keys[valid].T / tau
        lse = np.log(np.exp(s - s.max()).sum()) + s.max()
        pos = [m for m in range(8) if owner[m] == b and valid[m]]
        if pos:
            per_q.append(-np.mean([q[b] @ keys[m] / tau - lse for m in pos]))
    assert len(per_q) == 2  # question 2's only positive is padding: it does not count
    assert float(got) == pytest.approx(np.mean(per_q), rel=1e-5)


def test_distillation_kl_matches_numpy_and_is_zero_for_equal_inputs():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(2, 3, 6)).astype(np.float32)
    s = rng.normal(size=(2, 3, 6)).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    got = losses.distillation_kl(t, s, mask)
    pt, ps = _log_softmax(t), _log_softmax(s)
    kl = (np.exp(pt) * (pt - ps)).sum(-1)
    assert float(got) == pytest.approx((kl * mask).sum() / mask.sum(), rel=1e-5)
    assert float(losses.distillation_kl(t, t, mask)) == pytest.approx(0.0, abs=1e-6)
