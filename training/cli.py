"""Subcommands of this part of dislotrack: ``train`` (and ``train finetune``), ``evaluate``, ``export``.

Only argparse lives here; torch and friends are imported inside the handlers, so ``dislotrack`` starts
on a runtime-only install and says which extra is missing when one of these commands is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32 or any(p % 32 for p in parts):
        raise argparse.ArgumentTypeError(f"size must be N or HxW, multiples of 32 and ≥ 32, got {text!r}")
    return parts[0], parts[1]


def _channels(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--encoder", default="mobilenet_v2", help="smp encoder name (paper: resnet50)")
    g.add_argument(
        "--decoder-channels",
        type=_channels,
        default=(128, 64, 32, 16, 16),
        help="U-Net++ decoder channels, comma-separated (smp default: 256,128,64,32,16)",
    )
    g.add_argument("--n-masks", type=int, default=20, help="output masks = max dislocations per image")
    g.add_argument(
        "--local-contrast",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="divide the input by its local grey spread in a Gaussian window of this sigma (px) "
        "inside the network (0: off)",
    )


def _add_loop_args(
    p: argparse.ArgumentParser,
    *,
    epochs: int,
    steps: int,
    lr: float,
    warmup: int = 100,
    ignore_beyond: int = 0,
    union_weight: float = 0.0,
) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--out", help="run folder (checkpoints, history.csv, history.png); required")
    g.add_argument("--epochs", type=int, default=epochs, help="default %(default)s")
    g.add_argument(
        "--steps-per-epoch", type=int, default=steps, help="validation after each (default %(default)s)"
    )
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--lr", type=float, default=lr)
    g.add_argument("--warmup-steps", type=int, default=warmup)
    g.add_argument(
        "--matching",
        choices=("optimal", "greedy"),
        default="optimal",
        help="true-to-predicted mask matching in the loss",
    )
    g.add_argument("--empty-weight", type=float, default=1.0, help="weight of the spare-channels-empty term")
    g.add_argument(
        "--empty",
        choices=("mean", "area", "outside"),
        default="mean",
        help="spare-channel term: mean probability; summed probability over the labelled area; or "
        "that sum outside the labelled lines only (plus the mean)",
    )
    g.add_argument(
        "--union-weight",
        type=float,
        default=union_weight,
        help="weight of a Dice term on the channels' maximum against all lines together (0: off, "
        "the paper's loss; default %(default)s)",
    )
    g.add_argument(
        "--distractor-weight",
        type=float,
        default=0.0,
        help="weight of a term on the channels' maximum over the synthetic slip traces and grain "
        "boundaries the generator drew (0: off; default %(default)s)",
    )
    g.add_argument(
        "--line-trace-weight",
        type=float,
        default=0.0,
        help="weight of a term charging each matched mask for the --distractor-px band between "
        "--line-trace-margin and --line-trace-reach of its own line (a line running on along the "
        "trace it ends on), over the line's pixels; use with --distractor-margin 0 (0: off; "
        "default %(default)s)",
    )
    g.add_argument(
        "--line-trace-margin",
        type=int,
        default=2,
        help="px around a mask's own true line that --line-trace-weight spares (default %(default)s)",
    )
    g.add_argument(
        "--line-trace-reach",
        type=int,
        default=24,
        help="px from a mask's own true line that --line-trace-weight charges up to; farther traces "
        "are the distractor term's (default %(default)s)",
    )
    g.add_argument(
        "--distractor-px",
        type=int,
        default=3,
        help="px either side of a drawn distractor's axis that --distractor-weight and "
        "--line-trace-weight charge and --trace-weight marks, less those within --distractor-margin "
        "of a true line (default %(default)s)",
    )
    g.add_argument(
        "--distractor-margin",
        type=int,
        default=None,
        help="px around a true line left out of that band (default: --distractor-px); wider spares "
        "the ends of lines that meet a trace",
    )
    g.add_argument(
        "--ignore-beyond",
        type=int,
        default=ignore_beyond,
        help="score only pixels within this many px of a labelled line (0: the whole image); for "
        "frames whose labels mark only some dislocations (default %(default)s)",
    )
    g.add_argument("--crop", type=_size, default=(256, 256), help="training crop, N or HxW")
    g.add_argument("--no-augment", action="store_true", help="train without augmentation")
    g.add_argument(
        "--compress",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a training image goes through JPEG at quality 70-95 (the block edges of "
        "compressed videos) (default %(default)s)",
    )
    g.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train the decoder and head only; the encoder keeps its weights and batch-norm statistics",
    )
    g.add_argument("--threads", type=int, default=2, help="torch threads")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast with AMX/AVX512-BF16)")
    g.add_argument("--workers", type=int, default=1, help="data-loader processes (0: in the main process)")
    g.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch that crosses this")
    g.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when torch sees a GPU"
    )
    g.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    g.add_argument("--seed", type=int, default=0)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``export``; heavy imports belong inside the handlers."""
    train = subparsers.add_parser(
        "train",
        help="train the U-Net++ N-mask model on synthetic images",
        description="Train on on-the-fly synthetic images (or fine-tune: 'dislotrack train finetune -h').",
    )
    train.set_defaults(func=_run_train, action=None)
    actions = train.add_subparsers(dest="action", metavar="ACTION")
    _add_model_args(train)
    _add_loop_args(train, epochs=20, steps=250, lr=1e-3)
    g = train.add_argument_group("synthetic data")
    g.add_argument(
        "--preset",
        default="m2",
        help="generator preset; several, comma-separated, alternate image by image (validation: the first)",
    )
    g.add_argument("--gen-size", type=_size, default=(512, 512), help="generated image size, N or HxW")
    g.add_argument("--crops-per-image", type=int, default=1)
    g.add_argument("--val-images", type=int, default=32, help="held-out synthetic validation images")
    g.add_argument("--val-size", type=_size, default=(256, 256))
    g.add_argument("--val-seed", type=int, default=999_999_937, help="never used for training")
    g.add_argument(
        "--val-lines",
        action="store_true",
        help="validate (and keep best.pt) by the runtime's lines, the figures `dislotrack evaluate` and "
        "the model card report, instead of the raw output channels (the papers' protocol)",
    )
    g.add_argument(
        "--trace-weight",
        type=float,
        default=0.0,
        help="train one more output channel to mark the slip traces and grain boundaries the generator "
        "drew (the --distractor-px band), with a cross-entropy of this weight averaged over band, "
        "line and other pixels separately; export cuts the channel off (0: off; default %(default)s)",
    )
    train.add_argument(
        "--init",
        default=None,
        help="start from these weights (.onnx with its .safetensors, .safetensors, .pt or run folder) "
        "instead of a random initialisation; the architecture options must match them",
    )
    train.add_argument(
        "--init-partial",
        action="store_true",
        help="with --init: seed a network whose decoder stages or --n-masks differ (same encoder): "
        "tensors that fit are copied, resized ones keep their trained first channels (added input "
        "channels start at zero), anything else starts at random; the card lists what was resized",
    )

    fine = actions.add_parser("finetune", help="fine-tune a trained model on a few labelled real frames")
    fine.set_defaults(func=_run_finetune)
    fine.add_argument(
        "--from",
        dest="source",
        default=None,
        help="model to start from: .onnx (with its .safetensors), .safetensors, .pt or run folder "
        "(default: the shipped model)",
    )
    _add_labelled_args(fine)
    fine.add_argument(
        "--first", type=int, default=0, help="use only the first K frames in name order (0: all)"
    )
    fine.add_argument(
        "--synthetic-share",
        type=float,
        default=0.5,
        metavar="F",
        help="fraction of training crops taken from synthetic images instead of the labelled frames "
        "(0: labelled frames only; default %(default)s)",
    )
    fine.add_argument(
        "--preset", default=None, help="generator preset of those synthetic crops (default: the model's)"
    )
    fine.add_argument(
        "--name",
        default="finetuned",
        help="write the fine-tuned model, from the run's last checkpoint, as OUT/NAME.onnx with its "
        ".safetensors and .json card, ready for `process --model` (default %(default)s)",
    )
    fine.add_argument("--no-export", action="store_true", help="leave the checkpoints only")
    # real labels mark only some dislocations: score the loss near them only; half the crops
    # synthetic keep what the model knew; 2000 steps at 1e-3; the union term keeps each labelled
    # line covered by some channel (measured in docs/training-log.md, sessions 14 to 17)
    _add_loop_args(fine, epochs=40, steps=50, lr=1e-3, warmup=30, ignore_beyond=12, union_weight=4.0)

    ev = subparsers.add_parser(
        "evaluate", help="score a model on labelled frames or held-out synthetic images"
    )
    ev.set_defaults(func=_run_evaluate)
    ev.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    _add_labelled_args(ev, required=False)
    ev.add_argument("--skip-first", type=int, default=0, help="ignore the first K frames in name order")
    ev.add_argument("--synthetic", type=int, default=0, help="score N held-out synthetic images instead")
    ev.add_argument("--preset", default="m2")
    ev.add_argument("--size", type=_size, default=(512, 512), help="synthetic image size")
    ev.add_argument("--seed", type=int, default=999_999_937, help="synthetic stream seed (held out)")
    ev.add_argument(
        "--iou-tolerance",
        type=int,
        default=None,
        help="dilate masks by this many px before the IoU ≥ 0.5 test (default: 0 synthetic, "
        "2 labelled frames)",
    )
    ev.add_argument("--tolerance", type=float, default=3.0, help="centreline tolerance, px")
    ev.add_argument(
        "--raw-masks",
        action="store_true",
        help="score the thresholded output channels as instances instead of the runtime's lines",
    )
    ev.add_argument(
        "--no-join",
        action="store_true",
        help="runtime lines without joining pieces that continue each other (as `process --no-join`)",
    )
    ev.add_argument(
        "--flips",
        type=int,
        choices=(1, 2, 4),
        default=1,
        help="network passes per frame, mirrored (as `process --flips`); onnxruntime only",
    )
    ev.add_argument(
        "--torch",
        choices=("auto", "cpu", "cuda"),
        default=None,
        metavar="DEVICE",
        help="run the model's .safetensors with torch on DEVICE (auto: CUDA when present) instead of "
        "onnxruntime; same pre- and post-processing. For GPU machines without onnxruntime-gpu",
    )
    ev.add_argument("--per-image", default=None, help="write per-image figures to this CSV")
    ev.add_argument(
        "--card-key", default=None, help="also store the figures under metrics.<KEY> in the model's JSON card"
    )
    ev.add_argument(
        "--card", default=None, help="write --card-key figures into this card instead of the model's own"
    )

    ex = subparsers.add_parser("export", help="export trained weights to ONNX (+ safetensors and card)")
    ex.set_defaults(func=_run_export)
    ex.add_argument("weights", help="training checkpoint (.pt), run folder (best.pt) or .safetensors")
    ex.add_argument("--out", default=None, help="models folder (default: the dislotrack.models package)")
    ex.add_argument("--name", required=True, help="model name: writes NAME.onnx, NAME.safetensors, NAME.json")
    ex.add_argument("--not-default", action="store_true", help="do not mark this model as the default")
    ex.add_argument("--tolerance", type=float, default=1e-4, help="max |ONNX - torch| accepted")
    ex.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx (fp16 inside, for GPUs)")
    ex.add_argument("--fp16-tolerance", type=float, default=1e-2, help="max |fp16 ONNX - fp32 torch|")


def _add_labelled_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--images", required=required, help="folder of grey frames (PNG/TIFF)")
    labels = p.add_mutually_exclusive_group(required=required)
    labels.add_argument("--masks", help="folder of binary line masks named like the images")
    labels.add_argument("--labelme", help="folder of labelme JSON files with polylines")
    p.add_argument("--line-width", type=int, default=5, help="px width of labelme polylines as masks")


def _loop_config(args: argparse.Namespace, data, model):
    from dislotrack.training.loss import LossConfig
    from dislotrack.training.train import TrainConfig

    if not args.out:
        raise ValueError("--out is required (the run folder)")
    return TrainConfig(
        model=model,
        loss=LossConfig(
            matching=args.matching,
            empty_weight=args.empty_weight,
            ignore_beyond_px=args.ignore_beyond,
            empty=args.empty,
            union_weight=args.union_weight,
            distractor_weight=args.distractor_weight,
            trace_weight=getattr(args, "trace_weight", 0.0),
            line_trace_weight=args.line_trace_weight,
            line_trace_margin_px=args.line_trace_margin,
            line_trace_reach_px=args.line_trace_reach,
        ),
        data=data,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        threads=args.threads,
        bf16=args.bf16,
        workers=args.workers,
        max_minutes=args.max_minutes,
        device=args.device,
        freeze_encoder=args.freeze_encoder,
        out_dir=args.out,
        **(
            {
                "val_images": args.val_images,
                "val_size": args.val_size,
                "val_seed": args.val_seed,
                "val_lines": args.val_lines,
            }
            if hasattr(args, "val_images")
            else {}
        ),
    )


def _run_train(args: argparse.Namespace) -> int:
    from dislotrack.training.data import DataConfig
    from dislotrack.training.model import ModelConfig
    from dislotrack.training.train import train

    model = ModelConfig(
        encoder=args.encoder,
        n_masks=args.n_masks,
        decoder_channels=args.decoder_channels,
        local_contrast_px=args.local_contrast,
        trace_channel=args.trace_weight > 0,
    )
    data = DataConfig(
        preset=args.preset,
        seed=args.seed,
        gen_size=args.gen_size,
        crop=args.crop,
        crops_per_image=args.crops_per_image,
        max_masks=args.n_masks,
        augment=_augment(args),
        distractor_px=_distractor_px(args),
        distractor_margin_px=args.distractor_margin,
    )
    config = _loop_config(args, data, model)
    init = None
    if args.init:
        from dislotrack.training.export import init_record, load_weights

        weights = load_weights(args.init)
        # a trace channel added to weights that fit otherwise: the masks load, the channel starts as built
        adds_trace = (
            model.trace_channel
            and not weights.model.trace_channel
            and weights.model.same_weights(dataclasses.replace(model, trace_channel=False))
        )
        partial = args.init_partial or adds_trace
        if not partial and not weights.model.same_weights(model):
            raise ValueError(
                f"--init {args.init} is a {weights.model}, the options ask for a {model} "
                "(--init-partial loads what fits)"
            )
        init = weights.state
        config = dataclasses.replace(config, init=init_record(args.init, weights), init_partial=partial)
    elif args.init_partial:
        raise ValueError("--init-partial needs --init (the weights to load from)")
    out = train(config, resume=args.resume, init_weights=init)
    print(f"run folder: {out} (best.pt, last.pt, history.csv, history.png)")
    return 0


def _augment(args: argparse.Namespace):
    from dislotrack.training.data import AugmentConfig

    return AugmentConfig.off() if args.no_augment else AugmentConfig(compress_prob=args.compress)


def _distractor_px(args: argparse.Namespace) -> int:
    """The band the distractor term charges and the trace channel marks; samples carry none (and
    cost nothing) when no term reading it is on."""
    from dislotrack.training.loss import BAND_TERMS

    used = [f"--{n.replace('_', '-')}" for n in BAND_TERMS if getattr(args, n, 0) > 0]
    if used and args.distractor_px <= 0:
        raise ValueError(f"{' and '.join(used)} needs --distractor-px > 0")
    return args.distractor_px if used else 0


def _run_finetune(args: argparse.Namespace) -> int:
    from dislotrack.runtime.model import default_model_path
    from dislotrack.training.data import DataConfig
    from dislotrack.training.evaluate import LABELLED_IOU_TOLERANCE_PX, load_labelled
    from dislotrack.training.export import init_record, load_weights, ship
    from dislotrack.training.finetune import finetune

    source = args.source or default_model_path()
    weights = load_weights(source).masks_only()  # real frames have no drawn traces to mark
    frames = load_labelled(args.images, args.masks, args.labelme, args.line_width)
    frames = frames[: args.first] if args.first else frames
    data = DataConfig(
        preset=args.preset or weights.preset or "m2",
        seed=args.seed,
        crop=args.crop,
        crops_per_image=1,
        max_masks=weights.model.n_masks,
        augment=_augment(args),
        synthetic_share=args.synthetic_share,
        distractor_px=_distractor_px(args),
        distractor_margin_px=args.distractor_margin,
    )
    config = dataclasses.replace(
        _loop_config(args, data, weights.model),
        init=init_record(source, weights),
        # the training frames are scored as `dislotrack evaluate` scores labelled frames, so the
        # history shows how far the runtime's lines fit them (raw channels score ~0 on real frames)
        val_lines=True,
        val_iou_tolerance_px=LABELLED_IOU_TOLERANCE_PX,
        labelled={
            "folder": str(Path(args.labelme or args.images).resolve()),
            "frames": [f.name for f in frames],
            "lines": sum(len(f.masks) for f in frames),
        },
    )
    out = finetune(config, weights, frames, resume=args.resume)
    print(f"run folder: {out} (best.pt, last.pt, history.csv, history.png)")
    if not args.no_export:
        # last.pt, not best.pt: with no held-out frames, "best" is scored on the training frames
        # themselves and tends to pick a barely-tuned early epoch (docs/training-log.md, session 14)
        model = out / f"{args.name}.onnx"
        ship(load_weights(out / "last.pt"), out, args.name, default=False)
        print(f"fine-tuned model: {model} (from last.pt); `dislotrack process SOURCE --model {model}`")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from dislotrack.training.evaluate import run_evaluate

    summary = run_evaluate(args)
    print(json.dumps(summary, indent=1))
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from dislotrack.training.export import load_weights, ship

    out = Path(args.out) if args.out else _models_dir()
    card = ship(
        load_weights(args.weights),
        out,
        args.name,
        default=not args.not_default,
        tolerance=args.tolerance,
        fp16_tolerance=args.fp16_tolerance if args.fp16 else None,
    )
    print(
        f"wrote {out / (args.name + '.onnx')} ({card['onnx_bytes'] / 1e6:.1f} MB, "
        f"parity max |Δ| {card['export_parity_max_abs']:.1e}), .safetensors and .json"
        + (f", {card['fp16']['file']} (|Δ| {card['fp16']['parity_max_abs']:.1e})" if "fp16" in card else "")
    )
    return 0


def _models_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("dislotrack.models")))
