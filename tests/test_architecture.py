"""The shape of the code (issue 15): every module imports on its own, no import cycle, short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 60


def predict_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    modules = {}
    for path in sorted((SOURCE / "predict").rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The predict modules `name` imports when it is imported: top-level statements only, not those
    inside functions (imported when called) or under `if TYPE_CHECKING:` (never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import module` imports the submodule; `from module import name` the module.
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    return {module for module in found if module in known and module != name}


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter, but before each module every predict module is forgotten: each is imported
    # with none of its package loaded before it, which is where an import cycle breaks.
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {sorted(set(predict_modules()) - {'predict.__main__'})!r}:\n"  # __main__ runs the CLI
        "    for loaded in [m for m in sys.modules if m == 'predict' or m.startswith('predict.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == "", "modules that fail to import alone:\n" + completed.stdout


def test_no_module_level_import_cycle():
    modules = predict_modules()
    graph = {name: module_level_imports(name, path, set(modules)) for name, path in modules.items()}
    cycles = []
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert graph["predict.pipeline"]  # the graph was read: the pipeline imports the plan, engines, writers
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_function_in_src_is_short():
    long = []
    for path in sorted((SOURCE / "predict").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SOURCE)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
