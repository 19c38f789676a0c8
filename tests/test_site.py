"""build_site.py: the site it builds (pages, links, the index from the README, nothing from outside)
and its command line (the conventions of the other three tools: names, checked flags, exit 2,
atomic writes). The pages in a real browser: test_site_browser.py."""
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import build_site  # noqa: E402
import notebook2script as n2s  # noqa: E402

from conftest import DiskFull, code, md, write_nb  # noqa: E402

pytestmark = pytest.mark.site

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
       "rkJggg==\n")  # one pixel
README = """# demo

A demo course.

| notebook | what it builds |
|---|---|
| `01_alpha` | the `alpha` thing, with a `|` in code |

## Results

Accuracy, as printed.

| notebook | what it trains | ours |
|---|---|---|
| `01_alpha` | an MLP | 91.5% (mean of 3 seeds) |
| `bench/x.py` | a bench | 1% |

## Later
"""


class Refs(HTMLParser):
    """Every URL a page loads (`src`, stylesheet `href`) and every link (`a href`) in it."""

    def __init__(self):
        super().__init__()
        self.loads, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href"):
            self.loads.append(a["href"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def refs(page):
    parser = Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def local_target(page, url):
    """The file a relative URL in `page` names, or None for data:, #anchors and absolute URLs."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return (page.parent / unquote(parts.path)).resolve()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """This project's whole site, built into a temporary folder."""
    out = tmp_path_factory.mktemp("site") / "site"
    said, warned = [], []
    assert build_site.build(out=str(out), root=ROOT, say=said.append, warn=warned.append) == 0
    return out, said, warned


STEMS = [p.stem for p in n2s.find_notebooks(ROOT / "nbs")]


def test_every_notebook_has_a_page_and_the_readme_names_every_notebook(site):
    out, said, warned = site
    assert sorted(p.stem for p in out.glob("*.html")) == sorted(STEMS + ["index"])
    assert not warned, warned  # every notebook is in the README's table of notebooks
    assert said[-1].startswith(f"{out}/: {len(STEMS)} notebook page(s), index")


def test_pages_load_nothing_from_outside_and_every_local_reference_exists(site):
    out, _, _ = site
    pages = sorted(out.rglob("*.html"))
    assert len(pages) > len(STEMS)
    for page in pages:
        r = refs(page)
        outside = [u for u in r.loads
                   if not u.startswith("data:") and local_target(page, u) is None]
        assert not outside, f"{page.name} loads from outside the site: {outside}"
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""url\(\s*['"]?(https?:)?//|@import|cdnjs|unpkg|jsdelivr""", text)
        missing = [u for u in r.loads + r.links
                   if local_target(page, u) is not None and not local_target(page, u).is_file()]
        assert not missing, f"{page.relative_to(out)} refers to files the site lacks: {missing}"
    for css in (out / "static").glob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", css.read_text(encoding="utf-8"))


@pytest.mark.parametrize("i", range(len(STEMS)))
def test_each_page_links_previous_index_next_its_module_and_its_tests(site, i):
    out, _, _ = site
    stem = STEMS[i]
    links = refs(out / f"{stem}.html").links
    assert links.count("index.html") >= 4  # home and index, at the top and at the bottom
    if i:
        assert links.count(f"{STEMS[i - 1]}.html") == 2
    if i + 1 < len(STEMS):
        assert links.count(f"{STEMS[i + 1]}.html") == 2
    module = n2s.module_name(stem)
    if (ROOT / "exp" / f"{module}.py").exists():
        assert f"exp/{module}.py.html" in links
    tests = sorted(p.name for p in (ROOT / "tests").glob(f"test_nb{module[3:]}_*.py"))
    linked = sorted(h[len("tests/"):-len(".html")] for h in set(links) if h.startswith("tests/"))
    assert linked == tests


def test_the_index_is_the_readmes_road_and_results(site):
    out, _, _ = site
    index = (out / "index.html").read_text(encoding="utf-8")
    readme = build_site.read_readme(ROOT)
    road = re.findall(r'<tr><td><a href="([^"]+)\.html"><code>[^<]+</code></a></td><td>(.*?)</td>'
                      r"<td>(.*?)</td></tr>", index)
    assert [stem for stem, _, _ in road] == STEMS
    for stem, builds, result in road:
        assert builds == build_site.markdown_html(readme["road"][stem], inline=True)
        if stem in readme["results"]:
            assert result == build_site.markdown_html(readme["results"][stem], inline=True)
    assert "08_resnet" in readme["results"] and "%" in readme["results"]["08_resnet"]  # found
    assert build_site.markdown_html(readme["results_md"]).split("<table>")[0] in index


def test_mathjax_is_in_the_site_without_what_no_page_uses(site):
    out, _, _ = site
    mj = out / "mathjax"
    assert (mj / "MathJax.js").is_file()
    assert (mj / "config" / f"{build_site.MATHJAX_CONFIG}.js").is_file()
    assert list((mj / "fonts" / "HTML-CSS" / "STIX-Web" / "woff").glob("*.woff"))
    assert not (mj / "jax" / "output" / "SVG").exists() and not (mj / "localization").exists()
    assert not (mj / "extensions" / "a11y").exists()
    assert sum(p.stat().st_size for p in mj.rglob("*") if p.is_file()) < 4e6


# ---- a small project: the command line, the README's tables, atomic writes -----------------------

def tool_project(tmp_path, readme=README):
    """A project in `tmp_path`: the two scripts, a README, `01_alpha` (maths and a plot) and
    `02_beta` (not in the README, a link to 01), `exp/nb_01.py` and a test of it."""
    for name in ("notebook2script.py", "build_site.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    if readme is not None:
        (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    plot = {"data": {"image/png": PNG, "text/plain": ["<Figure>"]}, "metadata": {},
            "output_type": "display_data"}
    write_nb(tmp_path / "nbs" / "01_alpha.ipynb",
             [md("# Alpha\n\nThe sum $\\sum_i x_i$ and\n\n$$y = W x + b$$"),
              code("#export\ndef alpha(): return 1\n"), code("plot()\n", outputs=[plot])])
    write_nb(tmp_path / "nbs" / "02_beta.ipynb",
             [md("# Beta, the *second*\n\nBack to [alpha](01_alpha.ipynb#Alpha)."),
              code("1 + 1\n")])
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "nb_01.py").write_text("def alpha(): return 1\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_nb01_alpha.py").write_text("def test_alpha(): pass\n",
                                                           encoding="utf-8")
    return tmp_path


def site_cli(root, *args):
    return subprocess.run([sys.executable, str(root / "build_site.py"), *map(str, args)], cwd=root,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_notebook_missing_from_the_readme_gets_a_page_its_title_and_a_warning(tmp_path):
    root = tool_project(tmp_path)
    res = site_cli(root)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == ("warning: 02_beta is not in README.md's table of notebooks "
                                  "('| notebook | what it builds |'); "
                                  "the index shows its title instead")
    assert res.stdout.splitlines()[:2] == ["nbs/01_alpha.ipynb -> site/01_alpha.html",
                                           "nbs/02_beta.ipynb -> site/02_beta.html"]
    index = (root / "site" / "index.html").read_text(encoding="utf-8")
    assert ("<td>the <code>alpha</code> thing, with a <code>|</code> in code</td>"
            "<td>91.5% (mean of 3 seeds)</td>") in index
    assert "<td>Beta, the second</td>" in index  # its title stands in
    assert "<p>A demo course.</p>" in index and "<h2>Results</h2>" in index and "Later" not in index
    assert '<a href="01_alpha.html"><code>01_alpha</code></a>' in index.split("<h2>Results</h2>")[1]
    alpha = (root / "site" / "01_alpha.html").read_text(encoding="utf-8")
    assert "$\\sum_i x_i$" in alpha and "$$y = W x + b$$" in alpha  # left for MathJax
    assert 'src="data:image/png;base64,' in alpha
    assert 'href="exp/nb_01.py.html"' in alpha and 'href="tests/test_nb01_alpha.py.html"' in alpha
    assert "<title>01_alpha: Alpha · foundations</title>" in alpha
    beta = (root / "site" / "02_beta.html").read_text(encoding="utf-8")
    assert 'href="01_alpha.html#Alpha"' in beta  # a link to a notebook points at its page
    assert "no tests of its own" in beta and "exp/nb_02.py.html" not in beta
    copy = (root / "site" / "exp" / "nb_01.py.html").read_text(encoding="utf-8")
    assert 'href="../01_alpha.html"' in copy and "alpha" in copy


def test_one_named_page_rebuilds_only_it_and_a_full_build_removes_stale_pages(tmp_path):
    root = tool_project(tmp_path)
    assert site_cli(root).returncode == 0
    site = root / "site"
    beta = (site / "02_beta.html").read_bytes()
    (site / "02_beta.html").write_text("old", encoding="utf-8")
    res = site_cli(root, "nbs/01_alpha.ipynb")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "nbs/01_alpha.ipynb -> site/01_alpha.html"
    assert (site / "02_beta.html").read_text(encoding="utf-8") == "old"  # not named: untouched
    (root / "nbs" / "02_beta.ipynb").rename(root / "nbs" / "02_gamma.ipynb")
    assert site_cli(root).returncode == 0
    assert not (site / "02_beta.html").exists()  # the renamed notebook's old page is gone
    assert (site / "02_gamma.html").read_bytes().replace(b"02_gamma", b"02_beta") == beta


@pytest.mark.parametrize("args, message", [
    (["--outt=x"], "error: unknown flag --outt (did you mean --out?); the flags are --out "
                   "(see --help)"),
    (["--out"], "error: --out needs a value, e.g. --out=VALUE"),
    (["99_nothing"], "error: no notebook named '99_nothing' (looked for it as a path and in "),
    (["--check"], "error: unknown flag --check; the flags are --out (see --help)"),
])
def test_bad_flags_and_names_are_one_error_line_exit_2_and_nothing_written(tmp_path, args, message):
    root = tool_project(tmp_path)
    res = site_cli(root, *args)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith(message), res.stderr
    assert not (root / "site").exists()


def test_help_shows_the_flags(tmp_path):
    res = site_cli(tool_project(tmp_path), "--help")
    assert res.returncode == 0 and "--out" in res.stdout and "build_site.py 01_matmul" in res.stdout


@pytest.mark.parametrize("readme, message", [
    (None, "error: README.md: cannot read it (No such file or directory); the index is built"),
    (README.replace("what it builds", "what it makes"),
     "error: README.md: no table with the header '| notebook | what it builds |'"),
    (README.replace("| ours |", "| mine |"),
     "error: README.md: no table with a 'notebook' and an 'ours'"),
])
def test_a_readme_without_its_tables_is_one_error_and_nothing_written(tmp_path, readme, message):
    root = tool_project(tmp_path, readme=readme)
    res = site_cli(root)
    assert res.returncode == 2 and res.stderr.startswith(message), res.stderr
    assert not (root / "site").exists()


def test_out_refuses_a_folder_it_did_not_build(tmp_path):
    root = tool_project(tmp_path)
    mine = root / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine", encoding="utf-8")
    for out, message in [
            ("notes", "error: --out notes: holds files that build_site.py did not write"),
            (".", "error: --out .: is the project folder or above it"),
            ("notes/keep.txt", "error: --out notes/keep.txt: is a file, not a folder")]:
        res = site_cli(root, f"--out={out}")
        assert res.returncode == 2 and res.stderr.startswith(message), res.stderr
    assert snapshot(mine) == {"keep.txt": b"mine"}
    res = site_cli(root, "--out", "elsewhere/site")
    assert res.returncode == 0, res.stderr
    assert (root / "elsewhere" / "site" / "index.html").is_file()
    assert site_cli(root, "-o", "elsewhere/site").returncode == 0  # a site it built: rebuilt


def test_a_failed_write_leaves_every_page_as_it_was(tmp_path, monkeypatch):
    root = tool_project(tmp_path)
    out = root / "site"
    assert build_site.build(out=str(out), root=root, say=lambda s: None, warn=lambda s: None) == 0
    before = snapshot(out)
    nb = root / "nbs" / "01_alpha.ipynb"
    edited = nb.read_text(encoding="utf-8").replace("Alpha", "Alpha, edited")
    nb.write_text(edited, encoding="utf-8")
    monkeypatch.setattr(n2s, "open", DiskFull(open), raising=False)
    with pytest.raises(n2s.ToolError, match="cannot write it \\(No space left on device\\); it was "
                                            "left as it was, as was every other file"):
        build_site.build(out=str(out), root=root, say=lambda s: None, warn=lambda s: None)
    monkeypatch.undo()
    assert snapshot(out) == before  # no page half-written, no temporary file left


def test_a_notebook_outside_nbs_is_refused(tmp_path):
    root = tool_project(tmp_path)
    write_nb(root / "other" / "03_x.ipynb", [md("# X")])
    res = site_cli(root, "other/03_x.ipynb")
    assert res.returncode == 2
    assert res.stderr == ("error: other/03_x.ipynb: not a numbered notebook in nbs/; "
                          "the site shows those only\n")


def test_markdown_tables_split_cells_but_not_code():
    assert build_site.split_row("| `a|b` | c \\| d | e |") == ["`a|b`", "c \\| d", "e"]
    tables = build_site.markdown_tables(README)
    assert [(h, len(rows)) for _, h, rows in tables] == [
        (["notebook", "what it builds"], 1), (["notebook", "what it trains", "ours"], 2)]
