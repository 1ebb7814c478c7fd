"""report.html: one self-contained page with the charts, rendered by a real browser."""
import json
import pathlib
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import ROOT, run


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.captions, self.external, self._in_caption = {}, [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in_caption = tag == "figcaption"
        for name, value in attrs:
            if name in ("src", "href") and value and ("://" in value or value.startswith("//")):
                self.external.append(value)

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)
            self._in_caption = False


def _png_pixels(path):
    """Decodes an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to an array."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int32)
    prev = np.zeros(width * channels, np.int32)
    for y in range(height):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        row = np.zeros_like(line)
        for x in range(len(line)):  # undo the PNG filter of this row
            a = row[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 0: p = 0
            elif f == 1: p = a
            elif f == 2: p = b
            elif f == 3: p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            row[x] = (line[x] + p) & 255
        out[y], prev = row, row
    return out.reshape(height, width, channels)


@pytest.fixture(scope="module")
def results(tmp_path_factory, fc_bin):
    tmp = tmp_path_factory.mktemp("report")
    run(fc_bin, "synth", "-o", tmp / "s", "-n", 3000, "-d", 32, "--seed", 4)
    run(fc_bin, "cluster", "-f", tmp / "s.bin", "-d", 32, "-l", tmp / "s.meta", "-k", 30, "-o", tmp / "out")
    return tmp / "out"


def test_report_is_self_contained_with_every_chart(results):
    page = _Page()
    page.feed((results / "report.html").read_text())
    assert page.external == []
    assert page.tags.get("script", 0) == 0
    assert page.tags["svg"] >= 5
    captions = " | ".join(page.captions)
    for part in ("Clusters by tau", "Links by distance", "Cluster sizes", "F by identity size", "F by identity sparsity"):
        assert part in captions, captions
    scores = json.loads((results / "scores.json").read_text())
    n_links = sum(scores["link_histogram"]["counts"])
    # one parent at most per face, and the densest face of each tree has none
    assert 0 < n_links < scores["n"]
    pred = sum(b["clusters"] for b in scores["cluster_sizes"]["predicted"])
    assert pred == len(set(np.loadtxt(results / "pred_labels.meta", dtype=np.int64)))
    true = sum(b["clusters"] for b in scores["cluster_sizes"]["true"])
    assert true == scores["scores"]["true_clusters"]


def test_report_renders_in_headless_chromium(results, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.fail("chromium is not installed: scripts/install-deps.sh installs it")
    png = tmp_path / "report.png"
    subprocess.run(["bash", str(ROOT / "scripts" / "report-screenshot.sh"), str(results), str(png), "1000x1400"],
                   check=True, capture_output=True, timeout=120)
    px = _png_pixels(png)[::4, ::4, :3]
    assert px.shape[0] >= 300 and px.shape[1] >= 200
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    assert len(colours) > 20  # text, axes and coloured bars, not a blank page
    blue = np.all(np.abs(px - np.array([0x1f, 0x77, 0xb4])) < 30, axis=2)
    assert blue.sum() > 50  # the chart bars and curves are drawn
