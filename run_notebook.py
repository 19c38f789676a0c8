#!/usr/bin/env python
"""Run notebooks top to bottom in a real Jupyter kernel, and report where one fails.

    python run_notebook.py                          # every numbered notebook in nbs/, in order
    python run_notebook.py nbs/01_matmul.ipynb      # one (also `01_matmul.ipynb` or `01_matmul`)
    python run_notebook.py 01_matmul --save         # write the fresh outputs back, cleaned
    python run_notebook.py --timeout=300            # seconds a single cell may take (default 600)

Each notebook runs with the notebooks folder as its working directory, in a kernel started from this
Python (so the installed `exp` package is the one imported). A failing cell prints the notebook, the
cell number, its first lines, and the error; the notebook file is left untouched and the exit code is 1.
Exit codes: 0 every notebook ran, 1 one failed, 2 bad input or a file that cannot be read or written.
"""
import math
import sys
import time
from pathlib import Path

from clean_nbs import clean_notebook, nbdev_clean_nb, notebook_text, write_atomic
from notebook2script import ToolError, project_paths, rel_path, run_cli, select_notebooks


class NotebookFailed(Exception):
    """A notebook cell raised, timed out, or killed the kernel."""


def _kernel_manager():
    """A kernel manager that starts ipykernel with this interpreter, whatever kernels are installed."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonKernel(AsyncKernelManager):  # nbclient needs async: a blocking client ignores --timeout
        @property
        def kernel_spec(self):
            # log level ERROR: ipykernel warns on every start that loopback TCP is unencrypted
            argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--log-level=ERROR"]
            return KernelSpec(argv=argv, display_name="Python 3", language="python")

    return ThisPythonKernel()


def _describe(nb_shown, index, cell, error):
    """The failure message: notebook, cell number (1-based), the cell's first lines, the error."""
    if cell is None:  # the kernel failed before running any cell
        return f"{nb_shown} failed before its first cell ran:\n{error}"
    lines = cell.source.splitlines()
    head = "\n".join("    " + line for line in lines[:4]) + ("\n    ..." if len(lines) > 4 else "")
    return f"{nb_shown}, cell {index + 1} failed:\n{head}\n{error}"


def run(path, save=False, timeout=600, shown=None):
    """Execute one notebook in a fresh kernel; return seconds taken, or raise NotebookFailed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    shown = shown or str(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise NotebookFailed(f"{shown}: cannot read the notebook: {e}") from None
    current = {"index": None, "cell": None}

    def on_cell_start(cell, cell_index):
        current.update(index=cell_index, cell=cell)

    # shutdown_kernel="immediate": the kernel is killed once done, so one stopped mid-cell (a timeout)
    # cannot print a traceback of its own while it is being shut down
    client = NotebookClient(nb, timeout=timeout, km=_kernel_manager(), on_cell_start=on_cell_start,
                            shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=True)  # shut the kernel down after, also on failure: our km
    except CellExecutionError as e:
        error = f"{e.ename}: {e.evalue}" if getattr(e, "ename", None) else str(e).strip().splitlines()[-1]
        raise NotebookFailed(_describe(shown, current["index"], current["cell"], error)) from None
    except CellTimeoutError:
        raise NotebookFailed(_describe(shown, current["index"], current["cell"],
                                       f"TimeoutError: the cell ran longer than {timeout:g} s")) from None
    except DeadKernelError as e:
        raise NotebookFailed(_describe(shown, current["index"], current["cell"],
                                       f"the kernel died: {e}")) from None
    except RuntimeError as e:  # the kernel did not start
        raise NotebookFailed(f"{shown}: could not run a kernel: {e}") from None
    seconds = time.perf_counter() - start
    if save:
        write_atomic(path, notebook_text(clean_notebook(nbformat.from_dict(nb))), shown)
    return seconds


def main(*notebooks, save: bool = False, timeout: float = 600):
    """Run notebooks top to bottom in a real Jupyter kernel and report where one fails.

    Usage:
        python run_notebook.py                     # every numbered notebook, in order
        python run_notebook.py 01_matmul --save    # one (a stem, a file name or a path); keep outputs
        python run_notebook.py --timeout=300       # seconds one cell may take
    A flag is given alone (`--save`, `-s`) or as `--save=True`/`--save=False`; an option takes a
    value as `--timeout=300`, `--timeout 300` or `-t 300`.
    Exit codes: 0 every notebook ran; 1 a notebook failed (its file is left as it was);
    2 bad input or a file that cannot be read or written (one `error:` line each).

    Args:
        notebooks: Notebooks to run, each a stem (`01_matmul`), a file name or a path; none means
            every numbered notebook in the notebooks folder (`nbs_path` in settings.ini).
        save: Write each notebook that ran back with its fresh outputs, cleaned as clean_nbs.py does.
        timeout: Seconds a single cell may run before the notebook fails (a positive number).
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ToolError(f"--timeout takes a positive number of seconds, not {timeout:g}")
    root, nbs_dir, _ = project_paths()
    paths = select_notebooks(notebooks, nbs_dir, root)
    if save:
        nbdev_clean_nb()  # --save cleans with nbdev: a missing nbdev is an error before any run
    failed, errors, total = [], [], 0.0
    for path in paths:
        shown = rel_path(path, root)
        start = time.perf_counter()
        try:
            seconds = run(path, save=save, timeout=timeout, shown=shown)
            print(f"ok      {seconds:7.1f} s  {shown}{'  (saved)' if save else ''}", flush=True)
        except NotebookFailed as e:
            seconds = time.perf_counter() - start
            failed.append(shown)
            print(f"FAILED  {seconds:7.1f} s  {shown}", flush=True)
            print(str(e), file=sys.stderr, flush=True)
        except ToolError as e:  # it ran, but --save could not write it back
            seconds = time.perf_counter() - start
            errors.append(shown)
            print(f"error: {e}", file=sys.stderr, flush=True)
        total += seconds
    bad = failed + errors
    print(f"{len(paths) - len(bad)} of {len(paths)} notebook(s) ran cleanly in {total:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; not saved: {', '.join(errors)}" if errors else ""))
    return 2 if errors else 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
