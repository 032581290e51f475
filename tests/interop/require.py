"""Import a peer's reader for a test: missing, it fails in CI (the dev extra installs it) and skips elsewhere."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from tests.helpers import in_ci


def require(module: str, hint: str = "pip install -e '.[dev]'") -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed ({exc}): {hint}"
        if in_ci():
            pytest.fail(f"{message} (CI must have it)", pytrace=False)
        pytest.skip(message, allow_module_level=True)
        raise  # unreachable: skip raises
