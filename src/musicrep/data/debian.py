"""Debian packages as a data source: fetched with apt-get, unpacked with dpkg-deb, licences
read from their copyright files.

The system's own package tools do the fetching, so what arrives is exactly the archive's
file, checked against the SHA256 the archive's signed index gives (``apt-cache show``),
and a rerun reuses it. Nothing is installed: ``apt-get download`` only saves the ``.deb``
and ``dpkg-deb -x`` unpacks it into a folder of our own; neither needs root.

Licences come from the package's ``usr/share/doc/PKG/copyright``. In the machine-readable
format (DEP-5) the last ``Files:`` stanza whose pattern matches a file wins, as that
format specifies; its patterns name paths in the *source* tree, so a pattern matches an
installed path when it matches one of the path's trailing parts (``music/a.ogg`` matches
``usr/share/hyperrogue/music/a.ogg``). A free-text copyright file gives one licence for
the whole package: the first licence its text names (the packaging's own licence comes
last in such files), or none when no known licence is named.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from ..io import temp_dir_beside

TOOLS = ("apt-get", "apt-cache", "dpkg-deb")
DONE_MARK = ".complete"  # written last into an unpacked tree: the tree is whole


class FetchError(RuntimeError):
    """A package could not be fetched or unpacked (network, archive, disk): the work failed."""


def require_tools() -> None:
    """ConfigError naming the first missing tool when this machine cannot fetch packages."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise ConfigError(f"this machine has no {', '.join(missing)}: the real-music corpus is "
                          "fetched from Debian packages; run it on Debian or Ubuntu")


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


@dataclass(frozen=True)
class PackageInfo:
    """What the package index says about the version apt would fetch."""

    name: str
    version: str
    architecture: str
    size: int
    sha256: str

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` gives it (':' of an epoch written %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def parse_control(text: str) -> dict[str, str]:
    """The first stanza of Debian control-format text (``apt-cache show``) as a dict."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


def candidate(name: str) -> PackageInfo:
    """The version of `name` apt would fetch; ConfigError when apt knows no such package."""
    r = _run(["apt-cache", "show", "--no-all-versions", name])
    f = parse_control(r.stdout) if r.returncode == 0 else {}
    if not f.get("Version") or not f.get("SHA256"):
        raise ConfigError(f"{name}: apt knows no such package (run `apt-get update` once, or "
                          "check the name against `apt-cache search`)")
    return PackageInfo(name, f["Version"], f.get("Architecture", "all"), int(f.get("Size", 0)),
                       f["SHA256"].split()[0])


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(info: PackageInfo, debs: Path) -> tuple[Path, bool]:
    """The package's ``.deb`` in `debs`, downloaded unless a file with the index's SHA256
    is already there. Returns (path, reused). A download goes to a temporary folder first,
    so an interrupted one never passes for a complete file."""
    debs.mkdir(parents=True, exist_ok=True)
    final = debs / info.deb_name
    if final.is_file() and sha256_of(final) == info.sha256:
        return final, True
    tmp = temp_dir_beside(final)
    try:
        r = _run(["apt-get", "download", f"{info.name}={info.version}"], cwd=tmp)
        got = sorted(tmp.glob("*.deb"))
        if r.returncode != 0 or len(got) != 1:
            raise FetchError(f"{info.name}: apt-get download failed ({_last_line(r.stderr)})")
        if sha256_of(got[0]) != info.sha256:
            raise FetchError(f"{info.name}: the downloaded file's SHA256 is not the index's")
        os.replace(got[0], final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, False


def unpack(deb: Path, trees: Path) -> tuple[Path, bool]:
    """`deb` unpacked (``dpkg-deb -x``) into ``trees/<deb name>``; reused when a complete
    tree is there. Returns (tree, reused). Built beside and renamed into place."""
    trees.mkdir(parents=True, exist_ok=True)
    final = trees / deb.stem
    if (final / DONE_MARK).is_file():
        return final, True
    tmp = temp_dir_beside(final)
    try:
        r = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        if r.returncode != 0:
            raise FetchError(f"{deb}: dpkg-deb -x failed ({_last_line(r.stderr)})")
        (tmp / DONE_MARK).write_text(deb.name + "\n", encoding="utf-8")
        if final.exists():  # an incomplete tree from an older run
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, False


# ----------------------------------------------------------------------- copyright files


@dataclass(frozen=True)
class Stanza:
    """One ``Files:`` paragraph of a DEP-5 copyright file."""

    patterns: tuple[str, ...]
    copyright: str
    licence: str


@dataclass(frozen=True)
class LicenceMatch:
    licence: str  # a short name as Debian writes it (GPL-2+, CC-BY-SA-3.0), "" if unknown
    copyright: str  # the holders the file gives for it, "" if none
    how: str  # where it came from, for the manifest
    explicit: bool  # True when a stanza names this file (not a wildcard for everything)


@dataclass
class CopyrightFile:
    """A parsed ``debian/copyright``: DEP-5 stanzas, or the free-text verdict."""

    dep5: bool
    stanzas: list[Stanza] = field(default_factory=list)
    text_licence: str = ""
    text_copyright: str = ""

    def licence_for(self, path: str) -> LicenceMatch:
        """The licence of the installed file `path` (relative, '/'-separated)."""
        if not self.dep5:
            how = "copyright file text (first licence named)" if self.text_licence else \
                "copyright file text names no known licence"
            return LicenceMatch(self.text_licence, self.text_copyright, how, False)
        found = None
        for st in self.stanzas:  # the last match wins (copyright-format 1.0)
            for pat in st.patterns:
                if _matches_tail(pat, path):
                    found = (st, pat)
                    break
        if found is None:
            return LicenceMatch("", "", "no Files: stanza matches", False)
        st, pat = found
        return LicenceMatch(st.licence, st.copyright, f"Files: {pat}", "*" not in pat)


def _glob_regex(pattern: str) -> re.Pattern:
    """A copyright-format glob: '*' any characters ('/' included), '?' one; no classes."""
    out = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(out + r"\Z", re.DOTALL)


def _matches_tail(pattern: str, path: str) -> bool:
    rx = _glob_regex(pattern.strip("/"))
    parts = PurePosixPath(path).parts
    return any(rx.match("/".join(parts[i:])) for i in range(len(parts)))


def _paragraphs(text: str) -> list[dict[str, str]]:
    paras, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    return paras


def parse_copyright(text: str) -> CopyrightFile:
    """Parse a Debian copyright file (DEP-5 when its first paragraph has ``Format:``)."""
    paras = _paragraphs(text)
    fmt = paras[0].get("format", "").lower() if paras else ""
    if "copyright-format" in fmt or "dep5" in fmt:
        stanzas = []
        for p in paras:
            if "files" in p:
                lic = p.get("license", "").split("\n", 1)[0].strip()
                holders = "; ".join(x for x in p.get("copyright", "").split("\n") if x.strip())
                stanzas.append(Stanza(tuple(p["files"].split()), holders, lic))
        return CopyrightFile(True, stanzas)
    return CopyrightFile(False, text_licence=first_licence_named(text),
                         text_copyright=_first_copyright_line(text))


def _first_copyright_line(text: str) -> str:
    m = re.search(r"^\s*Copyright\s*(?:\(C\)|©)?\s*:?\s*(\S.*)$", text, re.MULTILINE | re.IGNORECASE)
    return m.group(1).strip() if m else ""


_CC_PARTS = {"attribution": "BY", "sharealike": "SA", "noncommercial": "NC",
             "noderivs": "ND", "noderivatives": "ND"}
_CC = re.compile(r"\b(Attribution(?:[- ](?:ShareAlike|NonCommercial|NoDerivs|NoDerivatives))*)"
                 r"[- ](\d\.\d)\b|\bCC[- ](BY(?:-SA|-NC|-ND)*)[- ]?(\d\.\d)\b", re.IGNORECASE)
_GPL = re.compile(r"GNU (Lesser |Library )?General Public License|\b(L?GPL)v?[- ]?(\d)", re.IGNORECASE)


def _cc_name(m: re.Match) -> str:
    if m.group(1):
        parts = [_CC_PARTS[w.lower()] for w in re.split(r"[- ]", m.group(1))]
        return "CC-" + "-".join(parts) + "-" + m.group(2)
    return "CC-" + m.group(3).upper() + "-" + m.group(4)


def _gpl_name(text: str, m: re.Match) -> str:
    lesser = bool(m.group(1)) or (m.group(2) or "").upper() == "LGPL"
    window = text[m.start(): m.end() + 300]
    v = m.group(3) or (re.search(r"version (\d(?:\.\d)?)", window, re.IGNORECASE) or [None, ""])[1]
    later = text[m.end(): m.end() + 1] == "+" or bool(re.search(r"later version|or later",
                                                                 window, re.IGNORECASE))
    name = ("LGPL" if lesser else "GPL") + (f"-{v}" if v else "")
    return name + ("+" if later and v else "")


def first_licence_named(text: str) -> str:
    """The licence a free-text copyright file names first (``CC-BY-SA-3.0``, ``GPL-2+``),
    or "" when it names none this reader knows (CC and GNU licences)."""
    hits = []
    cc = _CC.search(text)
    if cc:
        # The full CC text names its version far from its start; its first line
        # ("CREATIVE COMMONS PUBLIC LICENSE") marks where the licence is given.
        start = re.search(r"Creative Commons", text, re.IGNORECASE)
        hits.append((min(cc.start(), start.start() if start else cc.start()), _cc_name(cc)))
    gpl = _GPL.search(text)
    if gpl:
        hits.append((gpl.start(), _gpl_name(text, gpl)))
    return min(hits)[1] if hits else ""
