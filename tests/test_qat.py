import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgepack import reference
from edgepack.quantize import QATConv2d, QATLinear, prepare_qat, strip_qat
from edgepack.quantize.qat import fake_quant_act_rows, fake_quant_weight_rows


def _ref_weight_q(w: np.ndarray):
    # the kernels' per-output-channel symmetric int8 rule, written with the numpy spec
    scale = (np.abs(w).max(axis=1).astype(np.float64) / 127.0).astype(np.float32)
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    q = reference.quantize_ref(w, scale[:, None], np.zeros((w.shape[0], 1), np.int32), -128, 127)
    return q.astype(np.int8), scale


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 5), (8, 64, 33), (5, 300, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_equals_reference(m, k, n, bias):
    g = torch.Generator().manual_seed(m * 1000 + k * 10 + n)
    lin = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g))
        if bias:
            lin.bias.copy_(torch.randn(n, generator=g))
    x = torch.randn(m, k, generator=g) * 3 + 0.5
    q = prepare_qat(lin)
    assert isinstance(q, QATLinear)
    y = q(x).detach().numpy()
    w_q, w_s = _ref_weight_q(lin.weight.detach().numpy())
    b = lin.bias.detach().numpy() if bias else None
    ref = reference.linear_int8_ref(x.numpy(), w_q, w_s, b)
    # integer products below 2**24 are exact in float32: the results agree bit for bit
    np.testing.assert_array_equal(y, ref)


def test_weight_and_act_quant_match_spec():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 40, generator=g)
    w[3] = 0.0  # an all-zero row takes scale 1
    wq, ws = fake_quant_weight_rows(w)
    rq, rs = _ref_weight_q(w.numpy())
    np.testing.assert_array_equal(wq.numpy().astype(np.int8), rq)
    np.testing.assert_array_equal(ws.numpy(), rs)
    x = torch.randn(9, 40, generator=g) * 5
    x[2] = x[2].abs() + 1  # all-positive row (zero point 0)
    x[4] = -x[4].abs() - 1  # all-negative row (zero point 255)
    a_c, a_s = fake_quant_act_rows(x)
    a, s, z = reference.dynamic_quant_rows_ref(x.numpy())
    np.testing.assert_array_equal(a_s.numpy(), s)
    np.testing.assert_array_equal(a_c.numpy().astype(np.int64), a.astype(np.int64) - z[:, None])


def test_large_k_within_fp32_rounding():
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(2048, 6)
    x = torch.randn(4, 2048, generator=g)
    y = prepare_qat(lin)(x).detach().numpy()
    w_q, w_s = _ref_weight_q(lin.weight.detach().numpy())
    ref = reference.linear_int8_ref(x.numpy(), w_q, w_s, lin.bias.detach().numpy())
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_gradients_flow_straight_through():
    g = torch.Generator().manual_seed(2)
    lin = nn.Linear(12, 4)
    q = prepare_qat(lin)
    x = torch.randn(6, 12, generator=g, requires_grad=True)
    q(x).pow(2).sum().backward()
    assert q.weight.grad is not None and q.bias.grad is not None
    assert torch.count_nonzero(q.weight.grad) > 0 and torch.isfinite(q.weight.grad).all()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    # STE: the gradient is that of the float linear evaluated at the fake-quantized values
    y = q(x.detach())
    gy = 2 * y.detach()
    a_c, a_s = fake_quant_act_rows(x.detach())
    x_fq = a_c * a_s[:, None]
    np.testing.assert_allclose(q.weight.grad.numpy(), gy.t().numpy() @ x_fq.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_qat_training_reduces_loss():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, :3].sum(1) > 0).long()
    model = prepare_qat(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_conv_forward_matches_im2col_reference():
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 9, 7, generator=g)
    q = prepare_qat(conv, conv_activations="per_row")
    assert isinstance(q, QATConv2d)
    y = q(x).detach()
    cols = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 27).numpy()
    w_q, w_s = _ref_weight_q(conv.weight.detach().reshape(5, -1).numpy())
    ref = reference.linear_int8_ref(cols, w_q, w_s, conv.bias.detach().numpy())
    ref = torch.from_numpy(ref).reshape(2, -1, 5).transpose(1, 2).reshape(y.shape)
    assert torch.equal(y, ref)
    # close to the float conv
    assert (y - conv(x)).abs().max() < 0.05 * conv(x).abs().max()


def test_conv_per_image_matches_spec():
    # QuantConv2d's per-image spec: s, z from the image's range; a = quantize(pad(x)); integer
    # sums over the receptive field; y = acc * float32(s * w_scale) + bias
    g = torch.Generator().manual_seed(5)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 5, generator=g) + 0.3
    y = prepare_qat(conv)(x).detach()
    a, s, z = reference.dynamic_quant_rows_ref(x.reshape(2, -1).numpy())
    a_c = torch.from_numpy(a.astype(np.float32) - z[:, None].astype(np.float32)).reshape(x.shape)
    cols = F.unfold(a_c, 3, padding=1).transpose(1, 2).reshape(-1, 27).numpy().astype(np.int64)
    w_q, w_s = _ref_weight_q(conv.weight.detach().reshape(4, -1).numpy())
    acc = reference.gemm_s32_ref(cols, w_q, 0)
    ref = reference.epilogue_ref(acc, np.repeat(s, 30), w_s, conv.bias.detach().numpy(), False)
    ref = torch.from_numpy(ref).reshape(2, -1, 4).transpose(1, 2).reshape(y.shape)
    assert torch.equal(y, ref)


def test_prepare_copies_and_strip_restores():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                          nn.Conv2d(4, 4, 3, groups=2))
    q = prepare_qat(model)
    assert type(model[0]) is nn.Conv2d and type(model[3]) is nn.Linear  # input untouched
    assert isinstance(q[0], QATConv2d) and isinstance(q[3], QATLinear)
    assert type(q[4]) is nn.Conv2d  # grouped conv stays fp32
    assert q.state_dict().keys() == model.state_dict().keys()
    s = strip_qat(q)
    assert type(s[0]) is nn.Conv2d and type(s[3]) is nn.Linear
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(s[:4](x), model[:4](x))


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        prepare_qat("not a model")
    q = prepare_qat(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="features"):
        q(torch.randn(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        q(torch.full((1, 4), float("nan")))


@pytest.mark.parametrize("conv,gran,sparse", [(False, "per_image", "never"),
                                              (True, "per_image", "never"),
                                              (True, "per_row", "never"),
                                              (False, "per_image", "always"),
                                              (True, "per_image", "always")])
def test_deployed_model_computes_what_qat_trained(conv, gran, sparse):
    """convert_qat (strip + edgepack.compress) runs the int8 kernels: the same numbers as the
    fake-quant forward, bit for bit, because both follow reference.linear_int8_ref."""
    torch.manual_seed(4)
    if conv:
        model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3),
                              nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
        x = torch.randn(3, 2, 7, 7)
    else:
        model = nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 5))
        x = torch.randn(7, 20)
    import edgepack

    if sparse == "always":  # block-pruned, so the sparse kernels skip real zero blocks
        edgepack.prune.blocks(model, 0.7)
        edgepack.prune.remove(model)
    q = prepare_qat(model, conv_activations=gran).eval()
    deployed = edgepack.convert_qat(
        q, edgepack.CompressionConfig(conv_activations=gran, sparse=sparse))
    with torch.inference_mode():
        assert torch.equal(q(x), deployed(x))
