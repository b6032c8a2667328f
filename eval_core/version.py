"""The Fine-Tune Lens version, recorded next to every number it reports."""

__version__ = "0.1.0"
