"""The ``gapcam`` command: ``gapcam predict`` (maps for many images) and ``gapcam models``.

Exit codes (listed under each command's ``--help``: :mod:`.epilogs`): 0 every input done; 1 some
inputs failed (each is reported with its reason; the others are written), or the run stopped
(the dask cluster ran out of workers, inputs changed meanwhile); 2 a usage or set-up error
(nothing ran, nothing was created), or the output folder is in use by another run; 130
interrupted; 143 terminated (SIGTERM, handled as an interrupt).
torch is imported only once there is something to compute, so ``gapcam --help`` and a re-run
of a finished folder are quick. napari and Qt are never imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .arguments import add_evaluate_arguments, add_predict_arguments
from .epilogs import EVALUATE_EXAMPLES, PREDICT_EXAMPLES
from .messages import EXIT_INTERRUPTED, EXIT_OK
from .signals import EXIT_TERMINATED, Terminated, sigterm_interrupts


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
    add_predict_arguments(predict)
    predict.set_defaults(handler=predict_command)

    evaluate = commands.add_parser(
        "evaluate",
        help="localization metrics (MaxBoxAccV2, MaxBoxAcc, best threshold, PxAP) of the maps "
        "against true boxes",
        description="Run the model on the inputs named in a true-boxes file and compute the "
        "localization metrics of Choe et al. (CVPR 2020): MaxBoxAccV2, MaxBoxAcc and the best "
        "box threshold per IoU, and PxAP with --true-masks.",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=evaluate_command)

    models = commands.add_parser(
        "models",
        help="architectures, their named weights, where cached weights must go, the demo model",
        description="List the architectures, their named weights, and the file each needs "
        "in the torch hub cache to work offline; and the bundled demo model.",
    )
    models.set_defaults(handler=models_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gapcam`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as given (a lock names it)
    try:
        with sigterm_interrupts():
            return args.handler(args)
    except Terminated:
        print(
            "gapcam: terminated (SIGTERM); run the same command again to finish.", file=sys.stderr
        )
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("gapcam: interrupted; run the same command again to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED


def predict_command(args: argparse.Namespace) -> int:
    from .predict import predict

    return predict(args)


def evaluate_command(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_command as evaluate

    return evaluate(args)


def models_command(args: argparse.Namespace) -> int:
    from ..models import ARCHITECTURES, cached_weights_path, named_weights
    from .preflight import demo_weights

    rows = [("architecture", "weights", "cached", "file (copy it there to work offline)")]
    for arch in ARCHITECTURES:
        for name in named_weights(arch):
            path = cached_weights_path(arch, name)
            rows.append((arch, name, "yes" if path.exists() else "no", str(path)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]
        )
    print(
        "\nNamed weights download once into that folder ($TORCH_HOME/hub/checkpoints). "
        "Offline: copy the file there, set TORCH_HOME to a folder whose hub/checkpoints holds "
        "it, or pass the file itself: gapcam predict … --weights path/to/file.pth. "
        "Your own checkpoint: --model ARCH --weights FILE [--class-names FILE]. "
        "timm models: --model timm:NAME --weights FILE (pip install timm)."
    )
    print(
        f"\nDemo model (bundled, works offline): resnet18 trained on synthetic shapes (disk, "
        f"rectangle, triangle, ring, cross, star), {demo_weights()}\n"
        "  gapcam predict scene.png --weights demo --out demo-cams/\n"
        '  a scene to try it on: python -c "import imageio.v3 as iio; from '
        "napari_gapcam.synthetic import sample_scene; iio.imwrite('scene.png', sample_scene())\""
    )
    return EXIT_OK
