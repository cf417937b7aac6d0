"""BERT / XLM-RoBERTa encoders against transformers (PyTorch) on tiny random checkpoints, the
sentence-transformers pooling formula, the dense retriever and the LLMLingua-2 compressor."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lm_jax.eval.dense import DenseEncoder, dense_retrieve, dense_top_k  # noqa: E402
from lm_jax.eval.llmlingua2 import TokenKeepClassifier  # noqa: E402
from lm_jax.hf.checkpoint import MissingTensorError, UnsupportedArchitectureError  # noqa: E402
from lm_jax.hf.encoder_checkpoint import load_encoder_config, load_encoder_params  # noqa: E402
from lm_jax.models.encoder import Encoder, mean_pool_normalize  # noqa: E402

TOL = 1e-4
WORDS = ("the a of in is was city river paris france berlin germany capital cat sat mat "
         "wine cheese large small north south . , ! ?").split()


def _tokenizer(d, specials):
    with open(d / "vocab.txt", "w") as f:
        f.write("\n".join([*specials, *WORDS, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
                           *"abcdefghijklmnopqrstuvwxyz"]) + "\n")
    return len(specials) + len(WORDS) + 52


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("minilm")
    n = _tokenizer(d, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok = transformers.BertTokenizerFast(str(d / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llmlingua2")
    n = _tokenizer(d, ["<s>", "[PAD]", "</s>", "[UNK]", "[MASK]"])
    tok = transformers.BertTokenizerFast(str(d / "vocab.txt"), do_lower_case=True,
                                         cls_token="<s>", sep_token="</s>", pad_token="[PAD]")
    tok.save_pretrained(d)
    torch.manual_seed(1)
    cfg = transformers.XLMRobertaConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=48,
                                        max_position_embeddings=40, num_labels=2, pad_token_id=1)
    transformers.XLMRobertaForTokenClassification(cfg).save_pretrained(d)
    return d


def _batch(vocab, pad, b=3, t=12):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab, (b, t))
    mask = np.ones((b, t), np.int64)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = pad
    return ids, mask


def test_bert_parity_and_mean_pooling(bert_dir):
    config = load_encoder_config(str(bert_dir))
    assert config.model_type == "bert" and config.num_labels == 0
    params = load_encoder_params(str(bert_dir), config)
    hf = transformers.BertModel.from_pretrained(bert_dir, attn_implementation="eager").eval()
    ids, mask = _batch(config.vocab_size, 0)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
                 ).last_hidden_state
    out = np.asarray(Encoder(config).apply({"params": params}, jnp.asarray(ids),
                                           jnp.asarray(mask)))
    np.testing.assert_allclose(out[mask == 1], ref.numpy()[mask == 1], atol=TOL)
    # sentence-transformers: Pooling(mean) then Normalize, written in torch.
    m = torch.tensor(mask)[..., None].float()
    st = torch.nn.functional.normalize((ref * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)
    pooled = np.asarray(mean_pool_normalize(jnp.asarray(out), jnp.asarray(mask)))
    np.testing.assert_allclose(pooled, st.numpy(), atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)


def test_dense_retriever(bert_dir):
    enc = DenseEncoder.from_pretrained(bert_dir, max_length=32, batch_size=2)
    corpus = ["paris is the capital of france", "berlin is a large city in germany",
              "the cat sat in a mat", "wine and cheese of france", "a small river"]
    emb = enc.embed(corpus)
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    hf = transformers.BertModel.from_pretrained(bert_dir, attn_implementation="eager").eval()
    batch = tok(corpus, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(**batch).last_hidden_state
    m = batch["attention_mask"][..., None].float()
    st = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), p=2, dim=1).numpy()
    np.testing.assert_allclose(emb, st, atol=TOL)  # batching/padding do not change embeddings
    idx, scores = dense_retrieve(enc, corpus, [corpus[2], corpus[0]], k=3, corpus_emb=emb)
    assert idx[0, 0] == 2 and idx[1, 0] == 0
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    full = st[[2, 0]] @ st.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :3])
    assert dense_top_k(emb[:1], emb, k=10)[0].shape == (1, 5)


def test_xlmr_token_classifier_parity(xlmr_dir):
    config = load_encoder_config(str(xlmr_dir))
    assert config.model_type == "xlm-roberta" and config.num_labels == 2
    assert config.max_tokens == 38
    params = load_encoder_params(str(xlmr_dir), config)
    hf = transformers.XLMRobertaForTokenClassification.from_pretrained(
        xlmr_dir, attn_implementation="eager").eval()
    ids, mask = _batch(config.vocab_size, 1)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    out = np.asarray(Encoder(config).apply({"params": params}, jnp.asarray(ids),
                                           jnp.asarray(mask)))
    assert out.shape == (3, 12, 2)
    np.testing.assert_allclose(out[mask == 1], ref[mask == 1], atol=TOL)


def test_llmlingua2_word_probs_chunks_and_rates(xlmr_dir):
    clf = TokenKeepClassifier.from_pretrained(xlmr_dir, max_tokens=16)
    hf = transformers.XLMRobertaForTokenClassification.from_pretrained(
        xlmr_dir, attn_implementation="eager").eval()
    tok = clf.tokenizer
    sentences = ["paris is the capital of france.", "berlin is a large city!",
                 "the cat sat in a mat.", "wine and cheese of the south?",
                 "a small river north of berlin."]
    words = " ".join(sentences * 3).split()
    chunks = clf.chunks(words)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(words)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    per_word = [len(tok(w, add_special_tokens=False)["input_ids"]) for w in words]
    for s, e in chunks:
        assert sum(per_word[s:e]) <= 14
        assert e == len(words) or words[e - 1][-1] in ".!?"  # chunks end at sentence ends
    probs, counts = clf.word_keep_probs(words)
    # Reference: each chunk through transformers, mean of keep-probabilities per word.
    for s, e in chunks:
        enc = tok(words[s:e], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            p = torch.softmax(hf(**enc).logits, -1)[0, :, 1].numpy()
        wid = enc.word_ids()
        for w in range(s, e):
            sel = [i for i, x in enumerate(wid) if x == w - s]
            assert probs[w] == pytest.approx(p[sel].mean(), abs=1e-5)
    assert list(counts) == per_word
    for rate in (0.2, 0.1, 0.05):
        c = clf.compress(" ".join(words), rate)
        assert c.total_words == len(words)
        assert abs(c.kept_words - rate * len(words)) <= 2
        kept = c.text.split()
        assert kept == [w for w, p in zip(words, probs, strict=True)
                        if p >= np.percentile(probs, 100 * (1 - rate))]
        assert 0 < c.token_rate < 0.35
    with pytest.raises(ValueError, match="rate"):
        clf.compress("x", 0.0)


def test_import_errors_name_the_problem(bert_dir, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    d = tmp_path / "broken"
    shutil.copytree(bert_dir, d)
    tensors = load_file(str(d / "model.safetensors"))
    del tensors["encoder.layer.1.output.dense.weight"]
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(MissingTensorError, match="layer_1/down/kernel"):
        load_encoder_params(str(d))
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        load_encoder_config(str(d))
