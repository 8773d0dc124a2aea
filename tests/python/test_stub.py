"""Every public name of kvtier has a docstring and is declared in the
package's type stub (__init__.pyi), with the same methods and properties as
the module really has. Run by ctest (python_stub)."""

import ast
import inspect
import os
import unittest

import kvtier


def stub_tree():
    path = os.path.join(os.path.dirname(kvtier.__file__), "__init__.pyi")
    with open(path) as f:
        return ast.parse(f.read())


class StubTest(unittest.TestCase):
    def test_every_public_name_is_in_the_stub_and_documented(self):
        tree = stub_tree()
        declared = {}
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                declared[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} | {
                    n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
            elif isinstance(node, ast.FunctionDef):
                declared[node.name] = set()
            elif isinstance(node, ast.AnnAssign):
                declared[node.target.id] = set()
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    declared[a.asname or a.name] = set()
        for name in kvtier.__all__:
            self.assertIn(name, declared, f"kvtier.{name} is not in __init__.pyi")
            if name == "hf":  # imports torch: its docstring is read from the source
                with open(os.path.join(os.path.dirname(kvtier.__file__), "hf.py")) as f:
                    self.assertTrue(ast.get_docstring(ast.parse(f.read())))
                continue
            obj = getattr(kvtier, name)
            if inspect.isclass(obj) or callable(obj) or inspect.ismodule(obj):
                self.assertTrue((obj.__doc__ or "").strip(), f"kvtier.{name} has no docstring")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                real = {m for m in dir(obj) if not m.startswith("_")}
                self.assertEqual(real - declared[name], set(), f"kvtier.{name}: members missing from the stub")
                self.assertEqual(declared[name] - real - {"__init__", "__len__", "__bool__", "__enter__",
                                                          "__exit__", "__eq__", "__hash__"}, set(),
                                 f"kvtier.{name}: the stub declares members the module lacks")
                for m in real:
                    attr = getattr(obj, m)
                    self.assertTrue((getattr(attr, "__doc__", None) or "").strip(),
                                    f"kvtier.{name}.{m} has no docstring")

    def test_hf_is_imported_lazily(self):
        import subprocess
        import sys
        code = "import sys, kvtier; assert 'kvtier.hf' not in sys.modules; assert 'torch' not in sys.modules"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
