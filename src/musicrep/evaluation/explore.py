"""A static explorer page for track embeddings: a map, neighbours, playlists.

    write_explorer(build_page(emb, labels, ...), out_dir) -> out_dir/index.html

The page is one self-contained file (inline script and data, nothing fetched), so it
opens from disk or any static host. It shows a 2-D map of the tracks (PCA, or t-SNE
from scikit-learn, switchable), coloured by major genre when a dataset gives genres
(else by parent folder); hovering a point shows its id or path and genres; clicking
it lists its 10 nearest neighbours by cosine similarity in the full embedding space.
With a dataset, a playlist chooser shows a playlist's known tracks and the top
cold-start candidates among the test tracks, ranked as the continuation task ranks
them (cosine to the mean of the known tracks' L2-normalised embeddings), held-out
hits marked: what the authors' web demo showed. Playlists are shown by their title
where the corpus the dataset was built from has one (``playlist_titles``), files by
their path below the folder they all share (``path_labels``), so labels fit the panel.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import corpus_dirs
from .continuation import l2_normalise

__all__ = ["N_NEIGHBOURS", "PageData", "build_page", "path_labels", "playlist_titles",
           "write_explorer"]

N_NEIGHBOURS = 10
N_CANDIDATES = 20
UNKNOWN = "unknown"


@dataclass
class PageData:
    """What the page shows; ``payload`` is the JSON embedded in it."""

    payload: dict[str, Any]
    n_points: int


def nearest_neighbours(
    emb: np.ndarray, k: int = N_NEIGHBOURS, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> ((N, k') indices, (N, k') cosines) of each row's nearest other rows,
    k' = min(k, N - 1), computed a block of rows at a time."""
    x = l2_normalise(emb)
    n = len(x)
    k = min(k, n - 1)
    idx = np.zeros((n, k), dtype=np.int64)
    sim = np.zeros((n, k), dtype=np.float32)
    if k <= 0:
        return idx, sim
    for start in range(0, n, block):
        s = x[start : start + block] @ x.T  # (b, N)
        s[np.arange(len(s)), np.arange(start, start + len(s))] = -np.inf  # not itself
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        idx[start : start + len(s)] = np.take_along_axis(top, order, axis=1)
        sim[start : start + len(s)] = np.take_along_axis(s, idx[start : start + len(s)], axis=1)
    return idx, sim


def projections(emb: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{"pca": (N, 2), "tsne": (N, 2)} of the L2-normalised embeddings, scaled to [0, 1]."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = l2_normalise(emb)
    n = len(x)
    out = {}
    if n >= 2:
        out["pca"] = PCA(n_components=2, random_state=seed).fit_transform(x)
    else:
        out["pca"] = np.zeros((n, 2))
    if n >= 4:
        perplexity = float(min(30.0, (n - 1) / 3))
        out["tsne"] = TSNE(n_components=2, perplexity=perplexity, init="pca",
                           random_state=seed).fit_transform(x)
    else:
        out["tsne"] = out["pca"]
    for name, p in out.items():
        p = np.asarray(p, dtype=np.float64)
        lo, span = p.min(axis=0), np.ptp(p, axis=0)
        out[name] = np.round((p - lo) / np.where(span > 0, span, 1.0), 4)
    return out


def path_labels(paths: list[str]) -> tuple[list[str], list[str]]:
    """(labels, folders) of encoded files: each path below the folder all of them share
    (absolute paths overflow the page's panels), and the name of the folder holding it
    (the map's colour; "unknown" for a file directly in the shared folder's root)."""
    paths = [str(p) for p in paths]
    folders = [Path(p).parent.name or UNKNOWN for p in paths]
    try:
        common = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # absolute and relative paths mixed, or none
        return paths, folders
    return [os.path.relpath(p, common) for p in paths], folders


def playlist_titles(data_root: Path, manifest: dict) -> dict[int, str] | None:
    """Playlist id -> title (Melon's ``plylst_title``) from the playlist files of the corpus
    the dataset was built from (the manifest's source, as ``layout.corpus_dirs`` finds
    it); None when no corpus is found. Records without a title are left out."""
    from ..data.melon import PLAYLIST_FILES

    for corpus in corpus_dirs(manifest, data_root):
        files = [corpus / n for n in PLAYLIST_FILES if (corpus / n).is_file()]
        if not files:
            continue
        titles: dict[int, str] = {}
        for f in files:
            try:
                records = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # the dataset was built from it; a title is not worth an error
            for r in records if isinstance(records, list) else ():
                pid, title = (r.get("id"), r.get("plylst_title")) if isinstance(r, dict) \
                    else (None, None)
                if isinstance(pid, int) and isinstance(title, str) and title.strip():
                    titles[pid] = title.strip()
        return titles
    return None


def playlist_view(
    emb: np.ndarray,
    ids: np.ndarray,
    test_ids: np.ndarray,
    playlists: list[dict],
    max_playlists: int = 300,
    n_candidates: int = N_CANDIDATES,
    titles: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Per playlist: known tracks' rows, the top candidate test rows with cosines, hits.

    Rows index ``emb``/``ids``; playlists with no known or no held-out track among the
    embedded tracks are left out. At most ``max_playlists`` (in file order). A playlist
    is named by its title in ``titles`` (see ``playlist_titles``), else "playlist ID".
    """
    titles = titles or {}
    row_of = {int(t): i for i, t in enumerate(ids)}
    test_rows = np.array([row_of[int(t)] for t in test_ids if int(t) in row_of], dtype=np.int64)
    x = l2_normalise(emb)
    views = []
    for pl in playlists:
        if len(views) >= max_playlists or not len(test_rows):
            break
        known = [row_of[int(t)] for t in pl.get("known", ()) if int(t) in row_of]
        held = {row_of[int(t)] for t in pl.get("held_out", ()) if int(t) in row_of}
        if not known or not held:
            continue
        q = l2_normalise(x[known].mean(axis=0, keepdims=True))[0]
        scores = x[test_rows] @ q
        top = np.argsort(-scores, kind="stable")[:n_candidates]
        cands = test_rows[top]
        pid = pl.get("id", len(views))
        views.append({
            "name": (titles.get(pid) if isinstance(pid, int) else None) or f"playlist {pid}",
            "id": pid,
            "known": [int(i) for i in known],
            "cands": [int(i) for i in cands],
            "sims": [round(float(s), 4) for s in scores[top]],
            "hits": [int(i) in held for i in cands],
            "n_held": len(held),
        })
    return views


def build_page(
    emb: np.ndarray,
    labels: list[str],
    genres: list[list[str]] | None = None,
    playlists: list[dict[str, Any]] | None = None,
    title: str = "musicrep explorer",
    info: dict[str, Any] | None = None,
    seed: int = 0,
    folders: list[str] | None = None,
) -> PageData:
    """Everything the page shows, computed here (the page only draws).

    Args:
        emb: (N, D) embeddings, one per track.
        labels: (N,) what hovering shows: track id or file path.
        genres: (N,) genre names per track (first = colour); None: colour by folder.
        folders: (N,) the folder of each track, for that colour (default: each label's
            parent folder; give them when the labels are shortened, ``path_labels``).
        playlists: from ``playlist_view`` (indices into emb), or None.
        title: page title.
        info: model facts shown at the top (checkpoint, layer, trained_on, ...).
        seed: t-SNE/PCA seed.
    """
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or len(emb) == 0 or len(labels) != len(emb):
        raise ValueError(f"need (N, D) embeddings with N labels, got {emb.shape} and {len(labels)}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if genres is None:
        genres = [[f] for f in (folders or [Path(s).parent.name or UNKNOWN for s in labels])]
        colour_by = "folder"
    else:
        colour_by = "major genre"
    first = [g[0] if g else UNKNOWN for g in genres]
    groups = sorted(set(first) - {UNKNOWN}) + ([UNKNOWN] if UNKNOWN in first else [])
    group_of = {g: i for i, g in enumerate(groups)}
    proj = projections(emb, seed)
    nn_idx, nn_sim = nearest_neighbours(emb)
    payload = {
        "title": title,
        "info": info or {},
        "colour_by": colour_by,
        "labels": list(labels),
        "genres": [", ".join(g) if g else UNKNOWN for g in genres],
        "group": [group_of[g] for g in first],
        "groups": groups,
        "pca": proj["pca"].tolist(),
        "tsne": proj["tsne"].tolist(),
        "nn": nn_idx.tolist(),
        "nn_sim": np.round(nn_sim, 4).tolist(),
        "playlists": playlists or [],
    }
    return PageData(payload, len(emb))


def write_explorer(page: PageData, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/index.html`` atomically (a failed write names it); return its path."""
    from ..io import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # "</" inside a <script> would end it; JSON allows the escaped form.
    data = json.dumps(page.payload, separators=(",", ":")).replace("</", "<\\/")
    text = (_TEMPLATE.replace("__TITLE__", html.escape(page.payload["title"]))
            .replace("__DATA__", data))
    path = out / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
#left{flex:0 0 auto;padding:10px}#right{flex:1;min-width:0;padding:10px;overflow:auto;border-left:1px solid #ddd;overflow-wrap:anywhere}
#playlist{max-width:320px}
svg{background:#fafafa;border:1px solid #ddd}
circle.pt{stroke:#fff;stroke-width:.5;cursor:pointer;vector-effect:non-scaling-stroke}
circle.pt.known{stroke:#000;stroke-width:2}circle.pt.cand{stroke:#d00;stroke-width:2}
circle.pt.sel{stroke:#000;stroke-width:3}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;display:none;max-width:420px;font-size:12px;overflow-wrap:anywhere}
#warn{background:#fff3cd;border:1px solid #e0c36b;padding:6px;margin-bottom:8px}
.legend span{display:inline-block;margin:2px 8px 2px 0;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
ol{padding-left:22px}li.hit{font-weight:bold;color:#070}
</style></head><body>
<div id="left">
 <div id="controls">map: <label><input type="radio" name="proj" id="proj-pca" value="pca" checked> PCA</label>
 <label><input type="radio" name="proj" id="proj-tsne" value="tsne"> t-SNE</label>
 <span id="pl-box"> &nbsp; playlist: <select id="playlist"><option value="">(none)</option></select></span></div>
 <svg id="map" width="680" height="680" viewBox="-0.03 -0.03 1.06 1.06"></svg>
 <div class="legend" id="legend"></div>
</div>
<div id="right"><div id="warn" hidden></div><div id="info"></div>
 <h3 id="nn-title">Click a point to list its nearest neighbours</h3><ol id="neighbours"></ol>
 <div id="pl-view"></div></div>
<div id="tip"></div>
<script>
"use strict";
const D = __DATA__;
const PALETTE = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2",
  "#bcbd22","#17becf","#393b79","#637939","#8c6d31","#843c39","#7b4173","#3182bd","#e6550d"];
const svg = document.getElementById("map"), tip = document.getElementById("tip");
const NS = "http://www.w3.org/2000/svg";
const colour = g => D.groups[g] === "unknown" ? "#bbbbbb" : PALETTE[g % PALETTE.length];
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const r = D.labels.length > 3000 ? 0.0035 : 0.006;
const pts = D.labels.map((_, i) => {
  const c = document.createElementNS(NS, "circle");
  c.setAttribute("class", "pt"); c.setAttribute("r", r); c.dataset.i = i;
  c.setAttribute("fill", colour(D.group[i]));
  c.addEventListener("mouseenter", e => {
    tip.innerHTML = "<b>" + esc(D.labels[i]) + "</b><br>" + esc(D.genres[i]);
    tip.style.display = "block"; tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
  });
  c.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  c.addEventListener("click", () => showNeighbours(i));
  svg.appendChild(c); return c;
});
function place(name) {
  const P = D[name];
  pts.forEach((c, i) => { c.setAttribute("cx", P[i][0]); c.setAttribute("cy", 1 - P[i][1]); });
}
function showNeighbours(i) {
  pts.forEach(c => c.classList.remove("sel")); pts[i].classList.add("sel"); svg.appendChild(pts[i]);
  document.getElementById("nn-title").textContent = "Nearest neighbours of " + D.labels[i] + " (" + D.genres[i] + ")";
  document.getElementById("neighbours").innerHTML = D.nn[i].map((j, k) =>
    "<li data-i='" + j + "'>" + esc(D.labels[j]) + " &mdash; cosine " + D.nn_sim[i][k].toFixed(3) +
    " <small>(" + esc(D.genres[j]) + ")</small></li>").join("");
}
function showPlaylist(p) {
  pts.forEach(c => c.classList.remove("known", "cand"));
  const view = document.getElementById("pl-view");
  if (p === "") { view.innerHTML = ""; return; }
  const P = D.playlists[+p];
  // Marked points are moved last in the SVG so they are drawn on top.
  P.known.forEach(i => { pts[i].classList.add("known"); svg.appendChild(pts[i]); });
  P.cands.forEach(i => { pts[i].classList.add("cand"); svg.appendChild(pts[i]); });
  const hits = P.hits.filter(h => h).length;
  view.innerHTML = "<h3>" + esc(P.name) + "</h3><p>" + P.known.length +
    " known tracks (black rings); top " + P.cands.length + " cold-start candidates (red rings): " +
    hits + " of them held out from this playlist (bold), of " + P.n_held + " held out.</p><ol>" +
    P.cands.map((j, k) => "<li class='" + (P.hits[k] ? "hit" : "") + "'>" + (P.hits[k] ? "&#10003; " : "") +
      esc(D.labels[j]) + " &mdash; cosine " + P.sims[k].toFixed(3) + " <small>(" + esc(D.genres[j]) +
      ")</small></li>").join("") + "</ol><p>Known: " + P.known.map(j => esc(D.labels[j])).join(", ") + "</p>";
}
document.querySelectorAll("input[name=proj]").forEach(el => el.addEventListener("change", e => place(e.target.value)));
const sel = document.getElementById("playlist");
if (!D.playlists.length) document.getElementById("pl-box").hidden = true;
D.playlists.forEach((P, k) => { const o = document.createElement("option"); o.value = k;
  o.textContent = P.name + " (" + P.known.length + " known, " + P.n_held + " held out)"; sel.appendChild(o); });
sel.addEventListener("change", e => showPlaylist(e.target.value));
document.getElementById("legend").innerHTML = "<b>colour: " + esc(D.colour_by) + "</b><br>" +
  D.groups.map((g, k) => "<span><i style='background:" + colour(k) + "'></i>" + esc(g) + "</span>").join("");
const I = D.info;
if (I.trained_on === "generated") {
  const w = document.getElementById("warn"); w.hidden = false;
  w.textContent = "This model was trained on the GENERATED corpus: its neighbours mean nothing for real music.";
}
document.getElementById("info").innerHTML = "<h2>" + esc(D.title) + "</h2><p>" + D.labels.length + " tracks" +
  Object.entries(I).filter(([k, v]) => typeof v !== "object").map(([k, v]) => "; " + esc(k) + ": " + esc(v)).join("") + "</p>";
place("pca");
</script></body></html>
"""
