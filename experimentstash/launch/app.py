"""The thin Hydra app: its task function runs ONE job (a single run under Hydra, or a job of Hydra's basic
launcher). A plain single run skips Hydra's app altogether: single.run_direct."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .. import Escape, StashError, stash_options
from ..overrides import override_key
from .invocation import current
from .plan import new_run_id
from .single import run_single

RUN_ID = new_run_id()  # names the sweep dir of this process (the launcher's multirun)
OmegaConf.register_new_resolver("stash_root", lambda: str(current.root), replace=True)
OmegaConf.register_new_resolver("stash_run_id", lambda: RUN_ID, replace=True)
# untyped, like a YAML node: the values are checked by stash_options, with its messages, not by OmegaConf
ConfigStore.instance().store(name="stash_options", node=stash_options.defaults(), provider="experimentstash")


@hydra.main(version_base="1.3", config_path="pkg://experimentstash.conf", config_name="stash")
def hydra_app(cfg: DictConfig) -> int:
    try:
        return run_single(HydraConfig.get().overrides.task, cfg, _given_run_dir())
    except StashError as err:  # through Hydra, which would show it as a crash: cli.py gives its exit code
        raise Escape(err) from None
    finally:
        _drop_empty_job_dir()


def _given_run_dir() -> Path | None:
    """hydra.run.dir of a single run, as Hydra resolved it, relative to where the command was typed. Hydra has
    made the folder; it is taken away again at once (the run makes it, as every run dir, when it starts), and a
    folder that holds files is refused: a run dir is never reused."""
    runtime = HydraConfig.get()
    if runtime.mode != RunMode.RUN or not any(override_key(w) == "hydra.run.dir" for w in runtime.overrides.hydra):
        return None
    folder = Path(runtime.run.dir).resolve()
    try:
        folder.rmdir()  # only when empty
    except FileNotFoundError:
        pass
    except OSError:
        raise StashError(f"hydra.run.dir={runtime.run.dir}: {folder} holds files already, and a run dir is never "
                         "reused. Give a new folder.") from None
    return folder


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

