"""tasks.py's commands, run as a reader runs them: `--help`, `chapter NAME` and `lab`.

Each test starts `python3 tasks.py ...` in a child process (it finds .venv set up, as after any
earlier command) and reads what it prints, as a reader would.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

import tasks

ROOT = Path(__file__).resolve().parents[1]
# The reader's `python3`; inside .venv when there is no other (tasks.py moves into .venv either way).
PYTHON3 = shutil.which("python3") or sys.executable


def _tasks(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON3, str(ROOT / "tasks.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_every_command_with_one_line_each():
    result = _tasks("--help", timeout=60)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: line for line in result.stdout.splitlines()
              if line.startswith("    ") and line.split()[0] in tasks.COMMANDS}
    assert set(listed) == set(tasks.COMMANDS), result.stdout
    for name, summary in tasks.COMMANDS.items():
        assert summary.split()[0] in listed[name], f"{name}: {listed[name]!r}"


def test_an_unknown_chapter_is_refused_with_the_list_of_chapters():
    result = _tasks("chapter", "no_such_chapter", timeout=120)
    assert result.returncode == 2
    assert "no chapter or notebook 'no_such_chapter'" in result.stderr and "autoencoder" in result.stderr


def _copy_with_a_broken_cell(tmp_path: Path) -> Path:
    """A copy of the first chapter cut to its first code cell (the imports: vaelib, torch, myst-nb),
    then a deliberately broken cell and one that must never run."""
    chapter = nbformat.read(ROOT / "book" / "autoencoder.ipynb", as_version=4)
    first_code = next(index for index, cell in enumerate(chapter.cells) if cell.cell_type == "code")
    chapter.cells = chapter.cells[:first_code + 1] + [
        new_markdown_cell("A cell that divides by zero follows."),
        new_code_cell("# deliberately broken\nratio = 1 / 0"),
        new_code_cell("print('never reached')"),
    ]
    copy = tmp_path / "autoencoder_edited.ipynb"
    nbformat.write(chapter, copy)
    return copy


def test_chapter_names_the_broken_cell_of_an_edited_copy(tmp_path):
    copy = _copy_with_a_broken_cell(tmp_path)
    broken = len(nbformat.read(copy, as_version=4).cells) - 1  # 1-based number of the broken cell
    result = _tasks("chapter", str(copy))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED in" in result.stdout and "CPU in its kernel" in result.stdout, result.stdout
    assert f"cell {broken} ('# deliberately broken'): ZeroDivisionError: division by zero" in result.stderr, \
        result.stderr
    assert "never reached" not in result.stdout + result.stderr


def test_chapter_reports_a_clean_run_with_its_time_and_does_not_cache_a_copy(tmp_path):
    copy = tmp_path / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[new_markdown_cell("# Tiny"), new_code_cell("x = 6 * 7")],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}}), copy)
    result = _tasks("chapter", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ran cleanly in" in result.stdout and "budget" in result.stdout, result.stdout
    assert "not a chapter of this book" in result.stdout and "cached for" not in result.stdout


def test_a_chapter_is_found_by_name_or_path_and_a_copy_is_not_the_chapter(tmp_path):
    vae = ROOT / "book" / "vae.ipynb"
    assert tasks.resolve_notebook("vae") == (vae, "book/vae", True)
    assert tasks.resolve_notebook("book/vae.ipynb")[1:] == ("book/vae", True)
    copy = tmp_path / "vae.ipynb"
    shutil.copyfile(vae, copy)
    assert tasks.resolve_notebook(str(copy))[2] is False
    assert tasks.resolve_notebook("no_such_chapter") is None


# ------------------------------------------------------------------------------------------------
# `python3 tasks.py lab`, headless

LAB_START_TIMEOUT_S = 180  # on two loaded cores JupyterLab takes 20-60 s to answer


def _get(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text else {}


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in command:
                found.append(f"{entry.name}: {command.strip()}")
    return found


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_lab_serves_the_book_with_its_kernel_and_stops_cleanly(tmp_path):
    port, token = tasks.free_port(), "lab-test-token"
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    lab = subprocess.Popen([PYTHON3, str(ROOT / "tasks.py"), "lab", "--port", str(port)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(lab.stdout), daemon=True)
    reader.start()
    base, kernel_id = f"http://127.0.0.1:{port}", None
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while True:
            try:
                status = _get(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError):
                assert lab.poll() is None, "tasks.py lab exited early:\n" + "".join(output)
                assert time.monotonic() < deadline, "no answer from JupyterLab:\n" + "".join(output)
                time.sleep(1)
        assert "started" in status
        printed = "".join(output)
        assert f"http://127.0.0.1:{port}/lab?token={token}" in printed, printed

        specs = _get(f"{base}/api/kernelspecs?token={token}")
        assert specs["default"] == tasks.LAB_KERNEL, specs["default"]
        spec = specs["kernelspecs"][tasks.LAB_KERNEL]["spec"]
        assert spec["display_name"] == "Python (vaelib)"
        assert Path(spec["argv"][0]).resolve() == tasks.PYTHON.resolve(), spec["argv"]
        # The book's notebooks are what it serves.
        listing = _get(f"{base}/api/contents?token={token}")
        assert "autoencoder.ipynb" in {item["name"] for item in listing["content"]}
        kernel_id = _get(f"{base}/api/kernels?token={token}", "POST", {"name": tasks.LAB_KERNEL})["id"]
        assert _processes_mentioning(f"kernel-{kernel_id}.json"), "the kernel's process is not running"

        _get(f"{base}/api/shutdown?token={token}", "POST")
        assert lab.wait(timeout=60) == 0, "".join(output)
        deadline = time.monotonic() + 15
        while (_alive(lab.pid) or _processes_mentioning(f"kernel-{kernel_id}.json")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(lab.pid), "processes of `tasks.py lab` outlived the server"
        assert not _processes_mentioning(f"kernel-{kernel_id}.json"), "the kernel outlived the server"
    finally:
        if _alive(lab.pid):
            os.killpg(lab.pid, signal.SIGKILL)
        for line in _processes_mentioning(f"kernel-{kernel_id}.json") if kernel_id else []:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        lab.wait(timeout=30)


def test_chapter_kernels_show_inline_figures_whatever_mplbackend_says(tmp_path, monkeypatch):
    """A shell (or a command run in-process) may leave MPLBACKEND=Agg; the chapters' kernels must
    still show their figures inline, or the built pages lose them."""
    notebook = tmp_path / "plot.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), notebook)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # restored afterwards
    monkeypatch.setenv("VAELIB_PLOTLYJS", "page")  # restored afterwards, like MPLBACKEND
    execution = tasks._execute(str(notebook), timeout=120)
    assert execution.error is None, execution.error
    outputs = execution.notebook.cells[0].outputs
    assert any("image/png" in output.get("data", {}) for output in outputs), outputs
