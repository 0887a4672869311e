"""SCONE's additions to OLMo's configuration, loaded the OLMo way (YAML + dotlist overrides).

``SconeModelConfig`` is OLMo's ``ModelConfig`` plus an ``fgram`` section. Everything
else keeps OLMo's meaning, so a baseline OLMo YAML is a valid SCONE YAML with the
f-gram branch off (``fgram.vocab_path: null``). Configs are OmegaConf structured
dataclasses: a key that does not exist is an error, named in the message.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Type, TypeVar

import yaml
from olmo.config import (
    BaseConfig,
    DataConfig,
    DistributedStrategy,
    ModelConfig,
    StrEnum,
    TrainConfig,
)
from olmo.exceptions import OLMoConfigurationError

from .errors import fail

C = TypeVar("C", bound=BaseConfig)


class FgramInit(StrEnum):
    """How ``A_fgram`` starts (see :attr:`FgramConfig.init`), an option type like OLMo's own."""

    olmo = "olmo"
    identity = "identity"


@dataclass
class FgramConfig(BaseConfig):
    """The f-gram branch: its vocabulary and the shape of the f-gram model ``A_fgram``.

    ``A_fgram`` is made of OLMo blocks of the main model's ``d_model`` (its input is the
    main model's token embeddings); its depth, heads and MLP width are its own.
    """

    vocab_path: Optional[str] = None
    """f-gram vocabulary (``build_fgrams.py``). ``None``: no f-gram branch (a plain OLMo baseline)."""

    max_n: int = 5
    """K, the longest f-gram; ``A_fgram`` has K learned positions. Must equal the vocabulary's."""

    num_fgrams: Optional[int] = None
    """S. Read from the vocabulary when it is loaded; set it to size a model without the file
    (accounting, meta-device models)."""

    n_layers: int = 2
    n_heads: Optional[int] = None
    """Defaults to the main model's."""

    mlp_ratio: Optional[int] = None
    """Defaults to the main model's."""

    mlp_hidden_size: Optional[int] = None
    """Defaults to the main model's."""

    init: FgramInit = FgramInit.olmo
    """How ``A_fgram`` starts. ``olmo``: OLMo's own init of its blocks and positions, and a final
    LayerNorm, so a replaced embedding starts as a random function of the f-gram with norm
    ~sqrt(d), far from the token embedding it replaces (norm ~0.02 sqrt(d)). ``identity``: the
    blocks' output projections and the positions start at zero and there is no final LayerNorm,
    so ``A_fgram`` starts as the identity on the f-gram's last token: SCONE starts exactly as the
    baseline and learns the context from there (see docs/results.md for the comparison)."""

    def check(self) -> None:
        """The f-gram settings a config file can get wrong (checked before any model is built;
        a YAML value is already checked on load, a value set in Python is checked here)."""
        if self.init not in tuple(FgramInit):
            fail(
                f"model.fgram.init must be one of {', '.join(map(str, FgramInit))}, got {self.init!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.vocab_path is not None or self.num_fgrams is not None


@dataclass
class SconeModelConfig(ModelConfig):
    fgram: FgramConfig = field(default_factory=FgramConfig)

    def fgram_block_config(self) -> ModelConfig:
        """The OLMo block settings of ``A_fgram``: the main model's, with its own depth and width,
        no RoPE/ALiBi (it has learned positions) and a context of K tokens."""
        base = {k: getattr(self, k) for k in ModelConfig.__dataclass_fields__}
        f = self.fgram
        if f.mlp_hidden_size is not None:
            mlp = dict(mlp_hidden_size=f.mlp_hidden_size)
        elif f.mlp_ratio is not None:
            mlp = dict(mlp_ratio=f.mlp_ratio, mlp_hidden_size=None)
        else:
            mlp = {}  # the main model's width
        base.update(
            n_layers=f.n_layers,
            n_heads=f.n_heads or self.n_heads,
            n_kv_heads=None,
            rope=False,
            alibi=False,
            flash_attention=False,
            block_group_size=1,
            max_sequence_length=f.max_n,
            **mlp,
        )
        return ModelConfig(**base)


def load_config(
    cls: Type[C], path: str | Path, overrides: Optional[List[str]] = None, key: Optional[str] = None
) -> C:
    """``cls.load(path, overrides)`` with user-facing errors (missing file, unknown key, bad value)."""
    path = Path(path)
    if not path.is_file():
        fail(f"config file not found: {path}")
    for o in overrides or []:
        if "=" not in o:
            fail(f"override {o!r} is not of the form key=value")
    try:
        # OLMo registers its resolvers with a deprecated OmegaConf call
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return cls.load(path, overrides, key=key, validate_paths=False)
    except OLMoConfigurationError as e:
        msg = str(e).splitlines()[0]
        fail(f"{path}: {msg}")
    except yaml.YAMLError as e:  # broken YAML: where, not a traceback
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        fail(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}")
    except UnicodeDecodeError:
        fail(f"{path} is not a UTF-8 text file")


def load_model_config(path: str | Path, overrides: Optional[List[str]] = None) -> SconeModelConfig:
    """The model config in a YAML file that is either a whole training config (then its
    ``model:`` section, with overrides written ``model.key=value``) or a model config."""
    import yaml

    overrides = list(overrides or [])
    raw = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    if isinstance(raw, dict) and "model" in raw:
        for o in overrides:
            if not o.startswith("model."):
                fail(
                    f"{path} is a training config: model overrides are written model.key=value, got {o!r}"
                )
        return load_config(
            SconeModelConfig, path, [o[len("model.") :] for o in overrides], key="model"
        )
    return load_config(SconeModelConfig, path, overrides)


def load_run_config(save_folder: str | Path) -> "SconeTrainConfig":
    """The config a ``scripts/train.py`` run saved in its ``save_folder`` (overrides applied)."""
    folder = Path(save_folder)
    if not (folder / "config.yaml").is_file():
        fail(f"{folder} has no config.yaml: pass the save_folder of a scripts/train.py run")
    return load_config(SconeTrainConfig, folder / "config.yaml")


@dataclass
class DeepSpeedConfig(BaseConfig):
    """How the trainer wraps the model in a DeepSpeed engine (ZeRO stage 1 by default, as in the paper).

    OLMo's own settings keep their meaning and are translated into the DeepSpeed config:
    batch sizes (-> gradient accumulation), optimizer, scheduler, ``max_grad_norm``, precision.
    ``config_path`` names a DeepSpeed JSON whose keys are merged over the generated ones.
    """

    zero_stage: int = 1
    config_path: Optional[str] = None
    overlap_comm: bool = True
    reduce_bucket_size: int = 500_000_000
    allgather_bucket_size: int = 500_000_000
    contiguous_gradients: bool = True


@dataclass
class SconeDataConfig(DataConfig):
    """OLMo's data settings plus where SCONE's inputs live: a token directory made by
    ``prepare_data.py`` (its ``train`` split) and, for SCONE models, the f-gram sidecar."""

    tokens_dir: Optional[str] = None
    fgram_tags: Optional[str] = None


@dataclass
class SconeTrainConfig(TrainConfig):
    """OLMo's ``TrainConfig`` with a SCONE model, SCONE data and a DeepSpeed section."""

    model: SconeModelConfig = field(default_factory=SconeModelConfig)
    data: SconeDataConfig = field(default_factory=SconeDataConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    #: OLMo's default is FSDP; this trainer is DeepSpeed ZeRO, so it is unset here and any value a
    #: config sets is refused (train/olmo_keys.py) instead of training ZeRO-1 without a word
    distributed_strategy: Optional[DistributedStrategy] = None
    #: what a launch does with a save_folder whose run was made from other inputs (see
    #: olmo_scone/train/run_state.py): ``refuse`` (one error line naming what changed) or
    #: ``restart`` (start that run over). A finished run with the same inputs is never retrained.
    load_policy: str = "refuse"
