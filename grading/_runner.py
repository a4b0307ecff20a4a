"""Execute one submission notebook (run by :mod:`grading.batch` in its own subprocess).

Usage: ``python -m grading._runner NOTEBOOK WORKDIR STATUS_JSON KERNEL_PID_FILE TIMEOUT_S``.
Writes ``{"status": "ok"|"error"|"timeout", "reason": ...}`` to STATUS_JSON and the kernel's pid
to KERNEL_PID_FILE as soon as the kernel is up (the kernel runs in a session of its own, so the
parent needs it to clean up).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError


def _first_error(nb: nbformat.NotebookNode) -> tuple[int, str] | None:
    errors = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append((index, f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"))
    return (len(errors), errors[0][1][:200]) if errors else None


def main(argv: list[str]) -> int:
    notebook, workdir, status_file, pid_file, timeout_s = argv
    nb = nbformat.read(notebook, as_version=4)

    def note_kernel_pid(**_: object) -> None:
        pid = getattr(client.km.provisioner, "pid", None) if client.km else None
        if pid:
            Path(pid_file).write_text(str(pid))

    client = NotebookClient(
        nb,
        timeout=float(timeout_s),
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": workdir}},
        on_notebook_start=note_kernel_pid,
    )

    def record(status: str, reason: str = "") -> None:
        Path(status_file).write_text(json.dumps({"status": status, "reason": reason}))

    try:
        client.execute()
    except CellTimeoutError as err:
        record("timeout", f"a cell ran longer than {float(timeout_s):g} s: "
                          f"{str(err).splitlines()[0][:160]}")
        return 0
    except DeadKernelError:
        record("error", "the kernel died (a cell crashed the interpreter or exited it)")
        return 0
    except Exception as err:  # the batch must learn why, whatever happened
        record("error", f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        return 0
    first = _first_error(nb)
    if first:
        count, message = first
        record("ok", f"{count} cell(s) raised; first: {message}")
    else:
        record("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
