"""Build step only (the metadata is in setup.cfg): ship the top-level runtimes/ and static/ inside the package.

They stay where they are in the repository; a built wheel carries a copy in alyx/_resources/, which
alyx/resources.py finds at run time (and falls back to the checkout's folders when it is absent).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("runtimes", "static")  # alyx/resources.py RESOURCES


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        for name in SHIPPED:
            target = Path(self.build_lib) / "alyx" / "_resources" / name
            shutil.copytree(ROOT / name, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))


setup(cmdclass={"build_py": BuildPyWithResources})
