"""The DeepSpeed ZeRO config written from TrainConfig: mapped field by field, checked by DeepSpeed."""

import json

import pytest
import torch

from llmcourse import deepspeed_config as dsc
from llmcourse.train import TrainConfig, lr_at

CFG = TrainConfig(max_steps=100, warmup_steps=10, grad_accum_steps=2, grad_clip=0.5, lr=3e-4)


def test_config_follows_train_config():
    c = dsc.ds_config(CFG, 64, 8, stage=3, precision="fp16")
    json.dumps(c)  # a JSON file, as the launcher reads it
    # 64 sequences per forward over 8 GPUs, twice per optimizer step
    assert c["train_micro_batch_size_per_gpu"] == 8 and c["gradient_accumulation_steps"] == 2
    assert "train_batch_size" not in c  # DeepSpeed derives it: 8 x 2 x number of GPUs
    assert c["gradient_clipping"] == 0.5
    assert c["optimizer"]["params"]["lr"] == 3e-4
    assert c["optimizer"]["params"]["betas"] == list(CFG.betas)
    assert c["scheduler"]["params"]["total_num_steps"] == 100
    assert c["fp16"]["enabled"] and not c["bf16"]["enabled"]
    assert c["zero_optimization"]["stage"] == 3
    fp32 = dsc.ds_config(CFG, 64, 8, precision="fp32")
    assert not fp32["fp16"]["enabled"] and not fp32["bf16"]["enabled"]
    for bad in (dict(stage=4), dict(precision="fp8")):
        with pytest.raises(ValueError):
            dsc.ds_config(CFG, 64, 8, **bad)
    with pytest.raises(ValueError, match="multiple"):
        dsc.ds_config(CFG, 60, 8)


def test_schema_snapshot_catches_unknown_keys():
    """Offline check with the field names of DeepSpeed 0.19.8 (DeepSpeed itself would skip a
    misspelt top-level key without a word)."""
    for stage in dsc.STAGES:
        dsc.check_keys(dsc.ds_config(CFG, 8, 2, stage=stage))
    good = dsc.ds_config(CFG, 8, 2)
    with pytest.raises(ValueError, match="trian_batch_size"):
        dsc.check_keys({**good, "trian_batch_size": 16})
    with pytest.raises(ValueError, match="zero_optimization.overlap_com"):
        dsc.check_keys({**good, "zero_optimization": {"stage": 3, "overlap_com": True}})
    assert {"train_batch_size", "zero_optimization", "bf16"} <= dsc.TOP_LEVEL_KEYS
    assert {"stage", "offload_optimizer"} <= dsc.ZERO_KEYS


# slow: importing deepspeed takes seconds; it comes with the pinned run only (pyproject's [references]
# extra), not with the lowest/newest profiles, which run the tests not marked slow
@pytest.mark.slow
@pytest.mark.parametrize("stage", dsc.STAGES)
def test_deepspeed_parses_the_config(stage):
    config_mod = pytest.importorskip("deepspeed.runtime.config")
    c = dsc.ds_config(CFG, 8, 1, stage=stage)  # one process: DeepSpeedConfig's world size here
    parsed = config_mod.DeepSpeedConfig(c)
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_batch_size == 8 * 2  # derived: micro 8 x accumulation 2 x 1 GPU
    assert parsed.optimizer_name == "adamw" and parsed.scheduler_name == "WarmupCosineLR"
    assert parsed.gradient_clipping == 0.5
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="overlap_com"):  # sections are checked strictly
        config_mod.DeepSpeedConfig({**c, "zero_optimization": {"stage": stage, "overlap_com": 1}})


# slow: importing deepspeed takes seconds; it comes with the pinned run only (pyproject's [references]
# extra), not with the lowest/newest profiles, which run the tests not marked slow
@pytest.mark.slow
def test_snapshot_names_exist_in_installed_deepspeed():
    pytest.importorskip("deepspeed")
    from deepspeed.runtime import constants
    from deepspeed.runtime.zero.config import ZERO_OPTIMIZATION
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    top = {v for k, v in vars(constants).items() if k.isupper() and isinstance(v, str)}
    top.add(ZERO_OPTIMIZATION)
    assert dsc.TOP_LEVEL_KEYS <= top, dsc.TOP_LEVEL_KEYS - top
    fields = DeepSpeedZeroConfig.model_fields
    zero_names = set(fields) | {f.alias for f in fields.values() if f.alias}
    assert dsc.ZERO_KEYS <= zero_names, dsc.ZERO_KEYS - zero_names


@pytest.mark.slow  # needs deepspeed (see above)
def test_deepspeed_scheduler_follows_lr_at():
    """DeepSpeed's WarmupCosineLR built from our config against the course's lr_at (hand-derived):
    the same first step (lr / W) and the same floor at the end. DeepSpeed's linear warmup heads for
    lr at step W (fit reaches it at W - 1) but its cosine starts at step W already, so it never
    uses the peak itself, and from step W on it uses the rate fit uses one step later."""
    lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    params = dsc.ds_config(CFG, 8, 1)["scheduler"]["params"]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=CFG.lr)
    sched = lr_schedules.WarmupCosineLR(optimizer, **params)
    ds_lr = []  # the engine steps the scheduler once per optimizer step, before using it
    for _ in range(CFG.max_steps + 1):
        sched.step()
        ds_lr.append(optimizer.param_groups[0]["lr"])
    W, T = CFG.warmup_steps, CFG.max_steps
    assert ds_lr[0] == pytest.approx(lr_at(0, CFG), rel=1e-9)  # lr / W
    for k in range(1, W):  # inside the warmup: between fit's previous and current step
        assert lr_at(k - 1, CFG) <= ds_lr[k] < lr_at(k, CFG)
    for k in range(W, T):  # one step ahead
        assert ds_lr[k] == pytest.approx(lr_at(k + 1, CFG), rel=1e-9), k
    assert ds_lr[T] == pytest.approx(lr_at(T, CFG), rel=1e-9)  # lr * min_lr_ratio
