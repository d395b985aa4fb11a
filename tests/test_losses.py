"""NT-Xent: agrees with the direct formula and stays finite where that overflows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musicrep.losses import gather_with_grad, nt_xent, nt_xent_direct


def test_matches_direct_formula_at_paper_temperature():
    g = torch.Generator().manual_seed(0)
    for n in (4, 32, 128):
        a, b = torch.randn(n, 128, generator=g), torch.randn(n, 128, generator=g)
        stable, direct = nt_xent(a, b, 0.1), nt_xent_direct(a, b, 0.1)
        assert abs(stable.item() - direct.item()) <= 0.01 * abs(direct.item())


def test_matches_textbook_definition():
    # l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over 2N anchors
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(6, 16, generator=g, dtype=torch.float64),
        torch.randn(6, 16, generator=g, dtype=torch.float64),
    )
    z = F.normalize(torch.cat([a, b]), dim=1)
    s = z @ z.t() / 0.5
    n = 6
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        den = sum(torch.exp(s[i, k]) for k in range(2 * n) if k != i)
        total += -torch.log(torch.exp(s[i, j]) / den)
    assert torch.allclose(nt_xent(a, b, 0.5).double(), total / (2 * n), atol=1e-5)


def test_aligned_views_score_lower():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(32, 128, generator=g)
    assert nt_xent(a, a + 0.01 * torch.randn(32, 128, generator=g), 0.1) < nt_xent(
        a, torch.randn(32, 128, generator=g), 0.1
    )


def test_low_temperature_stays_finite_where_direct_overflows():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(16, 128, generator=g)
    # near-identical embeddings: every cosine is about 1, so sim / t is about 100
    a = (base[:1] + 1e-3 * base).requires_grad_()
    b = (base[:1] + 1e-3 * torch.randn(16, 128, generator=g)).requires_grad_()
    t = 0.01
    with torch.no_grad():
        z = F.normalize(torch.cat([a, b]), dim=1)
        assert torch.isinf(torch.exp(z @ z.t() / t)).any()  # exp(100) > float32 max
        assert not torch.isfinite(nt_xent_direct(a, b, t))  # the original's formula: NaN
        # in float16 even the paper's temperature overflows the direct denominator
        assert torch.isinf(torch.exp((z @ z.t() / 0.1).half()).sum(1)).all()
    loss = nt_xent(a, b, t)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad.abs().sum() > 0


def test_bf16_inputs_computed_in_float32():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(8, 128, generator=g), torch.randn(8, 128, generator=g)
    loss = nt_xent(a.bfloat16(), b.bfloat16(), 0.1)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - nt_xent(a, b, 0.1).item()) < 0.05


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


def test_loss_math_is_float32_under_bf16_autocast():
    """Under autocast the similarity matmul would run in bfloat16 even on float32
    inputs; nt_xent, MSE and BCE must give the float32 result instead."""
    from musicrep.objectives import BaselineObjective

    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(16, 128, generator=g), torch.randn(16, 128, generator=g)
    exact = nt_xent(a, b, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = F.normalize(torch.cat([a, b]), dim=1)
        assert (z @ z.t()).dtype == torch.bfloat16  # what autocast does to a plain matmul
        under = nt_xent(a, b, 0.05)
    assert under.dtype == torch.float32
    assert abs(under.item() - exact.item()) < 1e-5

    out = {
        "cf_head": torch.randn(16, 301, generator=g),
        "genre_head": torch.randn(16, 30, generator=g),
    }
    batch = {
        "cf": torch.randn(16, 301, generator=g),
        "genre_targets": (torch.rand(16, 30, generator=g) > 0.8).float(),
    }
    obj = BaselineObjective(["cf", "genre"])
    exact_terms = obj(out, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = obj({k: v.bfloat16() for k, v in out.items()}, batch)
    bf16_inputs = obj({k: v.bfloat16().float() for k, v in out.items()}, batch)
    for k in ("mse_cf", "bce_genre"):
        assert terms[k].dtype == torch.float32
        # the only difference is the rounding of the model's outputs to bf16
        assert abs(terms[k].item() - bf16_inputs[k].item()) < 1e-6
        assert abs(terms[k].item() - exact_terms[k].item()) < 1e-2
