"""Build a browsable site of every chapter, executed, with its outputs and plots.

``python -m dlnotes.site`` (what ``nox -s site`` calls):

1. reads each chapter script as a notebook (jupytext: the scripts stay the only source);
2. executes it with `nbclient` in the script's own folder, in smoke mode unless
   ``--full`` (a cell that raises stops the build, naming the chapter and the cell);
   an executed notebook is cached under ``build/site-cache/`` and reused while its
   script, the library and the mode are unchanged;
3. renders it to HTML with `nbconvert` (plots embedded), with previous/next links,
   exercise solutions folded behind "show solution", and maths typeset by MathJax 3,
   copied from the ``django-static-mathjax`` wheel, so the pages work offline and
   opened straight from the file system;
4. writes ``build/site/index.html``: the three parts in reading order, each chapter
   with its title, a one-line summary, mode, run time and a link to its script.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import html
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from dlnotes.check import FOLDERS, discover
from dlnotes.env import repo_root
from dlnotes.errors import DlnotesError

PARTS = {
    "math_notes": "Mathematics of backpropagation",
    "grus": "Grus, Data Science from Scratch: neural networks and deep learning",
    "raschka": "Raschka, Build a Large Language Model (From Scratch)",
}
SOLUTION_TAG = "solution"
# MathJax 3's single-file TeX-to-SVG build: its glyphs are inside the script, so no web
# fonts are fetched (a page opened from the file system may not load any).
MATHJAX = "_static/tex-svg-full.js"
_TIMEOUT = 900  # seconds per cell


class SiteError(DlnotesError):
    """A chapter could not be executed or rendered."""


@dataclass
class Chapter:
    """One rendered chapter, as the index lists it."""

    script: str  # relative to the repository root
    page: str  # relative to the site folder
    title: str
    summary: str
    mode: str
    seconds: float
    cached: bool


def reading_order(scripts: list[Path]) -> list[Path]:
    """Parts in `FOLDERS` order; within a part chapters by name, appendices last."""

    def key(path: Path) -> tuple[int, bool, str]:
        appendix = re.match(r"rk_app", path.name) is not None
        return FOLDERS.index(path.parent.name), appendix, path.name

    return sorted(scripts, key=key)


def _title_and_summary(nb: dict) -> tuple[str, str]:
    """The first ``# heading`` of the notebook and the first sentence of its first
    paragraph that is not a 'Source:' line."""
    title, summary = "", ""
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if not title and para.startswith("# "):
                title = para.splitlines()[0][2:].strip()
                para = "\n".join(para.splitlines()[1:]).strip()
            if title and para and not para.startswith(("#", "Source")):
                flat = " ".join(para.split())
                summary = re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0]
                if len(summary) > 200:
                    summary = summary[: summary.rfind(" ", 0, 200)] + " …"
                return title, summary
    return title, summary


def _name(path: Path, root: Path) -> str:
    """`path` relative to the repository (or as it is, for a script outside it)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


@functools.cache
def _library_digest(root: Path) -> str:
    """The sha256 of every library file (read once per process, not once per chapter)."""
    h = hashlib.sha256()
    for path in sorted((root / "dlnotes").rglob("*.py")):
        h.update(_name(path, root).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _digest(script: Path, root: Path, full: bool) -> str:
    """What an executed notebook depends on: its script, the library, the mode."""
    h = hashlib.sha256(f"full={full}\n{_library_digest(root)}\n".encode())
    h.update(_name(script, root).encode() + b"\0" + script.read_bytes())
    return h.hexdigest()


def execute(
    script: Path, full: bool = False, cache_dir: Path | None = None
) -> tuple[dict, float, bool]:
    """The executed notebook of `script` (as a dict), its run time and whether it came
    from the cache. Raises `SiteError` naming the cell that failed."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    root = repo_root()
    key = _digest(script, root, full)
    cached = cache_dir / f"{script.stem}.ipynb" if cache_dir else None
    if cached is not None and cached.is_file():
        nb = nbformat.read(cached, as_version=4)
        meta = nb.metadata.get("dlnotes", {})
        if meta.get("digest") == key:
            return nb, float(meta.get("seconds", 0.0)), True

    nb = jupytext.read(script)
    env = dict(
        os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", DLNOTES_SMOKE="0" if full else "1"
    )
    env.pop("MPLBACKEND", None)  # the kernel's inline backend embeds the plots
    client = NotebookClient(
        nb,
        timeout=_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(script.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        index = next(
            (
                i
                for i, c in enumerate(nb.cells)
                if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            None,
        )
        where = (
            f"cell {index}" if index is None else f"cell {index} ({_first_line(nb.cells[index])})"
        )
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SiteError(f"{_name(script, root)}: {where} raised {last}") from None
    seconds = time.perf_counter() - start
    nb.metadata["dlnotes"] = {"digest": key, "seconds": seconds}
    if cached is not None:
        from dlnotes.atomic import atomic_write

        with atomic_write(cached, "w") as fh:
            fh.write(nbformat.writes(nb))
    return nb, seconds, False


def _first_line(cell: dict) -> str:
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    line = next((x for x in src.splitlines() if x.strip()), "")
    return line[:60]


_MATHJAX = """<script>
window.MathJax = {{
  tex: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
        displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]], processEscapes: true}},
  svg: {{fontCache: "global"}}
}};
</script>
<script src="{src}"></script>"""

_STYLE = """<style>
.dlnotes-nav { display: flex; justify-content: space-between; gap: 1em;
  padding: 0.6em 1em; font-family: sans-serif; font-size: 0.95em; background: #f3f4f6;
  border-radius: 6px; margin: 0.5em 0; }
.dlnotes-nav a { text-decoration: none; }
button.dlnotes-toggle { margin: 0.4em 0 0.4em 5em; padding: 0.2em 0.8em; cursor: pointer; }
.dlnotes-hidden { display: none !important; }
</style>"""

_TOGGLE = """<script>
document.querySelectorAll('.celltag_solution.jp-CodeCell').forEach(function (cell) {
  var button = document.createElement('button');
  button.className = 'dlnotes-toggle';
  button.textContent = 'show solution';
  cell.classList.add('dlnotes-hidden');
  button.addEventListener('click', function () {
    var hidden = cell.classList.toggle('dlnotes-hidden');
    button.textContent = hidden ? 'show solution' : 'hide solution';
  });
  cell.parentNode.insertBefore(button, cell);
});
</script>"""


def _nav(prev: Chapter | None, nxt: Chapter | None, source: str) -> str:
    left = f'<a href="{prev.page}">← {html.escape(prev.title)}</a>' if prev else "<span></span>"
    right = f'<a href="{nxt.page}">{html.escape(nxt.title)} →</a>' if nxt else "<span></span>"
    middle = f'<a href="index.html">contents</a> · <a href="{source}">source script</a>'
    return f'<nav class="dlnotes-nav">{left}<span>{middle}</span>{right}</nav>'


def render(nb: dict, nav: str, title: str) -> str:
    """HTML of an executed notebook: nbconvert's lab template, plots embedded, our
    navigation, offline MathJax and folded solutions."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # nbconvert's MathJax comes from a CDN: swap it for the bundled copy.
    body = re.sub(
        r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
        lambda _: _MATHJAX.format(src=MATHJAX),
        body,
        flags=re.S,
    )
    # require.js (for widgets, which the notes do not use) would come from a CDN too.
    body = re.sub(r'<script src="https://[^"]*require[^"]*"></script>', "", body)
    body = body.replace("</head>", _STYLE + "\n</head>", 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + nav, body, count=1)
    return body.replace("</body>", nav + "\n" + _TOGGLE + "\n</body>", 1)


def _inline(text: str) -> str:
    """A line of markdown as HTML: escaped, with its `code` and *emphasis* kept."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)


def _index(chapters: list[Chapter]) -> str:
    rows = []
    for folder, part in PARTS.items():
        items = [c for c in chapters if c.script.startswith(folder + "/")]
        if not items:
            continue
        rows.append(f"<h2>{html.escape(part)}</h2>\n<ol>")
        for c in items:
            rows.append(
                f'<li><a href="{c.page}">{html.escape(c.title)}</a> — {_inline(c.summary)}'
                f' <span class="meta">({c.mode}, {c.seconds:.1f} s; '
                f'<a href="../../{c.script}">{html.escape(c.script)}</a>)</span></li>'
            )
        rows.append("</ol>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dlnotes</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.5;
  padding: 0 1em; }}
.meta {{ color: #666; font-size: 0.9em; }}
</style></head>
<body>
<h1>dlnotes</h1>
<p>Deep learning, studied by running it: every chapter executed, with its outputs and plots.
Solutions of the exercises are folded; press "show solution" to see one.</p>
{chr(10).join(rows)}
</body></html>
"""


def _execute_one(args: tuple[str, bool, str | None]) -> tuple[dict, float, bool]:
    script, full, cache = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return execute(Path(script), full, Path(cache) if cache else None)


def _mathjax_source() -> Path:
    """MathJax's ``tex-svg-full.js`` from the installed ``django-static-mathjax`` wheel
    (a plain copy of MathJax 3.2.2; found by its file list, never imported)."""
    from importlib import metadata

    try:
        files = metadata.files("django-static-mathjax") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith("es5/tex-svg-full.js"):
            return Path(f.locate())
    raise SiteError(
        "the site needs MathJax for offline maths: pip install django-static-mathjax==3.2.2.1 "
        "(in the site extra; nox -s site installs it)"
    )


def build(
    out_dir: Path | None = None,
    *,
    full: bool = False,
    scripts: list[Path] | None = None,
    jobs: int = 2,
    cache: bool = True,
) -> list[Chapter]:
    """Execute and render `scripts` (default: every chapter) into `out_dir`
    (default ``build/site``); returns the chapters as listed in the index."""
    root = repo_root()
    out_dir = out_dir or root / "build" / "site"
    cache_dir = root / "build" / "site-cache" / ("full" if full else "smoke") if cache else None
    chosen = reading_order([p.resolve() for p in scripts] if scripts else discover(root))
    mathjax = _mathjax_source()
    (out_dir / MATHJAX).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mathjax, out_dir / MATHJAX)

    work = [(str(s), full, str(cache_dir) if cache_dir else None) for s in chosen]
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        results = list(pool.map(_execute_one, work))

    chapters = []
    for script, (nb, seconds, was_cached) in zip(chosen, results, strict=True):
        title, summary = _title_and_summary(nb)
        chapters.append(
            Chapter(
                str(script.relative_to(root)),
                f"{script.stem}.html",
                title or script.stem,
                summary,
                "full" if full else "smoke",
                seconds,
                was_cached,
            )
        )
    for i, (chapter, (nb, _, _)) in enumerate(zip(chapters, results, strict=True)):
        prev = chapters[i - 1] if i else None
        nxt = chapters[i + 1] if i + 1 < len(chapters) else None
        source = os.path.relpath(root / chapter.script, out_dir)
        page = render(nb, _nav(prev, nxt, source), chapter.title)
        (out_dir / chapter.page).write_text(page, encoding="utf-8")
    index = _index(chapters)
    index = index.replace('href="../../', f'href="{os.path.relpath(root, out_dir)}/')
    (out_dir / "index.html").write_text(index, encoding="utf-8")
    (out_dir / "chapters.json").write_text(
        json.dumps([asdict(c) for c in chapters], indent=1), encoding="utf-8"
    )
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="default: every chapter script")
    parser.add_argument("--full", action="store_true", help="book-sized runs instead of smoke mode")
    parser.add_argument("--out", type=Path, default=None, help="default: build/site")
    parser.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-cache", action="store_true", help="execute every chapter again")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        chapters = build(
            args.out, full=args.full, scripts=args.scripts, jobs=args.jobs, cache=not args.no_cache
        )
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for c in chapters:
        print(f"  {c.script:<52} {c.seconds:6.1f} s{'  (cached)' if c.cached else ''}")
    out = args.out or repo_root() / "build" / "site"
    took = time.perf_counter() - start
    print(f"site: {len(chapters)} chapters in {took:.0f} s -> {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
