"""The words of the dock's model choices (Qt-free: the session's messages use them too)."""

FILE = "file…"
RANDOM = "none (random init)"
DEMO = "shapes demo (bundled)"  # resnet18 trained on synthetic shapes, for offline use
IN_MEMORY = "in memory"  # a model handed over with use_model
DEMO_MODEL = "shapes demo"  # the model choice: resnet18 with the DEMO weights, in one step
DEMO_ARCH = "resnet18"
TIMM = "timm:"
