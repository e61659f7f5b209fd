"""The Chinese edition's targets: its runs on Chinese data (notebooks/zh/, `LLMCOURSE_LANG=zh`).

A zh notebook runs its English notebook's code. Where that code reads Chinese text (the
`language_overrides` of its config: Debian's fortunes-zh at the CPU size, Chinese Wikipedia and the Tang
poems at full size), its headline is a different number and gets a row here, keyed "zh/<notebook>".
Notebooks 12, 14 and 16 share 11's Chinese tasks and meet the English rows, so they are held to
them, as are the zh notebooks that run on the English data (`targets.for_notebook`). Measured smoke
values: docs/smoke_measured.json, under the same keys.
"""

from __future__ import annotations

from llmcourse.course.targets import Target

# Where nothing was measured at full size, the full-size target repeats the smoke target: a bigger
# corpus and model should at least do as well (`measured_full` stays "" until a run says more).
TARGETS_ZH: tuple[Target, ...] = (
    Target(
        "zh/01_ngram",
        "best_kn_val_ppl",
        "",
        False,
        "the best add-k (k = 0.01) model, n = 1…4, on the same held-out Chinese characters (fortunes-zh)",
        260.0,
        260.0,
        vs="best_addk_val_ppl",
        margin=200.0,
        full_on="a CPU",
    ),
    Target(
        "zh/02_word_vectors",
        "skipgram_word_groups",
        "",
        True,
        "random vectors on the same Chinese word groups (jieba-segmented fortunes-zh; gensim's "
        "skip-gram is printed beside)",
        0.75,
        0.8,
        vs="random_vectors_word_groups",
        margin=0.2,
        full_on="a CPU",
    ),
    Target(
        "zh/03_rnn",
        "char_lstm_val_ppl",
        "",
        False,
        "the best Kneser–Ney character N-gram on the same held-out poems (poems-zh; 2,745 distinct "
        "characters, so a uniform guess scores 2,745)",
        210.0,
        150.0,
        vs="best_ngram_val_ppl",
        margin=10.0,
    ),
    Target(
        "zh/06_tokenization",
        "bytes_per_token",
        "bytes/token",
        True,
        "1.0 byte per token (byte-level, no merges); a Chinese character is 3 bytes in UTF-8",
        2.0,
        2.0,
        full_on="a CPU",
    ),
    Target(
        "zh/07_bert",
        "pretrained_classifier_heldout_accuracy",
        "%",
        True,
        "the same encoder fine-tuned from random weights (bag-of-characters is checked too), on the "
        "Chinese sentiment world, one token per character, held-out sentences whose sentiment "
        "characters never carry a label",
        85.0,
        85.0,
        vs="random_init_classifier_heldout_accuracy",
        margin=20.0,
        also=(("pretrained_classifier_heldout_accuracy", "bag_of_words_heldout_accuracy", 20.0),),
    ),
    Target(
        "zh/08_gpt_pretraining",
        "val_loss",
        "nats",
        False,
        "a unigram model (character frequencies) on the same validation poems (poems-zh)",
        5.4,
        5.4,
        vs="unigram_val_loss",
        margin=0.9,
    ),
    Target(
        "zh/11_sft",
        "heldout_accuracy_after_sft",
        "%",
        True,
        "the same model before SFT, on the Chinese instruction tasks (计数, 繁体 at the CPU size)",
        40.0,
        40.0,
        vs="heldout_accuracy_before_sft",
        margin=30.0,
    ),
    # DPO and GRPO on the Chinese tasks gain less than on the English ones (seeds 0-2: DPO +11 to +26
    # points, GRPO +2.3 to +5.4), so their margins are smaller than the English row's 15 and 3
    Target(
        "zh/13_dpo",
        "heldout_preference_accuracy_after_dpo",
        "%",
        True,
        "the SFT reference before DPO, on the Chinese tasks",
        65.0,
        80.0,
        vs="heldout_preference_accuracy_before_dpo",
        margin=8.0,
        also=(("heldout_sampled_accuracy_grpo", "heldout_sampled_accuracy_sft", 1.0),),
    ),
)

BY_NOTEBOOK_ZH = {t.notebook: t for t in TARGETS_ZH}
