"""The counting task and its tiny model, shared by the training-loop tests (test_train.py) and the
resume tests (test_resume.py, test_checkpoint.py): a sequence 0,1,2,...,7,0,1,... whose next token is
(token + 1) mod V, learnt by an embedding, a LayerNorm, dropout and a linear head.

Dropout and random batch offsets make the task sensitive to every RNG state, which is what the exact
resume tests need; its determinism lets the loss fall far below the uniform guess ln V.
"""

import torch
import torch.nn.functional as F
from torch import nn

from llmcourse.runtime import Runtime, detect
from llmcourse.train import TrainConfig

V = 8  # vocabulary of the toy task
CPU = detect("cpu")


# fp16 with a GradScaler is what a T4 runs; CPU autocast in float16 stands in for it here
FP16 = Runtime(
    device=torch.device("cpu"),
    dtype=torch.float16,
    platform="local",
    device_name="CPU, fp16 autocast",
)


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> dropout -> linear head; the course's (idx, targets) -> (logits, loss)."""

    def __init__(self, dropout: float = 0.2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.tok_emb = nn.Embedding(V, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(16, V)

    def forward(self, idx, targets=None):
        logits = self.lm_head(self.drop(self.norm(self.tok_emb(idx))))  # (B, T, V)
        loss = (
            None if targets is None else F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        )
        return logits, loss


def counting_sampler(batch_size: int = 8, T: int = 6, as_dict: bool = False):
    """Windows of 0,1,2,...,7,0,1,... at random offsets: the next token is (token + 1) mod V."""

    def sample(generator):
        start = torch.randint(0, V, (batch_size, 1), generator=generator)
        seq = (start + torch.arange(T + 1)) % V  # (B, T+1)
        idx, targets = seq[:, :-1], seq[:, 1:]
        return {"idx": idx, "targets": targets} if as_dict else (idx, targets)

    return sample


def small_cfg(**changes) -> TrainConfig:
    base = dict(
        max_steps=12,
        lr=0.02,
        warmup_steps=2,
        eval_every=3,
        eval_batches=2,
        ckpt_every=4,
        log_every=1,
        seed=5,
        precision="fp32",
        grad_clip=1.0,
    )
    return TrainConfig(**{**base, **changes})
