"""The executed site: ordering, rendering, failing cells, repeatability, and a real browser.

The browser test reads ``build/site`` as ``nox -s site`` leaves it and drives Debian's
headless Chromium through chromedriver (no browser is downloaded). Without a built site
or a browser it is skipped, unless ``DLNOTES_SITE_TEST=1`` (``nox -s site_test``) asks
for it, in which case their absence fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")
pytest.importorskip("nbclient")

from dlnotes import site  # noqa: E402
from dlnotes.check import discover  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "build" / "site"
REQUIRED = os.environ.get("DLNOTES_SITE_TEST") == "1"


def notebook(*cells: tuple[str, str, list[str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(make(source, metadata={"tags": tags} if tags else {}))
    return nb


def test_reading_order_puts_appendices_after_chapters() -> None:
    names = [
        "raschka/rk_appa-ddp.py",
        "raschka/rk_ch05b-gpt_to_llama.py",
        "raschka/rk_ch01_and_appa-overview_and_setup.py",
        "grus/gr_ch19-deep_learning.py",
        "raschka/rk_ch05-pretraining_on_unlabeled_data.py",
        "math_notes/mn02-backpropagation.py",
    ]
    ordered = [str(p) for p in site.reading_order([Path(n) for n in names])]
    assert ordered == [
        "math_notes/mn02-backpropagation.py",
        "grus/gr_ch19-deep_learning.py",
        "raschka/rk_ch01_and_appa-overview_and_setup.py",
        "raschka/rk_ch05-pretraining_on_unlabeled_data.py",
        "raschka/rk_ch05b-gpt_to_llama.py",
        "raschka/rk_appa-ddp.py",
    ]


def test_title_and_summary_skip_the_source_line() -> None:
    nb = notebook(
        ("md", "# Ch. 9 — Things\n\nSource: a book.\n\nWe build a thing. Then more.", []),
    )
    assert site._title_and_summary(nb) == ("Ch. 9 — Things", "We build a thing.")


def test_render_folds_solutions_and_uses_local_mathjax() -> None:
    nb = notebook(
        ("md", "# T\n\nThe loss $$L = \\sum_i x_i^2$$ and $y$.", []),
        ("md", "## Exercises", []),
        ("code", "answer = 42\nassert answer == 42", ["solution"]),
    )
    page = site.render(nb, "<nav>NAV</nav>", "T")
    assert "celltag_solution" in page and "show solution" in page
    assert site.MATHJAX in page
    assert not re.search(r"<script[^>]+src=\"https?://", page)  # nothing from a CDN
    assert page.count("<nav>NAV</nav>") == 2  # top and bottom


def test_a_raising_cell_fails_the_build_naming_chapter_and_cell(tmp_path: Path) -> None:
    script = tmp_path / "mn99-broken.py"
    script.write_text(
        '# %% [markdown]\n# # Broken\n\n# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n'
    )
    with pytest.raises(site.SiteError, match=r"mn99-broken.py: cell 2 \(raise ValueError.*boom"):
        site.execute(script)


def _outputs(nb: nbformat.NotebookNode) -> list:
    """Each cell's printed text and images, with run times and speed ratios blanked.

    A cell's printed text is joined first: the kernel may split one print into several
    stream messages."""
    found = []
    for cell in nb.cells:
        outs = cell.get("outputs", [])
        text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outs)
        text = re.sub(r"\d+(\.\d+)?\s*(s|ms|µs|it/s|tok/s|x)\b", "<t>", text)
        images = [o["data"]["image/png"] for o in outs if "image/png" in o.get("data", {})]
        found.append((text, images))
    return found


def test_executing_twice_gives_the_same_outputs() -> None:
    """Seeded chapters are repeatable: the site does not change between builds."""
    script = ROOT / "math_notes" / "mn02-backpropagation.py"
    first, _, _ = site.execute(script)
    second, _, _ = site.execute(script)
    assert _outputs(first) == _outputs(second)
    assert any(text for text, _ in _outputs(first))


# --- the built site in a real browser ------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    def missing(why: str) -> None:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)

    if not (BUILT / "index.html").is_file():
        missing("no site built: run nox -s site (or nox -s site_test)")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing("no chromium/chromedriver: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1600",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={ROOT / 'build' / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    yield drv
    drv.quit()


def _load(drv, path: Path) -> list[dict]:
    """Open `path`, wait until MathJax has typeset it, and return the console's messages."""
    drv.set_script_timeout(60)
    drv.get(path.as_uri())
    drv.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup) { MathJax.startup.promise.then(() => done()); }"
        "else { done(); }"
    )
    return drv.get_log("browser")


def _chapters_to_check() -> list[Path]:
    """The first chapter with plots and the first with display maths."""
    pages = [BUILT / f"{p.stem}.html" for p in discover(ROOT)]
    pages = [p for p in pages if p.is_file()]
    with_plots = next(p for p in pages if "data:image/png" in p.read_text(encoding="utf-8"))
    with_maths = next(p for p in pages if p != with_plots and "$$" in p.read_text(encoding="utf-8"))
    return [with_plots, with_maths]


def test_every_index_link_resolves(browser) -> None:
    assert _load(browser, BUILT / "index.html") == []
    links = browser.execute_script("return Array.from(document.links).map(a => a.href);")
    listed = json.loads((BUILT / "chapters.json").read_text(encoding="utf-8"))
    chapters = [Path(c["script"]).stem for c in listed]
    if REQUIRED:  # the site nox -s site_test checks is the whole one
        assert chapters == [p.stem for p in site.reading_order(discover(ROOT))]
    assert len(links) >= 2 * len(chapters)  # each chapter: its page and its script
    for href in links:
        target = Path(unquote(urlparse(href).path))
        assert target.is_file(), f"the index links to {href}, which does not exist"
    for stem in chapters:
        assert any(href.endswith(f"/{stem}.html") for href in links), stem


@pytest.mark.parametrize("which", [0, 1], ids=["plots", "maths"])
def test_chapter_shows_images_maths_and_toggles_solutions(browser, which: int) -> None:
    page = _chapters_to_check()[which]
    console = _load(browser, page)
    assert [m for m in console if m["level"] in ("SEVERE", "ERROR")] == [], console
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);"
    )
    assert all(w > 0 for w in widths), widths
    if which == 0:
        assert widths, f"{page.name} shows no image"
    maths = browser.execute_script("return document.querySelectorAll('mjx-container').length;")
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('.jp-MarkdownOutput'))"
        ".map(e => e.innerText).join('\\n');"
    )
    if which == 1:
        assert maths > 0, f"{page.name}: no maths rendered"
    assert "$$" not in shown, f"{page.name}: raw $$ left in the rendered text"
    buttons = browser.find_elements("css selector", "button.dlnotes-toggle")
    assert buttons, f"{page.name} has no 'show solution' button"
    cell = browser.execute_script("return arguments[0].nextElementSibling;", buttons[0])
    assert not cell.is_displayed()
    buttons[0].click()
    assert cell.is_displayed() and buttons[0].text == "hide solution"
    buttons[0].click()
    assert not cell.is_displayed() and buttons[0].text == "show solution"
    shots = ROOT / "build" / "site-screens"
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / f"{page.stem}.png"))
