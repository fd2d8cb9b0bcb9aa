"""CI smoke test: two training steps on tiny synthetic crops, export, onnxruntime parity."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytestmark = pytest.mark.train


def _history(run):
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_training_writes_checkpoints_history_and_plot(tiny_run):
    for name in ("best.pt", "last.pt", "history.csv", "history.png", "config.json"):
        assert (tiny_run / name).is_file(), name
    rows = _history(tiny_run)
    assert [int(r["step"]) for r in rows] == [2]
    assert np.isfinite(float(rows[0]["train_loss"]))
    assert 0.0 <= float(rows[0]["val_traces_marked"]) <= 1.0  # synthetic validation knows its traces


def test_a_history_with_older_columns_is_rewritten_with_todays(tmp_path):
    from dislotrack.training.train import HISTORY_FIELDS, append_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,step,train_loss,retired\n1,250,0.5,x\n")
    append_history(path, {"epoch": 2, "step": 500, "train_loss": 0.4, "val_traces_marked": 0.25})
    rows = _history(tmp_path)
    assert tuple(rows[0]) == HISTORY_FIELDS and [r["step"] for r in rows] == ["250", "500"]
    assert rows[0]["val_traces_marked"] == "" and rows[1]["val_traces_marked"] == "0.25"


def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path):
    import shutil

    from dislotrack.training.train import TrainConfig, load_checkpoint, train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    config = TrainConfig.from_dict({**config.to_dict(), "epochs": 2, "out_dir": str(run)})
    train(config, resume=True)
    assert load_checkpoint(run / "last.pt")["state"]["step"] == 4
    assert len(_history(run)) == 2
    # an exported checkpoint carries its own epoch's validation figures, not the best epoch's
    from dislotrack.training.export import load_weights, validation_figures

    last = validation_figures(load_weights(run / "last.pt"))
    assert last["length_metric"] == pytest.approx(float(_history(run)[-1]["val_length_metric"]), abs=1e-4)


def test_export_follows_the_model_file_contract(tiny_model):
    import onnx

    model = onnx.load(str(tiny_model))
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probs"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == 1 and isinstance(dims[2], str) and isinstance(dims[3], str)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["dislotrack"])
    for key in (
        "n_masks",
        "mean",
        "std",
        "threshold",
        "input_multiple",
        "architecture",
        "encoder",
        "preset",
        "metrics",
        "code_version",
    ):
        assert key in meta, key
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    from dislotrack.training.export import sha256_file

    assert card["sha256"] == sha256_file(tiny_model)
    assert card["default"] is True
    assert card["export_parity_max_abs"] <= 1e-4


def test_runtime_predictor_runs_the_export_on_odd_frame_sizes(tiny_model):
    from dislotrack.runtime.inference import InferenceConfig, Predictor

    predictor = Predictor(tiny_model, InferenceConfig(device="cpu"))
    frames = np.random.default_rng(0).integers(0, 256, (2, 50, 70), dtype=np.uint8)
    probs = predictor.predict(frames)
    assert probs.shape == (2, 4, 50, 70)
    assert probs.min() >= 0.0 and probs.max() <= 1.0


def test_onnx_matches_torch_and_safetensors_round_trip(tiny_model):
    from dislotrack.training.export import load_weights, parity

    weights = load_weights(tiny_model)  # the .safetensors next to the .onnx
    assert weights.model.n_masks == 4
    assert parity(tiny_model, weights.network(), seed=1) <= 1e-4


def test_export_refuses_to_write_a_model_that_differs(tiny_run, tiny_model, tmp_path, monkeypatch):
    """A graph that does not compute what the torch weights compute must never be written."""
    import dataclasses
    import shutil

    import torch

    from dislotrack.training import export

    weights = export.load_weights(tiny_run)
    changed = {k: v + 0.05 if v.is_floating_point() else v for k, v in weights.state.items()}
    fake = lambda net, path, half=False: shutil.copyfile(tiny_model, path)  # noqa: E731
    monkeypatch.setattr(export, "_export_graph", fake)
    out = tmp_path / "bad.onnx"
    with pytest.raises(RuntimeError, match="differs from torch"):
        export.export_onnx(dataclasses.replace(weights, state=changed), out)
    assert not out.exists()
    assert torch.is_tensor(changed["segmentation_head.0.weight"])


def test_fp16_export_keeps_float32_io(tiny_run, tmp_path):
    import onnx

    from dislotrack.training.export import export_onnx, load_weights

    half = tmp_path / "half.fp16.onnx"
    assert export_onnx(load_weights(tiny_run), half, tolerance=1e-2, half=True) <= 1e-2
    graph = onnx.load(str(half)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


def test_training_from_trained_weights_keeps_their_provenance(tiny_run, tiny_model, tmp_path):
    from dislotrack.training.export import init_record, load_weights, sha256_file, ship
    from dislotrack.training.train import TrainConfig, load_checkpoint, train

    start = load_weights(tiny_model)
    config = TrainConfig.from_dict(json.loads((tiny_run / "config.json").read_text()))
    config = TrainConfig.from_dict(
        {**config.to_dict(), "out_dir": str(tmp_path / "run"), "init": init_record(tiny_model, start)}
    )
    run = train(config, init_weights=start.state)
    assert load_checkpoint(run / "last.pt")["state"]["step"] == 2
    card = ship(load_weights(run), tmp_path / "models", "again", default=False)
    origin = card["training"]["initialised_from"]
    assert origin["file"] == "tiny.safetensors"
    assert origin["sha256"] == sha256_file(tiny_model.with_suffix(".safetensors"))
    assert origin["training"]["steps"] == 2


def test_a_frozen_encoder_keeps_its_weights_and_statistics_while_the_decoder_learns(
    tiny_run, tiny_model, tmp_path
):
    from dislotrack.training.export import load_weights, ship
    from dislotrack.training.train import TrainConfig, load_checkpoint, train

    start = load_weights(tiny_model)
    config = TrainConfig.from_dict(json.loads((tiny_run / "config.json").read_text()))
    config = TrainConfig.from_dict(
        {**config.to_dict(), "out_dir": str(tmp_path / "run"), "freeze_encoder": True, "lr": 1e-2}
    )
    after = load_checkpoint(train(config, init_weights=start.state) / "last.pt")["model"]
    encoder = [k for k in start.state if k.startswith("encoder.")]
    assert any(k.endswith("running_mean") for k in encoder)
    assert all(np.array_equal(after[k].numpy(), start.state[k].numpy()) for k in encoder)
    decoder = [k for k in start.state if k.startswith("decoder.")]
    assert any(not np.array_equal(after[k], start.state[k]) for k in decoder)
    assert ship(load_weights(tmp_path / "run"), tmp_path / "models", "frozen", default=False)["training"][
        "frozen_encoder"
    ]


def test_init_weights_of_another_architecture_is_a_one_line_error(tiny_model, tmp_path, capsys):
    from dislotrack.cli.main import main

    assert main(["train", "--init", str(tiny_model), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init" in err and "\n" not in err


def _tiny_config(tiny_run):
    from dislotrack.training.train import TrainConfig

    return TrainConfig.from_dict(json.loads((tiny_run / "config.json").read_text()))


def test_a_wider_last_stage_starts_as_the_trained_network_and_keeps_every_trained_value(tiny_run):
    from dataclasses import replace

    import torch

    from dislotrack.training.model import build_model, load_matching

    tiny = _tiny_config(tiny_run).model
    assert tiny.decoder_channels == (16, 16, 8) and tiny.n_masks == 4
    torch.manual_seed(0)
    trained = build_model(tiny).eval()
    wider = build_model(replace(tiny, decoder_channels=(16, 16, 24), n_masks=6))
    built = {k: v.clone() for k, v in wider.state_dict().items()}
    loaded = load_matching(wider, trained.state_dict())
    assert loaded.fresh == []
    assert loaded.resized and not any(k.startswith("encoder.") for k in loaded.resized)
    assert any(k.startswith("segmentation_head.") for k in loaded.resized)
    old, new = trained.state_dict(), wider.state_dict()
    for k, v in new.items():
        if k not in loaded.resized:
            assert torch.equal(v, old[k]), k
            continue
        overlap = tuple(slice(0, n) for n in old[k].shape)
        assert torch.equal(v[overlap], old[k]), k
    head = "segmentation_head.0.weight"
    assert torch.equal(new[head][4:, :8], built[head][4:, :8])  # added masks start as built
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(wider.eval()(x)[:, :4], trained(x), atol=1e-5)
    with pytest.raises(ValueError, match="encoder does not fit"):
        load_matching(build_model(replace(tiny, encoder="mobilenet_v2")), old)


def test_a_wider_decoder_trains_from_the_weights_that_fit_and_records_the_rest(
    tiny_run, tiny_model, tmp_path
):
    from dataclasses import replace

    from dislotrack.training.export import init_record, load_weights, ship
    from dislotrack.training.train import TrainConfig, train

    start = load_weights(tiny_model)
    config = _tiny_config(tiny_run)
    wider = replace(config.model, decoder_channels=(16, 16, 24)).to_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        train(
            TrainConfig.from_dict(
                {
                    **config.to_dict(),
                    "out_dir": str(tmp_path / "strict"),
                    "model": wider,
                }
            ),
            init_weights=start.state,
        )
    config = TrainConfig.from_dict(
        {
            **config.to_dict(),
            "out_dir": str(tmp_path / "run"),
            "model": wider,
            "init": init_record(tiny_model, start),
            "init_partial": True,
        }
    )
    run = train(config, init_weights=start.state)
    init = json.loads((run / "config.json").read_text())["init"]
    assert init["fresh"] == []
    resized = init["resized"]
    assert resized and all(k.startswith(("decoder.blocks.x_0_2.", "segmentation_head.")) for k in resized)
    card = ship(load_weights(run), tmp_path / "models", "wider", default=False)
    assert card["training"]["initialised_from"]["resized"] == resized


def test_init_partial_without_init_is_a_one_line_error(tmp_path, capsys):
    from dislotrack.cli.main import main

    assert main(["train", "--init-partial", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init-partial needs --init" in err and "\n" not in err


def test_learning_rate_decays_over_the_time_budget_when_it_runs_out_first():
    from dislotrack.training.train import TrainConfig, lr_at

    steps = TrainConfig(lr=1.0, warmup_steps=10, epochs=10, steps_per_epoch=100)
    timed = TrainConfig(lr=1.0, warmup_steps=10, epochs=10, steps_per_epoch=100, max_minutes=2.0)
    assert lr_at(5, timed, elapsed_s=500.0) == lr_at(5, steps) == 0.6  # warm-up is by steps
    assert lr_at(10, steps) == lr_at(10, timed, elapsed_s=0.0) == 1.0
    assert abs(lr_at(505, steps) - 0.525) < 1e-9  # half of the planned steps
    assert abs(lr_at(20, timed, elapsed_s=60.0) - 0.525) < 1e-9  # half of the time
    assert abs(lr_at(20, timed, elapsed_s=999.0) - 0.05) < 1e-9
    assert abs(lr_at(1000, timed, elapsed_s=1.0) - 0.05) < 1e-9  # steps ran out first


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from dislotrack.training.train import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Xeon\nflags\t\t: fpu sse avx512f avx512bw\n")
    assert cpu_has_native_bf16(info) is False
    info.write_text("model name\t: Xeon\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert cpu_has_native_bf16(info) is True
    info.write_text("flags\t\t: avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(info) is True
    info.write_text("processor\t: 0\n")  # no flags line (not x86)
    assert cpu_has_native_bf16(info) is None
    assert cpu_has_native_bf16(tmp_path / "absent") is None


def test_training_with_the_distractor_term_runs_and_resumes_with_its_band(tiny_run, tmp_path):
    from dislotrack.training.train import TrainConfig, load_checkpoint, train

    base = json.loads((tiny_run / "config.json").read_text())
    base["data"]["preset"] = "m2-trace"
    with pytest.raises(ValueError, match="distractor_px"):
        TrainConfig.from_dict({**base, "loss": {**base["loss"], "distractor_weight": 1.0}})
    d = {
        **base,
        "out_dir": str(tmp_path / "run"),
        "loss": {**base["loss"], "distractor_weight": 1.0},
        "data": {**base["data"], "distractor_px": 2, "distractor_kinds": ["slip_traces"]},
    }
    config = TrainConfig.from_dict(d)
    run = train(config)
    again = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert again == config and again.data.distractor_kinds == ("slip_traces",)
    train(TrainConfig.from_dict({**d, "epochs": 2}), resume=True)
    assert load_checkpoint(run / "last.pt")["state"]["step"] == 4


def test_a_trace_channel_trains_beside_the_masks_and_is_cut_off_at_export(tiny_run, tmp_path):
    from dataclasses import replace

    import onnxruntime as ort
    import torch

    from dislotrack.training.export import load_weights, ship
    from dislotrack.training.model import ProbsModel
    from dislotrack.training.train import TrainConfig, load_checkpoint, predict_probs, train

    base = _tiny_config(tiny_run)
    d = {
        **base.to_dict(),
        "out_dir": str(tmp_path / "run"),
        "model": replace(base.model, trace_channel=True).to_dict(),
        "loss": {**base.to_dict()["loss"], "trace_weight": 1.0},
        "data": {**base.to_dict()["data"], "preset": "m2-trace", "distractor_px": 2},
    }
    for wrong, match in (
        ({"loss": base.to_dict()["loss"]}, "go together"),
        ({"model": base.model.to_dict()}, "go together"),
        ({"data": {**d["data"], "distractor_px": 0}}, "distractor_px"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_dict({**d, **wrong})
    config = TrainConfig.from_dict(d)
    assert config.model.outputs == base.model.n_masks + 1
    run = train(config)
    weights = load_weights(run / "last.pt")
    assert load_checkpoint(run / "last.pt")["model"]["segmentation_head.0.weight"].shape[0] == 5
    net = weights.network()
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    assert next(predict_probs(net, [image], weights.model)).shape == (4, 64, 64)
    assert next(predict_probs(net, [image], weights.model, all_outputs=True)).shape == (5, 64, 64)

    card = ship(weights, tmp_path / "models", "traced", default=False)
    assert card["n_masks"] == 4 and card["model"]["trace_channel"] is False
    assert card["training"]["loss"]["trace_weight"] == 1.0
    shipped = load_weights(tmp_path / "models" / "traced.onnx")
    assert shipped.model == replace(weights.model, trace_channel=False)
    x = (image[None, None] - weights.model.mean) / weights.model.std
    session = ort.InferenceSession(
        str(tmp_path / "models" / "traced.onnx"), providers=["CPUExecutionProvider"]
    )
    (exported,) = session.run(["probs"], {"image": x})
    with torch.no_grad():
        trained = ProbsModel(net)(torch.from_numpy(x)).numpy()
    assert exported.shape == (1, 4, 64, 64)
    assert np.abs(exported - trained[:, :4]).max() < 1e-4  # the masks the trace run learned, unchanged
    assert (
        load_weights(tmp_path / "models" / "traced.safetensors").network()(torch.from_numpy(x)).shape[1] == 4
    )


def test_train_adds_a_trace_channel_to_weights_without_one(tmp_path, monkeypatch, capsys):
    import dislotrack.training.train as training
    from dislotrack.cli.main import main
    from dislotrack.training.export import Weights, save_safetensors
    from dislotrack.training.model import ModelConfig, build_model

    plain = ModelConfig(encoder="resnet18", n_masks=4, decoder_channels=(16, 16, 8, 8, 8))
    path = tmp_path / "plain.safetensors"
    save_safetensors(Weights(plain, build_model(plain).state_dict(), {}), path, {"model": plain.to_dict()})
    seen = {}

    def capture(config, **kw):
        seen.update(config=config, **kw)
        return tmp_path / "run"

    monkeypatch.setattr(training, "train", capture)
    args = ["train", "--init", str(path), "--encoder", "resnet18", "--decoder-channels", "16,16,8,8,8"]
    args += ["--n-masks", "4", "--preset", "m2-trace", "--trace-weight", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    config = seen["config"]
    assert config.model.trace_channel and config.loss.trace_weight == 1.0
    assert config.init_partial and config.data.distractor_px == 3
    assert seen["init_weights"].keys() == build_model(plain).state_dict().keys()
    assert main([*args, "--distractor-px", "0"]) == 2
    assert "--trace-weight needs --distractor-px > 0" in capsys.readouterr().err
