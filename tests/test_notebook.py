"""notebooks/quickstart.ipynb runs from its first cell to its last as CI runs it: QUICK mode (a
few steps of tiny models on the CPU), in a folder of its own, on the offline corpora."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT, need_corpus

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
BADGE = (
    "https://colab.research.google.com/github/OWNER/seqmodels/blob/main/notebooks/quickstart.ipynb"
)


def test_the_notebook_is_committed_clean_with_its_badge():
    """No outputs in the repository (they change at every run and hold a machine's paths),
    and the "Open in Colab" link of the notebook and of the README name this file."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]
    assert BADGE in "".join(notebook["cells"][0]["source"])
    assert BADGE in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_quickstart_notebook_runs_in_quick_mode(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    need_corpus("wikitext-2-mini")
    monkeypatch.setenv("SEQMODELS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("SEQMODELS_CHECKOUT", str(ROOT))  # not cloned: this checkout
    # The kernel writes nothing under $HOME.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # a cell that raises fails the test, naming the cell

    assert all(c.execution_count for c in notebook.cells if c.cell_type == "code")
    # The WikiText-2 GPT, the chat GPT pretrained for LoRA, and the LoRA adapter.
    assert len(list(tmp_path.glob("seqmodels/*/checkpoints/last.ckpt"))) == 3
    assert re.search(r"The game( \S+){5}", output_of(notebook, "generate"))
    assert "user: What is AI?\nassistant:" in output_of(notebook, "chat")


def output_of(notebook, tag: str) -> str:
    """What the code cell tagged `tag` printed (stdout and stderr)."""
    (cell,) = (c for c in notebook.cells if tag in c.metadata.get("tags", []))
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
