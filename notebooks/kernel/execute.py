"""Executes notebooks headless, in place, on the cocola-lua kernel; stops at the first cell error.
Usage: .venv-notebooks/bin/python notebooks/kernel/execute.py notebooks/*.ipynb
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError



def coalesce_streams(nb):
    """Joins consecutive pieces of one stream (the kernel sends text as it comes) into one output."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.outputs:
            if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == out.name):
                merged[-1].text += out.text
            else:
                merged.append(out)
        cell.outputs = merged


failed = 0
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    client = NotebookClient(nb, kernel_name="cocola-lua", timeout=300, record_timing=False,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    try:
        client.execute()
    except CellExecutionError as e:
        print("FAILED %s (%.1f s)\n%s" % (path, time.time() - t0, e), file=sys.stderr)
        failed += 1
        break
    coalesce_streams(nb)
    nbformat.write(nb, path)
    print("executed %s in %.1f s" % (path, time.time() - t0), flush=True)
sys.exit(1 if failed else 0)
