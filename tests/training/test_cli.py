"""The training subcommands are registered without importing torch and reject bad input in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_training_cli_imports_without_torch():
    code = (
        "import sys, dislotrack.training.cli as c, argparse; "
        "p = argparse.ArgumentParser(); c.register(p.add_subparsers()); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_subcommands_parse():
    from dislotrack.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "run", "--crop", "128", "--matching", "greedy"])
    assert args.crop == (128, 128) and args.matching == "greedy" and args.action is None
    assert args.ignore_beyond == 0 and args.local_contrast == 0.0  # synthetic labels are complete
    assert args.union_weight == 0.0  # the paper's loss
    assert args.compress == 0.0
    from dislotrack.training.cli import _augment

    squeezed = parser.parse_args(["train", "--out", "r", "--compress", "0.5"])
    assert _augment(squeezed).compress_prob == 0.5
    squeezed.no_augment = True
    assert _augment(squeezed).compress_prob == 0.0
    args = parser.parse_args(
        [
            "train",
            "finetune",
            "--from",
            "m.onnx",
            "--images",
            "i",
            "--masks",
            "m",
            "--out",
            "ft",
            "--first",
            "10",
        ]
    )
    assert args.action == "finetune" and args.first == 10 and args.source == "m.onnx"
    assert args.ignore_beyond == 12  # real labels are partial
    assert args.synthetic_share == 0.5 and args.preset is None  # half synthetic, the model's preset
    assert args.union_weight == 4.0  # each labelled line covered by some channel
    assert args.epochs * args.steps_per_epoch == 2000 and args.lr == 1e-3
    args = parser.parse_args(["evaluate", "--synthetic", "5"])
    assert args.synthetic == 5 and args.model is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "run", "--crop", "100"])


@pytest.mark.train
def test_missing_weights_is_a_one_line_error(tmp_path, capsys):
    from dislotrack.cli.main import main

    assert main(["export", str(tmp_path / "missing.pt"), "--name", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and "\n" not in err


def test_every_flips_option_offers_exactly_the_passes_inference_knows():
    """The CLIs list the pass counts literally (they import only argparse); they must not drift."""
    from dislotrack.cli.main import build_parser
    from dislotrack.runtime.inference import FLIP_AXES

    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and "process" in a.choices).choices
    offered = {
        name: action.choices
        for name, sub in commands.items()
        for action in sub._actions
        if "--flips" in action.option_strings
    }
    assert {"process", "demo", "evaluate"} <= offered.keys()
    for name, choices in offered.items():
        assert tuple(choices) == tuple(FLIP_AXES), name


@pytest.mark.train
def test_validation_by_the_runtimes_lines_is_a_train_option():
    from dislotrack.cli.main import build_parser
    from dislotrack.training.cli import _loop_config
    from dislotrack.training.data import DataConfig
    from dislotrack.training.model import ModelConfig

    parser = build_parser()
    for argv, by_lines in ((["train", "--out", "r"], False), (["train", "--out", "r", "--val-lines"], True)):
        config = _loop_config(parser.parse_args(argv), DataConfig(), ModelConfig())
        assert config.val_lines is by_lines and config.val_iou_tolerance_px == 0  # synthetic: exact


@pytest.mark.train
def test_distractor_term_is_off_by_default_and_its_band_follows_it():
    from dislotrack.cli.main import build_parser
    from dislotrack.training.cli import _distractor_px

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "r"])
    assert args.distractor_weight == 0.0 and _distractor_px(args) == 0  # samples carry no band
    args = parser.parse_args(["train", "--out", "r", "--distractor-weight", "1", "--distractor-px", "4"])
    assert _distractor_px(args) == 4
    assert args.distractor_margin is None  # the band spares as many px around lines as it is wide
    args.distractor_px = 0
    with pytest.raises(ValueError, match="--distractor-px"):
        _distractor_px(args)


@pytest.mark.train
def test_the_card_records_the_band_only_when_one_was_read():
    from dislotrack.training.export import distractor_band_record

    assert distractor_band_record({"distractor_px": 0, "distractor_margin_px": 8}) == {}
    assert distractor_band_record({}) == {}
    assert distractor_band_record({"distractor_px": 3}) == {"distractor_px": 3, "distractor_margin_px": 3}
    wide = {"distractor_px": 3, "distractor_margin_px": 8}
    assert distractor_band_record(wide) == {"distractor_px": 3, "distractor_margin_px": 8}
