"""The options of ``gapcam predict`` and ``gapcam evaluate``: each option, its type check and its
help, in the order ``--help`` lists them (the text under them: :mod:`.epilogs`)."""

from __future__ import annotations

import argparse

MAX_INPUT_SIZE = 8192  # an 8192² forward pass of ResNet-50 needs ~18 GB already


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _input_size(text: str) -> int:
    value = int(text)
    if not 32 <= value <= MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be 32 to {MAX_INPUT_SIZE} pixels (the network input's short side; 224 is "
            f"usual, 448 or 896 give finer maps), got {value}"
        )
    return value


def _level(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"names separated by commas, got {text!r}")
    return names


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be 0 to 2**63 - 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"is a fraction of the map's max in [0, 1], got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --seed, --class-names (predict and evaluate)."""
    parser.add_argument(
        "--model",
        metavar="ARCH",
        help="a torchvision architecture: ResNet, ResNeXt, Wide ResNet, DenseNet, EfficientNet "
        "(v1, v2), MobileNet v2/v3, MNASNet, RegNet, ShuffleNet v2, GoogLeNet, Inception v3, "
        "Swin, ConvNeXt (resnet50, densenet121, efficientnet_b0, convnext_tiny, …: "
        "'gapcam models' lists them all), or timm:NAME for a timm model (pip install timm). "
        "Default: resnet50 (resnet18 with --weights demo)",
    )
    parser.add_argument(
        "--weights",
        default="IMAGENET1K_V1",
        metavar="NAME|FILE",
        help="torchvision weights name (IMAGENET1K_V1, IMAGENET1K_V2, …), a checkpoint FILE "
        "(a state dict), 'demo' (the bundled shapes model, see 'gapcam models') or 'none' for "
        "a random init, seeded by --seed (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the random init of --weights none: every run and worker makes the same "
        "model (default: %(default)s)",
    )
    parser.add_argument(
        "--class-names",
        metavar="FILE",
        help="class names for a checkpoint: .json list or .txt, one per line",
    )
    from ..engine.methods import METHODS, method_names

    methods = "; ".join(f"{row.name}: {row.describe()}" for row in METHODS.values())
    takers = " or ".join(row.name for row in METHODS.values() if "max_channels" in row.options)
    parser.add_argument(
        "--method",
        choices=method_names(),
        default="auto",
        help="auto: the exact method where the head is a global average pooling and one dense "
        f"layer (the CAM), else Grad-CAM; or one of {methods} (default: %(default)s)",
    )
    parser.add_argument(
        "--max-channels",
        type=_positive,
        metavar="N",
        help=f"with --method {takers} (or in evaluate's --methods): keep each image's N most "
        "active channels; it runs one forward pass per channel, so N bounds its cost (ResNet-50 "
        "has 2048) (default: every channel)",
    )
    add_layer_argument(parser)


def add_map_precision_argument(parser: argparse.ArgumentParser) -> None:
    """predict's --precision (Score-CAM's masked passes; evaluate's --precision is its own)."""
    from ..engine.methods import METHODS

    takers = " or ".join(row.name for row in METHODS.values() if "precision" in row.options)
    parser.add_argument(
        "--precision",
        dest="map_precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help=f"with --method {takers}: the masked inputs' passes; auto is bf16 where this "
        "machine computes it natively (a CPU with AMX, a GPU: about 2.5× faster, maps within "
        "about 0.01), else fp32. It is decided once for the whole run and kept in its records, "
        "so one folder never mixes the two (default: auto)",
    )


def add_layer_argument(parser: argparse.ArgumentParser) -> None:
    """--layer (predict and evaluate)."""
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="take the maps at this module of the network instead of its last spatial maps, "
        "e.g. layer3 (resnet), features.denseblock3 (densenet); an unknown name lists the "
        "model's stages. The CAM is exact only at the last maps: elsewhere auto gives "
        "Grad-CAM (default: the last maps)",
    )
    parser.add_argument(
        "--layers",
        type=_names,
        default=(),
        metavar="NAME,NAME",
        help="with --method layercam: fuse LayerCAM's maps of these modules into one (as "
        "pytorch-grad-cam does with several target layers), e.g. layer2,layer3,layer4; the maps "
        "are taken at the earliest (or at --layer, before it) (default: none)",
    )


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """--input-size, --square (predict and evaluate)."""
    parser.add_argument(
        "--input-size",
        type=_input_size,
        metavar="N",
        help="short side of the network input in pixels, 32 to 8192 (default: the model's, "
        "224 for ImageNet weights); larger gives finer maps and costs more",
    )
    parser.add_argument(
        "--square",
        action="store_true",
        help="squash each image to an N×N square instead of keeping its aspect ratio, as many "
        "training pipelines resize (default: the checkpoint's setting, else off)",
    )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --threads (predict and evaluate)."""
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="torch CPU threads of a single-process run (default: torch's, one per core; "
        "1 is much faster when other programs keep the cores busy). dask workers use 1 each",
    )


def add_predict_arguments(predict: argparse.ArgumentParser) -> None:
    """The inputs and options of ``gapcam predict``."""
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (PNG, JPEG, TIFF: 16-bit grey, RGB, multi-page), folders (their "
        "images), globs ('data/*.png', quoted) or zarr arrays N×H×W[×3] (one input each)",
    )
    add_model_arguments(predict)
    predict.add_argument(
        "--class",
        dest="class_ref",
        metavar="NAME|INDEX",
        help="the class whose map is written (default: each page's top-1; with --tiles, the "
        "image's top class by mean tile probability, or 'all': every class, C×Y×X)",
    )
    predict.add_argument(
        "--topk", type=_positive, default=5, help="predictions kept per page (default: 5)"
    )
    predict.add_argument(
        "--threshold",
        type=_fraction,
        help="box threshold, a fraction of the map's max (default: the checkpoint's, else 0.2)",
    )
    add_input_arguments(predict)
    add_map_precision_argument(predict)
    predict.add_argument(
        "--max-map-pixels",
        type=_positive,
        default=2**22,
        metavar="N",
        help="a map over a bigger image is written at a grid of at most N cells (its placement "
        "over the image is in the record; default: %(default)s, 2048²)",
    )
    predict.add_argument(
        "--labels",
        metavar="DIR_OR_PATTERN",
        help="label images (0 = background; cellpose, stardist, napari Labels) matched to the "
        "inputs by file stem (<stem>.tif, <stem>_labels.*, <stem>_masks.*, <stem>_cp_masks.*): "
        "writes <stem>_objects.csv, each object's mean raw map per class, cam_class, cam_share",
    )
    predict.add_argument(
        "--min-area",
        type=_positive,
        default=64,
        metavar="PX",
        help="the smallest region listed in each page's regions (every region above the "
        "threshold, with its share of the map; the box is the largest; default: %(default)s)",
    )
    predict.add_argument(
        "--scale",
        choices=("each", "shared"),
        default="each",
        help="each page's map min-max scaled on its own (each), or one range per class over "
        "all pages of a multi-page input, so pages compare (shared; default: %(default)s)",
    )
    tiles = predict.add_argument_group(
        "whole slides and mosaics (--tiles)",
        "The network sees the image's own pixels (of the --level read) in tiles, stitched into "
        "one map; see the outputs below. A slide is split into blocks of tiles: blocks are the "
        "tasks on dask workers and what a killed run keeps.",
    )
    tiles.add_argument(
        "--tiles",
        action="store_true",
        help="tiled CAM at native pixels (pyramidal TIFF/OME-TIFF, OME-Zarr, big images)",
    )
    tiles.add_argument(
        "--level",
        type=_level,
        default=0,
        metavar="N",
        help="the pyramid level read (0: full resolution; default: %(default)s)",
    )
    tiles.add_argument(
        "--tile-size",
        type=_input_size,
        metavar="N",
        help="tile side in pixels of the level read (default: --input-size, else the model's)",
    )
    tiles.add_argument(
        "--overlap",
        type=_level,
        metavar="PX",
        help="pixels shared by neighbouring tiles (default: two map cells, 64 for a ResNet); "
        "used as an even number of map cells below the tile's (a note says when it is adjusted)",
    )
    tiles.add_argument(
        "--background",
        choices=("auto",),
        help="auto: skip tiles without foreground (Otsu on the smallest level); their map "
        "cells are NaN",
    )
    tiles.add_argument(
        "--all-probabilities",
        action="store_true",
        help="the tile CSV holds every class's probability instead of the --topk classes",
    )
    tiles.add_argument(
        "--block-tiles",
        type=_positive,
        default=8,
        metavar="N",
        help="a block is a band of whole chunks about N rows of tiles tall (N×N tiles for a "
        "PNG/JPEG): one task, and the unit a killed run resumes at (default: %(default)s)",
    )
    add_device_arguments(predict)
    predict.add_argument(
        "--out", default="gapcam-out", metavar="DIR", help="output folder (default: %(default)s)"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="redo every input, even those already done"
    )
    predict.add_argument(
        "--recursive",
        action="store_true",
        help="walk the subfolders of folder inputs (a plate's wells) and mirror them in --out: "
        "plate/B02/site1.tif → OUT/B02/site1_cam.tif",
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
        "--worker-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="with --workers/--scheduler: stop (exit 1, what is done kept) when the cluster has "
        "had no worker for this long (default: %(default)s)",
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


def add_evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The inputs and options of ``gapcam evaluate``."""
    evaluate.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or quoted globs"
    )
    evaluate.add_argument(
        "--true-boxes",
        metavar="FILE",
        help="CSV (file,y0,x0,y1,x1[,class]), JSON ({file: [[y0, x0, y1, x1], …]} or a list "
        "of {file, box, class}) or COCO JSON (bbox [x, y, w, h])",
    )
    evaluate.add_argument(
        "--true-masks",
        metavar="DIR_OR_PATTERN",
        help="true masks (nonzero = object) matched to the inputs by stem, for PxAP",
    )
    add_model_arguments(evaluate)
    evaluate.add_argument(
        "--class",
        dest="class_ref",
        metavar="NAME|INDEX",
        help="the class whose map is evaluated (default: the file's class per image, else "
        "each image's top-1)",
    )
    add_input_arguments(evaluate)
    add_device_arguments(evaluate)
    evaluate.add_argument(
        "--recursive",
        action="store_true",
        help="walk the subfolders of folder inputs (a plate's wells; --true-masks' too): the "
        "box file and the masks name an input by its path below the folder given "
        "(B02/site1.png), or by a name no other input has",
    )
    evaluate.add_argument(
        "--out",
        metavar="FILE",
        help="the JSON report written (default: gapcam-evaluation.json); with --methods the CSV "
        "(default: gapcam-methods.csv, its summary beside it as <name>_summary.csv)",
    )
    from .method_scores import add_method_arguments

    add_method_arguments(evaluate)
