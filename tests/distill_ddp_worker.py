"""Run by tests/test_distill.py under torchrun (2 processes, gloo, localhost)."""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

import edgepack


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = (x[:, 0] + x[:, 1] > 0).long()
    teacher = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(100):
        loss = nn.functional.cross_entropy(teacher(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # different initial students per rank: DDP must broadcast rank 0's weights
    torch.manual_seed(100 + rank)
    student = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    history: list[float] = []
    edgepack.distill(teacher, student, torch.utils.data.TensorDataset(x, y), epochs=4,
                     batch_size=32, lr=1e-2, progress=False, history=history,
                     feature_pairs={"1": "1"})
    torch.save(student.state_dict(), os.path.join(out_dir, f"student{rank}.pt"))
    with open(os.path.join(out_dir, f"history{rank}.json"), "w") as f:
        json.dump(history, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
