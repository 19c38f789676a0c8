"""Packaging for `exp`: everything is read from settings.ini, so dependencies are declared once."""
from configparser import ConfigParser
from pathlib import Path

from setuptools import setup

here = Path(__file__).resolve().parent
cfg = ConfigParser()
cfg.read(here / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

setup(
    name="foundations-" + cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    python_requires=">=" + cfg["min_python"],
    packages=[cfg["lib_name"]],
    package_dir={cfg["lib_name"]: cfg["lib_path"]},
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split()},
)
