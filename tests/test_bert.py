"""The course BERT: shapes and tying, bidirectional attention, padding, exact Hugging Face
equivalence, parameter arithmetic for BERT-Base/Large, and a tiny MLM that learns."""

import math

import pytest
import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertForMaskedLM as HFBertForMaskedLM
from transformers import BertForPreTraining as HFBertForPreTraining
from transformers import BertForSequenceClassification as HFBertForSequenceClassification
from transformers import BertModel as HFBertModel

from llmcourse.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    PreTrainingLogits,
    bert_param_breakdown,
    bert_params,
)
from llmcourse.convert import bert_from_hf
from llmcourse.mlm import (
    SpecialTokens,
    fixed_batches,
    mlm_accuracy,
    pretraining_batches,
    unigram_baseline,
)
from llmcourse.runtime import detect

from tiny import TINY_BERT, tiny_bert


def padded_batch(B=3, T=16, V=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    types = (torch.arange(T) >= T // 2).long().expand(B, T).contiguous()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 10:] = 0
    mask[2, 5:] = 0
    return ids, types, mask


def test_shapes_tied_decoder_and_loss():
    model = tiny_bert()
    ids, types, mask = padded_batch()
    targets = torch.full_like(ids, -100)
    targets[:, 3] = ids[:, 3]
    logits, loss = model(
        ids, types, attention_mask=mask, targets=targets, nsp_targets=torch.tensor([0, 1, 0])
    )
    assert isinstance(logits, PreTrainingLogits)
    assert logits.mlm.shape == (3, 16, 101) and logits.nsp.shape == (3, 2)
    assert model.mlm_head.decoder.weight is model.bert.tok_emb.weight
    mlm = torch.nn.functional.cross_entropy(logits.mlm[:, 3], ids[:, 3])
    nsp = torch.nn.functional.cross_entropy(logits.nsp, torch.tensor([0, 1, 0]))
    torch.testing.assert_close(loss, mlm + nsp)
    assert model(ids)[1] is None
    clf = tiny_bert(BertForSequenceClassification)
    out, loss = clf(ids, types, attention_mask=mask, targets=torch.tensor([1, 0, 1]))
    assert out.shape == (3, 2) and loss.dim() == 0


def test_only_targets_scores_the_masked_positions_with_the_same_loss():
    model = tiny_bert()
    ids, types, mask = padded_batch()
    targets = torch.full_like(ids, -100)
    targets[0, [2, 7]], targets[2, 1] = ids[0, [2, 7]], ids[2, 1]
    nsp = torch.tensor([1, 0, 1])
    full, loss = model(ids, types, attention_mask=mask, targets=targets, nsp_targets=nsp)
    some, same = model(
        ids, types, attention_mask=mask, targets=targets, nsp_targets=nsp, only_targets=True
    )
    assert some.mlm.shape == (3, 101)  # row-major: (0, 2), (0, 7), (2, 1)
    torch.testing.assert_close(some.mlm, full.mlm[targets != -100])
    torch.testing.assert_close(same, loss)
    with pytest.raises(ValueError, match="needs targets"):
        model(ids, only_targets=True)


def test_initial_mlm_loss_is_near_uniform():
    """With N(0, 0.02) weights every token is about equally likely: loss ~ ln(vocab_size)."""
    model = tiny_bert(BertForMaskedLM)
    ids = torch.randint(0, 101, (4, 16))
    _, loss = model(ids, targets=ids)
    assert abs(loss.item() - math.log(101)) < 0.1


def test_attention_is_bidirectional_and_padding_is_invisible():
    """Changing a late token changes early positions (unlike a GPT); changing padded tokens
    changes nothing at real positions."""
    model = tiny_bert(BertForMaskedLM)
    ids, types, mask = padded_batch()
    base, _ = model(ids, types, attention_mask=mask)
    late = ids.clone()
    late[0, 15] = (late[0, 15] + 1) % 101
    assert not torch.allclose(model(late, types, attention_mask=mask)[0][0, 0], base[0, 0])
    noise = ids.clone()
    noise[mask == 0] = torch.randint(0, 101, (int((mask == 0).sum()),))
    got, _ = model(noise, types, attention_mask=mask)
    torch.testing.assert_close(got[mask == 1], base[mask == 1])


def test_bert_attention_agrees_with_the_course_multi_head_attention():
    """BERT keeps its own attention (fused kernel, one mask for all layers); with the same random weights
    it computes what `llmcourse.attention.MultiHeadAttention` computes: no causal mask, padded keys hidden."""
    from llmcourse.attention import MultiHeadAttention
    from llmcourse.bert import BertSelfAttention, key_padding_mask

    torch.manual_seed(0)
    ours = BertSelfAttention(TINY_BERT).eval()
    mha = MultiHeadAttention(TINY_BERT.n_embd, TINY_BERT.n_head).eval()
    mha.load_state_dict(
        ours.state_dict()
    )  # q_proj, k_proj, v_proj, out_proj: the same names and shapes
    x = torch.randn(3, 16, TINY_BERT.n_embd)
    _, _, mask = padded_batch()
    torch.testing.assert_close(ours(x), mha(x))
    torch.testing.assert_close(ours(x, key_padding_mask(mask)), mha(x, key_mask=mask.bool()))
    assert not torch.allclose(
        ours(x, key_padding_mask(mask))[1, 0], ours(x)[1, 0]
    )  # the mask matters


def _random_hf(cls, hc):
    """A random HF model where every parameter matters: LayerNorm gains/biases and all biases too."""
    torch.manual_seed(0)
    hf = cls(hc).eval()
    with torch.no_grad():
        for p in hf.parameters():  # tied tensors (embedding = decoder) are visited once
            p.normal_(0.0, 0.2 if p.dim() > 1 else 0.5)
    return hf


HF_TINY = dict(
    vocab_size=101,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=24,
)


@pytest.mark.parametrize("hf_cls", [HFBertForMaskedLM, HFBertForPreTraining])
def test_logits_match_hugging_face(hf_cls):
    """Same weights, same batch (with two padded rows and both token types): logits within 1e-4."""
    hf = _random_hf(hf_cls, HFBertConfig(**HF_TINY))
    ours = bert_from_hf(hf)
    assert type(ours) is (BertForPreTraining if hf_cls is HFBertForPreTraining else BertForMaskedLM)
    ids, types, mask = padded_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        got, _ = ours(ids, types, attention_mask=mask)
    if hf_cls is HFBertForMaskedLM:
        torch.testing.assert_close(got, ref.logits, rtol=0, atol=1e-4)
    else:
        torch.testing.assert_close(got.mlm, ref.prediction_logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(got.nsp, ref.seq_relationship_logits, rtol=0, atol=1e-4)
    assert ref.logits.abs().max() > 1 if hf_cls is HFBertForMaskedLM else True  # not a trivial case


@pytest.mark.parametrize(
    "fields",
    [
        dict(hidden_act="gelu_python"),  # the same erf GELU under another name
        dict(layer_norm_eps=1e-3),  # carried over: BertConfig.layer_norm_eps
        dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2),
    ],
)
def test_supported_bert_fields_convert_with_the_same_logits(fields):
    hf = _random_hf(HFBertForMaskedLM, HFBertConfig(**HF_TINY, **fields)).eval()
    ours = bert_from_hf(hf)
    assert ours.cfg.layer_norm_eps == hf.config.layer_norm_eps
    assert ours.cfg.dropout == hf.config.hidden_dropout_prob
    ids, types, mask = padded_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        got, _ = ours(ids, types, attention_mask=mask)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "field,value",
    [
        ("hidden_act", "relu"),
        ("hidden_act", "gelu_new"),  # tanh GELU: close to ours, not equal
        ("position_embedding_type", "relative_key"),
        ("position_embedding_type", "relative_key_query"),
        ("is_decoder", True),
        ("add_cross_attention", True),
        ("tie_word_embeddings", False),
        ("attention_probs_dropout_prob", 0.0),
    ],
)
def test_bert_fields_we_cannot_represent_are_refused_by_name(field, value):
    hc = HFBertConfig(**HF_TINY)
    setattr(hc, field, value)  # transformers 5 dropped position_embedding_type; old files have it
    hc.is_decoder = hc.is_decoder or field == "add_cross_attention"  # HF needs both for that one
    with pytest.raises(ValueError, match=rf"BertConfig\.{field}={value!r} cannot be converted"):
        bert_from_hf(HFBertForMaskedLM(hc))


def test_conversion_refuses_other_classes():
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        bert_from_hf(HFBertModel(HFBertConfig(**HF_TINY)))


BASE = BertConfig(
    vocab_size=30522, max_position=512, n_layer=12, n_head=12, n_embd=768, intermediate=3072
)
LARGE = BertConfig(
    vocab_size=30522, max_position=512, n_layer=24, n_head=16, n_embd=1024, intermediate=4096
)


def _hf_config(cfg):
    return HFBertConfig(
        vocab_size=cfg.vocab_size,
        max_position_embeddings=cfg.max_position,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.intermediate,
        type_vocab_size=cfg.type_vocab_size,
    )


@pytest.mark.parametrize("cfg", [BASE, LARGE], ids=["base", "large"])
@pytest.mark.parametrize(
    "head, hf_cls",
    [
        ("encoder", HFBertModel),
        ("mlm", HFBertForMaskedLM),
        ("pretraining", HFBertForPreTraining),
        ("classifier", HFBertForSequenceClassification),
    ],
)
def test_param_count_equals_hugging_face_exactly(cfg, head, hf_cls):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        hf = hf_cls(_hf_config(cfg))
    assert bert_params(cfg, head) == sum(p.numel() for p in hf.parameters())


def test_bert_base_and_large_are_the_papers_110m_and_340m():
    assert bert_params(BASE) == 109_482_240  # "110M"
    assert abs(bert_params(LARGE) / 340e6 - 1) < 0.02  # 335,141,888: the paper rounds to "340M"


@pytest.mark.parametrize(
    "cls, head",
    [
        (BertModel, "encoder"),
        (BertForMaskedLM, "mlm"),
        (BertForPreTraining, "pretraining"),
        (BertForSequenceClassification, "classifier"),
    ],
)
def test_param_count_equals_our_models(cls, head):
    model = cls(TINY_BERT)
    assert bert_params(TINY_BERT, head) == sum(p.numel() for p in model.parameters())
    assert sum(bert_param_breakdown(TINY_BERT, head).values()) == bert_params(TINY_BERT, head)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="max_position"):
        tiny_bert(BertForMaskedLM)(torch.zeros(1, 25, dtype=torch.long))


def test_learning_happens_mlm_beats_the_unigram_baseline():
    """Sentences from a 4-rule grammar where the masked word is predictable from its neighbours:
    after 150 steps the held-out MLM loss must be well below the unigram (context-free) loss
    (3.6 nats here; the ideal model, which knows k from a neighbour, is far lower)."""
    from llmcourse.train import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    # vocabulary: 0-4 special (pad, unk, cls, sep, mask); "subject k" (5..14) is always followed by "verb k"
    # (15..24) and then "object" (25..44) from a set that depends on k: context tells the blank.
    sp = SpecialTokens(pad=0, cls=2, sep=3, mask=4, vocab_size=45, ids=(0, 1, 2, 3, 4))

    def sentence():
        k = int(torch.randint(10, (1,), generator=g))
        return [5 + k, 15 + k, 25 + 2 * k + int(torch.randint(2, (1,), generator=g))]

    docs = [[sentence() for _ in range(6)] for _ in range(60)]
    train_docs, val_docs = docs[:50], docs[50:]
    cfg = BertConfig(
        vocab_size=45, max_position=20, n_layer=2, n_head=2, n_embd=32, intermediate=64, dropout=0.0
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg)
    train = pretraining_batches(train_docs, batch_size=16, max_len=20, special=sp, nsp=False)
    val = fixed_batches(pretraining_batches(val_docs, 16, 20, special=sp, nsp=False), 4)
    tc = TrainConfig(
        max_steps=150,
        lr=1e-2,
        warmup_steps=10,
        eval_every=0,
        eval_batches=2,
        ckpt_every=0,
        weight_decay=0.0,
    )
    fit(model, train, tc, runtime=detect("cpu"), progress=False)
    train_ids = [t for d in train_docs for s in d for t in s]
    base = unigram_baseline(train_ids, val, vocab_size=45, special=sp)
    got = mlm_accuracy(model, val)
    assert got["mlm_loss"] < base["mlm_loss"] - 0.8, (got, base)
    assert got["mlm_accuracy"] > base["mlm_accuracy"] + 0.05, (got, base)


def test_exercise_accepts_a_correct_count_and_rejects_a_missing_pooler():
    from llmcourse.course import exercises

    def mine(V, P, L, C, I):  # noqa: E741 (the exercise's own names)
        return (
            (V + P + 2) * C
            + 2 * C
            + L * (4 * C * C + 4 * C + 2 * C * I + I + C + 4 * C)
            + C * C
            + C
        )

    exercises.check("07.bert_encoder_params", mine, seed=0)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check(
            "07.bert_encoder_params",
            lambda V, P, L, C, I: mine(V, P, L, C, I) - C * C - C,  # noqa: E741
            seed=0,
        )
