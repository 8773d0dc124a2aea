"""docs/python.md's runnable example runs as printed against a live kvtierd
(its first ```python block, with KVTIER_SOCKET naming the daemon). Run by
ctest (python_docs)."""

import contextlib
import io
import os
import re
import unittest

from kvtier_testlib import Daemon

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "python.md")


class DocsTest(unittest.TestCase):
    def test_example_runs(self):
        with open(DOC) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertTrue(blocks, "docs/python.md has no python block")
        with Daemon() as d:
            os.environ["KVTIER_SOCKET"] = d.socket
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(blocks[0], "docs/python.md", "exec"), {})
        text = out.getvalue()
        self.assertIn("StoreResult(stored=6, present=0, in_flight=0, no_space=0)", text)
        self.assertIn("['host', 'host', 'host', 'host']", text)
        self.assertIn("loaded 4 blocks byte-exact", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
