"""What the Snakefile needs to hand a job to a cluster: its environment, Apptainer binds, SLURM settings.

Kept out of ``rules/common.smk`` so it is plain, tested Python; the rules file only calls it.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from typing import Any

#: variables passed to every job when they are set where Snakemake runs (docs/cluster.md): the hub's
#: token (gated models such as the Llama rewriter), its endpoint and cache, the project's cache, model
#: registry and data mirrors, and the Apptainer binds computed below
JOB_ENVIRONMENT = (
    "HF_TOKEN",
    "HF_HOME",
    "HF_ENDPOINT",
    "PROMIS_REPRO_CACHE",
    "XDG_CACHE_HOME",
    "PROMIS_REPRO_MODELS",
    "PROMIS_REPRO_GITHUB_RELEASES",
    "PROMIS_REPRO_GITHUB_RAW",
    "APPTAINER_BIND",
)


def job_environment(source: str, data_dir: str | None, *job_dirs: str | None) -> list[str]:
    """Set what every job must see and return the names of the variables to pass to jobs.

    ``PROMIS_REPRO_SOURCE`` is the workflow's directory; ``PROMIS_REPRO_MODELS`` and
    ``PROMIS_REPRO_MODELS_LOCK`` become absolute paths, so a job started elsewhere (another node, the
    image) reads the same registry and lock.
    ``data_dir`` (when it exists), ``job_dirs`` (the results tree), the lock's directory and the caches are
    added to ``APPTAINER_BIND`` when outside the working directory. The optional variables (``JOB_ENVIRONMENT``)
    are passed only when set: Snakemake refuses to pass an unset one.
    """
    from promis_repro.generation.registry import lock_path, registry_path

    os.environ["PROMIS_REPRO_SOURCE"] = os.path.abspath(source)
    # the checkout's registry, not the copy in an image built earlier: the lock was written against it
    os.environ["PROMIS_REPRO_MODELS"] = os.path.abspath(registry_path())
    lock = os.path.abspath(lock_path(registry_path()))
    os.environ["PROMIS_REPRO_MODELS_LOCK"] = lock
    apptainer_binds(data_dir, create=False)
    caches = [os.environ.get(name) for name in ("HF_HOME", "PROMIS_REPRO_CACHE", "XDG_CACHE_HOME")]
    apptainer_binds(*job_dirs, os.path.dirname(lock), *caches)
    return ["PROMIS_REPRO_SOURCE", "PROMIS_REPRO_MODELS_LOCK", *[n for n in JOB_ENVIRONMENT if os.environ.get(n)]]


#: the profile's settings a user fills in once; empty means "not filled in yet"
SLURM_SETTINGS = ("slurm_partition", "slurm_account", "qos")


def apptainer_binds(
    *paths: str | os.PathLike[str] | None,
    create: bool = True,
    workdir: str | None = None,
    mounted: tuple[str, ...] = ("/tmp",),
) -> list[str]:
    """Add the given paths outside the working directory to ``$APPTAINER_BIND`` (returns the new entries).

    Snakemake runs each job's image with the working directory as home; Apptainer mounts that and /tmp
    (``mounted``) but not, say, a data directory on /scratch. Apptainer refuses to bind what does not
    exist: with ``create`` a missing path is made (a results tree or a cache about to be written),
    without it (data to be read) it is left out. A path reached through a symbolic link is bound at the
    path as written (``real:given``), which is the one the jobs use.
    """
    root = os.path.abspath(workdir or os.getcwd())
    tops = [os.path.realpath(top) for top in (root, *mounted)] + [root, *mounted]
    current = [entry for entry in os.environ.get("APPTAINER_BIND", "").split(",") if entry]
    bound = {entry.split(":")[1 if ":" in entry else 0] for entry in current}
    added = []
    for path in paths:
        if not path:
            continue
        given = os.path.abspath(os.path.expanduser(os.fspath(path)))
        real = os.path.realpath(given)
        if any(p == top or p.startswith(top + os.sep) for p in (given, real) for top in tops) or given in bound:
            continue
        if not os.path.exists(given):
            if not create:
                continue
            os.makedirs(given, exist_ok=True)
            real = os.path.realpath(given)
        bound.add(given)
        added.append(real if real == given else f"{real}:{given}")
    if added:
        os.environ["APPTAINER_BIND"] = ",".join([*current, *added])
    return added


def _value(resource: Any) -> Any:
    raw = getattr(resource, "raw", resource)
    if isinstance(raw, str):
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    return raw


def empty_slurm_settings(resource_settings: Any) -> list[str]:
    """The SLURM settings the profile gives as empty strings, e.g. ``default-resources: slurm_account``.

    ``resource_settings`` is Snakemake's (``workflow.resource_settings``): its default resources and its
    per-rule ``set-resources``. A setting that is absent is fine (the cluster's default applies); one
    that is present and empty was left for the user to fill in.
    """
    sources: list[tuple[str, Mapping[str, Any] | None]] = [("default-resources", resource_settings.default_resources)]
    sources += [(f"set-resources: {rule}", r) for rule, r in resource_settings.overwrite_resources.items()]
    empty = []
    for where, resources in sources:
        for key in SLURM_SETTINGS:
            if resources is not None and key in resources and _value(resources[key]) in ("", None):
                empty.append(f"{where}: {key}")
    return empty
