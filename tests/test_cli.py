import json

import pytest
import torch

import edgepack
from edgepack import demo
from edgepack.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    assert "isa" in json.loads(capsys.readouterr().out)


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("fp32", "int8", "pruned80+int8", "distilled", "optimized", "all"):
        assert name in out
    d = json.loads((tmp_path / "report.json").read_text())
    assert [m["name"] for m in d["models"]][0] == "fp32" and len(d["models"]) == 6
    assert (tmp_path / "report.png").exists()


def test_compress_and_report(tmp_path, capsys):
    torch.manual_seed(0)
    model = demo.reference_cnn().eval()
    sd = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), sd)
    out = tmp_path / "cnn.edgepack"
    cfg = tmp_path / "recipe.json"
    cfg.write_text('{"sparse": "never", "skip": ["11"]}')
    assert main(["compress", str(sd), str(out), "--arch", "edgepack.demo:reference_cnn",
                 "--input-shape", "2,1,28,28", "--config", str(cfg), "--rows-per-call", "4"]) == 0
    text = capsys.readouterr().out
    assert "smaller" in text and "kept fp32: 11" in text
    loaded = edgepack.load(out)
    x = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        ref, got = model(x), loaded(x)
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()

    scripted = tmp_path / "cnn.ts"
    torch.jit.script(model).save(str(scripted))
    js = tmp_path / "r.json"
    assert main(["report", str(scripted), f"int8={out}", "--input-shape", "1,1,28,28",
                 "--batch", "4", "--threads", "1", "--json", str(js), "--no-progress"]) == 0
    d = json.loads(js.read_text())
    assert [m["name"] for m in d["models"]] == ["fp32", "int8"]
    assert d["models"][1]["size_ratio"] > 3


def test_cli_errors(tmp_path):
    sd = tmp_path / "cnn.pt"
    torch.save(demo.reference_cnn().state_dict(), sd)
    with pytest.raises(SystemExit, match="--arch"):
        main(["compress", str(sd), str(tmp_path / "o.ep")])
    with pytest.raises(SystemExit, match="no such file"):
        main(["compress", str(tmp_path / "missing.pt"), str(tmp_path / "o.ep")])
    with pytest.raises(SystemExit, match="input-shape"):
        main(["compress", str(sd), str(tmp_path / "o.ep"), "--arch",
              "edgepack.demo:reference_cnn", "--input-shape", "a,b"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"nope": 1}')
    with pytest.raises(SystemExit, match="config"):
        main(["compress", str(sd), str(tmp_path / "o.ep"), "--arch",
              "edgepack.demo:reference_cnn", "--config", str(bad)])
    with pytest.raises(SystemExit, match="arch"):
        main(["compress", str(sd), str(tmp_path / "o.ep"), "--arch", "edgepack.demo:nope"])
    with pytest.raises(SystemExit, match="rows_per_call"):
        main(["compress", str(sd), str(tmp_path / "o.ep"), "--arch",
              "edgepack.demo:reference_cnn", "--rows-per-call", "0"])
