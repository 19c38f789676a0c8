#!/usr/bin/env python
"""Render the numbered notebooks, with their committed outputs, as a site that reads offline.

    python build_site.py                   # every numbered notebook in nbs/ -> site/, then open
                                           # site/index.html in a browser
    python build_site.py 01_matmul         # one page (also `01_matmul.ipynb` or a path); the index,
                                           # the stylesheets and MathJax are written every time
    python build_site.py --out=/tmp/site   # somewhere else than site/ beside this file

Nothing is executed: each page is the notebook as committed, through nbconvert's HTML exporter (its
JupyterLab look), with one stylesheet shared by every page instead of a copy in each. The maths is
typeset by MathJax 2.7 copied from PyPI's `jupyter-server-mathjax` into `site/mathjax/` (the TeX
input, the HTML-CSS output and its STIX web fonts; not the SVG output, the accessibility extensions
or the translations), so no page loads anything from outside the site: no CDN script, font or
stylesheet (nbconvert's own template loads require.js, MathJax and mermaid from CDNs).
Every page has previous / index / next links and links to its module in `exp/` and to its tests,
each a highlighted copy in the site. `index.html` is the road (each notebook, what it builds, its
headline result) and the README's results section, both read from the README's tables: the README
stays their one source. A notebook missing from the README's table of notebooks still gets a page
(its title stands in, with a warning). Exit codes: 0 built, 2 bad input or a file that cannot be
read or written (one `error:` line; pages are written atomically, all or none).
"""
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from notebook2script import (ToolError, find_notebooks, module_name, project_paths, read_notebook,
                             rel_path, run_cli, select_notebooks, write_files)

MARKER = ".build_site.json"  # in the output folder: this tool wrote it; lists what it wrote
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"  # MathJax's combined config: TeX in, HTML-CSS out
# What of jupyter-server-mathjax's MathJax the pages need (paths under its static/ folder); the
# rest (SVG output, the a11y extensions, 40 translations: 9 of its 12 MB) is never requested.
MATHJAX_KEEP = ("MathJax.js", "LICENSE", f"config/{MATHJAX_CONFIG}.js", "extensions/",
                "jax/element/", "jax/input/", "jax/output/HTML-CSS/", "jax/output/NativeMML/",
                "jax/output/PreviewHTML/", "fonts/HTML-CSS/STIX-Web/woff/")
MATHJAX_SKIP = ("extensions/a11y/",)
README_ROAD = "what it builds"  # the header of the README's table of notebooks (second column)
README_RESULT = "ours"  # the column of the README's results table that holds a notebook's result


# ---- the README: the index's one source ---------------------------------------------------------

def split_row(line):
    """The cells of a markdown table row `| a | b |`, stripped; a `|` inside backticks stays."""
    cells, cell, in_code = [], "", False
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    for i, ch in enumerate(body):
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code and (i == 0 or body[i - 1] != "\\"):
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
    return cells + [cell.strip()]


def markdown_tables(text):
    """Every pipe table in markdown `text`: `[(first line index, header cells, [row cells])]`."""
    lines, tables, i = text.splitlines(), [], 0
    rule = re.compile(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?")  # |---|:--:|
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and rule.fullmatch(lines[i + 1].strip()):
            header, rows, j = split_row(lines[i]), [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(split_row(lines[j]))
                j += 1
            tables.append((i, header, rows))
            i = j
        else:
            i += 1
    return tables


def notebook_key(cell):
    """`` `03_minibatch_training` `` -> `03_minibatch_training` (a table's notebook column)."""
    return cell.strip().strip("`").strip()


def read_readme(root):
    """What the index takes from README.md: `{intro, road: {stem: text}, results: {stem: text},
    results_md: the results section's markdown}`, or a ToolError naming what to add."""
    path = root / "README.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ToolError(f"README.md: cannot read it ({e.strerror}); "
                        "the index is built from its tables") from None
    tables = markdown_tables(text)

    def find(test, what):
        for start, header, rows in tables:
            names = [h.lower() for h in header]
            if names and names[0] == "notebook" and test(names):
                return start, names, rows
        raise ToolError(f"README.md: no table with {what}; the index's road is read from it "
                        "(restore the table, or change README_ROAD / README_RESULT "
                        "in build_site.py)")

    _, _, road_rows = find(lambda n: len(n) > 1 and n[1] == README_ROAD,
                           f"the header '| notebook | {README_ROAD} |'")
    start, names, result_rows = find(lambda n: README_RESULT in n,
                                     f"a 'notebook' and an '{README_RESULT}' column")
    col = names.index(README_RESULT)
    road = {notebook_key(r[0]): r[1] for r in road_rows if len(r) > 1}
    results = {}
    for r in result_rows:
        if len(r) > col:
            results.setdefault(notebook_key(r[0]), r[col])
    lines = text.splitlines()
    top = max((i for i in range(start) if lines[i].startswith("## ")), default=start)
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    paragraphs = re.split(r"\n\s*\n", text.split("\n## ", 1)[0])
    intro = next((p for p in paragraphs if p.strip() and not p.lstrip().startswith("#")), "")
    return {"intro": intro, "road": road, "results": results,
            "results_md": "\n".join(lines[top:end])}


def markdown_html(text, inline=False):
    """Markdown to HTML with mistune (nbconvert's own markdown renderer); `inline` drops the <p>."""
    import mistune

    out = mistune.html(text).strip()
    if inline and out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1:
        out = out[3:-4]
    return out


# ---- the pages ----------------------------------------------------------------------------------

def mathjax_dir():
    """The folder of MathJax 2.7 that PyPI's jupyter-server-mathjax ships (found without importing
    it: its package imports jupyter_server)."""
    from importlib.util import find_spec

    spec = find_spec("jupyter_server_mathjax")
    static = Path(spec.origin).parent / "static" if spec and spec.origin else None
    if static is None or not (static / "MathJax.js").is_file():
        raise ToolError("MathJax is missing: pip install jupyter-server-mathjax (a dev "
                        "requirement: pip install -e \".[dev]\"); it ships MathJax 2.7")
    return static


def mathjax_files(static):
    """`[(relative path, source path)]` of the MathJax files a page may request."""
    found = []
    for dirpath, _, files in os.walk(static):
        for name in files:
            rel = Path(dirpath, name).relative_to(static).as_posix()
            if rel.startswith(MATHJAX_KEEP) and not rel.startswith(MATHJAX_SKIP):
                found.append((rel, Path(dirpath, name)))
    return sorted(found)


MATHJAX_HTML = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
            displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  "fast-preview": {disabled: true},
  displayAlign: "center", messageStyle: "none"
});
</script>
<script src="mathjax/MathJax.js?config=%s"></script>""" % MATHJAX_CONFIG

# nbconvert's JupyterLab template, its <head> replaced: the shared stylesheets instead of 250 kB of
# CSS inlined in every page, the local MathJax, and no require.js or mermaid from a CDN.
PAGE_TEMPLATE = """{%- extends 'base.html.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{{ resources.site.title }}</title>
<link rel="stylesheet" href="static/lab.css">
<link rel="stylesheet" href="static/site.css">
{{ resources.site.mathjax }}
</head>
{%- endblock header -%}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.site.nav_top }}
<main>
{%- endblock body_header -%}
{% block body_footer %}
</main>
{{ resources.site.nav_bottom }}
</body>
{% endblock body_footer %}
{% block footer %}
</html>
{% endblock footer %}
"""

SITE_CSS = """
body { margin: 0; }
.site-nav { display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: baseline; padding: 8px 20px;
  background: #f3f5f7; border-bottom: 1px solid #d0d7de; font: 14px/1.5 system-ui, sans-serif; }
.site-nav.bottom { border-top: 1px solid #d0d7de; border-bottom: none; margin-top: 24px; }
.site-nav a { color: #0b57d0; text-decoration: none; }
.site-nav a:hover { text-decoration: underline; }
.site-nav .home { font-weight: 600; color: #1f2328; }
.site-nav .off { color: #8c959f; }
.site-nav .src { margin-left: auto; color: #57606a; }
body.jp-Notebook main { max-width: 1100px; margin: 0 auto; padding: 8px 20px 0; }
.site-page { max-width: 1100px; margin: 0 auto; padding: 8px 20px 24px;
  font: 15px/1.55 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328; }
.site-page table { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
.site-page th, .site-page td { border: 1px solid #d0d7de; padding: 5px 9px; text-align: left;
  vertical-align: top; }
.site-page th { background: #f3f5f7; }
.site-page code { font: 13px ui-monospace, 'DejaVu Sans Mono', monospace; background: #f3f5f7;
  padding: 1px 4px; border-radius: 4px; }
.site-page pre code, .site-page h1 code { background: none; padding: 0; }
.site-page h1 code { font-size: 26px; }
.site-page .highlight { background: #f8f9fa; border: 1px solid #e1e4e8; border-radius: 6px;
  overflow-x: auto; }
.site-page .highlight pre { margin: 0; padding: 10px 12px; font: 13px/1.45 ui-monospace,
  'DejaVu Sans Mono', monospace; }
.site-page .lineno { color: #8c959f; }
/* MathJax's hidden MathML copy for screen readers (AssistiveMML) is styled for TeX fonts that the
   package does not ship (it has STIX-Web only); it is never shown, so it keeps the page's font. */
.MJX_Assistive_MathML [class^="MJX-tex-"],
.MJX_Assistive_MathML [mathvariant] { font-family: inherit; }
"""


def nav_html(stem, stems, titles, module, tests, where="top"):
    """The bar of links at the top (and bottom) of a page: previous, index, next, module, tests."""
    i = stems.index(stem)

    def link(k, arrow_before, arrow_after, rel):
        if 0 <= k < len(stems):
            s = stems[k]
            tip = html.escape(titles.get(s, s), quote=True)
            return (f'<a rel="{rel}" href="{s}.html" title="{tip}">'
                    f"{arrow_before}{s}{arrow_after}</a>")
        return f'<span class="off">{arrow_before}{"start" if k < 0 else "end"}{arrow_after}</span>'

    parts = ['<a class="home" href="index.html">foundations</a>',
             link(i - 1, "&larr; ", "", "prev"), '<a href="index.html">index</a>',
             link(i + 1, "", " &rarr;", "next")]
    src = []
    if module:
        src.append(f'module <a href="{module[1]}">{html.escape(module[0])}</a>')
    if tests:
        src.append("tests " + ", ".join(f'<a href="{href}">{html.escape(name)}</a>'
                                        for name, href in tests))
    else:
        src.append("no tests of its own")
    parts.append(f'<span class="src">{" &middot; ".join(src)}</span>')
    cls = "site-nav" + (" bottom" if where == "bottom" else "")
    return f'<nav class="{cls}" aria-label="lessons">' + "\n".join(parts) + "</nav>"


def notebook_title(nb):
    """The text of a notebook's first markdown heading, else ''."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            m = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", src, re.MULTILINE)
            if m:
                return re.sub(r"[`*_]", "", m.group(1))
    return ""


def exporter():
    """nbconvert's HTML exporter with the JupyterLab template, our <head>, and no HTML sanitising
    (these are our own notebooks; bleach would double the time of a build)."""
    try:
        from nbconvert import HTMLExporter
    except ImportError as e:
        raise ToolError(f"cannot import nbconvert ({e}): install the dev requirements, "
                        "pip install -e \".[dev]\"") from None
    return HTMLExporter(template_name="lab", raw_template=PAGE_TEMPLATE, embed_images=True,
                        exclude_input_prompt=True, exclude_output_prompt=True,  # no `In [ ]:`
                        filters={"clean_html": lambda text: text})


def code_page(title, text, back, css_base=""):
    """A highlighted copy of a Python file (a module or a test file), with links back."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter(linenos="inline", lineanchors="L", wrapcode=True)  # #L12: line 12
    body = highlight(text, PythonLexer(), formatter)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            f'<title>{html.escape(title)} &middot; foundations</title>\n'
            f'<link rel="stylesheet" href="{css_base}static/site.css">\n</head>\n<body>\n'
            f'<nav class="site-nav" aria-label="lessons">'
            f'<a class="home" href="{css_base}index.html">foundations</a>{back}'
            f'<a href="{css_base}index.html">index</a></nav>\n'
            f'<div class="site-page">\n<h1><code>{html.escape(title)}</code></h1>\n{body}</div>\n'
            f'</body>\n</html>\n')


def index_page(stems, titles, readme, warn):
    """`index.html`: the README's intro, the road (notebook, what it builds, headline result), and
    the README's results section, its notebook names linked to their pages."""
    rows = []
    for stem in stems:
        builds = readme["road"].get(stem)
        if builds is None:
            warn(f"warning: {stem} is not in README.md's table of notebooks "
                 f"('| notebook | {README_ROAD} |'); the index shows its title instead")
            builds = html.escape(titles.get(stem, ""))
        else:
            builds = markdown_html(builds, inline=True)
        result = readme["results"].get(stem)
        result = (markdown_html(result, inline=True) if result
                  else '<span class="off">&mdash;</span>')
        rows.append(f'<tr><td><a href="{stem}.html"><code>{stem}</code></a></td>'
                    f"<td>{builds}</td><td>{result}</td></tr>")
    results = markdown_html(readme["results_md"])
    for stem in stems:  # the results table names notebooks: link them
        results = results.replace(f"<code>{stem}</code>",
                                  f'<a href="{stem}.html"><code>{stem}</code></a>')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            '<title>foundations: the lessons</title>\n'
            '<link rel="stylesheet" href="static/site.css">\n</head>\n<body>\n'
            '<nav class="site-nav" aria-label="lessons">'
            '<a class="home" href="index.html">foundations</a>'
            f'<a href="{stems[0]}.html">start: {stems[0]} &rarr;</a></nav>\n'
            '<div class="site-page">\n<h1>foundations</h1>\n'
            f"{markdown_html(readme['intro'])}\n"
            "<h2>The road</h2>\n<table>\n<thead><tr><th>notebook</th><th>what it builds</th>"
            "<th>headline result</th></tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>\n"
            f"{results}\n"
            "<p><small>Built by <code>python build_site.py</code> from the notebooks as committed "
            "(nothing re-run) and from README.md.</small></p>\n"
            "</div>\n</body>\n</html>\n")


def link_notebooks(page, stems):
    """Links to a notebook file (`02_fully_connected.ipynb#x`) in a page point at its page."""
    known = set(stems)
    return re.sub(r'href="(?:\./)?([^"/#]+)\.ipynb(#[^"]*)?"',
                  lambda m: (f'href="{m.group(1)}.html{m.group(2) or ""}"' if m.group(1) in known
                             else m.group(0)), page)


# ---- the build ----------------------------------------------------------------------------------

def output_folder(out, root):
    """The folder to build into, checked: new, empty, or one this tool built (it holds MARKER)."""
    path = Path(out).resolve() if out else root / "site"
    shown = out if out else "site"
    if path.exists() and not path.is_dir():
        raise ToolError(f"--out {shown}: is a file, not a folder")
    if path == root or path in root.parents:
        raise ToolError(f"--out {shown}: is the project folder or above it; "
                        "give a folder of its own")
    if path.is_dir() and not (path / MARKER).is_file() and any(path.iterdir()):
        raise ToolError(f"--out {shown}: holds files that build_site.py did not write; "
                        "give a new or empty folder (or delete this one)")
    return path, shown


def copy_assets(files, out):
    """Copy `[(relative path, source)]` into `out`, each via a temporary file and a rename; skip a
    file whose copy has the source's size and modification time."""
    done = 0
    for rel, src in files:
        dst = out / rel
        try:
            st = src.stat()
            try:
                dt = dst.stat()
                if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                    continue
            except FileNotFoundError:
                pass
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            done += 1
        except OSError as e:
            raise ToolError(f"{rel}: cannot copy it into the site ({e.strerror or e})") from None
    return done


def tests_of(stem, tests_dir):
    """The test files of a notebook: `tests/test_nb<prefix>_*.py` (`01_matmul` -> test_nb01_*)."""
    prefix = module_name(stem)[3:]
    return sorted(tests_dir.glob(f"test_nb{prefix}_*.py")) if tests_dir.is_dir() else []


def build(*notebooks, out=None, root=None, say=print, warn=None):
    """Render notebooks (all, or the named ones) and the index into the site; return 0."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    root, nbs_dir, lib_dir = project_paths(root)
    every = find_notebooks(nbs_dir)
    chosen = select_notebooks(notebooks, nbs_dir, root)
    outside = [rel_path(p, root) for p in chosen if p not in every]
    if outside:
        raise ToolError(f"{', '.join(outside)}: not a numbered notebook in "
                        f"{rel_path(nbs_dir, root)}/; the site shows those only")
    out_dir, shown_out = output_folder(out, root)
    readme = read_readme(root)
    static = mathjax_dir()
    stems = [p.stem for p in every]
    nbs, problems = {}, []
    for p in every:  # every title is needed for the navigation; only chosen ones are rendered
        try:
            nbs[p.stem] = read_notebook(p, rel_path(p, root))
        except ToolError as e:
            problems.append(str(e))
    if problems:
        raise ToolError("\n".join(problems))
    titles = {s: notebook_title(nb) for s, nb in nbs.items()}
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines  # sources and outputs as one string each

    ex = exporter()
    tests_dir = root / "tests"
    writes, lab_css, n_code = [], None, 0
    for p in chosen:
        stem = p.stem
        module = lib_dir / f"{module_name(p)}.py"
        mod_link = None
        if module.is_file():
            mod_link = (rel_path(module, root), f"exp/{module.name}.html")
            back = f'<a href="../{stem}.html">&larr; {stem}</a>'
            n_code += 1
            text = module.read_text(encoding="utf-8")
            writes.append((out_dir / "exp" / f"{module.name}.html",
                           code_page(rel_path(module, root), text, back, "../")))
        test_links = []
        for t in tests_of(stem, tests_dir):
            test_links.append((t.name, f"tests/{t.name}.html"))
            n_code += 1
            back = f'<a href="../{stem}.html">&larr; {stem}</a>'
            text = t.read_text(encoding="utf-8")
            writes.append((out_dir / "tests" / f"{t.name}.html",
                           code_page(rel_path(t, root), text, back, "../")))
        title = f"{stem}: {titles[stem]}" if titles[stem] else stem
        site = {"title": html.escape(f"{title} · foundations"), "mathjax": MATHJAX_HTML,
                "nav_top": nav_html(stem, stems, titles, mod_link, test_links),
                "nav_bottom": nav_html(stem, stems, titles, mod_link, test_links, where="bottom")}
        resources = {"metadata": {"name": stem, "path": str(nbs_dir)}, "site": site}
        try:
            body, res = ex.from_notebook_node(rejoin_lines(nbformat.from_dict(nbs[stem])),
                                               resources=resources)
        except Exception as e:  # nbconvert's errors have no common base class
            raise ToolError(f"{rel_path(p, root)}: nbconvert cannot render it: "
                            f"{type(e).__name__}: {e}") from None
        lab_css = lab_css or "\n".join(res.get("inlining", {}).get("css", []))
        writes.append((out_dir / f"{stem}.html", link_notebooks(body, stems)))
        say(f"{rel_path(p, root)} -> {shown_out}/{stem}.html")
    from pygments.formatters import HtmlFormatter

    writes.append((out_dir / "index.html", index_page(stems, titles, readme, warn)))
    writes.append((out_dir / "static" / "site.css",
                   SITE_CSS + HtmlFormatter().get_style_defs(".site-page .highlight") + "\n"))
    if lab_css is not None:
        writes.append((out_dir / "static" / "lab.css", lab_stylesheet(ex, lab_css)))
    try:
        for folder in {path.parent for path, _ in writes}:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolError(f"--out {shown_out}: cannot create a folder in it ({e.strerror})") from None
    assets = mathjax_files(static)
    copied = copy_assets([(f"mathjax/{rel}", src) for rel, src in assets], out_dir)
    previous = read_marker(out_dir)
    wrote = sorted({path.relative_to(out_dir).as_posix() for path, _ in writes}
                   | {f"mathjax/{rel}" for rel, _ in assets})
    keep = wrote if not notebooks else sorted(set(wrote) | set(previous))
    writes.append((out_dir / MARKER, json.dumps({"files": keep}, indent=1) + "\n"))
    write_files(writes, root=root)
    stale = [rel for rel in previous if rel not in keep] if not notebooks else []
    for rel in stale:  # a renamed notebook's old page, a deleted test's copy
        (out_dir / rel).unlink(missing_ok=True)
    size = sum((out_dir / rel).stat().st_size for rel in keep if (out_dir / rel).is_file())
    say(f"{shown_out}/: {len(chosen)} notebook page(s), index, {n_code} "
        f"module and test page(s), MathJax ({len(assets)} files, {copied} copied); "
        f"{size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s; open {shown_out}/index.html")
    return 0


def lab_stylesheet(ex, highlight_css):
    """nbconvert's JupyterLab stylesheet (light theme) plus the code highlighting, written once."""
    env = ex.environment
    parts = [env.loader.get_source(env, name)[0]
             for name in ("static/index.css", "static/theme-light.css")]
    extra = """
a.anchor-link { display: none; }
.jp-InputArea { overflow: hidden; }
.jp-InputArea-editor { overflow: hidden; }
.cm-editor.cm-s-jupyter .highlight pre { padding: var(--jp-code-padding) 4px; margin: 0;
  font-family: inherit; font-size: inherit; line-height: inherit; color: inherit; }
.jp-OutputArea-output pre { line-height: inherit; font-family: inherit; }
.jp-RenderedText pre { color: var(--jp-content-font-color1); font-size: var(--jp-code-font-size); }
.jp-Collapser { display: none; }
"""
    return "\n".join(parts) + extra + highlight_css + "\n"


def read_marker(out_dir):
    """The files the last build wrote into `out_dir` (from its MARKER), or []."""
    try:
        files = json.loads((out_dir / MARKER).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files
            if isinstance(f, str) and ".." not in Path(f).parts and not Path(f).is_absolute()]


def main(*notebooks, out: str = None):
    """Render the numbered notebooks, with their committed outputs, as a site that reads offline.

    Usage:
        python build_site.py                   # every numbered notebook -> site/index.html
        python build_site.py 01_matmul         # one page (a stem, a file name or a path)
        python build_site.py --out=/tmp/site   # build somewhere else
    An option takes a value as `--out=DIR`, `--out DIR` or `-o DIR`.
    Exit codes: 0 built; 2 bad input or a file that cannot be read or written (one `error:` line).

    Args:
        notebooks: Notebooks to render, each a stem (`01_matmul`), a file name or a path; none means
            every numbered notebook in the notebooks folder (`nbs_path` in settings.ini).
        out: The folder to build into (default: site/ beside this file). It must be new, empty, or a
            site this tool built.
    """
    return build(*notebooks, out=out)


if __name__ == "__main__":
    run_cli(main)
