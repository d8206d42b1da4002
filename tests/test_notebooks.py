"""The notebooks run top to bottom in a real kernel, at the test size, on a trained test classifier."""

import ast
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = ("01_quickstart", "02_train_masker", "03_sanity_checks", "04_class_relevant_maps")
# jaxsal, what it depends on, and the standard library.
ALLOWED_IMPORTS = {
  "jaxsal",
  "jax",
  "numpy",
  "PIL",
  "functools",
  "importlib",
  "os",
  "subprocess",
  "sys",
  "tempfile",
}


def test_the_notebooks_folder_holds_the_four_notebooks():
  assert sorted(
    f[: -len(".ipynb")] for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb")
  ) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_in_colab_and_imports_only_jaxsal_and_its_dependencies(name):
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, f"{name}.ipynb"), as_version=4)
  nbformat.validate(nb)
  code = [c.source for c in nb.cells if c.cell_type == "code"]
  assert "pip" in code[0] and "JAXSAL_SOURCE" in code[0], "the first code cell installs jaxsal"
  assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs committed"
  imported = set()
  for src in code:
    for node in ast.walk(ast.parse(src)):
      if isinstance(node, ast.Import):
        imported |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom):
        imported.add(node.module.split(".")[0])
  assert "jaxsal" in imported and imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, data_dir, test_masker_workdir, tmp_path, monkeypatch):
  work = tmp_path / "runs"
  shutil.copytree(test_masker_workdir, work)  # the notebooks reuse a trained classifier and masker
  for key, value in {
    "JAXSAL_NOTEBOOK_SIZE": "test",
    "JAXSAL_NOTEBOOK_WORKDIR": str(work),
    "JAXSAL_DATA_DIR": data_dir,
    "JAX_PLATFORMS": "cpu",
    "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
    "XLA_FLAGS": "",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
  }.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, f"{name}.ipynb"), as_version=4)
  client = NotebookClient(
    nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
  figures = [
    o
    for c in nb.cells
    if c.cell_type == "code"
    for o in c.outputs
    if "image/png" in o.get("data", {})
  ]
  figure_cells = sum("figures." in c.source for c in nb.cells if c.cell_type == "code")
  assert len(figures) >= figure_cells, (len(figures), figure_cells)
  errors = [
    o
    for c in nb.cells
    if c.cell_type == "code"
    for o in c.outputs
    if o.get("output_type") == "error"
  ]
  assert not errors
