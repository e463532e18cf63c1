"""Every Python block of the README and of the docs runs as written.

Each page's blocks run in order, in one fresh interpreter with one namespace (a
block may use the names of the blocks above it), from an empty temporary folder,
against the installed dlkernels. A block that holds the comment
``# requires: cuda`` is skipped where CUDA is not available, and one that
imports torch (or holds ``# requires: torch``) where torch is not installed;
the blocks after it must not need its names.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = ["README.md", *sorted(
    str(p.relative_to(REPO)) for folder in ("docs", "docs/user_guide")
    for p in (REPO / folder).glob("*.rst"))]
# Pages whose blocks do not run yet, with the reason (none today). xfail is strict:
# remove a page here as soon as it runs.
KNOWN_BROKEN: dict[str, str] = {}
TIMEOUT = {"default": 300}
# Pages that take more than half a minute here: in the slow run only.
SLOW = {"docs/user_guide/cluster.rst"}

_TORCH = re.compile(r"^\s*(import torch|from torch\b|from dlkernels\.(nn|compress|distill|decoding|"
                    r"debug)\b|#\s*requires:\s*torch)", re.M)
_CUDA = re.compile(r"^\s*#\s*requires:\s*cuda\b", re.M)
# Any other optional package a block needs: ``# requires: dask_ml`` skips it where absent.
_REQUIRES = re.compile(r"^\s*#\s*requires:\s*(\w+)", re.M)


def _missing_packages(code: str) -> list[str]:
    return [name for name in _REQUIRES.findall(code)
            if name not in ("cuda", "torch") and importlib.util.find_spec(name) is None]


def markdown_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced block opened with ```python."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if re.fullmatch(r"\s*```python\s*", lines[i]):
            start, i = i + 1, i + 1
            while i < len(lines) and not re.fullmatch(r"\s*```\s*", lines[i]):
                i += 1
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start:i]))))
        i += 1
    return blocks


def rst_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every ``.. code-block:: python`` directive's body."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = re.fullmatch(r"(\s*)\.\. code-block::\s*python3?\s*", lines[i])
        i += 1
        if not match:
            continue
        indent = len(match.group(1))
        while i < len(lines) and re.fullmatch(r"\s+:[\w-]+:.*", lines[i]):  # options
            i += 1
        body_start, body = None, []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            if body_start is None and line.strip():
                body_start = i
            if body_start is not None:
                body.append(line)
            i += 1
        if body_start is not None:
            blocks.append((body_start + 1, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return blocks


def page_blocks(page: str) -> list[tuple[int, str]]:
    text = (REPO / page).read_text(encoding="utf-8")
    return markdown_blocks(text) if page.endswith(".md") else rst_blocks(text)


# Every page with at least one block (the others are tables of contents, reference, prose).
PAGES = [page for page in CANDIDATES if page_blocks(page)]


# The child: a script whose top level runs the page's blocks in order, in its own
# module namespace, so that the blocks behave as one script written out (a worker
# started with "spawn" re-imports it as __mp_main__ and finds the functions).
RUNNER = r"""
import json as _json
import sys as _sys
import traceback as _traceback

for _block in _json.load(open(_sys.argv[1])):
    if not _block["run"]:
        continue
    try:
        exec(compile(_block["code"], f"{_block['page']}:{_block['line']}", "exec"), globals())
    except BaseException:
        print(f"FAILED: the block at {_block['page']} line {_block['line']}:", file=_sys.stderr)
        _traceback.print_exc()
        _sys.exit(1)
"""


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def test_blocks_are_found_as_sphinx_and_github_see_them():
    rst = textwrap.dedent("""\
        Text.

        .. code-block:: python
           :caption: one

           a = 1
           if a:

               b = 2
        after

        .. note::

           .. code-block:: python

              c = a + b

        .. code-block:: console

           $ not python
        """)
    assert rst_blocks(rst) == [(6, "a = 1\nif a:\n\n    b = 2\n"), (16, "c = a + b\n")]
    md = "x\n```python\nimport os\n```\n```console\n$ ls\n```\n```python\ny = 2\n```\n"
    assert markdown_blocks(md) == [(3, "import os"), (9, "y = 2")]


def _marks(page: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow] if page in SLOW else []
    if page in KNOWN_BROKEN:
        marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[page], strict=True))
    return marks


@pytest.mark.parametrize("page", [pytest.param(p, marks=_marks(p)) for p in PAGES])
def test_page_runs(page, tmp_path):
    have_torch = importlib.util.find_spec("torch") is not None
    blocks = []
    for line, code in page_blocks(page):
        needs_cuda, needs_torch = bool(_CUDA.search(code)), bool(_TORCH.search(code))
        run = (have_torch or not (needs_torch or needs_cuda)) and (
            not needs_cuda or _cuda_available()) and not _missing_packages(code)
        blocks.append({"page": page, "line": line, "code": code, "run": run})
    if not any(b["run"] for b in blocks):
        pytest.skip("every block needs torch or CUDA")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "page.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, "page.py", str(tmp_path / "blocks.json")], cwd=work,
                          env=env, capture_output=True, text=True,
                          timeout=TIMEOUT.get(page, TIMEOUT["default"]))
    assert proc.returncode == 0, proc.stderr[-6000:]
