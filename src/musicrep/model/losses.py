"""Contrastive loss and the all-gather that lets it see the global batch under DDP.

NT-Xent (SimCLR): for two views a, b of the same N items, the 2N embeddings are
L2-normalised, every pair is compared by cosine similarity / temperature, and each
embedding must pick its counterpart in the other view among the other 2N - 1
(itself excluded). The original code takes exp() of the similarities and divides;
with cos = 1 and temperature 0.01 that is exp(100), past float32's range, so it turns
into inf / inf = NaN. Written as a cross-entropy over logits, the same loss goes
through logsumexp, which subtracts the row maximum first and never overflows.

Loss math is float32 under bf16 autocast too: autocast would otherwise run the (2N, 2N)
similarity matmul in bfloat16 (8 bits of mantissa, about 2-3 significant digits)
even on float32 inputs, and dividing by a temperature of 0.1 or less scales its error
by 10x or more. `float32_math` turns autocast off for that part.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def float32_math(x: torch.Tensor) -> torch.autocast:
    """A context in which autocast is off on x's device: ops run in the dtype of their
    inputs, so float32 inputs give float32 math (cast them first)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def nt_xent(
    a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """NT-Xent between two (N, d) views; a scalar averaged over all 2N anchors
    (that is, over both directions a->b and b->a).

    keep: (N,) bool, None for all. An item with False takes no part at all: it is
    neither an anchor nor anyone's positive or negative (a track without a CF vector in
    a CF term). The loss is then exactly that of the M kept items alone, averaged over
    their 2M anchors; 0 (with a graph, zero gradients) when none is kept. Under DDP pass
    the gathered keep with the gathered views: every rank then averages over the same
    global set of anchors, which the trainer's world-size scaling relies on."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"nt_xent needs two (N, d) tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if keep is not None and keep.shape != (a.shape[0],):
        raise ValueError(f"nt_xent keep must be ({a.shape[0]},), got {tuple(keep.shape)}")
    n = a.shape[0]
    # float32 even under bf16 autocast: the logits are divided by a small temperature.
    with float32_math(a):
        z = F.normalize(torch.cat([a, b]).float(), dim=1)  # (2N, d)
        logits = (z @ z.t()) / temperature  # (2N, 2N)
        self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_pair, float("-inf"))  # never its own negative
        idx = torch.arange(n, device=z.device)
        target = torch.cat([idx + n, idx])  # row i of a -> row i of b, and back
        if keep is None:
            return F.cross_entropy(logits, target)
        kept = torch.cat([keep, keep]).bool()  # (2N,)
        # A left-out item is nobody's candidate. The fill is finite, not -inf, so the
        # rows of left-out anchors stay finite (no NaN through their zero weight below);
        # exp(fill - row max) underflows to exactly 0, as if the column were absent.
        logits = logits.masked_fill(~kept[None, :], torch.finfo(logits.dtype).min)
        per_anchor = F.cross_entropy(logits, target, reduction="none")  # (2N,)
        per_anchor = torch.where(kept, per_anchor, torch.zeros_like(per_anchor))
        return per_anchor.sum() / kept.sum().clamp(min=1)  # mean over kept anchors


def nt_xent_direct(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The same loss written the way the original code does (exp, then divide, + 1e-5
    in the log). Kept only as a reference for tests: it overflows at low temperature."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = torch.exp((z @ z.t()) / temperature)  # (2N, 2N)
    not_self = ~torch.eye(2 * n, dtype=torch.bool, device=z.device)
    denom = (sim * not_self).sum(1)  # (2N,)
    idx = torch.arange(n, device=z.device)
    pos = sim[torch.arange(2 * n, device=z.device), torch.cat([idx + n, idx])]
    return -torch.log(pos / denom + 1e-5).mean()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from all ranks (rank order) -> (world * N, d) float32; identity when
    not distributed. Only this rank's slice carries gradient; the trainer scales the loss
    by the world size so that DDP's gradient average equals the gradient of the loss
    over the global batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    # float32: under bf16 autocast x is bfloat16, which the loss would cast anyway, and
    # which gloo (CPU) cannot all-gather (the process aborts).
    x = x.float()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x  # put the local tensor back, with its graph
    return torch.cat(parts)
