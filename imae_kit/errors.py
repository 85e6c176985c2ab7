"""Errors a user can cause. The CLI prints them in one or two lines and exits with status 2."""

from __future__ import annotations


class ImaeKitError(Exception):
    """Base class: a mistake the user can fix (recipe, data path, plugin, run directory)."""

    exit_code = 2


class RecipeError(ImaeKitError):
    """A recipe file that cannot be read, or that names something wrong."""


class PluginError(ImaeKitError):
    """A plugin file that is missing, raises on import, or registers something invalid."""


class DataError(ImaeKitError):
    """A data set that is missing, damaged or of the wrong shape."""


class RunError(ImaeKitError):
    """A run directory that cannot be created, resumed or read."""


class DivergenceError(ImaeKitError):
    """Training produced a non-finite loss or gradient."""
