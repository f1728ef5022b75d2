"""Which code produced a result: the git commit of the storylib checkout, when it can be known.

``code_version`` (the package's release, ``storylib.__version__``) decides whether a finished run
is still reused; it does not change between commits, so a run also records ``code_revision``: the
commit of the checkout the package was imported from, marked ``+dirty`` when the files that define
a run (the package, the parameter files, the notebooks, the runner) differ from that commit. A
package that pip installed from ``git+URL`` has no checkout; pip recorded the commit in its
``direct_url.json`` (PEP 610), which is read instead. Anything else (a wheel, no git) gives None:
the record then says it does not know, rather than guessing.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

# the paths of a checkout, relative to its root, whose changes change what a run does; a results
# folder inside the checkout is left out, so regenerating the committed reference is not "dirty"
CODE_PATHS = ("storylib", "params", "notebooks", "run_all.py", "pyproject.toml")
DIRTY_MARK = "+dirty"
GIT_TIMEOUT_SECONDS = 10


def _git(checkout: Path, *arguments: str) -> str | None:
    """stdout of ``git -C checkout …``, or None when git is missing, fails or hangs."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(checkout), *arguments],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def checkout_revision(package_dir: Path) -> str | None:
    """The commit of the git checkout whose root holds ``package_dir`` (+dirty when a file of
    :data:`CODE_PATHS` differs from it); None when ``package_dir`` is not the package folder at
    the root of a checkout (an installed copy inside some other repository does not count)."""
    root = _git(package_dir, "rev-parse", "--show-toplevel")
    if root is None or Path(root).resolve() != package_dir.resolve().parent:
        return None
    commit = _git(package_dir, "rev-parse", "HEAD")
    if commit is None:
        return None
    changes = _git(Path(root), "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    if changes is None:
        return None
    return commit + (DIRTY_MARK if changes else "")


def pip_recorded_commit(direct_url: str) -> str | None:
    """The commit in a PEP 610 ``direct_url.json`` text (``vcs_info.commit_id``), else None."""
    try:
        record = json.loads(direct_url)
    except ValueError:
        return None
    vcs_info = record.get("vcs_info") if isinstance(record, dict) else None
    commit = vcs_info.get("commit_id") if isinstance(vcs_info, dict) else None
    return commit if isinstance(commit, str) and commit else None


def code_revision() -> str | None:
    """The revision of the storylib being run (see the module's docstring). Not cached: a
    parameter file edited between two runs of one kernel makes the second one ``+dirty``."""
    import storylib

    revision = checkout_revision(Path(storylib.__file__).parent)
    if revision is not None:
        return revision
    try:
        direct_url = metadata.distribution("storylib").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    return pip_recorded_commit(direct_url) if direct_url else None
