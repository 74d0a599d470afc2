"""Import optional dependencies with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ImportError telling the user to ``pip install 'tssl-plugin[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is required for this feature; install it with: pip install 'tssl-plugin[{extra}]'"
        ) from err
