"""SmolLM2-135M in our Llama vs Hugging Face's LlamaForCausalLM: decoding and prefill speed side by side.

    python benchmarks/bench_llama.py [--device cpu|cuda] [--threads 1] [--new-tokens 128] [--repeats 5]

Both models hold the same dequantized weights of the offline GGUF file (Hugging Face loads it with
`gguf_file=`; ours is converted from that model, so the comparison is of code, not of weights).
Greedy, batch size 1, fp32. Each repeat times ours and theirs back to back and keeps the ratio, so
a slow moment of a shared machine hits both; the medians are reported. Target (issue 14): our cached
decoding >= 1.0x Hugging Face `generate` in tokens/s, prefill too. It also prints the KV-cache bytes
per token next to the grouped-query formula 2 · n_layer · n_kv_head · head_dim · bytes.
`load_smollm2()` and `compare()` are the same benchmark as functions (`dev/gpu_check.py` calls them,
with a tiny random Llama in its CPU dry run); on a GPU, `--device cuda` runs both models there.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from llmcourse.generate import KVCache, generate
from llmcourse.llama_weights import llama_from_hf


def timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def load_smollm2(device: str | torch.device, *, block_size: int):
    """SmolLM2-135M-Instruct from the offline GGUF file: (ours, Hugging Face's model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.data import data_path

    path = data_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    ours = llama_from_hf(hf, block_size=block_size).to(device).eval()
    return ours, hf.to(device), tok


def compare(
    ours,
    hf,
    prompt: torch.Tensor,
    *,
    new_tokens: int = 128,
    prefill_tokens: int = 512,
    repeats: int = 5,
    pad_token_id: int = 0,
) -> dict:
    """Greedy decoding and prefill, ours vs `hf.generate`, on the models' device; tokens/s medians.

    `prompt` (1, T) starts the decoding; prefill runs on `prefill_tokens` random tokens and makes one.
    Each repeat times both back to back (who goes first alternates) and keeps the ratio. `identical`
    is False if the two ever chose different tokens. HF's end-of-sequence token is switched off so
    that both make exactly `new_tokens` tokens.
    """
    device = next(ours.parameters()).device
    hf.generation_config.eos_token_id = None
    long_prompt = torch.randint(
        0, ours.cfg.vocab_size, (1, prefill_tokens), generator=torch.Generator().manual_seed(0)
    ).to(device)
    prompt = prompt.to(device)

    def ours_decode(ids, n):
        return generate(ours, ids, n, temperature=0.0)

    def hf_decode(ids, n):
        return hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=pad_token_id,
        )

    identical = True
    rows = {"decode": ([], []), "prefill": ([], [])}
    with torch.no_grad():
        ours_decode(prompt, 4), hf_decode(prompt, 4)  # warm-up: allocations, kernel choice
        for r in range(repeats):
            order = (0, 1) if r % 2 == 0 else (1, 0)  # who goes first alternates
            for name, ids, n, per in (
                ("decode", prompt, new_tokens, new_tokens),
                ("prefill", long_prompt, 1, prefill_tokens),
            ):
                fns = (lambda: ours_decode(ids, n), lambda: hf_decode(ids, n))
                results = {i: timed(fns[i], device) for i in order}
                identical &= torch.equal(results[0][1], results[1][1])
                for i in (0, 1):
                    rows[name][i].append(per / results[i][0])
    out = {"device": str(device), "prompt_tokens": prompt.shape[1], "identical": identical}
    for name, (o, h) in rows.items():
        ratios = [a / b for a, b in zip(o, h)]
        out[name] = {
            "tokens": new_tokens if name == "decode" else prefill_tokens,
            "ours_tok_s": statistics.median(o),
            "hf_tok_s": statistics.median(h),
            "ours_over_hf": statistics.median(ratios),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0 = leave torch's default)"
    )
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    block = args.prefill_tokens + args.new_tokens + 64
    ours, hf, tok = load_smollm2(device, block_size=block)
    cfg = ours.cfg
    chat = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
    prompt = tok.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    print(
        f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to fp32), {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    r = compare(
        ours,
        hf,
        prompt,
        new_tokens=args.new_tokens,
        prefill_tokens=args.prefill_tokens,
        repeats=args.repeats,
        pad_token_id=tok.eos_token_id,
    )
    assert r["identical"], "greedy tokens differ between ours and HF"
    print(f"\n{'':28}{'ours tok/s':>12}{'HF tok/s':>12}{'ours / HF':>11}")
    for name, label in (
        ("decode", f"decode ({r['prompt_tokens']}-token prompt, {args.new_tokens} new)"),
        ("prefill", f"prefill ({args.prefill_tokens} tokens)"),
    ):
        x = r[name]
        print(
            f"{label:28}{x['ours_tok_s']:12.1f}{x['hf_tok_s']:12.1f}{x['ours_over_hf']:10.3f}x"
            f"   (pairs: {x['min_ratio']:.3f}x - {x['max_ratio']:.3f}x)"
        )

    cache = KVCache.for_model(ours, batch_size=1, max_len=1)
    formula = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 4
    mha = 2 * cfg.n_layer * cfg.n_head * cfg.head_dim * 4
    print(
        f"\nKV cache per token: {cache.nbytes():,} bytes measured; 2 · n_layer · n_kv_head · head_dim · 4 B "
        f"= 2 · {cfg.n_layer} · {cfg.n_kv_head} · {cfg.head_dim} · 4 = {formula:,} B "
        f"(with {cfg.n_head} kv heads, as in multi-head attention: {mha:,} B, {cfg.n_head // cfg.n_kv_head}x more)"
    )
    assert cache.nbytes() == formula


if __name__ == "__main__":
    main()
