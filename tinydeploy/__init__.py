"""tinydeploy: from a trained Keras model to verified int8 inference on a microcontroller.

The pipeline runs in one direction — quantize, analyze/check, render, flash, validate — and each
stage is a plain function over dataclasses, usable without the CLI (see ``tinydeploy.cli``).
"""

__version__ = "0.1.0"
