"""Command line for measurements: ``model summary NAME``, ``model list``, ``bench NAME`` (latency)
and ``bench NAME --train`` (training throughput per speed lever, :mod:`facelab.bench.train_throughput`;
``bench all --train`` runs every model of the book's suite).

``NAME`` is a registered facelab model (``python -m facelab model list``) or a torchvision
architecture written ``torchvision:ARCH`` (e.g. ``torchvision:mobilenet_v2``; random weights,
input 3x224x224 unless ``--input-shape`` says otherwise). Both commands print JSON on stdout
(progress and a short summary go to stderr) and, with ``--results-dir``, also store it as a
result (``<dir>/<chapter>/complexity.<model>--<profile>.json`` or
``latency.<model>.<device>.t<threads>--<profile>.json``, or
``trainspeed.<model>.<H>px.b<batch>.<device>.t<threads>--<profile>.json``) that ``python -m facelab
tables`` and the methodology page read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from facelab.bench import complexity, edge_bench
from facelab.config import PROFILES, check_device, check_profile
from facelab.errors import UnknownNameError, UsageError

TORCHVISION_PREFIX = "torchvision:"
#: Input of torchvision's ImageNet classifiers.
TORCHVISION_INPUT_SHAPE = (3, 224, 224)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'3,112,112' (or '3x112x112') -> (3, 112, 112)."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--input-shape must look like 3,112,112 (got {text!r})") from None
    if not shape or min(shape) < 1:
        raise UsageError(f"--input-shape must be positive integers C,H,W (got {text!r})")
    return shape


def load_model(name: str, *, seed: int = 0, input_shape: Sequence[int] | None = None,
               device: str = "cpu", **model_kwargs) -> tuple[nn.Module, tuple[int, ...]]:
    """Build model ``name`` with random weights drawn from ``seed`` (the global RNG is left as it was).

    ``model_kwargs`` go to the builder (e.g. ``num_classes``; ``input_size`` of the STN models).
    Returns the model on ``device`` in eval mode and its per-sample input shape.
    """
    check_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name.startswith(TORCHVISION_PREFIX):
            import torchvision

            arch = name[len(TORCHVISION_PREFIX):]
            available = torchvision.models.list_models(module=torchvision.models)
            if arch not in available:
                raise UnknownNameError(f"torchvision has no classification model {arch!r}; e.g. "
                               f"{', '.join(a for a in available if 'mobilenet' in a or 'resnet' in a)}")
            model = torchvision.models.get_model(arch, weights=None, **model_kwargs)
            shape = tuple(input_shape) if input_shape is not None else TORCHVISION_INPUT_SHAPE
        else:
            from facelab.registry import create_model, list_models

            if name not in list_models():
                known = ", ".join(list_models()) or "none yet"
                raise UnknownNameError(f"unknown model {name!r} (registered: {known}); torchvision models are "
                               f"written {TORCHVISION_PREFIX}ARCH, e.g. {TORCHVISION_PREFIX}mobilenet_v2")
            model = create_model(name, **model_kwargs)
            try:
                shape = complexity.resolve_input_shape(model, input_shape)
            except ValueError as err:  # no input_shape attribute / a bad --input-shape: the user's to fix
                raise UsageError(str(err)) from None
    return model.to(device).eval(), tuple(int(v) for v in shape)


def _save(result, results_dir: str) -> str:
    from facelab.results import save_result

    return str(save_result(result, results_dir))


def _cmd_summary(args: argparse.Namespace) -> int:
    from facelab.codedeps import track_modules
    from facelab.results import Result, make_provenance

    check_profile(args.profile)
    started = time.time()
    with track_modules() as used:
        model, shape = load_model(args.name, seed=args.seed, input_shape=parse_shape(args.input_shape))
        out = complexity.summarize(model, shape, name=args.name).to_dict()
        if args.layers or args.depth:
            out["layers"] = [
                {"name": r.name, "type": r.type, "output_shape": list(r.output_shape) if r.output_shape else None,
                 "output_size": r.paper_shape, "params": r.params, "flops": r.flops}
                for r in complexity.layer_summary(model, shape, depth=args.depth)]
    if args.results_dir:
        config = {"model": args.name, "input_shape": list(shape), "seed": args.seed, "layers": bool(out.get("layers"))}
        result = Result(chapter=args.chapter, experiment=f"complexity.{edge_bench.slug(args.name)}",
                        profile=args.profile, seed=args.seed, config=config, metrics=out,
                        provenance=make_provenance(config=config, modules=used.modules,
                                                   device="cpu", started=started, finished=time.time()))
        out = dict(out, result_file=_save(result, args.results_dir))
    print(json.dumps(out, indent=1))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from facelab.registry import list_models

    names = list_models(args.pattern)
    print("\n".join(names) if names else f"no registered model matches {args.pattern!r}; torchvision models "
          f"work too: {TORCHVISION_PREFIX}ARCH")
    return 0


def _cmd_train_bench(args: argparse.Namespace) -> int:
    from facelab.bench import train_throughput as tt

    if len(args.batch or []) > 1:
        raise UsageError("--train measures one batch size per run: give one --batch")
    overrides = dict(threads=args.threads or 2, steps=args.repeats, warmup=args.warmup, device=args.device,
                     matmul_size=args.matmul_size, num_classes=args.classes, data=not args.no_data,
                     levers=tuple(tt.LEVERS) if args.levers == ["all"] else tuple(args.levers) if args.levers else None)
    if args.batch:
        overrides["batch"] = args.batch[0]
    if args.name == "all":
        entries = tt.suite_entries(args.only)
    else:
        entries = [tt.SuiteEntry(args.name, args.batch[0] if args.batch else 32, input_shape=parse_shape(args.input_shape))]
    outs = []
    for entry in entries:
        print(f"{entry.name}: training throughput ({entry.note or 'as asked'}) ...", file=sys.stderr)
        quiet = (dict(max_cores=args.wait_for_quiet, timeout_s=args.wait_timeout,
                      log=lambda m: print(m, file=sys.stderr)) if args.wait_for_quiet else None)
        result = tt.run_entry(entry, profile=args.profile, seed=args.seed, progress=not args.no_progress, quiet=quiet,
                              **overrides)
        out = dict(result.metrics, experiment=result.experiment, profile=result.profile)
        if args.results_dir:
            out["result_file"] = _save(result, args.results_dir)
        m = result.metrics
        print(f"  load {m['load_average']['before'][0]:.2f}, {m['cpu']['model']}, {m['threads']} threads, "
              f"{m['train_flops_per_image']['total'] / 1e9:.2f} GFLOP per training image", file=sys.stderr)
        for rec in m["runs"]:
            if "skipped" in rec:
                print(f"  {rec['lever']:>28s} skipped: {rec['skipped']}", file=sys.stderr)
                continue
            extra = f", compile {rec['compile_s']:.0f} s" if rec.get("compile_s") is not None else ""
            print(f"  {rec['lever']:>28s} {rec['images_per_s']:8.1f} img/s ({rec['speedup']:.2f}x fp32), "
                  f"{rec['gflops']:6.1f} GFLOP/s, {rec['floor_ratio']:.2f}x the fp32 floor{extra}", file=sys.stderr)
        outs.append(out)
    print(json.dumps(outs[0] if len(outs) == 1 else outs, indent=1))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from facelab.bench import latency

    if args.train:
        return _cmd_train_bench(args)
    if args.name == "all":
        raise UsageError("NAME 'all' (the suite of the book's models) is for --train; name one model for latency")

    runtimes = latency.RUNTIMES if args.runtime == "both" else (args.runtime,)
    try:
        config = latency.LatencyConfig.for_profile(
            args.profile, threads=args.threads or 1, batches=tuple(args.batch or [1]), repeats=args.repeats,
            warmup=args.warmup, runtimes=runtimes, device=args.device, matmul_size=args.matmul_size,
            seed=args.seed).check()
    except ValueError as err:  # an option value LatencyConfig.check refuses (its message names the option)
        raise UsageError(str(err)) from None
    model, shape = load_model(args.name, seed=args.seed, input_shape=parse_shape(args.input_shape),
                              device=args.device)
    result = latency.latency_result(model, shape, name=args.name, config=config, chapter=args.chapter,
                                    profile=args.profile, progress=not args.no_progress)
    out = dict(result.metrics, experiment=result.experiment, profile=result.profile)
    if args.results_dir:
        out["result_file"] = _save(result, args.results_dir)
    for rec in result.metrics["runs"]:
        ratio = f"{rec['floor_ratio']:.2f}x floor" if rec["floor_ratio"] else "no floor"
        print(f"{rec['runtime']:>12s} batch {rec['batch']:<3d} median {rec['median_ms']:9.3f} ms "
              f"(p10 {rec['p10_ms']:.3f}, p90 {rec['p90_ms']:.3f}); {ratio}", file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help=f"registered model or {TORCHVISION_PREFIX}ARCH")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="per-sample input (default: the model's input_shape; torchvision: 3,224,224)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--profile", default="small", choices=PROFILES,
                   help="profile recorded in the result (bench: sets default repeats; smoke 5, small 30, full 100)")
    p.add_argument("--results-dir", default=None, help="also store the JSON as a result under this folder")
    p.add_argument("--chapter", default=edge_bench.DEFAULT_CHAPTER, help="result sub-folder (default: bench)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("model", help="inspect models (complexity)",
                       description="Inspect registered models or torchvision:ARCH models.")
    msub = m.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    s = msub.add_parser("summary", help="parameters, fp32 size, FLOPs/MACs, input shape, embedding size (JSON)",
                        description="Complexity of a model as JSON: parameters, fp32 state-dict size in bytes and MB "
                                    "(10^6 bytes), FLOPs (FlopCounterMode, 2 per multiply-add) and MACs, input "
                                    "shape and embedding size.")
    _common(s)
    s.add_argument("--layers", action="store_true", help="add the per-layer table (leaf modules)")
    s.add_argument("--depth", type=_positive, default=None,
                   help="per-layer table of the modules at this name depth instead of the leaves")
    s.set_defaults(func=_cmd_summary)
    ls = msub.add_parser("list", help="registered model names")
    ls.add_argument("pattern", nargs="?", default="*")
    ls.set_defaults(func=_cmd_list)

    b = sub.add_parser("bench", help="latency of a model (eager / ONNX Runtime), or with --train its training "
                                     "throughput per speed lever (JSON)",
                       description="Median/p10/p90 latency over repeated runs after warm-up, with the thread count, "
                                   "CPU, versions and the model's FLOP floor (FLOPs / measured sgemm throughput). "
                                   "With --train: images/s of one SGD training step per speed lever (fp32, "
                                   "channels_last, bf16 autocast, both, torch.compile), training FLOPs, GFLOP/s and "
                                   "the ratio to the fp32/bf16 matmul floor, the data path's time per batch, CPU "
                                   "ISA flags and the machine load. NAME 'all' with --train runs the book's suite "
                                   "(every registered model at its chapter's input, and MobileNetV2).")
    _common(b)
    b.add_argument("--threads", type=_positive, default=None,
                   help="torch (and ONNX Runtime) intra-op threads (default 1, the edge-CPU stand-in; --train: 2)")
    b.add_argument("--runtime", default="both", choices=("torch", "onnxruntime", "both"))
    b.add_argument("--batch", type=_positive, nargs="+", default=None,
                   help="batch sizes (default 1; --train: one batch size, default 32, the suite's own with 'all')")
    b.add_argument("--repeats", type=_positive, default=None,
                   help="timed runs per batch, or timed steps per lever with --train (default: by profile)")
    b.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: by profile)")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    b.add_argument("--matmul-size", type=int, default=None,
                   help="N of the NxN matmul measuring the FLOP floor (default 4096; smoke 2048, with --train 1024; 0 skips)")
    b.add_argument("--no-progress", action="store_true")
    t = b.add_argument_group("training throughput (--train)")
    t.add_argument("--train", action="store_true", help="measure training steps instead of inference latency")
    t.add_argument("--levers", nargs="+", default=None, metavar="LEVER",
                   help="levers to measure: fp32 channels_last bf16 bf16+channels_last compile "
                        "bf16+channels_last+compile, or 'all' (default: the four eager ones)")
    t.add_argument("--classes", type=_positive, default=None, help="logits of the classifier (default 500)")
    t.add_argument("--no-data", action="store_true", help="skip timing the data paths")
    t.add_argument("--only", nargs="+", default=None, metavar="MODEL", help="with NAME 'all': these suite models only")
    t.add_argument("--wait-for-quiet", type=float, default=None, metavar="CORES",
                   help="before each model, wait until other processes keep fewer than CORES cores busy "
                        "(10-second windows; shared machines), e.g. 0.2")
    t.add_argument("--wait-timeout", type=float, default=1800.0, metavar="S",
                   help="give up waiting after S seconds and measure anyway (recorded; default 1800)")
    b.set_defaults(func=_cmd_bench)
