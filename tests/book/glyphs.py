"""Finding tofu: missing-glyph boxes in a rendered image, by comparison with the box glyph itself.

`box_template(size_px)` draws what a font without Hangul shows for a Hangul syllable (DejaVu Sans's
missing-glyph box) with matplotlib and crops it to its ink; `count_boxes(image, template)` counts
the places where an image holds that shape (normalised cross-correlation of the ink)."""

from __future__ import annotations

import io

import numpy as np


def _ink(rgba: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] (0 = white paper, 1 = black)."""
    grey = rgba[..., :3].astype(float).mean(axis=2) if rgba.ndim == 3 else rgba.astype(float)
    if grey.max() > 1.0:
        grey = grey / 255
    return 1.0 - grey


def render_text(text: str, family: list[str], size_pt: float, dpi: int = 100) -> np.ndarray:
    """``text`` drawn black on white by matplotlib; the ink of the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"font.family": family}):
        fig = plt.figure(figsize=(max(1.0, 0.3 * len(text) * size_pt / 12), 0.6 * size_pt / 12 + 0.3), dpi=dpi)
        fig.text(0.02, 0.3, text, fontsize=size_pt)
        buffer = io.BytesIO()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the box glyph is what is wanted here
            fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
        plt.close(fig)
    buffer.seek(0)
    return _ink(plt.imread(buffer))


def crop(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.where(ink > 0.5)
    return ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


def box_template(size_pt: float, dpi: int = 100) -> np.ndarray:
    """The missing-glyph box of DejaVu Sans at ``size_pt``, cropped to its ink."""
    return crop(render_text("\uac00", ["DejaVu Sans"], size_pt, dpi))


def count_boxes(ink: np.ndarray, template: np.ndarray, threshold: float = 0.85) -> int:
    """How many non-overlapping places of ``ink`` match ``template`` (normalised cross-correlation
    of the ink >= ``threshold``, so anti-aliasing and sub-pixel placement do not matter)."""
    th, tw = template.shape
    if ink.shape[0] < th or ink.shape[1] < tw:
        return 0
    windows = np.lib.stride_tricks.sliding_window_view(ink, (th, tw))
    t = template - template.mean()
    w = windows - windows.mean(axis=(2, 3), keepdims=True)
    denominator = np.sqrt((w ** 2).sum(axis=(2, 3)) * (t ** 2).sum())
    score = np.where(denominator > 1e-9, (w * t).sum(axis=(2, 3)) / np.maximum(denominator, 1e-9), 0.0)
    hits = 0
    while True:
        index = np.unravel_index(np.argmax(score), score.shape)
        if score[index] < threshold:
            return hits
        hits += 1
        y, x = index
        score[max(0, y - th + 1): y + th, max(0, x - tw + 1): x + tw] = 0


def png_ink(path) -> np.ndarray:
    import matplotlib.pyplot as plt

    return _ink(plt.imread(path))
