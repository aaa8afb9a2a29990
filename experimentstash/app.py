"""The thin Hydra app: its task function runs ONE job (a single run under Hydra, or a job of Hydra's basic
launcher). A plain single run skips Hydra's app altogether: single.run_direct."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .invocation import current, fail
from .job import new_run_id
from .single import run_single

RUN_ID = new_run_id()  # names the sweep dir of this process (the launcher's multirun)
OmegaConf.register_new_resolver("stash_root", lambda: str(current.root), replace=True)
OmegaConf.register_new_resolver("stash_run_id", lambda: RUN_ID, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="stash")
def hydra_app(cfg: DictConfig) -> int:
    try:
        return run_single(HydraConfig.get().overrides.task, cfg)
    except StashError as err:
        fail(err)
    finally:
        _drop_empty_job_dir()


def _drop_empty_job_dir() -> None:
    """Another launcher (basic, joblib) makes a folder per job under the sweep dir; the run has its own run dir
    under outputs/, so an empty one is removed (and the sweep dir with the last)."""
    runtime = HydraConfig.get()
    if runtime.mode != RunMode.MULTIRUN:
        return
    folder = Path(runtime.runtime.output_dir)
    for path in (folder, folder.parent):
        try:
            path.rmdir()  # only when empty
        except OSError:
            return
