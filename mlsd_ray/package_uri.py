"""``package://DIST/PATH`` URIs: a data file shipped inside an installed Python package.

Example: ``package://recbole/dataset_example/ml-100k/ml-100k.inter`` is the MovieLens-100k
ratings file bundled with RecBole. The file is read where the package installed it (found with
``importlib.util.find_spec``, which does not import the package), never copied into the repo.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlsd_ray.errors import CardError

SCHEME = "package://"


def is_package_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def package_path(uri: str) -> str:
    """The absolute path of the file a ``package://`` URI names."""
    rest = uri[len(SCHEME) :]
    package, _, inner = rest.partition("/")
    if not package or not inner:
        raise CardError(
            f"data.sources: {uri!r} is not package://PACKAGE/PATH.",
            fix="write e.g. package://recbole/dataset_example/ml-100k/ml-100k.inter",
        )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CardError(
            f"data.sources: {uri!r} names package {package!r}, which is not installed.",
            fix=f"install it (e.g. `pip install {package}`) or point the source at a file",
        )
    base = Path(next(iter(spec.submodule_search_locations)))
    path = (base / inner).resolve()
    if base.resolve() not in path.parents:
        raise CardError(f"data.sources: {uri!r} leaves the package folder.", fix="drop the '..'")
    if not path.exists():
        raise CardError(
            f"data.sources: {uri!r} does not exist in the installed {package!r} ({base}).",
            fix="check the path inside the package",
        )
    return str(path)
