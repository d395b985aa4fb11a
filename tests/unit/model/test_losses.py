"""NT-Xent: agrees with the direct formula and stays finite where that overflows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musicrep.model.losses import gather_with_grad, nt_xent, nt_xent_direct


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
    from musicrep.training.objectives import BaselineObjective

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


# --- tracks without a CF vector (cf_known = 0): out of every CF term -----------------


def test_left_out_items_are_neither_anchors_positives_nor_negatives():
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(10, 32, generator=g), torch.randn(10, 32, generator=g)
    keep = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    masked = nt_xent(a, b, 0.1, keep)
    # exactly the loss of the kept items alone
    assert torch.allclose(masked, nt_xent(a[keep], b[keep], 0.1), atol=1e-6)
    # whatever the left-out items' embeddings are
    a2, b2 = a.clone(), b.clone()
    a2[~keep], b2[~keep] = 100 * torch.randn(3, 32, generator=g), a[keep][:3]
    assert torch.equal(nt_xent(a2, b2, 0.1, keep), masked)
    # all kept == no mask
    assert torch.allclose(nt_xent(a, b, 0.1, torch.ones(10, dtype=torch.bool)), nt_xent(a, b, 0.1), atol=1e-6)


def test_left_out_items_get_no_gradient_and_all_left_out_is_zero():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(8, 16, generator=g, requires_grad=True)
    b = torch.randn(8, 16, generator=g, requires_grad=True)
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1], dtype=torch.bool)
    nt_xent(a, b, 0.1, keep).backward()
    assert not a.grad[~keep].any() and not b.grad[~keep].any()
    assert a.grad[keep].abs().sum(1).min() > 0
    for n_kept in (0, 1):  # no pair at all; one pair with no negative
        a.grad = b.grad = None
        keep = torch.zeros(8, dtype=torch.bool)
        keep[:n_kept] = True
        loss = nt_xent(a, b, 0.1, keep)
        assert loss.item() == 0.0  # no term, or a positive that is the only candidate
        loss.backward()
        assert torch.isfinite(a.grad).all() and not a.grad.any() and not b.grad.any()


def _views_and_batch(seed: int, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    out = {v: torch.randn(n, 128, generator=g, requires_grad=True) for v in ("audio", "cf", "genre")}
    out["cf_head"] = torch.randn(n, 301, generator=g, requires_grad=True)
    out["genre_head"] = torch.randn(n, 30, generator=g, requires_grad=True)
    known = torch.ones(n, dtype=torch.bool)
    known[[1, 4, 5, 9]] = False
    batch = {
        "cf": torch.randn(n, 301, generator=g),
        "cf_known": known,
        "genre_targets": (torch.rand(n, 30, generator=g) > 0.8).float(),
    }
    return out, batch, known


def test_contrastive_objective_keeps_tracks_without_cf_out_of_cf_terms_only():
    from musicrep.training.objectives import ContrastiveObjective

    obj = ContrastiveObjective([("audio", "genre"), ("audio", "cf"), ("cf", "genre")])
    assert "cf_known" in obj.fields  # the dataset reads the flag
    out, batch, known = _views_and_batch(8)
    terms = obj(out, batch)
    kept = {k: v.detach()[known] for k, v in out.items()}
    assert torch.allclose(terms["ntxent_audio_cf"], nt_xent(kept["audio"], kept["cf"]), atol=1e-6)
    assert torch.allclose(terms["ntxent_cf_genre"], nt_xent(kept["cf"], kept["genre"]), atol=1e-6)
    # the genre term is unaffected: all tracks, as without the flag
    unflagged = {k: v for k, v in batch.items() if k != "cf_known"}
    assert torch.equal(terms["ntxent_audio_genre"], obj(out, unflagged)["ntxent_audio_genre"])
    assert not torch.allclose(terms["ntxent_audio_cf"], obj(out, unflagged)["ntxent_audio_cf"])

    # gradients from the CF terms do not reach the flagged tracks; the genre term's do
    cf_terms = terms["ntxent_audio_cf"] + terms["ntxent_cf_genre"]
    grads = torch.autograd.grad(cf_terms, [out["audio"], out["cf"], out["genre"]], retain_graph=True)
    assert all(not gr[~known].any() for gr in grads)
    assert all(gr[known].abs().sum(1).min() > 0 for gr in grads)
    (ga,) = torch.autograd.grad(terms["ntxent_audio_genre"], [out["audio"]])
    assert ga[~known].abs().sum(1).min() > 0

    # a batch in which no track has a CF vector: CF terms 0, the rest as usual, no NaN
    none_known = dict(batch, cf_known=torch.zeros_like(known))
    terms = obj(out, none_known)
    assert terms["ntxent_audio_cf"].item() == terms["ntxent_cf_genre"].item() == 0.0
    assert torch.isfinite(terms["loss"]) and terms["loss"] > 0
    terms["loss"].backward()
    assert all(torch.isfinite(out[v].grad).all() for v in ("audio", "cf", "genre"))
    assert not out["cf"].grad.any()


def test_baseline_objective_has_no_mse_term_for_tracks_without_cf():
    from musicrep.training.objectives import BaselineObjective

    obj = BaselineObjective(["cf", "genre"])
    assert "cf_known" in obj.fields
    out, batch, known = _views_and_batch(9)
    terms = obj(out, batch)
    assert torch.allclose(terms["mse_cf"], F.mse_loss(out["cf_head"][known], batch["cf"][known]), atol=1e-6)
    unflagged = {k: v for k, v in batch.items() if k != "cf_known"}
    assert torch.equal(terms["bce_genre"], obj(out, unflagged)["bce_genre"])
    # whatever the head predicts for them (their target is an all-zero vector)
    moved = dict(out, cf_head=torch.where(known[:, None], out["cf_head"], 50.0))
    assert torch.equal(obj(moved, batch)["mse_cf"], terms["mse_cf"])
    (grad,) = torch.autograd.grad(terms["mse_cf"], [out["cf_head"]])
    assert not grad[~known].any() and grad[known].abs().sum(1).min() > 0

    terms = obj(out, dict(batch, cf_known=torch.zeros_like(known)))
    assert terms["mse_cf"].item() == 0.0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert torch.isfinite(out["cf_head"].grad).all() and not out["cf_head"].grad.any()
