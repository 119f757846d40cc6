"""vitdash: audit Vision Transformer checkpoints you did not train yourself."""

__version__ = "0.1.0"
