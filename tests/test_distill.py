import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgepack
from edgepack.distill import kd_loss

ROOT = Path(__file__).resolve().parents[1]


def _toy(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).long()
    return x, y


def _train_teacher(x, y):
    torch.manual_seed(0)
    t = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(t.parameters(), lr=1e-2)
    for _ in range(100):
        loss = F.cross_entropy(t(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return t


def test_kd_loss_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    T, a = 3.0, 0.7
    p_t = F.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
    want = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    torch.testing.assert_close(kd_loss(s, t, y, temperature=T, alpha=a), want)
    assert float(kd_loss(t, t, None, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="labels"):
        kd_loss(s, t, None, alpha=0.5)
    with pytest.raises(ValueError, match="shape"):
        kd_loss(s, t[:, :3], y)


def test_distill_student_learns_teacher():
    x, y = _toy()
    teacher = _train_teacher(x, y)
    teacher_sd = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    hist: list[float] = []
    out = edgepack.distill(teacher, student, (x, y), epochs=6, lr=1e-2, batch_size=64,
                           progress=False, history=hist)
    assert out is student and len(hist) == 6
    assert hist[-1] < 0.7 * hist[0]
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean()
    assert agree > 0.9
    for k, v in teacher.state_dict().items():  # teacher untouched
        assert torch.equal(v, teacher_sd[k])


def test_distill_feature_hints_with_adapter_and_dataloader():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                            nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    student = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(64, 1, 6, 6)
    y = torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    hist: list[float] = []
    w0 = student[0].weight.detach().clone()
    edgepack.distill(teacher, student, loader, epochs=3, feature_pairs={"1": "1"},
                     hint_weight=0.5, progress=True, history=hist)
    assert not torch.equal(w0, student[0].weight)
    assert hist[-1] < hist[0]
    # adapters are gone, hooks removed: student is a plain model again
    assert not student[1]._forward_hooks and not teacher[1]._forward_hooks


def test_distill_bad_input():
    t = nn.Linear(4, 2)
    s = nn.Linear(4, 2)
    data = (torch.randn(8, 4), torch.randint(0, 2, (8,)))
    with pytest.raises(TypeError, match="teacher"):
        edgepack.distill("x", s, data)
    with pytest.raises(ValueError, match="temperature"):
        edgepack.distill(t, s, data, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        edgepack.distill(t, s, data, alpha=1.5)
    with pytest.raises(ValueError, match="does not exist"):
        edgepack.distill(t, s, data, feature_pairs={"nope": ""}, progress=False)
    with pytest.raises(ValueError, match="no labels"):
        edgepack.distill(t, s, [torch.randn(4, 4)], alpha=0.5, progress=False)
    edgepack.distill(t, s, [torch.randn(4, 4)], alpha=1.0, progress=False)  # unlabelled works
    with pytest.raises(TypeError, match="data"):
        edgepack.distill(t, s, 3)


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


def test_distill_ddp_two_processes(tmp_path):
    # The edgepack this process imported (installed in CI, the source tree in a dev loop).
    pkg_root = str(Path(edgepack.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=pkg_root, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           str(ROOT / "tests" / "distill_ddp_worker.py"), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sd0 = torch.load(tmp_path / "student0.pt")
    sd1 = torch.load(tmp_path / "student1.pt")
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k
    h0 = json.loads((tmp_path / "history0.json").read_text())
    h1 = json.loads((tmp_path / "history1.json").read_text())
    assert h0 == h1 and len(h0) == 4  # all-reduced epoch losses
    assert h0[-1] < h0[0]
