"""A PyTorch trainer as AI Platform ran it: torch.distributed from the environment variables the
service sets on every trainer replica (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK), gloo on CPU.

Each rank all-reduces (rank + 1); the primary (rank 0) checks the sum and writes
<job-dir>/torch.json. One step of DistributedDataParallel shows gradients are averaged.
"""
import argparse
import json
import os
import sys

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job-dir", default="")
    args, _ = p.parse_known_args()
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    x = torch.full((8, 4), float(rank))
    model(x).sum().backward()
    grad = model.module.weight.grad.clone()
    print(f"rank {rank}/{world}: all_reduce {t.item()}, grad {grad.tolist()}", flush=True)
    if rank == 0:
        expect = world * (world + 1) / 2
        if args.job_dir:
            os.makedirs(args.job_dir, exist_ok=True)
            with open(os.path.join(args.job_dir, "torch.json"), "w") as f:
                json.dump({"world_size": world, "all_reduce": t.item(), "grad": grad.tolist()}, f)
        if t.item() != expect:
            sys.exit(f"all_reduce gave {t.item()}, expected {expect}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
