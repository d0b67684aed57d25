"""One generator step of the per-sample objective, either in one process on a whole batch or in two
gloo DDP workers on its halves; writes the parameter gradients (rank 0) to the given file.

    python ddp_step.py single OUT.pt      python ddp_step.py ddp OUT.pt

Both modes build the same model (seeded), the same batch and the same noise (flips, ε): only the
split across workers differs. The model is the spatial AutoencoderKL: GroupNorm, no BatchNorm, so each
sample's loss depends on that sample alone.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BATCH = 8
CONFIG = {
    "data": {"image_size": 16, "batch_size": BATCH, "n_train": 64, "n_val": 16},
    "model": {"kind": "spatial", "block_out_channels": [8, 16], "norm_num_groups": 4, "latent_channels": 2,
              "layers_per_block": 1, "mid_block_add_attention": False},
    "loss": {"neural": "lpips", "lam": 2.0},  # any neural term: replaced by a per-sample L1 below
    "rate": {"beta": 0.7},
}


class PerSampleL1(torch.nn.Module):
    def forward(self, x, x_hat):
        return (x_hat - x).abs().flatten(1).mean(1).mean()


class Step(torch.nn.Module):
    """DDP wraps a module's forward; this one's forward is the module's objective."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module.objective(x, 0).surrogate


def build():
    from rd_train.training.module import VAEModule

    torch.manual_seed(0)
    # float64: the two processes sum in different orders, and the test compares to float64 rounding.
    module = VAEModule(CONFIG, neural_loss=PerSampleL1()).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    flip = torch.rand(BATCH, generator=g) < 0.5
    eps = torch.randn(BATCH, *module.model.latent_shape, generator=g, dtype=torch.float64)
    return module, x, flip, eps


def gradients(module, x, flip, eps, step):
    module.draw_noise = lambda batch, index: (flip, eps)
    step(x).backward()
    return {name: p.grad.clone() for name, p in module.model.named_parameters()}


def worker(rank, world, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("DDP_TEST_PORT", "29533"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    module, x, flip, eps = build()
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    ddp = torch.nn.parallel.DistributedDataParallel(Step(module))
    grads = gradients(module, x[half], flip[half], eps[half], ddp)
    if rank == 0:
        torch.save(grads, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    if mode == "single":
        module, x, flip, eps = build()
        torch.save(gradients(module, x, flip, eps, Step(module)), out)
    else:
        mp.spawn(worker, args=(2, out), nprocs=2)
