#!/usr/bin/env python3
"""Offline check of the Extensions Index requirements for this extension.

Applies the rules of the Slicer Extensions Index's ``scripts/check_description_files.py``
that need no network (it also downloads the icon/screenshot URLs and reads GitHub topics),
plus the Slicer conventions the index reviewers ask for:

- the description file ``docs/extensions-index/<project>.json`` is named after ``project()``,
  lists the PyTorch build dependency, has an https ``scm_url`` whose repository name starts
  with "Slicer" (the extension name must not);
- CMakeLists.txt sets EXTENSION_ICONURL and EXTENSION_SCREENSHOTURLS literally (the index reads
  the file as text), non-empty, http(s), each a raw URL of *this* repository whose file exists
  here and is a PNG/JPEG/GIF;
- EXTENSION_CONTRIBUTORS entries are "Name (Organization)", none a placeholder ("... developers");
  EXTENSION_DEPENDS has PyTorch;
- a screenshot's file name says what it is: a Slicer screenshot ("-Slicer-<version>") or an
  offscreen render ("offscreen"), never one passed off as the other;
- a LICENSE file exists.
Exit code 0 when everything holds; otherwise one line per problem and exit code 1.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8")


def cmake_set(text: str, name: str):
    """Literal value of ``set(NAME "value")`` or None (as the index's regular expressions read it)."""
    match = re.search(rf'set\s*\(\s*{name}\s*"([^"]*)"\s*\)', text, re.IGNORECASE)
    return None if match is None else match.group(1)


def check(root: Path = ROOT) -> list:
    problems = []
    cmake = (root / "CMakeLists.txt").read_text(encoding="utf-8")
    project = re.search(r"project\s*\(\s*([^\s)]+)", cmake, re.IGNORECASE)
    name = project.group(1) if project else None
    if not name:
        return ["CMakeLists.txt: no project() declaration"]
    if name.lower().startswith("slicer"):
        problems.append(f"extension name '{name}' must not start with 'Slicer'")
    description = root / "docs" / "extensions-index" / f"{name}.json"
    if not description.is_file():
        return problems + [f"{description.relative_to(root)}: missing (named after project({name}))"]
    meta = json.loads(description.read_text(encoding="utf-8"))
    scm = urlsplit(meta.get("scm_url", ""))
    repo_path = scm.path.strip("/").removesuffix(".git")
    if scm.scheme not in ("https", "git") or repo_path.count("/") != 1:
        problems.append(f"scm_url '{meta.get('scm_url')}' is not https://host/owner/repository")
    elif not repo_path.split("/")[1].startswith("Slicer"):
        problems.append(f"repository name '{repo_path.split('/')[1]}' must start with 'Slicer'")
    if "PyTorch" not in meta.get("build_dependencies", []):
        problems.append(f"{description.name}: build_dependencies must list PyTorch")
    if meta.get("category") != cmake_set(cmake, "EXTENSION_CATEGORY"):
        problems.append(f"{description.name}: category differs from EXTENSION_CATEGORY")
    if "PyTorch" not in (cmake_set(cmake, "EXTENSION_DEPENDS") or "").split():
        problems.append("EXTENSION_DEPENDS must list PyTorch")

    contributors = cmake_set(cmake, "EXTENSION_CONTRIBUTORS") or ""
    entries = [c.strip() for c in contributors.split(",") if c.strip()]
    if not entries or not all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in entries):
        problems.append(f"EXTENSION_CONTRIBUTORS '{contributors}' is not 'Name (Organization), ...'")
    placeholders = [c for c in entries if re.search(r"\b(developers|contributors|team|authors|TODO)\b", c, re.I)]
    if placeholders:
        problems.append(f"EXTENSION_CONTRIBUTORS has placeholder entries: {', '.join(placeholders)}")
    homepage = cmake_set(cmake, "EXTENSION_HOMEPAGE") or ""
    if not homepage.startswith(f"https://{scm.netloc}/{repo_path}"):
        problems.append(f"EXTENSION_HOMEPAGE '{homepage}' is not in the repository {meta.get('scm_url')}")

    raw_prefix = f"https://raw.githubusercontent.com/{repo_path}/{meta.get('scm_revision', 'main')}/"
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        value = cmake_set(cmake, key)
        if not value or not value.strip():
            problems.append(f"{key} is empty (the index check fails on it)")
            continue
        for url in value.split():
            if not url.startswith(raw_prefix):
                problems.append(f"{key}: '{url}' is not a file of {raw_prefix}")
                continue
            path = root / url[len(raw_prefix):]
            if not path.is_file():
                problems.append(f"{key}: {path.relative_to(root)} does not exist yet"
                                + (" (scripts/render_panel.py makes the offscreen render; a Slicer "
                                   "screenshot: docs/slicer.md, 'Before a release')"
                                   if key == "EXTENSION_SCREENSHOTURLS" else ""))
            elif not path.read_bytes()[:8].startswith(IMAGE_MAGIC):
                problems.append(f"{key}: {path.relative_to(root)} is not a PNG/JPEG/GIF image")
            elif key == "EXTENSION_SCREENSHOTURLS" and "Slicer" not in path.name and "offscreen" not in path.name:
                problems.append(f"{key}: {path.name} must say what it is: a real Slicer screenshot "
                                "('...-Slicer-<version>.png') or an offscreen render ('...-offscreen-...')")
    if not (root / "LICENSE").is_file():
        problems.append("LICENSE file missing")
    return problems


def main() -> int:
    problems = check()
    for problem in problems:
        print(f"extension index: {problem}")
    if not problems:
        print("extension index: all offline checks pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
