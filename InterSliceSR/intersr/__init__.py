"""InterSliceSR engine: self-supervised inter-slice super-resolution of thick-slice MR volumes."""

__version__ = "0.1.0"
