"""DistributedDataParallel on CPU: two gloo processes under torchrun.

One launch checks three things: the all-gathered NT-Xent gives the gradient of the
loss over the global batch (the trainer's world-size scaling), also with tracks left out
of a CF term, the Trainer runs a few DDP steps on synthetic data (with some all-zero CF
rows), and both ranks end with identical weights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import torch

from tests.helpers import REPO
from tests.helpers.synth import write_synthetic_dataset


WORKER = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from musicrep.training.config import load_config, parse_overrides
    from musicrep.model.losses import gather_with_grad, nt_xent
    from musicrep.training.distributed import init_distributed
    from musicrep.training.trainer import Trainer

    cfg_path, out = sys.argv[1], sys.argv[2]
    cfg = load_config(cfg_path, parse_overrides(sys.argv[3:]), script="train.py")
    ctx = init_distributed(cfg.device)
    rank, world = ctx.rank, ctx.world_size

    # 1. gathered loss x world size, averaged over ranks == gradient on the global batch
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    xa, xb = torch.randn(2 * world, 8, generator=g), torch.randn(2 * world, 8, generator=g)
    ref_w = w.clone().requires_grad_()
    nt_xent(xa @ ref_w, xb @ ref_w, 0.1).backward()
    loc_w = w.clone().requires_grad_()
    sl = slice(2 * rank, 2 * rank + 2)
    loss = nt_xent(gather_with_grad(xa[sl] @ loc_w), gather_with_grad(xb[sl] @ loc_w), 0.1)
    (loss * world).backward()
    grad = loc_w.grad.clone()
    dist.all_reduce(grad)
    grad_ok = torch.allclose(grad / world, ref_w.grad, atol=1e-6)

    # 1b. the same with tracks without a CF vector: the objective gathers the flags too
    from musicrep.training.objectives import ContrastiveObjective
    xa, xb = torch.randn(3 * world, 8, generator=g), torch.randn(3 * world, 8, generator=g)
    known = torch.arange(3 * world) % 4 != 1
    ref_w = w.clone().requires_grad_()
    nt_xent(xa @ ref_w, xb @ ref_w, 0.1, known).backward()
    loc_w = w.clone().requires_grad_()
    sl = slice(3 * rank, 3 * rank + 3)
    obj = ContrastiveObjective([("audio", "cf")], 0.1, gather_with_grad)
    loss = obj({"audio": xa[sl] @ loc_w, "cf": xb[sl] @ loc_w}, {"cf_known": known[sl]})["loss"]
    (loss * world).backward()
    grad = loc_w.grad.clone()
    dist.all_reduce(grad)
    grad_ok = grad_ok and torch.allclose(grad / world, ref_w.grad, atol=1e-6)

    # 2. a few DDP training steps through the real Trainer
    trainer = Trainer(cfg, ctx)
    trainer.fit()
    torch.save(trainer.model.state_dict(), f"{out}/rank{rank}.pt")
    json.dump({"grad_ok": grad_ok, "uses_gather": trainer.objective.uses_gather,
               "local_batch": trainer.local_batch, "steps": trainer.global_step},
              open(f"{out}/rank{rank}.json", "w"))
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_agree(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=32, n_val=8, n_test=2, frames=280, zero_cf=3)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    overrides = [
        f"train_dataset_file={ds / 'train.h5'}",
        f"validation_dataset_file={ds / 'val.h5'}",
        f"save_dir={tmp_path / 'runs'}",
        "width=0.125",
        "batch_size=8",
        "epochs=1",
        "max_steps_per_epoch=3",
        "num_workers=0",
        "device=cpu",
        "gather_distributed=true",
        "bf16=true",  # bf16 outputs are gathered too (gloo cannot all-gather bfloat16)
        "log_interval=1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(REPO / "configs" / "contrastive_MF_gnr.json"),
        str(out),
        *overrides,
    ]
    r = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]

    info = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(i["grad_ok"] for i in info), info
    assert all(i["uses_gather"] and i["local_batch"] == 4 and i["steps"] == 3 for i in info), info
    a, b = (torch.load(out / f"rank{i}.pt", weights_only=True) for i in range(2))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    run = tmp_path / "runs" / "contrastive_MF_gnr"
    assert (run / "audio_encoder.pt").is_file() and (run / "last.pt").is_file()
