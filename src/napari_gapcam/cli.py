"""The ``gapcam`` command: ``gapcam predict`` (maps for many images) and ``gapcam models``.

Exit codes: 0 every input done; 1 some inputs failed (each is reported with its reason; the
others are written); 2 a usage or set-up error (nothing ran); 130 interrupted. torch is
imported only once a command runs, so ``gapcam --help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

PREDICT_EXAMPLES = """\
examples:
  gapcam predict photos/ --out cams/
  gapcam predict 'plates/*.tif' --model resnet18 --weights phenotypes.pt --class mitotic
  gapcam predict screen.zarr --input-size 448 --workers 4 --out screen-cams/

outputs, per input <stem> (in --out):
  <stem>_cam.tif       float32 map of the chosen class in [0, 1] at the image's H×W
                       (N×H×W for a multi-page TIFF; <stem>_cam.zarr for a zarr input)
  <stem>_overlay.png   the image with the map in turbo at 50 % (first page of a stack)
  records/<stem>.json  the input's JSON line; it marks the input as done
  results.jsonl        one JSON line per input: file, per-page top-k, chosen class, box

A re-run skips the inputs already done with the same settings and finishes the rest.
exit codes: 0 all done, 1 some inputs failed (reported, the rest written), 2 usage error.
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _input_size(text: str) -> int:
    value = int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 pixels, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"is a fraction of the map's max in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gapcam",
        description="Class activation maps (CAM, or Grad-CAM) of CNN classifiers for many images.",
        epilog="Run 'gapcam predict --help' for the options and examples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        help="maps, overlays and predictions for images, folders, globs or zarr arrays",
        description="Compute the class activation map of every input and write the results.",
        epilog=PREDICT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (PNG, JPEG, TIFF: 16-bit grey, RGB, multi-page), folders (their "
        "images), globs ('data/*.png', quoted) or zarr arrays N×H×W[×3] (one input each)",
    )
    predict.add_argument(
        "--model",
        default="resnet50",
        help="architecture: resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d, "
        "wide_resnet50_2, wide_resnet101_2 (default: %(default)s; see 'gapcam models')",
    )
    predict.add_argument(
        "--weights",
        default="IMAGENET1K_V1",
        metavar="NAME|FILE",
        help="torchvision weights name (IMAGENET1K_V1, IMAGENET1K_V2, …), a checkpoint FILE "
        "(a state dict), or 'none' for a random init (default: %(default)s)",
    )
    predict.add_argument(
        "--class-names",
        metavar="FILE",
        help="class names for a checkpoint: .json list or .txt, one per line",
    )
    predict.add_argument(
        "--class",
        dest="class_ref",
        metavar="NAME|INDEX",
        help="the class whose map is written (default: each page's top-1)",
    )
    predict.add_argument(
        "--topk", type=_positive, default=5, help="predictions kept per page (default: 5)"
    )
    predict.add_argument(
        "--threshold",
        type=_fraction,
        help="box threshold, a fraction of the map's max (default: the checkpoint's, else 0.2)",
    )
    predict.add_argument(
        "--input-size",
        type=_input_size,
        metavar="N",
        help="short side of the network input in pixels (default: the model's, 224 for "
        "ImageNet weights); larger gives finer maps and costs more",
    )
    predict.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
    )
    predict.add_argument(
        "--out", default="gapcam-out", metavar="DIR", help="output folder (default: %(default)s)"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="redo every input, even those already done"
    )
    where = predict.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="run on a local dask.distributed cluster of N worker processes (127.0.0.1 only)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing dask cluster, e.g. tcp://scheduler-host:8786 (workers must see "
        "the inputs and --out under the same paths)",
    )
    predict.add_argument(
        "--chunk-size",
        type=_positive,
        default=8,
        metavar="N",
        help="inputs per task (a dead worker costs one chunk; default: %(default)s)",
    )
    predict.add_argument(
        "--batch-size",
        type=_positive,
        default=8,
        metavar="N",
        help="pages per inference call (default: %(default)s)",
    )
    predict.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="torch CPU threads of a single-process run (default: torch's, one per core; "
        "1 is much faster when other programs keep the cores busy). dask workers use 1 each",
    )
    predict.set_defaults(handler=predict_command)

    models = commands.add_parser(
        "models",
        help="architectures, their named weights and where cached weights must go",
        description="List the architectures, their named weights, and the file each needs "
        "in the torch hub cache to work offline.",
    )
    models.set_defaults(handler=models_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gapcam`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("gapcam: interrupted; run the same command again to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _error(message: str) -> int:
    print(f"gapcam: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def predict_command(args: argparse.Namespace) -> int:
    from .chunks import ModelSpec, Options, chunked, weights_argument
    from .inputs import expand, items
    from .outputs import OutputFolder

    paths, problems = expand(args.inputs)
    todo = items(paths)
    options = Options(
        model=ModelSpec(args.model, weights_argument(args.weights), args.device, args.class_names),
        class_ref=args.class_ref,
        topk=args.topk,
        threshold=args.threshold,
        input_size=args.input_size,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    try:
        out = OutputFolder(args.out)
        out.prepare()
        out.rebuild_results()  # drops duplicates and torn lines an earlier run may have left
    except OSError as error:
        return _error(f"cannot use the output folder {args.out}: {error}")
    for argument, reason in problems:
        print(f"gapcam: skipped {argument}: {reason}", file=sys.stderr)
    chunks = chunked(todo, args.chunk_size)
    counts = {"done": 0, "skipped": 0, "failed": len(problems)}
    try:
        if args.workers or args.scheduler:
            from .distributed import ClusterError, check_on_cluster, client, run_chunks

            try:
                with client(args.workers, args.scheduler) as connection:
                    if (failure := _check(check_on_cluster, connection, options)) is not None:
                        return failure
                    _collect(
                        run_chunks(connection, chunks, options, str(out.root)),
                        out,
                        counts,
                        len(todo),
                    )
            except ClusterError as error:
                return _error(str(error))
        else:
            from .chunks import check_options, process_chunk

            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            if (failure := _check(check_options, options)) is not None:
                return failure
            outcomes = (process_chunk(chunk, options, str(out.root)) for chunk in chunks)
            _collect(outcomes, out, counts, len(todo))
    finally:
        total = out.rebuild_results()
    print(
        f"gapcam: {counts['done']} done, {counts['skipped']} already done, {counts['failed']} "
        f"failed; {total} inputs in {out.results}",
        file=sys.stderr,
    )
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _check(function: Any, *args: Any) -> int | None:
    """Load the model and check --class before any input: a set-up error is a usage error."""
    try:
        function(*args)
    except (ValueError, KeyError, IndexError, OSError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        if "weights" in message.lower() and "--weights" not in message:
            message += "\nOn the command line: --weights path/to/file.pth (or --weights none)."
        return _error(message)
    return None


def _collect(
    chunks: Iterator[list[dict[str, Any]]], out: Any, counts: dict[str, int], total: int
) -> None:
    """Stream outcomes into results.jsonl, the progress bar (on a terminal) and the counts."""
    from tqdm import tqdm

    with tqdm(total=total, unit="input", disable=not sys.stderr.isatty()) as progress:
        for outcomes in chunks:
            for outcome in outcomes:
                counts[outcome["status"]] += 1
                if outcome["status"] == "done":
                    out.append_result(outcome["record"])
                elif outcome["status"] == "failed":
                    progress.write(
                        f"gapcam: skipped {outcome['file']}: {outcome['error']}", file=sys.stderr
                    )
            progress.update(len(outcomes))


def models_command(args: argparse.Namespace) -> int:
    from .models import ARCHITECTURES, cached_weights_path, named_weights

    print("architecture        weights         cached  file (copy it there to work offline)")
    for arch in ARCHITECTURES:
        for name in named_weights(arch):
            path = cached_weights_path(arch, name)
            print(f"{arch:<19} {name:<15} {'yes' if path.exists() else 'no':<7} {path}")
    print(
        "\nNamed weights download once into that folder ($TORCH_HOME/hub/checkpoints). "
        "Offline: copy the file there, set TORCH_HOME to a folder whose hub/checkpoints holds "
        "it, or pass the file itself: gapcam predict … --weights path/to/file.pth. "
        "Your own checkpoint: --model ARCH --weights FILE [--class-names FILE]."
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
