#!/usr/bin/env python
"""Clean notebooks the way nbdev projects do, keeping their outputs; set up nbdev's git merge driver.

    python clean_nbs.py                  # clean every numbered notebook in nbs/ in place
    python clean_nbs.py 01_matmul        # one: a stem, a file name or a path
    python clean_nbs.py --check          # write nothing; exit 1 naming each unclean notebook
    python clean_nbs.py --setup_git      # notebooks merge cell by cell (nbdev-merge), once per clone

Cleaning is nbdev's `nbdev.clean.clean_nb`, which needs no nbdev config: execution counts go, cell
metadata goes except `tags` (and nbdev's `hide_input`, `nbdev`), output metadata and ` at 0x...`
addresses in text outputs go, outputs stay (readers see plots and timings). The notebook metadata is
then reduced to the kernel and language names, as before nbdev (nbdev keeps widget state and renames the
kernel's display name). The file is written the way Jupyter writes it (nbformat, one-space indent,
sorted keys), atomically, so cleaning is idempotent and never leaves a half-written notebook.
Exit codes: 0 done or clean, 1 `--check` found unclean notebooks, 2 bad input or a file that cannot be
read or written.
"""
import shutil
import subprocess
import sys
from pathlib import Path

from notebook2script import (ToolError, project_paths, read_notebook, rel_path, run_cli, select_notebooks,
                             write_atomic)

KEEP_CELL_METADATA = ("tags",)
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
GITATTRIBUTES_LINE = "*.ipynb merge=nbdev-merge"


def nbdev_clean_nb():
    """nbdev's `clean_nb`, or a ToolError saying how to install nbdev (a dev requirement)."""
    try:
        from nbdev.clean import clean_nb
    except ImportError as e:
        raise ToolError(f"cannot import nbdev.clean ({e}): install the dev requirements, "
                        "pip install -e \".[dev]\" (clean_nbs.py cleans with nbdev's clean_nb)") from None
    return clean_nb


def clean_notebook(nb):
    """Clean a notebook dict in place with nbdev's `clean_nb`, outputs kept; return it."""
    clean_nb = nbdev_clean_nb()
    meta = nb.get("metadata") or {}
    kernelspec = {k: (meta.get("kernelspec") or {}).get(k, default) for k, default in KERNELSPEC.items()}
    language = (meta.get("language_info") or {}).get("name", "python")
    clean_nb(nb, allowed_cell_metadata_keys=list(KEEP_CELL_METADATA))
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            output.pop("transient", None)  # display ids of a live session; nbformat 4 does not allow it
    nb["metadata"] = {"kernelspec": kernelspec, "language_info": {"name": language}}
    return nb


def notebook_text(nb):
    """Serialise a notebook dict exactly as Jupyter saves it (lines split, sorted keys, final newline)."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def clean_file(path, check=False, shown=None):
    """Clean one notebook file in place (or, with `check`, only report); return True if it was clean."""
    path, shown = Path(path), shown or str(path)
    nb = read_notebook(path, shown)  # first: a missing or unreadable file is a ToolError
    text = path.read_bytes().decode("utf-8-sig")
    cleaned = notebook_text(clean_notebook(nb))
    if cleaned == text:
        return True
    if not check:
        write_atomic(path, cleaned, shown)
    return False


def merge_driver():
    """The git merge-driver command: nbdev's `nbdev-merge` beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "nbdev-merge"
    exe = str(beside) if beside.is_file() else shutil.which("nbdev-merge")
    if not exe:
        raise ToolError("nbdev-merge is not installed: pip install nbdev (it is a dev requirement)")
    return f"'{exe}' %O %A %B %P" if " " in exe else f"{exe} %O %A %B %P"


def install_merge_driver(root):
    """Make git merge notebooks with nbdev-merge: repo-local config, and `.gitattributes` (to commit)."""
    def git(*args):
        try:
            res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise ToolError(f"cannot run git: {e.strerror}") from None
        if res.returncode:
            raise ToolError(f"git {' '.join(args)}: {res.stderr.strip() or res.returncode}")
        return res.stdout.strip()

    top = Path(git("rev-parse", "--show-toplevel"))
    driver = merge_driver()
    git("config", "--local", "merge.nbdev-merge.name", "merge notebooks cell by cell (nbdev)")
    git("config", "--local", "merge.nbdev-merge.driver", driver)
    attributes = top / ".gitattributes"
    try:
        lines = attributes.read_text(encoding="utf-8").splitlines() if attributes.exists() else []
    except OSError as e:
        raise ToolError(f"{attributes}: cannot read it: {e.strerror}") from None
    if GITATTRIBUTES_LINE not in lines:
        write_atomic(attributes, "\n".join(lines + [GITATTRIBUTES_LINE]) + "\n")
    print(f"git config merge.nbdev-merge.driver = {driver}")
    print(f"{rel_path(attributes, top)}: {GITATTRIBUTES_LINE} (commit it)")
    return 0


def main(*notebooks, check: bool = False, setup_git: bool = False):
    """Clean notebooks as nbdev does, keeping their outputs, or set up nbdev's git merge driver.

    Usage:
        python clean_nbs.py                  # every numbered notebook in the notebooks folder
        python clean_nbs.py 01_matmul        # one: a stem, a file name or a path
        python clean_nbs.py --check          # write nothing; exit 1 naming each unclean notebook
        python clean_nbs.py --setup_git      # once per clone: notebooks merge cell by cell
    A flag is given alone (`--check`, `-c`) or as `--check=True`/`--check=False`.
    Exit codes: 0 done or clean; 1 --check found unclean notebooks;
    2 bad input or a file that cannot be read or written (one `error:` line each).

    Args:
        notebooks: Notebooks to clean, each a stem (`01_matmul`), a file name or a path; none means
            every numbered notebook in the notebooks folder (`nbs_path` in settings.ini).
        check: Write nothing; name each notebook that is not clean and exit 1 if there is one.
        setup_git: Write the repo-local git config that makes `nbdev-merge` merge notebooks, and the
            `.gitattributes` line that selects it (commit that file); takes no notebooks.
    """
    root, nbs_dir, _ = project_paths()
    if setup_git:
        if notebooks or check:
            raise ToolError("--setup_git takes no notebooks and no --check")
        return install_merge_driver(root)
    paths = select_notebooks(notebooks, nbs_dir, root)
    nbdev_clean_nb()  # a missing nbdev is one error, before any notebook
    unclean, errors = [], []
    for p in paths:
        shown = rel_path(p, root)
        try:
            if not clean_file(p, check=check, shown=shown):
                unclean.append(shown)
        except ToolError as e:
            errors.append(str(e))
        except OSError as e:
            errors.append(f"{shown}: {e.strerror}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if check:
        for shown in unclean:
            print(f"unclean: {shown} (run `python clean_nbs.py {shown}`)")
        print(f"{len(unclean)} of {len(paths)} notebook(s) unclean" if unclean
              else f"{len(paths) - len(errors)} notebook(s) clean")
    else:
        for shown in unclean:
            print(f"cleaned: {shown}")
    return 2 if errors else 1 if check and unclean else 0


if __name__ == "__main__":
    run_cli(main)
