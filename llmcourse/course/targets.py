"""The course's targets: one headline per notebook, its baseline, and what it must reach at each size.

Every notebook ends its main experiment with `notebook.headline(name, value)`; where the headline is
judged against something measured in the same run (the model without attention, the unigram loss,
the model before fine-tuning) the notebook records that too, with `notebook.metric(name, value)`.
Per notebook: `metric` (the headline's name), `baseline` (in words), `smoke` (what the 2-core CPU run
in CI must reach), `full` (what a GPU run is meant to reach), optionally `vs`/`margin` (a metric of the
same run the headline must beat by `margin`), and `measured_full` (the full-size figure so far, with
hardware and date; "" = not yet). The Chinese edition's runs on Chinese data have their own rows
(llmcourse/course/targets_zh.py); its other runs are held to the English rows.

`notebook.headline` prints the row under the number; `scripts/run_course.py` and CI
(`tests/check_headlines.py`) fail when a recorded number falls short; the README's table is rendered
from it (`python scripts/targets_table.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    notebook: str  # the notebook's file stem, e.g. "04_attention"
    metric: str  # the name passed to notebook.headline
    unit: str  # "%", "nats", "x", "GB", ... ("" for a plain number)
    higher_is_better: bool
    baseline: str  # what the headline is compared with, in words
    smoke: float  # what the smoke run must reach (>= if higher_is_better, else <=)
    full: float  # what a full-size run is meant to reach
    vs: str = ""  # a metric recorded in the same run that the headline must beat ...
    margin: float = 0.0  # ... by at least this much (in the headline's unit)
    measured_full: str = ""  # the full-size figure measured so far, with hardware and date
    # where the full size is meant to run ("a CPU" for counting and calculators)
    full_on: str = "a GPU"
    # more lessons of the run: (metric, must exceed metric, by)
    also: tuple[tuple[str, str, float], ...] = ()

    def command(self) -> str:
        """The command that measures this notebook at full size."""
        zh = "--edition zh " if self.notebook.startswith("zh/") else ""  # "zh/01_ngram"
        return (
            f"bash scripts/course.sh {zh}--size full --only {self.notebook.removeprefix('zh/')[:2]}"
        )


TARGETS: tuple[Target, ...] = (
    Target(
        "00_start_here",
        "6B_inference_GB",
        "GB",
        False,
        "the notes' 12–18 GB to run a 6B model (calculator: fp16 weights + KV cache)",
        18.0,
        18.0,
        full_on="a CPU",
        measured_full="14.6 GB (a calculation: the same at both sizes)",
    ),
    Target(
        "01_ngram",
        "best_kn_val_ppl",
        "",
        False,
        "the best add-k (k = 0.01) model, n = 1…5, on the same held-out text",
        110.0,
        110.0,
        vs="best_addk_val_ppl",
        margin=50.0,
        full_on="a CPU",
        measured_full="102.9 (Kneser–Ney 3-gram on Shakespeare, 1.16M tokens; add-k 172; dev CPU, 2026-11)",
    ),
    Target(
        "02_word_vectors",
        "skipgram_word_groups",
        "",
        True,
        "random vectors on the same word groups (0.5; gensim's skip-gram is printed beside)",
        0.7,
        0.8,
        vs="random_vectors_word_groups",
        margin=0.2,
        full_on="a CPU",
    ),
    Target(
        "03_rnn",
        "char_lstm_val_ppl",
        "",
        False,
        "the best Kneser–Ney N-gram (n = 3, 5, 7) on the same lines",
        1.35,
        4.0,
        vs="best_ngram_val_ppl",
        margin=0.1,
    ),
    Target(
        "04_attention",
        "rnn_attention_exact_match",
        "%",
        True,
        "the same seq2seq without attention, on the longest third of the inputs",
        80.0,
        95.0,
        vs="rnn_no_attention_long_exact_match",
        margin=30.0,
    ),
    Target(
        "05_transformer",
        "transformer_dates_exact_match",
        "%",
        True,
        "exact match of an untrained model (0%)",
        90.0,
        98.0,
        measured_full="100.0% on 2,000 unseen dates, and on 2,000 of unseen years (5,000 steps, "
        "one CPU thread, 2 h 10 min; 2026-11)",
    ),
    Target(
        "06_tokenization",
        "bytes_per_token",
        "bytes/token",
        True,
        "1.0 byte per token (byte-level, no merges)",
        2.5,
        3.5,
        full_on="a CPU",
    ),
    Target(
        "07_bert",
        "pretrained_classifier_heldout_accuracy",
        "%",
        True,
        "the same encoder fine-tuned from random weights (bag-of-words is checked too), on held-out "
        "sentences whose sentiment words never carry a label",
        85.0,
        78.0,
        vs="random_init_classifier_heldout_accuracy",
        margin=20.0,
        also=(("pretrained_classifier_heldout_accuracy", "bag_of_words_heldout_accuracy", 20.0),),
    ),
    Target(
        "08_gpt_pretraining",
        "val_loss",
        "nats",
        False,
        "a unigram model (character frequencies) on the same validation text",
        2.3,
        1.55,
        vs="unigram_val_loss",
        margin=0.8,
    ),
    Target(
        "09_generation", "kv_cache_speedup", "x", True, "decoding without a cache (1.0x)", 1.8, 5.0
    ),
    Target(
        "10_llama",
        "heldout_accuracy_after_lora",
        "%",
        True,
        "SmolLM2-135M-Instruct before LoRA, on the same held-out questions",
        40.0,
        80.0,
        vs="heldout_accuracy_before_lora",
        margin=30.0,
        # the ladder: the Llama rung beats the GPT-2 rung trained on the same characters
        also=(("gpt2_val_loss", "llama_val_loss", 0.2),),
    ),
    Target(
        "11_sft",
        "heldout_accuracy_after_sft",
        "%",
        True,
        "the same model before SFT",
        40.0,
        80.0,
        vs="heldout_accuracy_before_sft",
        margin=30.0,
    ),
    Target(
        "12_peft",
        "best_lora_heldout_accuracy",
        "%",
        True,
        "the same extras trained with no adapter (chat-token rows + final norm)",
        60.0,
        80.0,
        vs="control_heldout_accuracy",
        margin=30.0,
    ),
    Target(
        "13_dpo",
        "heldout_preference_accuracy_after_dpo",
        "%",
        True,
        "the SFT reference before DPO",
        65.0,
        80.0,
        vs="heldout_preference_accuracy_before_dpo",
        margin=15.0,
        also=(("heldout_sampled_accuracy_grpo", "heldout_sampled_accuracy_sft", 3.0),),
    ),
    Target(
        "14_serving",
        "streamed_tokens_per_s",
        "tokens/s",
        True,
        "a floor that a working stream clears on a busy 2-core CPU (the in-process rate is printed beside)",
        100.0,
        100.0,
    ),
    Target(
        "15_prompting_rag",
        "embedding_hit_rate_at_3",
        "",
        True,
        "three chunks drawn at random (BM25 is printed beside)",
        0.7,
        0.8,
        vs="random_hit_rate_at_3",
        margin=0.4,
        full_on="a GPU (MiniLM embeddings)",
        # in-context learning: six examples beat none, and the best fixed task, on the same prompts
        also=(
            ("icl_accuracy_max_k", "majority_baseline", 0.12),
            ("icl_accuracy_max_k", "icl_accuracy_k0", 0.12),
        ),
    ),
    Target(
        "16_evaluation",
        "sft_choice_accuracy",
        "",
        True,
        "the same network before fine-tuning (chance is 0.5)",
        0.8,
        0.9,
        vs="base_choice_accuracy",
        margin=0.3,
    ),
    Target(
        "17_many_gpus",
        "zero3_GB_per_GPU",
        "GB",
        False,
        "plain data parallelism (DDP: every GPU holds all model states)",
        16.0,
        16.0,
        vs="ddp_GB_per_GPU",
        margin=90.0,
        full_on="a CPU",
        measured_full="14 GB per GPU for 7B parameters on 8 GPUs, against 112 GB with DDP (a calculation)",
    ),
    Target(
        "18_capstone",
        "heldout_em_final",
        "%",
        True,
        "SFT without continued pretraining first",
        15.0,
        50.0,
        vs="heldout_em_control",
        margin=15.0,
    ),
    Target(
        "19_multimodal",
        "prompted_digit_accuracy_guided",
        "%",
        True,
        "the same denoiser sampled without the prompt (w = 0), judged by the same independently "
        "trained CNN (chance: 10%)",
        80.0,
        90.0,
        vs="prompted_digit_accuracy_unguided",
        margin=50.0,
        # the run's other lessons: ViT over majority, CLIP over chance, captioner over no image
        also=(
            ("vit_heldout_accuracy", "majority_heldout_accuracy", 50.0),
            ("clip_zero_shot_accuracy", "chance_accuracy", 50.0),
            ("captioner_exact_match", "text_only_ceiling", 20.0),
        ),
    ),
)

BY_NOTEBOOK = {t.notebook: t for t in TARGETS}
BY_METRIC = {t.metric: t for t in TARGETS}


def for_notebook(notebook: str) -> Target | None:
    """The target of a run: "04_attention", or "zh/04_attention" for its Chinese edition, whose own
    target (llmcourse/course/targets_zh.py) applies where it runs on Chinese data, else the English one."""
    if notebook.startswith("zh/"):
        from llmcourse.course.targets_zh import BY_NOTEBOOK_ZH

        return BY_NOTEBOOK_ZH.get(notebook) or BY_NOTEBOOK.get(notebook[3:])
    return BY_NOTEBOOK.get(notebook)


def for_metric(name: str) -> Target | None:
    """The target whose headline is called `name` (headline names are unique across the course)."""
    return BY_METRIC.get(name)


def fmt(value: float, unit: str = "") -> str:
    """A number as the tables show it: 4 significant digits, thousands separated, unit attached."""
    text = f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return text if not unit else f"{text}{unit}" if unit in ("%", "x") else f"{text} {unit}"


def margin_text(t: Target) -> str:
    """'30 points above the baseline', '0.8 nats below the baseline', ... ('' without a baseline metric)."""
    amount = f"{t.margin:g} points" if t.unit == "%" else fmt(t.margin, t.unit)
    return f"{amount} {'above' if t.higher_is_better else 'below'} the baseline" if t.vs else ""


def _compare(t: Target) -> str:
    return "≥" if t.higher_is_better else "≤"


def describe(t: Target, size: str) -> str:
    """What a learner should read under the headline: the baseline, the target here, the full size."""
    target = t.smoke if size == "smoke" else t.full
    lines = [
        f"  baseline: {t.baseline}",
        f"  target at {size} size: {_compare(t)} {fmt(target, t.unit)}"
        + (f", at least {margin_text(t)} ({t.vs})" if t.vs else ""),
    ]
    for name, other, margin in t.also:
        lines.append(f"  also checked: {name} at least {margin:g} above {other}")
    if size == "smoke":
        lines.append(
            f"  what you should see at full size: target {_compare(t)} {fmt(t.full, t.unit)}; "
            + (
                f"measured: {t.measured_full}"
                if t.measured_full
                else f"not measured yet: run `{t.command()}` on {t.full_on}"
            )
        )
    return "\n".join(lines)


def meets(t: Target, value: float, size: str = "smoke") -> bool:
    """True when `value` reaches the target of `size` (NaN never does)."""
    target = t.smoke if size == "smoke" else t.full
    return math.isfinite(value) and (value >= target if t.higher_is_better else value <= target)


def _by_notebook(records: list[dict]) -> dict[str, dict[str, float]]:
    """{notebook: {metric name: value}} from the JSON-lines records (a later record of a name wins)."""
    by_notebook: dict[str, dict[str, float]] = {}
    for rec in records:  # a Chinese run's records count as "zh/<notebook>"
        lang = "" if rec.get("lang", "en") == "en" else rec["lang"] + "/"
        by_notebook.setdefault(lang + rec.get("notebook", ""), {})[rec["name"]] = float(
            rec["value"]
        )
    return by_notebook


def check(records: list[dict], notebooks: list[str], *, size: str = "smoke") -> list[str]:
    """Compare the metric records of one run with the targets; return the failures (empty = all met).

    `records` are the JSON lines `notebook.headline`/`notebook.metric` wrote; `notebooks` are the file
    stems that ran. Every notebook that ran and has a target must have recorded its headline, reach
    the target of `size`, and (where `vs` is set) beat that metric of the same notebook by `margin`.
    """
    if not notebooks:
        return ["no notebook ran, so no headline was checked"]
    by_notebook = _by_notebook(records)
    failures = []
    for nb in notebooks:
        t = for_notebook(nb)
        if t is None:
            failures.append(
                f"{nb}: no target in llmcourse.course.targets (every notebook needs one)"
            )
            continue
        got = by_notebook.get(nb, {})
        if t.metric not in got:
            failures.append(
                f"{nb}: headline {t.metric!r} was not recorded (recorded: {sorted(got) or 'nothing'})"
            )
            continue
        value = got[t.metric]
        target = t.smoke if size == "smoke" else t.full
        if not meets(t, value, size):
            failures.append(
                f"{nb}: {t.metric} = {fmt(value, t.unit)}, {size} target {_compare(t)} {fmt(target, t.unit)}"
            )
        if t.vs:
            if t.vs not in got:
                failures.append(
                    f"{nb}: baseline metric {t.vs!r} was not recorded (notebook.metric)"
                )
                continue
            gap = value - got[t.vs] if t.higher_is_better else got[t.vs] - value
            if not gap >= t.margin:
                failures.append(
                    f"{nb}: {t.metric} = {fmt(value, t.unit)} beats {t.vs} = {fmt(got[t.vs], t.unit)} "
                    f"by {gap:.4g}, {t.margin:g} needed"
                )
        for name, other, margin in t.also:
            if name not in got or other not in got:
                failures.append(
                    f"{nb}: {name!r} and {other!r} must both be recorded (notebook.metric)"
                )
            elif not got[name] - got[other] >= margin:
                failures.append(
                    f"{nb}: {name} = {got[name]:.4g} beats {other} = {got[other]:.4g} "
                    f"by {got[name] - got[other]:.4g}, {margin:g} needed"
                )
    return failures


def results(records: list[dict], notebooks: list[str], *, size: str = "smoke") -> list[dict]:
    """One row per notebook: its headline value, baseline value, target, and whether it was met."""
    by_notebook = _by_notebook(records)
    rows = []
    for nb in notebooks:
        t = for_notebook(nb)
        got = by_notebook.get(nb, {})
        value = got.get(t.metric) if t else None
        failures = check(records, [nb], size=size)
        rows.append(
            {
                "notebook": nb,
                "metric": t.metric if t else "",
                "unit": t.unit if t else "",
                "value": value,
                "baseline_value": got.get(t.vs) if t and t.vs else None,
                "target": (t.smoke if size == "smoke" else t.full) if t else None,
                "compare": _compare(t) if t else "",
                "met": not failures,
                "why": "; ".join(failures),
            }
        )
    return rows


def render_check(records: list[dict], notebooks: list[str], *, size: str = "smoke") -> str:
    """A plain-text table of `results`, for the test log and the course runner."""
    lines = [
        f"{'notebook':<20} {'headline':<40} {'value':>10} {'baseline':>10} {'target':>10}  met"
    ]
    for r in results(records, notebooks, size=size):
        value = "-" if r["value"] is None else fmt(r["value"], r["unit"])
        base = "" if r["baseline_value"] is None else fmt(r["baseline_value"], r["unit"])
        target = "" if r["target"] is None else f"{r['compare']} {fmt(r['target'], r['unit'])}"
        lines.append(
            f"{r['notebook']:<20} {r['metric']:<40} {value:>10} {base:>10} {target:>10}  "
            + ("yes" if r["met"] else "NO")
        )
    return "\n".join(lines)
