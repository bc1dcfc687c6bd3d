"""Figures and self-contained HTML reports of runs and studies.

Example:
    >>> from preimage.report import Report, line_plot
    >>> report = Report("demo")
    >>> report.add_figure(line_plot([0, 1], {"a": [0, 1]}), "a line")
    >>> report.render().count("data:image/png;base64,")
    1
"""

from __future__ import annotations

from preimage.report.html import Report, format_value, write_report
from preimage.report.plots import (
    decision_plane,
    figure_to_png,
    image_grid,
    line_plot,
    metamer_grid,
    reconstruction_figure,
    save_figure,
    training_curves,
)

__all__ = [
    "Report",
    "decision_plane",
    "figure_to_png",
    "format_value",
    "image_grid",
    "line_plot",
    "metamer_grid",
    "reconstruction_figure",
    "save_figure",
    "training_curves",
    "write_report",
]
