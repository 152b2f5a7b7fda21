"""Slice-profile estimation from the volume itself (`--profile auto`).

The in-plane axes of a 2-D multi-slice scan are sharp; the slice axis is the same kind of
anatomy seen through the unknown slice profile and sampled at the slice spacing. So for each
candidate profile (shape x FWHM), degrade an in-plane axis with it at the slice spacing and
compare its power spectrum (Welch estimate in cycles per slice, aliasing included on both
sides) with the slice axis's spectrum; a free offset absorbs contrast, only the roll-off is
compared. The best candidate is the estimate.

Limits, measured (docs/benchmarks.md): second-order statistics of thick slices barely tell a
box from a narrower Gaussian (a box of width w and a Gaussian of FWHM ~0.65 w give nearly the
same sampled spectrum). So besides the best candidate the estimate keeps the best FWHM of
every shape that fits almost as well (`plausible`); adaptation trains on all of them, so the
network learns an inverse that holds for each profile the data cannot rule out. What the
estimate does claim is a width: `effective_width`, the same for every shape that fits the slices
(`SliceProfile.effective_width`; the bench's criterion, scripts/estimator_table.py). Reference
volumes are not always equally sharp along all axes either: only the in-plane axes whose
high frequencies are within a margin of the sharpest are used as the source, and never one
whose spacing is much coarser than the other's (`volumes.grid.fine_inplane_axes`).
A best fit at the edge of the FWHM range searched is no minimum (the loss still falls
beyond it: the references are not sharp enough along the in-plane axes to explain the slice
axis). Where the header states a thickness the run then uses it, as when no estimate can be
made; where it states none the edge estimate is kept: slices that look thinner than anything
searched are the signature of a gap, and a guess of contiguous slices (the spacing) would
contradict the data (measured: a gap case fell 1.9 dB, below B-spline, with that guess).
Every segment that touches the anatomy is used, its edges with the background included: keeping
only segments wholly inside the anatomy picked different structures along the slice axis and
in-plane (an organ is not as long as it is wide, and a run of 14 thick slices spans it all) and
biased the FWHM low (the knee-like bench case: -75 % on four of five held-out volumes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..progress import Progress
from ..volumes.grid import fine_inplane_axes
from .degrade import DEFAULT_TBW, SHAPES, SliceProfile, degrade

COARSE_RATIOS = np.round(np.arange(0.35, 1.66, 0.15), 4)  # FWHM / slice spacing
SINC_TBWS = (3.0, 6.0)
SEGMENT = 16  # Welch segment length (slices)
MAX_LINES = 20000
ANATOMY = 0.1  # a segment is used when one of its voxels exceeds this normalised level
PLAUSIBLE = 1.5  # a shape is kept as plausible when its best loss <= this x the best loss
SHARP_MARGIN = 0.25  # log10 high/mid power: in-plane axes this close to the sharpest are used


@dataclass
class ProfileEstimate:
    profile: SliceProfile  # the best candidate
    loss: float
    losses: dict[str, float] = field(default_factory=dict)  # best loss per shape
    plausible: list[SliceProfile] = field(default_factory=list)  # best is first
    ratio: float = 1.0  # FWHM / slice spacing
    source_axes: tuple[int, ...] = ()
    at_edge: bool = False  # the best fit lies at the end of the FWHM range searched: no minimum

    @property
    def effective_width(self) -> float:
        """The best fit's shape-independent width in mm (`SliceProfile.effective_width`)."""
        return self.profile.effective_width

    def as_dict(self) -> dict:
        return {"shape": self.profile.shape, "fwhm_mm": round(self.profile.fwhm, 4),
                "effective_width_mm": round(self.effective_width, 4),
                "tbw": self.profile.tbw, "fwhm_over_spacing": round(self.ratio, 4),
                "loss": round(self.loss, 6),
                "losses": {k: round(v, 6) for k, v in self.losses.items()},
                "plausible": [p.describe() for p in self.plausible]}


def _segments(array: np.ndarray, axis: int, segment: int) -> np.ndarray:
    """Half-overlapping segments along `axis` that touch the anatomy, as rows."""
    moved = np.moveaxis(array, axis, -1)
    n = moved.shape[-1]
    segs = np.concatenate([moved[..., i:i + segment].reshape(-1, segment)
                           for i in range(0, n - segment + 1, max(1, segment // 2))])
    segs = segs[segs.max(axis=1) > ANATOMY]
    if len(segs) > MAX_LINES:
        segs = segs[np.linspace(0, len(segs) - 1, MAX_LINES).astype(int)]
    return segs


def log_spectrum(segments: np.ndarray) -> np.ndarray:
    """Log mean periodogram of Hann-windowed, mean-removed segments (DC dropped)."""
    if len(segments) < 16:
        raise ValueError("too little anatomy to estimate the slice profile from; give "
                         "--profile and --thickness")
    x = segments - segments.mean(axis=1, keepdims=True)
    window = np.hanning(segments.shape[1] + 2)[1:-1]
    power = np.abs(np.fft.rfft(x * window, axis=1)) ** 2
    return np.log(power.mean(axis=0)[1:] + 1e-12)


def sharpness(volume: np.ndarray, axis: int, segment: int = 32) -> float:
    """log10 of high- over mid-frequency power along an axis (higher: more detail)."""
    segs = _segments(volume, axis, min(segment, volume.shape[axis]))
    if len(segs) < 16:
        return -np.inf
    spectrum = np.exp(log_spectrum(segs))
    n = len(spectrum)
    return float(np.log10(spectrum[int(0.75 * n):].mean() / spectrum[n // 8: n // 4 + 1].mean()))


def _mismatch(target: np.ndarray, candidate: np.ndarray) -> float:
    diff = candidate - target
    return float(np.mean((diff - diff.mean()) ** 2))


def _candidates(shapes: tuple[str, ...]) -> list[tuple[str, float]]:
    out = []
    for shape in shapes:
        out += [(shape, t) for t in SINC_TBWS] if shape == "sinc" else [(shape, DEFAULT_TBW)]
    return out


def estimate_profile(volume: np.ndarray, spacing: tuple[float, float, float],
                     shapes: tuple[str, ...] = SHAPES, fwhm_mm: float | None = None,
                     seed: int = 0) -> ProfileEstimate:
    """Estimate the slice profile of a canonical (slices, rows, cols) normalised volume.

    spacing: (slice, row, col) in mm. `shapes` restricts the shape (a forced --profile),
    `fwhm_mm` fixes the FWHM (a forced --thickness); whatever is free is estimated.
    """
    del seed  # deterministic: kept for a uniform call signature
    s = spacing[0]
    n_slices = volume.shape[0]
    longest = max(volume.shape[a] / (s / spacing[a]) for a in (1, 2))  # slices in-plane
    segment = int(min(SEGMENT, n_slices, np.floor(longest + 1e-6)))
    segment -= segment % 2
    if segment < 6:
        raise ValueError(f"only {n_slices} slices: too few to estimate the slice profile; "
                         "give --profile and --thickness")
    keep = np.unique(np.linspace(0, n_slices - 1, min(n_slices, 32)).round().astype(int))
    planes = volume[keep]
    usable = [a for a in fine_inplane_axes(spacing) if planes.shape[a] >= (s / spacing[a]) * segment]
    if not usable:
        raise ValueError("in-plane axes are too short to estimate the slice profile at this "
                         "slice spacing; give --profile and --thickness")
    sharp = {a: sharpness(planes, a) for a in usable}
    top = max(sharp.values())
    sources = tuple(a for a in usable if sharp[a] >= top - SHARP_MARGIN)
    # lines along the slice axis (subsampled across the in-plane axis that is not filtered)
    step = max(1, int(np.ceil(np.sqrt(volume.shape[1] * volume.shape[2] / 6000))))
    columns = {a: (volume[:, :, ::step] if a == 1 else volume[:, ::step, :]) for a in sources}

    def loss_of(shape: str, tbw: float, ratio: float) -> float:
        """Symmetric comparison: the slice axis carries the true profile and the in-plane axis
        a gets the candidate as a filter; the in-plane axis a gets the candidate with slice
        sampling and the other axis (the slices) carries the true profile. For isotropic
        anatomy the two agree exactly when the candidate is the truth; comparing the slice axis
        with an in-plane axis alone would ignore that the in-plane axes of thick slices are
        themselves averaged over the slab (which biases the FWHM low)."""
        segs, targets = [], []
        for axis in sources:
            factor = s / spacing[axis]
            thick = degrade(planes, axis, factor, ratio * factor, shape, tbw)
            segs.append(_segments(thick, axis, segment))
            filtered = degrade(columns[axis], axis, 1.0, ratio * factor, shape, tbw)
            targets.append(_segments(filtered, 0, segment))
        return _mismatch(log_spectrum(np.concatenate(targets)),
                         log_spectrum(np.concatenate(segs)))

    results: list[tuple[float, str, float, float]] = []
    edges: set[tuple[str, float]] = set()
    for shape, tbw in _candidates(shapes):
        if fwhm_mm is not None:
            results.append((loss_of(shape, tbw, fwhm_mm / s), shape, tbw, fwhm_mm / s))
            continue
        coarse = [(loss_of(shape, tbw, float(q)), float(q)) for q in COARSE_RATIOS]
        q0 = min(coarse)[1]
        fine = [(loss_of(shape, tbw, float(q)), float(q))
                for q in np.round(q0 + np.arange(-0.1, 0.101, 0.025), 4) if q > 0.05]
        loss, q = min(coarse + fine)
        searched = [r for _, r in coarse + fine]
        if q in (min(searched), max(searched)):
            edges.add((shape, tbw))
        results.append((loss, shape, tbw, q))
    results.sort()
    best_loss = results[0][0]
    per_shape: dict[str, tuple[float, str, float, float]] = {}
    for item in results:
        per_shape.setdefault(item[1], item)
    plausible = [SliceProfile(sh, q * s, t) for loss, sh, t, q in sorted(per_shape.values())
                 if loss <= PLAUSIBLE * best_loss + 1e-6]
    loss, shape, tbw, q = results[0]
    return ProfileEstimate(SliceProfile(shape, q * s, tbw), float(loss),
                           {k: float(v[0]) for k, v in per_shape.items()}, plausible, float(q),
                           sources, at_edge=(shape, tbw) in edges)


def choose_profiles(normalised: np.ndarray, spacing3: tuple[float, float, float],
                    header_thickness: float | None, shape: str, thickness: float | None,
                    progress: Progress) -> tuple[list[SliceProfile], str]:
    """The profile(s) a run adapts to, best first, and how they were obtained.

    --profile gauss|box|sinc with a thickness (--thickness, else DICOM SliceThickness) forces
    the profile; whatever is not forced is estimated. A header thickness alone is nominal, so
    with --profile auto the data decide; if estimation is impossible, or its best fit lies at
    the edge of the range searched while the header states a thickness, the run says so and
    falls back to a Gaussian of the header thickness (or the slice spacing).
    """
    s = spacing3[0]
    forced_fwhm = thickness
    if shape != "auto" and forced_fwhm is None:
        forced_fwhm = header_thickness
    if shape != "auto" and forced_fwhm is not None:
        return [SliceProfile(shape, float(forced_fwhm))], "forced"
    shapes = SHAPES if shape == "auto" else (shape,)
    progress.update("profile", 0, 1)
    try:
        estimate = estimate_profile(normalised, spacing3, shapes=shapes, fwhm_mm=forced_fwhm)
        if estimate.at_edge:
            edge = (f"the best fit, {estimate.profile.describe()} (FWHM/spacing "
                    f"{estimate.ratio:.2f}), lies at the edge of the range searched")
            if header_thickness:
                raise ValueError(edge)
            progress.log(f"intersr: {edge}; kept, as the header states no thickness")
    except ValueError as exc:
        fallback = float(forced_fwhm or header_thickness or s)
        progress.log(f"intersr: slice profile not estimated ({exc}); using "
                     f"{shapes[0] if len(shapes) == 1 else 'gauss'} of FWHM {fallback:.3g} mm")
        progress.update("profile", 1, 1)
        return [SliceProfile(shapes[0] if len(shapes) == 1 else "gauss", fallback)], "fallback"
    progress.update("profile", 1, 1)
    others = [p.describe() for p in estimate.plausible if p != estimate.profile]
    text = (f"intersr: estimated slice profile {estimate.profile.describe()} "
            f"(FWHM/spacing {estimate.ratio:.2f}; effective width "
            f"{estimate.effective_width:.3g} mm)")
    if others:
        # measured (scripts/profile_identifiability.py): another shape at another FWHM makes
        # nearly the same thick slices, so naming one shape would claim more than the data say
        text += (f"; {' and '.join(others)} fit{'s' if len(others) == 1 else ''} the slices "
                 "almost as well (thick slices barely show the profile's shape), so adaptation "
                 "learns " + ("both" if len(others) == 1 else "all of them"))
    progress.log(text)
    return estimate.plausible or [estimate.profile], "estimated"
