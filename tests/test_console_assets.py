"""The console's static assets (no browser needed): every module import resolves to a
packaged file, nothing is fetched from another origin at run time, the vendored chart
library is the pinned version with its licence, and the wheel's package data covers it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from conftest import REPO

STATIC = REPO / "gateway" / "console" / "static"
UPLOT = STATIC / "vendor" / "uplot"
IMPORT = re.compile(r"""^\s*(?:import|export)\s[^'"]*?from\s+["']([^"']+)["']""", re.M)
ASSET_REF = re.compile(r"""(?:src|href)="([^"#]+)\"""")


def assets() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def test_every_module_import_resolves_to_a_packaged_file() -> None:
    seen = 0
    for js in STATIC.rglob("js/**/*.js"):
        for target in IMPORT.findall(js.read_text()):
            assert target.startswith("."), f"{js}: bare import {target!r} needs a build step"
            assert (js.parent / target).resolve().is_file(), f"{js}: {target} is missing"
            seen += 1
    html = (STATIC / "index.html").read_text()
    for ref in ASSET_REF.findall(html):
        if not ref.startswith("data:"):
            assert (STATIC / ref).is_file(), f"index.html: {ref} is missing"
            seen += 1
    assert seen > 20


def test_nothing_is_loaded_from_another_origin() -> None:
    external = re.compile(r"""(?:src|href)\s*=\s*["']https?://|import\s*\(?\s*["']https?://|"""
                          r"""url\(\s*["']?https?://|from\s+["']https?://""")
    for path in assets():
        if path.suffix in (".js", ".css", ".html"):
            assert not external.search(path.read_text()), f"{path} loads from another origin"


def test_uplot_is_the_pinned_version_with_its_licence() -> None:
    meta = json.loads((UPLOT / "package.json").read_text())
    assert (meta["name"], meta["version"], meta["license"]) == ("uplot", "1.6.32", "MIT")
    assert "Permission is hereby granted" in (UPLOT / "LICENSE").read_text()
    assert "1.6.32" in (UPLOT / "README.md").read_text()


def test_the_wheel_packages_every_asset() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["gateway"]
    base = REPO / "gateway"
    # setuptools expands package-data like pathlib's glob: "*" stays in one folder.
    packaged = {p for pattern in patterns for p in base.glob(pattern) if p.is_file()}
    missing = [p.relative_to(base).as_posix() for p in assets() if p not in packaged]
    assert missing == []


def test_the_page_allows_only_its_own_scripts_and_styles() -> None:
    html = (STATIC / "index.html").read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp, "index.html has no Content-Security-Policy"
    rules = dict(r.strip().split(" ", 1) for r in csp.group(1).split(";"))
    assert rules["script-src"] == "'self'" and rules["style-src"] == "'self'"
    assert rules["connect-src"] == "'self'" and "unsafe" not in csp.group(1)
    assert "<script>" not in html and " style=" not in html
