#!/usr/bin/env python
"""Strip volatile metadata from notebooks, keeping their outputs.

    python clean_nbs.py                 # clean every notebook in nbs/ in place
    python clean_nbs.py nbs/01_matmul.ipynb
    python clean_nbs.py --check         # write nothing; exit 1 naming each unclean notebook

A clean notebook keeps its outputs (readers see plots and timings) but has no execution counts, no
per-cell metadata except `tags`, and notebook metadata reduced to the kernel and language names. It is
written the way Jupyter writes it (nbformat, one-space indent, sorted keys), so cleaning is idempotent.
Exit codes: 0 done or clean, 1 `--check` found unclean notebooks, 2 bad input.
"""
import sys
from pathlib import Path

from notebook2script import ExportError, project_paths, read_notebook, run_cli, write_atomic

KEEP_CELL_METADATA = ("tags",)
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def clean_notebook(nb):
    """Remove execution counts and volatile metadata from a notebook dict in place; return it."""
    for cell in nb.get("cells", []):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if cell.get("cell_type") == "code":
            cell["execution_count"] = None
            for output in cell.get("outputs", []):
                if "execution_count" in output:
                    output["execution_count"] = None
                output.pop("transient", None)
    meta = nb.get("metadata", {})
    kernelspec = {k: meta.get("kernelspec", {}).get(k, default) for k, default in KERNELSPEC.items()}
    language = meta.get("language_info", {}).get("name", "python")
    nb["metadata"] = {"kernelspec": kernelspec, "language_info": {"name": language}}
    return nb


def notebook_text(nb):
    """Serialise a notebook dict exactly as Jupyter saves it (lines split, sorted keys, final newline)."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def clean_file(path, check=False):
    """Clean one notebook file in place (or, with `check`, only report); return True if it was clean."""
    nb = read_notebook(Path(path), str(path))  # first: a missing or unreadable file is an ExportError
    text = Path(path).read_text(encoding="utf-8")
    cleaned = notebook_text(clean_notebook(nb))
    if cleaned == text:
        return True
    if not check:
        write_atomic(path, cleaned)
    return False


def main(*notebooks, check=False):
    """Clean the given notebooks (default: all in the notebooks folder); `--check` only reports."""
    paths = [Path(p) for p in notebooks] or sorted(project_paths()[1].glob("*.ipynb"))
    unclean, errors = [], []
    for p in paths:
        try:
            if not clean_file(p, check=check):
                unclean.append(p)
        except ExportError as e:
            errors.append(str(e))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if check:
        for p in unclean:
            print(f"unclean: {p} (run `python clean_nbs.py {p}`)")
        print(f"{len(unclean)} of {len(paths)} notebook(s) unclean" if unclean
              else f"{len(paths)} notebook(s) clean")
    else:
        for p in unclean:
            print(f"cleaned: {p}")
    sys.exit(2 if errors else 1 if check and unclean else 0)


if __name__ == "__main__":
    run_cli(main, sys.argv[1:], flags=("check",))
