from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import edgepack
from _models import Residual, max_rel_err, mlp, mnist_cnn, randomize_bn
from edgepack import CompressionConfig, reference
from edgepack.nn import QuantConv2d, QuantEmbedding, QuantLinear, _backend
from edgepack.quantize import quantize_weight


def _wq(mod: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    w = mod.weight.detach()
    q, s = quantize_weight(w.reshape(w.shape[0], -1))
    return q.numpy(), s.numpy()


# ---------------------------------------------------------------- modules vs the reference


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_quant_linear_equals_reference(relu, bias):
    torch.manual_seed(0)
    lin = nn.Linear(37, 19, bias=bias)
    q = QuantLinear.from_float(lin, relu=relu, sparse="never")
    x = torch.randn(2, 3, 37) * 3
    with torch.inference_mode():
        y = q(x)
    w_q, s = _wq(lin)
    b = None if lin.bias is None else lin.bias.detach().numpy()
    ref = reference.linear_int8_ref(x.reshape(-1, 37).numpy(), w_q, s, b, relu)
    assert y.shape == (2, 3, 19) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.reshape(-1, 19).numpy(), ref)
    with torch.no_grad():
        assert torch.equal(q(x[0, 0]), y[0, 0])  # 1-D input
    assert max_rel_err(y, F.relu(lin(x)) if relu else lin(x)) < 0.02


def test_quant_linear_static_equals_reference():
    torch.manual_seed(1)
    lin = nn.Linear(24, 10)
    a_scale, a_zp = 0.03, 117
    q = QuantLinear.from_float(lin, relu=True, act_qparams=(a_scale, a_zp))
    x = torch.randn(5, 24) * 2
    y = q(x)
    w_q, s = _wq(lin)
    a = reference.quantize_ref(x.numpy(), np.float32(a_scale), np.int32(a_zp), 0, 255)
    acc = reference.gemm_s32_ref(a, w_q, a_zp)
    ref = reference.epilogue_ref(acc, np.full(5, a_scale, np.float32), s,
                                 lin.bias.detach().numpy(), True)
    np.testing.assert_array_equal(y.numpy(), ref)
    # +-inf saturates like edgepack.quantize; NaN is an error
    x[0, 0], x[1, 1] = float("inf"), float("-inf")
    a = reference.quantize_ref(x.numpy(), np.float32(a_scale), np.int32(a_zp), 0, 255)
    ref = reference.epilogue_ref(reference.gemm_s32_ref(a, w_q, a_zp), np.full(5, a_scale,
                                 np.float32), s, lin.bias.detach().numpy(), True)
    np.testing.assert_array_equal(q(x).numpy(), ref)
    x[2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        q(x)


def _conv_ref(conv: nn.Conv2d, q: QuantConv2d, x: torch.Tensor,
              act: tuple[float, int] | None = None) -> np.ndarray:
    """The QuantConv2d spec in numpy: per image uint8 range, quantize the padded NHWC image,
    im2col in (kh, kw, C) order, exact int GEMM, epilogue_ref. Returns NHWC float32."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    w = conv.weight.detach().permute(0, 2, 3, 1).reshape(conv.out_channels, -1)
    w_q, s_w = (t.numpy() for t in quantize_weight(w))
    b = None if conv.bias is None else conv.bias.detach().numpy()
    out = []
    for img in x:
        xi = img.numpy()[None]
        if act is None:
            s, z = reference.qparams_uint8_asym_ref(np.array([xi.min()]), np.array([xi.max()]))
        else:
            s, z = np.array([act[0]], np.float32), np.array([act[1]], np.int32)
        xp = F.pad(torch.from_numpy(xi), q.pads, mode=mode)[0].permute(1, 2, 0).numpy()
        a = reference.quantize_ref(xp, s, z, 0, 255)  # [H, W, C]
        kh, kw = q.kernel_size
        (sh, sw), (dh, dw) = q.stride, q.dilation
        oh = (a.shape[0] - dh * (kh - 1) - 1) // sh + 1
        ow = (a.shape[1] - dw * (kw - 1) - 1) // sw + 1
        rows, cols_ = np.arange(kh)[:, None] * dh, np.arange(kw)[None, :] * dw
        cols = np.stack([a[i * sh + rows, j * sw + cols_].reshape(-1)
                         for i in range(oh) for j in range(ow)])
        acc = reference.gemm_s32_ref(cols, w_q, int(z[0]))
        y = reference.epilogue_ref(acc, np.full(len(cols), s[0], np.float32), s_w, b,
                                   q.linear.relu)
        out.append(y.reshape(oh, ow, -1))
    return np.stack(out)


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3),
    dict(kernel_size=3, padding=1, stride=2),
    dict(kernel_size=(2, 3), padding="same", dilation=2, padding_mode="reflect"),
    dict(kernel_size=1, bias=False),
])
def test_quant_conv_equals_im2col_reference(kw):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, **kw)
    q = QuantConv2d.from_float(conv, sparse="never")
    x = torch.randn(2, 3, 9, 8)
    if "padding" in kw:
        x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref_fp = conv(x)
        y = q(x)
    assert y.shape == ref_fp.shape
    ref = _conv_ref(conv, q, x)
    np.testing.assert_array_equal(y.permute(0, 2, 3, 1).numpy(), ref)
    assert max_rel_err(y, ref_fp) < 0.03
    assert torch.equal(q(x[1]), y[1])  # unbatched input


@pytest.mark.parametrize("cin,cout,hw,kw", [
    (32, 64, 13, dict(kernel_size=3)),  # the MNIST CNN's middle conv, native one-call path
    (4, 7, 11, dict(kernel_size=(3, 2), stride=(2, 1), dilation=(1, 3))),
])
def test_quant_conv_native_path_equals_reference(cin, cout, hw, kw):
    torch.manual_seed(5)
    conv = nn.Conv2d(cin, cout, **kw)
    q = QuantConv2d.from_float(conv, sparse="never")
    x = torch.randn(3, cin, hw, hw + 1)
    with torch.no_grad():
        y = q(x)
        y1 = q(x[:1])
    np.testing.assert_array_equal(y.permute(0, 2, 3, 1).numpy(), _conv_ref(conv, q, x))
    assert torch.equal(y1, y[:1])
    assert y.data_ptr() != y1.data_ptr()  # every call returns fresh memory


def test_quant_conv_per_row_granularity_equals_reference():
    torch.manual_seed(13)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    q = QuantConv2d.from_float(conv, sparse="never", act_granularity="row")
    x = torch.randn(2, 3, 7, 6)
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).numpy()
    cols = np.stack([xp[b, i:i + 3, j:j + 3].reshape(-1)
                     for b in range(2) for i in range(7) for j in range(6)])
    w_q, s = (t.numpy() for t in quantize_weight(conv.weight.detach().permute(0, 2, 3, 1)
                                                 .reshape(5, -1)))
    ref = reference.linear_int8_ref(cols, w_q, s, conv.bias.detach().numpy())
    np.testing.assert_array_equal(q(x).permute(0, 2, 3, 1).reshape(-1, 5).numpy(), ref)
    c = edgepack.compress(nn.Sequential(conv), CompressionConfig(conv_activations="per_row"))
    assert c[0].act_granularity == "row" and torch.equal(c[0](x), q(x))


def test_quant_conv_static_relu_equals_reference():
    torch.manual_seed(12)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2)
    act = (0.02, 100)
    q = QuantConv2d.from_float(conv, relu=True, act_qparams=act)
    x = torch.randn(3, 4, 11, 10) * 2  # partly outside the calibrated range: saturates
    np.testing.assert_array_equal(q(x).permute(0, 2, 3, 1).numpy(), _conv_ref(conv, q, x, act))


def test_quant_embedding_dequantizes_exactly():
    torch.manual_seed(3)
    emb = nn.Embedding(50, 12, padding_idx=0)
    q = QuantEmbedding.from_float(emb)
    idx = torch.tensor([[0, 3, 49], [7, 7, 1]])
    w_q, s = _wq(emb)
    ref = edgepack.dequantize(torch.from_numpy(w_q), torch.from_numpy(s), 0, axis=0)[idx]
    assert torch.equal(q(idx), ref)
    assert max_rel_err(q(idx), emb(idx)) < 0.01
    with pytest.raises(IndexError):
        q(torch.tensor([50]))
    with pytest.raises(IndexError, match="out of range"):
        q(torch.tensor([[1, -1]]))


def test_module_input_errors():
    q = QuantLinear.from_float(nn.Linear(8, 4))
    with pytest.raises(ValueError, match="expected \\[..., 8\\]"):
        q(torch.randn(3, 7))
    with pytest.raises(TypeError, match="floating point"):
        q(torch.ones(3, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="meta"):
        q(torch.randn(3, 8, device="meta"))
    c = QuantConv2d.from_float(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="expected"):
        c(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        c(torch.randn(1, 3, 2, 2))
    assert q(torch.zeros(0, 8)).shape == (0, 4)


# ---------------------------------------------------------------- compress


def test_compress_mlp_same_class_and_input_untouched():
    torch.manual_seed(4)
    m = mlp().train()
    before = copy.deepcopy(m.state_dict())
    c = edgepack.compress(m)
    assert type(c) is nn.Sequential and not c.training and m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert [type(x) for x in c] == [QuantLinear, nn.Identity, nn.Identity, QuantLinear, nn.GELU,
                                    QuantLinear]
    assert c[0].relu and not c[3].relu
    x = torch.randn(16, 32)
    with torch.no_grad():
        assert max_rel_err(c(x), m.eval()(x)) < 0.03
    rep = c.edgepack_report_
    assert set(rep["quantized"]) == {"0", "3", "5"} and rep["relu_fused"] == ["0"]


def test_compress_mnist_cnn_close_to_fp32():
    torch.manual_seed(5)
    m = mnist_cnn().eval()
    c = edgepack.compress(m)
    kinds = [type(x).__name__ for x in c]
    assert kinds.count("QuantConv2d") == 3 and kinds.count("QuantLinear") == 2
    assert c.edgepack_report_["relu_fused"] == ["0", "3", "6", "9"]
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        ref, got = m(x), c(x)
    assert max_rel_err(got, ref) < 0.03
    assert (got.argmax(1) == ref.argmax(1)).float().mean() >= 0.75
    # the last layer alone equals the reference on its own input
    with torch.no_grad():
        feats = c[:11](x)
    w_q, s = _wq(m[11])
    np.testing.assert_array_equal(
        got.numpy(),
        reference.linear_int8_ref(feats.numpy(), w_q, s, m[11].bias.detach().numpy(), False),
    )


def test_compress_keeps_user_methods_and_bn_folds():
    torch.manual_seed(6)
    m = Residual().eval()
    randomize_bn(m)
    x = torch.randn(6, 16)
    c = edgepack.compress(m, example_input=x)
    assert type(c) is Residual and isinstance(c.a, QuantLinear) and isinstance(c.bn, nn.Identity)
    with torch.no_grad():
        assert max_rel_err(c.encode(x), m.encode(x)) < 0.05


def test_pruned_weights_stay_zero():
    torch.manual_seed(7)
    m = mlp().eval()
    prune.l1_unstructured(m[0], "weight", amount=0.7)
    mask = m[0].weight_mask.clone()
    c = edgepack.compress(m, CompressionConfig(sparse="never"))
    assert hasattr(m[0], "weight_orig")  # the user's pruning is left in place
    w_q, _, _ = c[0].packed.unpack()
    assert np.all(w_q[mask.numpy() == 0] == 0)
    assert np.count_nonzero(w_q) <= int(mask.sum())
    x = torch.randn(4, 32)
    with torch.no_grad():
        assert max_rel_err(c(x), m(x)) < 0.03


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
def test_static_activations(observer):
    torch.manual_seed(8)
    m = mnist_cnn().eval()
    calib = [torch.randn(4, 1, 28, 28) for _ in range(3)]
    cfg = CompressionConfig(activations="static", observer=observer, percentile=99.9)
    c = edgepack.compress(m, cfg, calib_data=calib)
    q = [x for x in c.modules() if isinstance(x, QuantLinear)]
    assert len(q) == 5 and all(x.is_static for x in q)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert max_rel_err(c(x), m(x)) < 0.1


def test_mixed_precision_meets_budget():
    torch.manual_seed(9)
    m = mlp().eval()
    x = torch.randn(64, 32)
    with torch.no_grad():
        ref = m(x)

    def eval_fn(model: nn.Module) -> float:  # higher is better: minus the relative error
        return -max_rel_err(model(x), ref)

    full = edgepack.compress(m)
    full_drop = -eval_fn(full)
    budget = full_drop / 2
    c = edgepack.compress(m, CompressionConfig(mode="local", max_metric_drop=budget),
                          eval_fn=eval_fn)
    sens = c.edgepack_report_["sensitivity"]
    assert set(sens["per_layer_drop"]) == {"0", "3", "5"}
    assert -eval_fn(c) <= budget
    kept = c.edgepack_report_["kept_fp32"]
    assert kept and all(isinstance(c.get_submodule(n), nn.Linear) for n in kept)
    assert isinstance(c[1], nn.ReLU) or isinstance(c[0], QuantLinear)  # ReLU kept iff 0 is fp32
    none = edgepack.compress(m, CompressionConfig(mode="local", max_metric_drop=0.0),
                             eval_fn=eval_fn)
    assert not none.edgepack_report_["quantized"]
    with torch.no_grad():
        assert torch.equal(none(x), ref)


def test_unsupported_layers_listed_and_kept():
    m = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Flatten(), nn.Linear(16, 3))
    with pytest.warns(UserWarning, match="groups=4"):
        c = edgepack.compress(m)
    assert isinstance(c[0], nn.Conv2d) and isinstance(c[2], QuantLinear)
    assert "0" in c.edgepack_report_["unsupported"]
    mha = nn.Sequential(nn.Linear(8, 8))
    mha.add_module("attn", nn.MultiheadAttention(8, 2))
    with pytest.warns(UserWarning, match="MultiheadAttention"):
        c2 = edgepack.compress(mha)
    assert isinstance(c2.attn.out_proj, nn.Linear)


def test_embedding_compressed():
    m = nn.Sequential(nn.Embedding(30, 8), nn.Linear(8, 4))
    c = edgepack.compress(m)
    assert isinstance(c[0], QuantEmbedding)
    c2 = edgepack.compress(m, CompressionConfig(quantize_embeddings=False))
    assert isinstance(c2[0], nn.Embedding)


def test_errors():
    m = mlp()
    with pytest.raises(ValueError, match="meta"):
        edgepack.compress(mlp().to("meta"))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        edgepack.compress(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activations"):
        edgepack.compress(m, CompressionConfig(activations="int4"))
    for rows in (0, True, 2.5, 1 << 21):
        with pytest.raises(ValueError, match="rows_per_call"):
            edgepack.compress(m, CompressionConfig(rows_per_call=rows))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_metric_drop"):
        edgepack.compress(m, CompressionConfig(mode="local"), eval_fn=lambda _: 1.0)
    with pytest.raises(ValueError, match="eval_fn"):
        edgepack.compress(m, CompressionConfig(mode="local", max_metric_drop=0.1))
    static = CompressionConfig(activations="static")
    with pytest.raises(ValueError, match="need calib_data"):
        edgepack.compress(m, static)
    with pytest.raises(ValueError, match="empty"):
        edgepack.compress(m, static, calib_data=[])
    bad = torch.randn(4, 32)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        edgepack.compress(m, static, calib_data=[torch.randn(4, 32), bad])
    with pytest.raises(ValueError, match="wrong input shape"):
        edgepack.compress(m, static, calib_data=[torch.randn(4, 31)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = edgepack.compress(m, calib_data=[torch.randn(2, 32)])  # dynamic: unused, warned
    with pytest.raises(ValueError, match="expected \\[..., 32\\]"):
        c(torch.randn(2, 31))


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
def test_sparse_packing_exact_and_saved(tmp_path):
    torch.manual_seed(10)
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(16 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    for layer in (m[0], m[3]):  # 80% of 1x4 blocks (along K) zero
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        keep = (torch.rand(w.shape[0], w.shape[1] // 4) > 0.8).repeat_interleave(4, 1)
        prune.custom_from_mask(layer, "weight", keep.float().reshape(layer.weight.shape))
    c = edgepack.compress(m, CompressionConfig(sparse="always"))
    assert all(v["format"] == "sparse" for v in c.edgepack_report_["quantized"].values())
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        y, feats = c(x), c[:5](x)
    lin = m[5]
    w_q, s = _wq(lin)
    np.testing.assert_array_equal(
        y.numpy(), reference.linear_int8_ref(feats.numpy(), w_q, s, lin.bias.detach().numpy()))
    # sparse conv: the dense conv's spec (one range per image, uint8 im2col), bit for bit
    with torch.no_grad():
        got = c[0](x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, _conv_ref(m[0], c[0], x))
    p = tmp_path / "s.ep"
    edgepack.save(c, p)
    with torch.no_grad():
        assert torch.equal(edgepack.load(p)(x), y)


def test_copies_share_nothing_twice():
    import pickle

    c = edgepack.compress(mlp().eval())
    x = torch.randn(3, 32)
    for c2 in (copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert c2[0]._dense_buf is c2[0].packed.buffer
        assert torch.equal(c2(x), c(x))


def test_conv2d_u8_layouts_agree_and_bad_layout_is_an_error():
    from edgepack import _core

    torch.manual_seed(6)
    q = QuantConv2d.from_float(nn.Conv2d(3, 4, 3), sparse="never")
    buf = q.linear._dense_buf
    x = torch.randn(2, 3, 7, 6).to(memory_format=torch.channels_last)
    nhwc = _core.conv2d_u8(x.permute(0, 2, 3, 1).contiguous().numpy(), buf, 3, 3, 1, 1, 1, 1,
                           True)
    nchw = _core.conv2d_u8(x.numpy(), buf, 3, 3, 1, 1, 1, 1, True, True)
    raw = _core.conv2d_u8_raw(x.data_ptr(), 2, 3, 7, 6, buf, 3, 3, 1, 1, 1, 1, True)
    np.testing.assert_array_equal(nchw, nhwc.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(raw, nchw)
    with pytest.raises(ValueError, match="channels_last"):
        _core.conv2d_u8(x.contiguous().numpy(), buf, 3, 3, 1, 1, 1, 1, True, True)
    with pytest.raises(ValueError, match="K ="):
        _core.conv2d_u8(x.numpy(), buf, 2, 2, 1, 1, 1, 1, True, True)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        _core.conv2d_u8(x[:, :, :2].contiguous(memory_format=torch.channels_last).numpy(), buf,
                        3, 3, 1, 1, 1, 1, True, True)
    with pytest.raises(ValueError, match="address"):
        _core.conv2d_u8_raw(0, 2, 3, 7, 6, buf, 3, 3, 1, 1, 1, 1, True)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError):
        q(bad)


def _block_pruned_conv(cin: int, cout: int, amount: float = 0.8, **kw: object) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, **kw)  # type: ignore[arg-type]
    edgepack.prune.blocks(conv, amount, block=(1, 4))
    edgepack.prune.remove(conv)
    return conv


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
@pytest.mark.parametrize("cin,cout,hw,kw", [
    (16, 32, 13, dict(kernel_size=3)),  # native one-call path (channels_last, no padding)
    (8, 20, 9, dict(kernel_size=3, padding=1, stride=2)),  # padded: the general path
    (5, 17, 7, dict(kernel_size=(2, 3), dilation=(1, 2))),  # K = 30: not a block multiple
    (4, 33, 6, dict(kernel_size=1, bias=False)),  # 1x1: im2col is the input; 3 slices
])
def test_sparse_conv_equals_dense_conv_bit_for_bit(cin, cout, hw, kw):
    """A block-sparse packed conv quantizes one range per image like the dense one and runs
    sparse_linear_u8: the same numbers as the dense packing and the numpy spec, at batch 1 and
    N, at 1 and 2 threads."""
    torch.manual_seed(21)
    conv = _block_pruned_conv(cin, cout, **kw)
    sp = QuantConv2d.from_float(conv, relu=True, sparse="always")
    de = QuantConv2d.from_float(conv, relu=True, sparse="never")
    assert sp.linear.packed_kind == "sparse" and de.linear.packed_kind == "dense"
    x = torch.randn(3, cin, hw, hw + 1)
    for threads in (1, 2):
        edgepack.set_num_threads(threads)
        with torch.no_grad():
            for xb in (x, x[:1], x.to(memory_format=torch.channels_last)):
                assert torch.equal(sp(xb), de(xb))
            np.testing.assert_array_equal(sp(x).permute(0, 2, 3, 1).numpy(),
                                          _conv_ref(conv, sp, x))
    edgepack.set_num_threads(1)


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
def test_sparse_static_activations_equal_dense():
    """Static (calibrated) activations now run on sparse packings too (sparse_linear_u8)."""
    torch.manual_seed(22)
    conv = _block_pruned_conv(8, 16, kernel_size=3, padding=1)
    act = (0.03, 120)
    sp = QuantConv2d.from_float(conv, relu=True, sparse="always", act_qparams=act)
    de = QuantConv2d.from_float(conv, relu=True, sparse="never", act_qparams=act)
    assert sp.linear.packed_kind == "sparse"
    x = torch.randn(2, 8, 7, 7) * 3  # partly outside the range: saturates
    assert torch.equal(sp(x), de(x))
    np.testing.assert_array_equal(sp(x).permute(0, 2, 3, 1).numpy(), _conv_ref(conv, sp, x, act))
    lin = nn.Linear(64, 24)
    edgepack.prune.blocks(lin, 0.8)
    edgepack.prune.remove(lin)
    qs = QuantLinear.from_float(lin, sparse="always", act_qparams=act)
    qd = QuantLinear.from_float(lin, sparse="never", act_qparams=act)
    assert qs.packed_kind == "sparse"
    xl = torch.randn(5, 64)
    assert torch.equal(qs(xl), qd(xl))


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
def test_auto_sparse_times_the_crossover_at_rows_per_call(monkeypatch):
    import edgepack.sparse as sp

    asked: list[int] = []

    def crossover(n, k, *, batch=1, **kw):
        asked.append(batch)
        return 0.0 if batch <= 8 else 1.0  # this CPU: sparse pays at few rows only

    monkeypatch.setattr(sp, "sparse_crossover", crossover)
    m = mlp()
    with torch.no_grad():
        for lin in m.modules():
            if isinstance(lin, nn.Linear):
                keep = torch.rand(lin.out_features, -(-lin.in_features // 4)) >= 0.9
                lin.weight.mul_(keep.repeat_interleave(4, dim=1)[:, : lin.in_features])
    kinds = {}
    for rows in (1, 64):
        c = edgepack.compress(m, CompressionConfig(rows_per_call=rows))
        kinds[rows] = {q.packed_kind for q in c.modules() if isinstance(q, QuantLinear)}
    assert kinds == {1: {"sparse"}, 64: {"dense"}}
    assert set(asked) == {1, 64}


@pytest.mark.skipif(not _backend.has_sparse(), reason="sparse kernels not in this build")
def test_sparse_smaller_packs_only_where_it_shrinks():
    torch.manual_seed(23)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)).eval()
    edgepack.prune.blocks(m[0], 0.9)
    edgepack.prune.remove(m[0])
    c = edgepack.compress(m, CompressionConfig(sparse="smaller"))
    assert c[0].packed_kind == "sparse" and c[2].packed_kind == "dense"
    assert c[0].packed_nbytes < QuantLinear.from_float(m[0], sparse="never").packed_nbytes
    with pytest.raises(ValueError, match="sparse"):
        CompressionConfig(sparse="sometimes").validate()
