"""Methods: how the shipped network is fitted to the volume it will super-resolve.

A method is one module in this folder with a `fit_method(...)` (see `self_supervised.fit_method`) and one line
in `METHODS` (its name also in `options.METHODS`, the declared choices of `--method`). This file is data only (no torch).
"""

METHODS = {  # --method name: (module in this folder, what the output's provenance records)
    "self-supervised": ("self_supervised", "InterSliceSR (SliceINR, self-supervised adaptation)"),
    "vae-pairs": ("vae_pairs", "InterSliceSR (SliceINR, fine-tuned on VAE-synthesised pairs, "
                  "Xuan et al. 2021)"),
    "vae-combined": ("vae_pairs", "InterSliceSR (SliceINR, VAE-synthesised + in-plane "
                     "self-supervised pairs)"),
}
