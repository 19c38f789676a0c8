"""Ctrl-C during an export of many notebooks: no stray temporary file, no half-written module, one
line and exit code 130 (issue 18, item 10). A real process and a real SIGINT, at several moments."""
import gc
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.toolchain,
              pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")]

N_NOTEBOOKS = 400
CELL = "#export\ndef f_{i}_{j}(x):\n    \"Cell {j} of notebook {i} ({v}).\"\n" + \
       "    return x + {j}  # {pad}\n"


def make_project(project, version):
    """`N_NOTEBOOKS` notebooks of 20 export cells each; `version` changes every module's text."""
    for i in range(N_NOTEBOOKS):
        project.nb(f"{i:03d}_nb", [CELL.format(i=i, j=j, v=version, pad="x" * 60) for j in range(20)])


def interrupted_export(project, wait):
    """Start an export as a command, send SIGINT once `wait()` returns; return the finished process."""
    # a shell starts commands with SIGINT at its default; pytest's process may have inherited it
    # ignored (an earlier test's child-process machinery), and a child would inherit that too
    proc = subprocess.Popen([sys.executable, str(project.script)], cwd=project.root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def first_temp_file(project, limit_s=30):
    """A `wait` that returns as soon as a temporary module file appears in the package folder (the
    middle of the write phase), or when the process ends."""
    def wait(proc):
        gc.disable()    # a full collection of a long pytest run's heap can outlast the write phase
        try: poll(proc)
        finally: gc.enable()
    def poll(proc):
        end = time.monotonic() + limit_s
        while time.monotonic() < end and proc.poll() is None:
            try:
                if any(name.endswith(".tmp") for name in os.listdir(project.exp)):
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.0002)   # yield: on a busy core a spinning poll starves the export
    return wait


def after(seconds):
    """A `wait` that sleeps `seconds` (a moment while reading, parsing or writing)."""
    return lambda proc: time.sleep(seconds)


def timed(cmd, cwd):
    """Wall seconds `cmd` takes (it must succeed)."""
    start = time.monotonic()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=120)
    return time.monotonic() - start


def check_outcome(project, rc, err, old, new):
    """No temporary file left; each module exactly its old or its new text; one line, exit 130."""
    leftovers = sorted(p.name for p in project.exp.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == [], leftovers[:5]
    for p in project.exp.glob("nb_*.py"):
        text = p.read_text(encoding="utf-8")
        assert text in (old.get(p.name), new[p.name]), f"{p.name} is half-written"
        compile(text, p.name, "exec")
    if rc == -signal.SIGINT:  # arrived while the interpreter was starting: nothing of ours ran
        assert err == "", err
    elif rc != 0:  # 0: the export finished before the signal arrived
        assert rc == 130, (rc, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith("interrupted"), err


def test_sigint_mid_write_leaves_no_temporary_file_and_no_half_written_module(project):
    make_project(project, "new")
    assert project.cli().returncode == 0
    new = {p.name: p.read_text(encoding="utf-8") for p in project.exp.glob("nb_*.py")}
    # watch for the first temporary file; where the poll misses the write phase (a long pytest
    # run's process polls slowly), also signal late in an export's measured time
    took = timed([sys.executable, str(project.script)], project.root)
    waits = [first_temp_file(project)] * 4 + [after(took * f) for f in (0.6, 0.7, 0.8, 0.9)]
    interrupted = 0
    for wait in waits:
        for p in project.exp.iterdir():
            p.unlink()
        rc, _, err = interrupted_export(project, wait)
        check_outcome(project, rc, err, {}, new)
        interrupted += rc == 130
    assert interrupted >= 1, "the signal never arrived during the export: make the project bigger"


def test_sigint_at_any_moment_keeps_each_module_old_or_new(project):
    make_project(project, "old")
    assert project.cli().returncode == 0
    old = {p.name: p.read_text(encoding="utf-8") for p in project.exp.glob("nb_*.py")}
    make_project(project, "new")
    started = timed([sys.executable, "-c", "import notebook2script"], project.root)  # Python's start
    took = timed([sys.executable, str(project.script)], project.root)  # start and export
    new = {p.name: p.read_text(encoding="utf-8") for p in project.exp.glob("nb_*.py")}
    for fraction in (0.1, 0.4, 0.7, 0.9):  # of the export, after the interpreter has started
        for p in project.exp.glob("nb_*.py"):  # back to the old modules
            p.write_text(old[p.name], encoding="utf-8")
        rc, _, err = interrupted_export(project, after(started + (took - started) * fraction))
        check_outcome(project, rc, err, old, new)
