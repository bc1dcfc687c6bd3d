r"""Self-contained HTML reports: text, metrics, tables, configuration and embedded figures.

A :class:`Report` collects sections and renders one HTML file with a small inline style sheet and
every figure embedded as a base64 PNG ``data:`` URI: no external CSS, JavaScript, fonts or
images, so the file can be mailed, archived or opened offline. All user text is escaped.

References:
    Design note of preimage (``DESIGN.md``, "Run directory" contract: ``report.html`` is
    self-contained).

Example:
    >>> report = Report("Demo <run>")
    >>> report.add_metrics({"accuracy": 0.98765, "loss": float("nan")})
    >>> report.add_text("Trained for **2** epochs with `lr=1e-3`.")
    >>> html = report.render()
    >>> "Demo &lt;run&gt;" in html, "0.9877" in html, "<code>lr=1e-3</code>" in html
    (True, True, True)
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from preimage.errors import ConfigError, DataError
from preimage.report.plots import figure_to_png
from preimage.runs import RunDir, atomic_write_text, to_jsonable

__all__ = ["Report", "format_value", "write_report"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fafafa; color: #1d1d1f;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; background: #fff; }
h1 { font-size: 1.7rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ddd; }
h3, h4 { margin: 1.5rem 0 .5rem; }
.meta { color: #666; font-size: .85rem; margin: 0 0 1rem; }
nav ul { margin: .25rem 0 1rem; padding-left: 1.2rem; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #e4e4e4; text-align: left;
  vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .25rem 0; }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9rem; margin-top: .3rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .85rem; }
code { background: #f2f2f2; padding: 0 .2rem; border-radius: 3px; }
pre { background: #f6f6f6; padding: .75rem; overflow-x: auto; border-radius: 4px; }
details { margin: 1rem 0; }
summary { cursor: pointer; font-weight: 600; }
""".strip()


def format_value(value: Any) -> str:
    r"""Format a metric or table value for display.

    Floats get 4 significant digits (``0.9877``, ``1.235e-05``), non-finite floats and ``None``
    show as ``NaN``/``inf``/``—``, booleans and integers as written, lists and mappings as
    compact JSON.

    Example:
        >>> [format_value(v) for v in (0.987654, 123456.0, 3, None, float("nan"), [1, 2.5])]
        ['0.9877', '1.235e+05', '3', '—', 'NaN', '[1, 2.5]']
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "−inf"
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    converted = to_jsonable(value)
    if isinstance(converted, (dict, list)):
        return json.dumps(converted, ensure_ascii=False)
    return format_value(converted)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, name + "."))
        else:
            items.append((name, value))
    return items


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    # Code spans first, so ** inside code stays literal.
    parts = re.split(r"(`[^`\n]+`)", escaped)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{part[1:-1]}</code>")
        else:
            out.append(re.sub(r"\*\*([^*\n]+)\*\*", r"<strong>\1</strong>", part))
    return "".join(out)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


class Report:
    r"""Builder of a self-contained HTML report.

    Sections are appended in call order; :meth:`render` returns the document and
    :meth:`write` saves it atomically. A table of contents is added when the report has three or
    more headings.

    Args:
        title: report title (``<title>`` and ``<h1>``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from preimage.report.plots import line_plot
        >>> r = Report("Spheres")
        >>> r.add_heading("Accuracy")
        >>> r.add_figure(line_plot([0, 1], {"acc": [0.5, 1.0]}), "accuracy per epoch")
        >>> r.add_table([{"model": "fi-RevNet", "error": 0.295}], title="Errors")
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = r.write(Path(tmp.name) / "report.html")
        >>> "data:image/png;base64," in path.read_text("utf-8")
        True
        >>> tmp.cleanup()
    """

    def __init__(self, title: str) -> None:
        self.title = str(title)
        self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._parts: list[str] = []
        self._toc: list[tuple[int, str, str]] = []
        self._ids: set[str] = set()

    def add_heading(self, text: str, level: int = 2) -> None:
        """Add a section heading of ``level`` 2, 3 or 4 (level 1 is the report title)."""
        if level not in (2, 3, 4):
            raise ConfigError(f"heading level must be 2, 3 or 4, got {level}")
        anchor = _slug(text, self._ids)
        self._toc.append((level, anchor, text))
        self._parts.append(f'<h{level} id="{anchor}">{html.escape(text)}</h{level}>')

    def add_text(self, text: str) -> None:
        r"""Add text: blank lines separate paragraphs, lines starting ``- `` form a list.

        Inline ```code``` and ``**bold**`` are rendered; everything else is shown literally
        (HTML in ``text`` is escaped, not interpreted).
        """
        for block in re.split(r"\n\s*\n", text.strip()):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
            if not lines:
                continue
            if all(ln.startswith(("- ", "* ")) for ln in lines):
                items = "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines)
                self._parts.append(f"<ul>{items}</ul>")
            else:
                self._parts.append(f"<p>{_inline(' '.join(lines))}</p>")

    def _table(
        self, header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None
    ) -> str:
        caption = f"<caption>{html.escape(title)}</caption>" if title else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for row in rows:
            cells = []
            for value in row:
                cls = ' class="num"' if _is_number(value) else ""
                cells.append(f"<td{cls}>{html.escape(format_value(value))}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        return (
            f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def add_metrics(self, metrics: Mapping[str, Any], title: str = "Metrics") -> None:
        """Add a two-column table of ``metrics``; nested mappings become dotted names."""
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"metrics must be a mapping, got {type(metrics).__name__}")
        rows = [(name, _plain(value)) for name, value in _flatten(metrics)]
        self._parts.append(self._table(["name", "value"], rows, title))

    def add_table(self, rows: Sequence[Mapping[str, Any]], title: str | None = None) -> None:
        """Add a table with one row per mapping; columns are all keys in first-seen order."""
        columns: dict[str, None] = {}
        for row in rows:
            if not isinstance(row, Mapping):
                raise ConfigError("table rows must be mappings")
            columns.update(dict.fromkeys(str(k) for k in row))
        if not rows:
            self._parts.append(self._table(["(no rows)"], [], title))
            return
        table = []
        for row in rows:
            by_name = {str(k): v for k, v in row.items()}
            table.append([_plain(by_name.get(c, "")) for c in columns])
        self._parts.append(self._table(list(columns), table, title))

    def add_config(self, config: Mapping[str, Any] | Any, title: str = "Configuration") -> None:
        """Add ``config`` as pretty-printed JSON in a collapsed ``<details>`` block."""
        text = json.dumps(to_jsonable(config), indent=2, ensure_ascii=False)
        self._parts.append(
            f"<details><summary>{html.escape(title)}</summary>"
            f"<pre>{html.escape(text, quote=False)}</pre></details>"
        )

    def add_figure(
        self,
        figure: Figure | bytes | str | os.PathLike[str],
        caption: str = "",
        *,
        dpi: float = 100,
    ) -> None:
        """Embed a figure, PNG bytes or a PNG file as a base64 ``data:`` URI with a caption.

        A :class:`~matplotlib.figure.Figure` is rendered at ``dpi`` and left open.

        Raises:
            DataError: if the file is missing or the bytes are not a PNG image.
        """
        if isinstance(figure, Figure):
            png = figure_to_png(figure, dpi=dpi)
        elif isinstance(figure, (bytes, bytearray)):
            png = bytes(figure)
        else:
            path = Path(figure)
            if not path.is_file():
                raise DataError(f"figure file {path} does not exist")
            png = path.read_bytes()
        if not png.startswith(_PNG_SIGNATURE):
            raise DataError("add_figure takes PNG images only; the data is not a PNG")
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption or "figure", quote=True)
        cap = f"<figcaption>{_inline(caption)}</figcaption>" if caption else ""
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{cap}</figure>'
        )

    def render(self) -> str:
        """The complete HTML document."""
        from preimage import __version__

        toc = ""
        if len(self._toc) >= 3:
            items = "".join(
                f'<li style="margin-left:{level - 2}rem"><a href="#{anchor}">'
                f"{html.escape(text)}</a></li>"
                for level, anchor, text in self._toc
            )
            toc = f"<nav><ul>{items}</ul></nav>"
        title = html.escape(self.title)
        meta = f"generated {html.escape(self.created)} by preimage {html.escape(__version__)}"
        body = "\n".join(self._parts)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n<main>\n"
            f'<h1>{title}</h1>\n<p class="meta">{meta}</p>\n{toc}\n{body}\n'
            "</main>\n</body>\n</html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`render` to ``path`` atomically (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, self.render())


def _plain(value: Any) -> Any:
    """A display-ready scalar or JSON structure; NaN stays NaN so it shows as such."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.ndim == 0):
        return value.item()
    return to_jsonable(value)


def write_report(
    run_dir: RunDir,
    title: str,
    *,
    summary: str | None = None,
    captions: Mapping[str, str] | None = None,
) -> Path:
    r"""Build ``report.html`` of a run directory from what the run wrote.

    The report holds ``summary`` (see :meth:`Report.add_text`), the metrics of
    ``metrics.json``, every ``figures/*.png`` in name order (captioned by ``captions[stem]`` or
    the file name) and the configuration of ``config.json`` when present.

    Args:
        run_dir: the run directory.
        title: report title.
        summary: optional introductory text.
        captions: optional captions by figure file stem.

    Returns:
        The path of ``report.html``.

    Example:
        >>> import tempfile
        >>> from preimage.report.plots import line_plot, save_figure
        >>> tmp = tempfile.TemporaryDirectory()
        >>> run = RunDir(tmp.name)
        >>> _ = run.write_metrics({"accuracy": 0.9})
        >>> _ = save_figure(line_plot([0, 1], {"a": [0, 1]}), run.figure_path("curve"), dpi=30)
        >>> text = write_report(run, "Run").read_text("utf-8")
        >>> text.count("data:image/png;base64,"), "0.9" in text
        (1, True)
        >>> tmp.cleanup()
    """
    captions = dict(captions or {})
    report = Report(title)
    if summary:
        report.add_text(summary)
    metrics = run_dir.read_metrics()
    if metrics:
        report.add_heading("Metrics")
        report.add_metrics(metrics, title="")
    figures = sorted(run_dir.figures.glob("*.png"))
    if figures:
        report.add_heading("Figures")
        for path in figures:
            report.add_figure(path, captions.get(path.stem, path.stem))
    if run_dir.config_path.is_file():
        config = run_dir.read_config()
        report.add_heading("Configuration")
        details = {k: config[k] for k in ("command", "argv", "seed", "created") if k in config}
        if isinstance(details.get("argv"), list):
            details["argv"] = shlex.join(str(a) for a in details["argv"])
        report.add_metrics(details, title="")
        if "config" in config:
            report.add_config(config["config"], title="Resolved configuration")
        if "versions" in config:
            report.add_config(config["versions"], title="Versions")
    return report.write(run_dir.report_path)
