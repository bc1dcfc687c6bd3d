from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.errors import ConfigError, DataError
from preimage.report.html import Report, format_value, write_report
from preimage.report.plots import figure_to_png, line_plot, save_figure
from preimage.runs import RunDir

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


class StrictParser(HTMLParser):
    """Collects tags and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(document)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert parser.doctype.lower() == "doctype html"
    return parser


def _images(parser: StrictParser) -> list[bytes]:
    out = []
    for tag, attrs in parser.tags:
        if tag == "img":
            src = attrs["src"] or ""
            assert src.startswith("data:image/png;base64,")
            out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


def _full_report(tmp_path: Path) -> tuple[Report, bytes]:
    on_disk = save_figure(
        line_plot([0, 1], {"b": [1, 0]}, xlabel="x", ylabel="y", title="from file"),
        tmp_path / "fig.png",
        dpi=30,
    ).read_bytes()
    report = Report("Run <b>42</b> & co")
    report.add_heading("Summary")
    report.add_text("<script>alert('x')</script> is **shown** as `text`.\n\n- one\n- two")
    report.add_metrics({"accuracy": 0.987654, "loss": float("nan"), "eval": {"error": 1e-7}})
    report.add_heading("Figures")
    report.add_figure(line_plot([0, 1], {"a": [0, 1]}), 'caption "quoted" <i>', dpi=30)
    report.add_figure(tmp_path / "fig.png", "from a file")
    report.add_figure(on_disk, "from bytes")
    report.add_heading("Details", level=3)
    report.add_table([{"model": "<x>", "error": 0.295}, {"model": "y", "extra": 3}], title="T")
    report.add_config({"lr": 1e-3, "name": "</pre><script>", "shape": (1, 28, 28)})
    return report, on_disk


def test_report_is_valid_self_contained_html(tmp_path: Path) -> None:
    report, on_disk = _full_report(tmp_path)
    document = report.render()
    parser = parse(document)
    images = _images(parser)
    assert len(images) == 3 and all(img.startswith(PNG) for img in images)
    assert images[1] == on_disk and images[2] == on_disk
    assert document.count("data:image/png;base64,") == 3
    tags = {tag for tag, _ in parser.tags}
    assert "script" not in tags and "link" not in tags and "b" not in tags and "i" not in tags
    for _, attrs in parser.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http", "//")), value
    assert "http" not in document.split("<body>")[0]
    text = "".join(parser.text)
    assert "<script>alert('x')</script>" in text
    assert "</pre><script>" in text
    assert "Run <b>42</b> & co" in text
    assert next(a["alt"] for t, a in parser.tags if t == "img") == 'caption "quoted" <i>'


def test_report_sections(tmp_path: Path) -> None:
    report, _ = _full_report(tmp_path)
    document = report.render()
    assert "<strong>shown</strong>" in document and "<code>text</code>" in document
    assert "<ul><li>one</li><li>two</li></ul>" in document
    assert '<td class="num">0.9877</td>' in document
    assert '<td class="num">NaN</td>' in document
    assert "<td>eval.error</td>" in document and "1e-07" in document
    assert "<th>model</th><th>error</th><th>extra</th>" in document
    assert "<td>&lt;x&gt;</td>" in document
    assert "<details><summary>Configuration</summary>" in document
    config_json = document.split("<pre>")[1].split("</pre>")[0]
    assert json.loads(config_json.replace("&lt;", "<").replace("&gt;", ">")) == {
        "lr": 0.001,
        "name": "</pre><script>",
        "shape": [1, 28, 28],
    }
    parser = parse(document)
    anchors = [a["href"] for t, a in parser.tags if t == "a"]
    ids = [a["id"] for t, a in parser.tags if t in ("h2", "h3") and "id" in a]
    assert anchors == [f"#{i}" for i in ids] == ["#summary", "#figures", "#details"]


def test_headings_are_unique_and_checked() -> None:
    report = Report("r")
    report.add_heading("Same")
    report.add_heading("Same")
    assert 'id="same"' in report.render() and 'id="same-2"' in report.render()
    assert "<nav>" not in report.render()
    with pytest.raises(ConfigError):
        report.add_heading("x", level=1)


def test_figure_inputs_are_checked(tmp_path: Path) -> None:
    report = Report("r")
    with pytest.raises(DataError, match="does not exist"):
        report.add_figure(tmp_path / "missing.png", "x")
    (tmp_path / "fake.png").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="PNG"):
        report.add_figure(tmp_path / "fake.png", "x")
    fig = line_plot([0, 1], {"a": [0, 1]})
    report.add_figure(fig, dpi=20)
    assert fig.axes
    assert _images(parse(report.render())) == [figure_to_png(fig, dpi=20)]


def test_tables_of_odd_values() -> None:
    report = Report("r")
    report.add_table([], title="empty")
    report.add_metrics(
        {"np": np.float32(0.25), "t": torch.tensor(float("nan")), "none": None, "ok": True}
    )
    document = report.render()
    parse(document)
    assert "(no rows)" in document
    assert '<td class="num">0.25</td>' in document
    assert '<td class="num">NaN</td>' in document
    assert "<td>—</td>" in document and "<td>true</td>" in document
    with pytest.raises(ConfigError):
        report.add_metrics([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        report.add_table([1])  # type: ignore[list-item]


def test_format_value() -> None:
    assert format_value(0.987654) == "0.9877"
    assert format_value(123456.0) == "1.235e+05"
    assert format_value(float("-inf")) == "−inf"
    assert format_value(12) == "12"
    assert format_value(False) == "false"
    assert format_value({"a": (1, float("nan"))}) == '{"a": [1, null]}'
    assert format_value(np.int64(5)) == "5"


def test_write_is_atomic_and_creates_parents(tmp_path: Path) -> None:
    report = Report("r")
    report.add_text("hello")
    target = report.write(tmp_path / "out" / "report.html")
    assert target.read_text("utf-8") == report.render()
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_write_report_from_run_dir(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_config({"epochs": 3}, argv=["train", "--epochs", "3"], seed=5, command="train")
    run.write_metrics({"test_accuracy": 0.91234, "nested": {"x": float("nan")}})
    for name in ("b_second", "a_first"):
        save_figure(line_plot([0, 1], {name: [0, 1]}), run.figure_path(name), dpi=20)
    path = write_report(run, "Run report", summary="A *tiny* run.", captions={"a_first": "First"})
    assert path == run.report_path
    document = path.read_text("utf-8")
    parser = parse(document)
    images = _images(parser)
    assert images == [
        run.figure_path("a_first").read_bytes(),
        run.figure_path("b_second").read_bytes(),
    ]
    text = "".join(parser.text)
    for expected in ("0.9123", "nested.x", "First", "b_second", '"epochs": 3', "train --epochs"):
        assert expected in text or expected in document
    assert '"torch": ' in document


def test_write_report_on_empty_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    document = write_report(run, "Empty").read_text("utf-8")
    parse(document)
    assert "<table>" not in document and "<img" not in document
