"""The mambavision command line: benchmark, predict, train, validate. Invalid arguments and bad
input give a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys

from mvscan.cli_args import (DEVICE_CHOICES, DTYPES, OneLineErrorParser, UsageError,
                             non_negative_float, non_negative_int, positive_int,
                             resolve_device)

from .benchmark import (PATHS, TIMM_PREFIX, BenchmarkConfig, format_table, run_benchmark,
                        run_sweep, write_json, write_plot)
from .configs import VARIANTS


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m mambavision")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("benchmark", help="images/sec on random inputs, mvscan vs reference")
    bench.add_argument("--model", default="mamba_vision_T", help="one of list_models()")
    bench.add_argument("--batch-size", type=positive_int, default=None,
                       help="default: 8 on CPU, 128 on CUDA")
    bench.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    bench.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                       help="default: fp32 on CPU, fp16 (autocast) on CUDA")
    bench.add_argument("--channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile each path")
    bench.add_argument("--train", action="store_true",
                       help="time forward + backward + optimizer step instead of inference")
    bench.add_argument("--compare", default="reference",
                       help="comma-separated paths to run beside mvscan: reference (the "
                            "pure-PyTorch scan, the official computation), timm:NAME (a timm "
                            "model, e.g. timm:convnext_tiny), or ''")
    bench.add_argument("--optimize", nargs="?", const="", default=None, metavar="DTYPES",
                       help="also time mambavision.optimize_for_inference of mvscan's model "
                            "and of each timm peer (folded, compiled with freezing), in --dtype "
                            "or in each of DTYPES (e.g. fp32,bf16)")
    bench.add_argument("--image-size", type=positive_int, default=None,
                       help="default: the variant's resolution")
    bench.add_argument("--warmup", type=non_negative_int, default=2)
    bench.add_argument("--repeats", type=positive_int, default=None,
                       help="timed runs per path (default: 10 on CPU, 50 on CUDA)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also measure 1/4 and 1/2 of the batch size and plot images/sec vs "
                            "batch size per path (needs matplotlib)")

    pred = sub.add_parser("predict", help="top-k ImageNet classes of an image")
    pred.add_argument("image", help="an image file (Pillow reads it)")
    pred.add_argument("--model", default="mamba_vision_T", help="one of list_models()")
    pred.add_argument("--checkpoint", required=True, help="a released checkpoint file")
    pred.add_argument("--topk", type=positive_int, default=5)
    pred.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    pred.add_argument("--optimize", action="store_true",
                      help="run mambavision.optimize_for_inference's model (compiling takes "
                           "30-40 s on a 2-core CPU; worth it for many images, not one)")

    train = sub.add_parser("train", help="train or fine-tune on DIR/train, validate on DIR/val "
                                         "(one process, or under torchrun)")
    train.add_argument("--data", required=True, help="DIR with DIR/train/<class>/* and "
                                                     "DIR/val/<class>/*")
    train.add_argument("--model", default="mamba_vision_T", help="one of list_models()")
    train.add_argument("--output", required=True, help="folder for checkpoints and metrics")
    train.add_argument("--epochs", type=positive_int, default=300)
    train.add_argument("--batch-size", type=positive_int, default=64, help="per process")
    train.add_argument("--opt", choices=("adamw", "sgd"), default="adamw",
                       help="timm's AdamW, or SGD with Nesterov momentum 0.9")
    train.add_argument("--lr", type=non_negative_float, default=5e-4,
                       help="peak learning rate (cosine schedule; not scaled by batch)")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.05)
    train.add_argument("--warmup-epochs", type=non_negative_int, default=5)
    train.add_argument("--drop-path", type=non_negative_float, default=None,
                       help="stochastic depth (default: the variant's)")
    train.add_argument("--mixup", type=non_negative_float, default=0.0, help="Mixup alpha")
    train.add_argument("--cutmix", type=non_negative_float, default=0.0, help="CutMix alpha")
    train.add_argument("--smoothing", type=non_negative_float, default=0.1,
                       help="label smoothing")
    train.add_argument("--ema", action="store_true", help="keep an EMA of the weights")
    train.add_argument("--ema-decay", type=non_negative_float, default=0.9998)
    train.add_argument("--checkpoint", metavar="FILE",
                       help="start from these weights (e.g. a released checkpoint); the head "
                            "is re-initialised when the class count differs")
    train.add_argument("--resume", metavar="FILE",
                       help="continue a run exactly where FILE (last.pth.tar) left off")
    train.add_argument("--save-every", type=non_negative_int, default=0, metavar="N",
                       help="also keep epoch<N>.pth.tar every N epochs")
    train.add_argument("--fsdp", action="store_true",
                       help="shard the model with FSDP2 (fully_shard) instead of DDP")
    train.add_argument("--grad-checkpointing", action="store_true")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--seed", type=non_negative_int, default=0)

    val = sub.add_parser("validate", help="top-1/top-5/loss of a checkpoint on a folder of "
                                          "class subfolders")
    val.add_argument("--data", required=True, help="a folder of class subfolders")
    val.add_argument("--model", default="mamba_vision_T", help="one of list_models()")
    val.add_argument("--checkpoint", required=True, metavar="FILE")
    val.add_argument("--batch-size", type=positive_int, default=64, help="per process")
    val.add_argument("--json", metavar="FILE",
                     help="also write {top1, top5, loss, img_per_s, images} as JSON")
    val.add_argument("--optimize", action="store_true",
                     help="evaluate mambavision.optimize_for_inference's model (folded, "
                          "compiled with freezing; --amp becomes its dtype)")
    for p in (train, val):
        p.add_argument("--image-size", type=positive_int, default=None,
                       help="default: the variant's resolution")
        p.add_argument("--workers", type=non_negative_int, default=4,
                       help="data-loading processes per rank")
        p.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                       help="autocast dtype (default: float32)")
        p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    return parser


def one_line(exc: Exception) -> str:
    """The message of a UsageError; for one re-raised from a DataLoader worker (whose message
    is the worker's traceback) its last line, without the exception's class name."""
    last = str(exc).strip().splitlines()[-1]
    name = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(name):] if last.startswith(name) else last


def run_distributed(args: argparse.Namespace, device: str, prog: str) -> int:
    """train or validate in this process (rank 0 of 1, or one rank under torchrun)."""
    from .data import UnreadableImageError
    from .distributed import setup, teardown

    ctx = setup(device)
    try:
        if args.command == "validate":
            from .validate import run_validate

            if args.json and ctx.main and not writable(args.json):
                raise UsageError(f"--json: cannot write {args.json}")
            run_validate(args, ctx)
        else:
            from .train import TrainConfig, run_train

            fields = TrainConfig.__dataclass_fields__
            run_train(TrainConfig(**{k: getattr(args, k) for k in fields if hasattr(args, k)}
                                  | dict(device=device)), ctx)
    except UsageError as exc:
        if ctx.main or isinstance(exc, UnreadableImageError):  # every rank checks the same args
            print(f"{prog} {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        teardown(ctx)
    return 0


def run_predict(args: argparse.Namespace, device: str) -> int:
    """Prints the top-k classes of args.image on device ("cpu" or "cuda")."""
    if args.model not in VARIANTS:
        raise UsageError(f"unknown model {args.model!r}; choose from {', '.join(VARIANTS)}")
    for what, path in (("image", args.image), ("--checkpoint", args.checkpoint)):
        if not os.path.isfile(path):
            raise UsageError(f"{what}: no such file: {path}")
    if args.topk > 1000:
        raise UsageError(f"--topk must be at most 1000, got {args.topk}")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise UsageError("predict needs Pillow: pip install pillow") from None
    from PIL import UnidentifiedImageError

    from .checkpoint import CheckpointError
    from .predict import predict

    try:
        top = predict(args.image, args.model, args.checkpoint, args.topk, device,
                      optimize=args.optimize)
    except UnidentifiedImageError:
        raise UsageError(f"image: not an image Pillow can read: {args.image}") from None
    except CheckpointError as exc:
        raise UsageError(f"--checkpoint: {exc}") from None
    for name, prob in top:
        print(f"{prob * 100:6.2f}%  {name}")
    return 0


def writable(path: str) -> bool:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        return False
    return not os.path.exists(path) or os.access(path, os.W_OK)


def resolve(args: argparse.Namespace, device: str) -> BenchmarkConfig:
    """The benchmark's configuration from its parsed arguments and the resolved device ("cpu"
    or "cuda"), with each default filled in for that device."""
    if args.model not in VARIANTS:
        raise UsageError(f"unknown model {args.model!r}; choose from {', '.join(VARIANTS)}")
    compare = [p.strip() for p in args.compare.split(",") if p.strip()]
    unknown = [p for p in compare if (p not in PATHS or p == "mvscan")
               and not (p.startswith(TIMM_PREFIX) and timm_has(p[len(TIMM_PREFIX):]))]
    if unknown:
        raise UsageError(f"--compare: unknown path(s) {unknown}; available: reference, "
                         f"timm:NAME (a model timm has)")
    on_gpu = device == "cuda"
    dtype = args.dtype or ("fp16" if on_gpu else "fp32")
    optimize = optimize_dtypes(args.optimize, dtype, device, args.train)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not writable(path):
            raise UsageError(f"{flag}: cannot write {path}")
    if args.plot:
        if not args.plot.endswith(".png"):
            raise UsageError(f"--plot: the file must end in .png, got {args.plot}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    return BenchmarkConfig(
        model=args.model, batch_size=args.batch_size or (128 if on_gpu else 8), device=device,
        dtype=dtype, channels_last=args.channels_last,
        compile=args.compile, train=args.train, paths=["mvscan"] + compare,
        image_size=args.image_size or VARIANTS[args.model].resolution, warmup=args.warmup,
        repeats=args.repeats or (50 if on_gpu else 10), optimize=optimize)


def timm_has(name: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.list_models(name))


def optimize_dtypes(value: str | None, dtype: str, device: str, train: bool) -> list[str]:
    """--optimize's dtypes: none without the flag, --dtype for a bare --optimize, else its
    comma-separated list."""
    if value is None:
        return []
    if train:
        raise UsageError("--optimize times inference; it cannot be combined with --train")
    dtypes = [d.strip() for d in value.split(",") if d.strip()] or [dtype]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise UsageError(f"--optimize: unknown dtype(s) {bad}; choose from {', '.join(DTYPES)}")
    if "fp16" in dtypes and device == "cpu":
        raise UsageError("--optimize fp16 needs --device cuda (no fast fp16 on CPU); use bf16")
    return list(dict.fromkeys(dtypes))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.command == "predict":
            return run_predict(args, device)
        if args.command in ("train", "validate"):
            return run_distributed(args, device, parser.prog)
        cfg = resolve(args, device)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        reports = run_sweep(cfg)
        for report in reports:
            print(format_table(report))
        write_plot(reports, args.plot)
        print(f"plot written to {args.plot}")
        report = dict(reports[-1], sweep=reports)
    else:
        report = run_benchmark(cfg)
        print(format_table(report))
    if args.json:
        write_json(report, args.json)
        print(f"results written to {args.json}")
    return 0
