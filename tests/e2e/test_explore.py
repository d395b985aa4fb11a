"""The explorer page: the docs' example runs; the page works in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.evaluation.explore import nearest_neighbours

from tests.helpers import REPO
from tests.helpers.browser import Browser, find_or_install_chromium
from tests.helpers.docs import readme_block


def _payload(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r"const D = (\{.*?\});\n", text, re.S).group(1))


@pytest.fixture(scope="module")
def readme_pages(tiny_dataset, tmp_path_factory) -> Path:
    """Run the docs' explorer block as written, in a folder shaped like the repository."""
    root = tmp_path_factory.mktemp("readme_explorer")
    (root / "models").symlink_to(REPO / "models")
    (root / "data" / "toy").mkdir(parents=True)
    (root / "data" / "toy" / "dataset").symlink_to(tiny_dataset)
    music = root / "my_music"
    for i, folder in enumerate(("jazz", "jazz", "rock", "rock", "rock")):
        (music / folder).mkdir(parents=True, exist_ok=True)
        t = np.arange(16000 * 6) / 16000
        sf.write(music / folder / f"{i}.wav", 0.2 * np.sin(2 * np.pi * (200 + 90 * i) * t), 16000)
    for line in readme_block("bash", "explore.py").strip().splitlines():
        args = shlex.split(line.split("#", 1)[0])
        assert args[0] == "python", line
        r = subprocess.run([sys.executable, str(REPO / args[1]), *args[2:], "--quiet"], cwd=root,
                           capture_output=True, text=True, timeout=400, check=False,
                           env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        assert r.returncode == 0, (line, r.stderr)
    return root


def test_readme_explorer_example_writes_self_contained_pages(readme_pages, tiny_dataset):
    for name, n in (("explorer", 5), ("explorer_dataset", None)):
        page = readme_pages / name / "index.html"
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched
        d = _payload(page)
        assert len(d["labels"]) == len(d["pca"]) == len(d["tsne"]) == len(d["nn"])
        if n:
            assert len(d["labels"]) == n and d["colour_by"] == "folder"
            assert sorted(d["groups"]) == ["jazz", "rock"]
        assert d["info"]["trained_on"] == "generated"
    d = _payload(readme_pages / "explorer_dataset" / "index.html")
    assert d["colour_by"] == "major genre" and d["playlists"]
    pl = d["playlists"][0]
    assert len(pl["cands"]) == 20 and len(pl["hits"]) == 20 and pl["known"]
    assert pl["sims"] == sorted(pl["sims"], reverse=True)


def test_nearest_neighbours_are_exact_cosine():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    idx, sim = nearest_neighbours(x, k=10, block=7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = xn @ xn.T
    np.fill_diagonal(full, -np.inf)
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(sim, np.sort(full, axis=1)[:, ::-1][:, :10], rtol=1e-5)


@pytest.fixture(scope="module")
def chromium() -> str:
    path, why = find_or_install_chromium()
    if path is None:
        pytest.skip(f"explorer browser test skipped: {why}")
    return path


def test_page_in_headless_chromium(readme_pages, tiny_dataset, chromium, tmp_path):
    page = readme_pages / "explorer_dataset" / "index.html"
    d = _payload(page)
    n_tracks = sum(len(np.asarray(__import__("h5py").File(tiny_dataset / f"{s}.h5")["dataset/id"]))
                   for s in ("train", "val", "test"))
    b = Browser(chromium)
    try:
        b.open(page)
        assert b.js("document.querySelectorAll('circle.pt').length") == n_tracks == len(d["labels"])
        # A real click on point 7 lists its 10 nearest neighbours, as computed in Python.
        rect = json.loads(b.js("JSON.stringify(document.querySelectorAll('circle.pt')[7]"
                               ".getBoundingClientRect())"))
        b.click(rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
        items = b.js("[...document.querySelectorAll('#neighbours li')].map(li => +li.dataset.i)")
        # The clicked point is point 7 or one drawn over it at that spot.
        hit = int(b.js("document.querySelector('circle.pt.sel').dataset.i"))
        assert hit == 7 or (abs(d["pca"][hit][0] - d["pca"][7][0]) < 0.02
                            and abs(d["pca"][hit][1] - d["pca"][7][1]) < 0.02)
        assert items == d["nn"][hit] and len(items) == 10
        assert d["labels"][hit] in b.js("document.getElementById('nn-title').textContent")
        # t-SNE moves the points; a playlist marks its known tracks and candidates.
        before = b.js("document.querySelectorAll('circle.pt')[0].getAttribute('cx')")
        b.js("document.getElementById('proj-tsne').click()")
        assert b.js("document.querySelectorAll('circle.pt')[0].getAttribute('cx')") != before
        b.js("const s = document.getElementById('playlist'); s.value = '0';"
             "s.dispatchEvent(new Event('change'))")
        pl = d["playlists"][0]
        assert b.js("document.querySelectorAll('circle.pt.known').length") == len(pl["known"])
        assert b.js("document.querySelectorAll('#pl-view li').length") == 20
        assert b.js("document.querySelectorAll('#pl-view li.hit').length") == sum(pl["hits"])
        assert not b.js("document.getElementById('warn').hidden")  # generated-data warning
        shot = Path(os.environ.get("EXPLORER_SCREENSHOT", tmp_path / "explorer.png"))
        b.screenshot(shot)
        assert shot.stat().st_size > 10_000
        assert b.errors() == []
    finally:
        b.close()
