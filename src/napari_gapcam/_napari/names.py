"""The words of the dock's model and class choices (Qt-free: the session's messages use them)."""

from collections.abc import Sequence

FILE = "file…"
RANDOM = "none (random init)"
DEMO = "shapes demo (bundled)"  # resnet18 trained on synthetic shapes, for offline use
IN_MEMORY = "in memory"  # a model handed over with use_model
DEMO_MODEL = "shapes demo"  # the model choice: resnet18 with the DEMO weights, in one step
DEMO_ARCH = "resnet18"
TIMM = "timm:"
EACH_TOP = -1  # the class choice of a stack that shows each plane's own top class
EACH_TOP_NAME = "each plane's top class"


def class_name(class_names: Sequence[str], c: int) -> str:
    """The name of the class choice ``c`` (:data:`EACH_TOP`: its words, not a class's)."""
    return EACH_TOP_NAME if c == EACH_TOP else class_names[c]
