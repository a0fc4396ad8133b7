"""A small decoder-only (LLM-style) transformer that forecasts every horizon's quantiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass(frozen=True)
class TransformerSpec:
    """Shape of the model; stored beside its weights to rebuild it."""

    n_features: int
    n_horizons: int
    window_steps: int
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.0
    #: index of the feature (the last step's log return) that the linear autoregressive skip
    #: reads over the window; None: no skip
    autoregressive_feature: int | None = None
    #: whether the model holds per-horizon interval widths set after training on held-out
    #: windows (`calibrate_intervals`), added to both offsets of the median
    calibrated_intervals: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where step t attends to steps <= t only."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, steps, self.n_heads, width // self.n_heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(batch, steps, width))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.d_model)
        self.attn = CausalSelfAttention(spec.d_model, spec.n_heads, spec.dropout)
        self.norm2 = nn.LayerNorm(spec.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(spec.d_model, spec.d_ff),
            nn.GELU(),
            nn.Linear(spec.d_ff, spec.d_model),
            nn.Dropout(spec.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))  # type: ignore[no-any-return]


class CausalTransformer(nn.Module):
    """Windows (batch, L, n_features) -> quantiles (batch, n_horizons, 3), low <= mid <= high.

    The head reads the last step; it predicts the median and two softplus offsets, so the
    quantiles never cross. With `spec.autoregressive_feature`, a linear autoregressive skip
    over that feature's window (as in LSTNet's highway) is added to the median: a lagged
    linear effect needs window_steps weights per horizon there instead of being learned
    through attention from every feature, which on a few thousand rows leaves less
    estimation error. The skip and the head's median start at zero, so a model warm-started
    with `warm_start_autoregressive` begins as the linear autoregression and training adds
    only what lowers the loss on top of it.
    """

    interval_widening: torch.Tensor | None

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Linear(spec.n_features, spec.d_model)
        self.position = nn.Embedding(spec.window_steps, spec.d_model)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.n_layers))
        self.norm = nn.LayerNorm(spec.d_model)
        self.head = nn.Linear(spec.d_model, spec.n_horizons * 3)
        self.autoregressive: nn.Linear | None = None
        if spec.autoregressive_feature is not None:
            self.autoregressive = nn.Linear(spec.window_steps, spec.n_horizons, bias=False)
            nn.init.zeros_(self.autoregressive.weight)
            with torch.no_grad():  # the attention's share of the median starts at zero too
                self.head.weight[0::3].zero_()
                self.head.bias[0::3].zero_()
        if spec.calibrated_intervals:
            self.register_buffer("interval_widening", torch.zeros(spec.n_horizons))
        else:
            self.interval_widening = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        if steps > self.spec.window_steps:
            raise ValueError(f"window of {steps} steps exceeds {self.spec.window_steps}")
        positions = torch.arange(self.spec.window_steps - steps, self.spec.window_steps)
        h = self.embed(x) + self.position(positions.to(x.device))
        for block in self.blocks:
            h = block(h)
        out = self.head(self.norm(h[:, -1])).unflatten(-1, (self.spec.n_horizons, 3))
        median = out[..., 0]
        if self.autoregressive is not None:
            lagged = x[..., self.spec.autoregressive_feature]
            median = median + lagged @ self.autoregressive.weight[:, -steps:].T
        below, above = F.softplus(out[..., 1]), F.softplus(out[..., 2])
        if self.interval_widening is not None:
            below = (below + self.interval_widening).clamp(min=0.0)
            above = (above + self.interval_widening).clamp(min=0.0)
        lower, upper = median - below, median + above
        return torch.stack([lower, median, upper], dim=-1)


def build_transformer(spec: TransformerSpec, seed: int) -> CausalTransformer:
    """A freshly initialised model; the same seed gives identical weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CausalTransformer(spec)


def warm_start_autoregressive(
    model: CausalTransformer, windows: torch.Tensor, targets: torch.Tensor, alpha: float
) -> None:
    """Set the autoregressive skip to the ridge fit of `targets` (n, n_horizons) on the skip
    feature's `windows` (n, window_steps, n_features): training then starts from the linear
    autoregression and the attention learns what it leaves. No-op without a skip."""
    if model.autoregressive is None or len(windows) == 0:
        return
    x = windows[..., model.spec.autoregressive_feature].double()
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, x.T @ targets.double())  # (window_steps, n_horizons)
    with torch.no_grad():
        model.autoregressive.weight.copy_(weight.T.to(model.autoregressive.weight.dtype))


def calibrate_intervals(
    model: CausalTransformer, windows: torch.Tensor, targets: torch.Tensor, coverage: float
) -> None:
    """Conformalised quantile regression on held-out windows: set each horizon's widening to
    the finite-sample `coverage` quantile of max(lower - y, y - upper), so that the interval
    covers `coverage` of those windows (the training loss alone leaves it too narrow where
    the model fits its train split closer than new data). No-op without calibrated intervals."""
    if model.interval_widening is None or len(windows) == 0:
        return
    model.interval_widening.zero_()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(windows)
    model.train(was_training)
    scores = torch.maximum(out[..., 0] - targets, targets - out[..., 2])  # (n, n_horizons)
    n = scores.shape[0]
    level = min(1.0, coverage * (n + 1) / n)
    widening = torch.quantile(scores.double(), level, dim=0, interpolation="higher")
    model.interval_widening.copy_(widening.to(model.interval_widening.dtype))
