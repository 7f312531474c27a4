"""The search's knobs, in one place, and the file `synthesize()` reads them from.

In: nothing (the defaults), or a JSON file written by `save_config` (for
example by `raspsynth tune`). Out: a `SearchConfig`.

`synthesize()` takes `config=None` to mean `load_config()`: the file named by
the environment variable RASPSYNTH_CONFIG when it is set, else the tuned
config shipped with the package (`raspsynth/search/tuned_config.json`) when
there is one, else the defaults below. The four switches at the end turn
parts of the hybrid off for ablations; the tuner never touches them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from raspsynth.errors import InputError
from raspsynth.neural import BEAM, CHECKPOINTS, DEFAULT_META_MODEL, HOLE_THRESHOLD, TOP_K
from raspsynth.symbolic.expression_search import DEFAULT_MAX_SIZE
from raspsynth.symbolic.value_semantics import SOLVER_TIMEOUT_MS

CONFIG_FORMAT = "raspsynth-search-config/1"
TUNED_CONFIG = Path(__file__).resolve().parent / "tuned_config.json"
STRATEGIES = ("enumerate-first", "neural-first")
# The switches that turn parts of the hybrid off (for ablations, never tuned).
ABLATION_SWITCHES = ("symbolic", "z3", "repair", "ranking")
# Integer knobs and their smallest allowed values.
_INTEGER_MINIMUMS = {
    "beam": 1,
    "top_k": 1,
    "max_edits": 0,
    "branching": 1,
    "screen_inputs": 1,
    "enumeration_size": 1,
    "solver_timeout_ms": 1,
    "expression_size": 0,
}


class ConfigError(InputError):
    """A search config file or value that raspsynth cannot use."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    # the meta-model: a committed checkpoint by name ("cpu", "gpu") or a .pt path
    meta_model: str = DEFAULT_META_MODEL
    # the meta-model's beam search
    beam: int = BEAM  # beams kept per decoding step
    top_k: int = TOP_K  # sketches tried
    hole_threshold: float = HOLE_THRESHOLD  # a slot below this probability is a hole
    # repair
    max_edits: int = 2  # edits deep
    branching: int = 12  # edited programs kept per expansion
    screen_inputs: int = 300  # inputs an edited program is scored on
    verify_screen_score: float = 0.9  # screening score from which it is verified in full
    # enumeration, for weights that cannot be read
    enumeration_size: int = 3  # value-producing ops in an enumerated program
    # hybrid without the symbolic layer (`symbolic` off): which of enumeration
    # and the meta-model's sketches goes first, and the share of the remaining
    # budget it gets. (With it on, weights it cannot read give the meta-model
    # no blocks either, and enumeration gets the whole budget.)
    strategy: str = "enumerate-first"
    first_share: float = 0.5
    # Z3: per solve (the joint relabelling of values, repair's coefficients)
    solver_timeout_ms: int = SOLVER_TIMEOUT_MS
    # MIPS-style expression search: grammar symbols in the largest expression
    # tried for a function the library does not name (0: print exact tables)
    expression_size: int = DEFAULT_MAX_SIZE
    # ablation switches
    symbolic: bool = True  # read the program off the weights (symbolic regression of tables)
    z3: bool = True  # joint relabelling and coefficient solving by Z3
    repair: bool = True  # local edits when a candidate fails
    ranking: bool = True  # the meta-model's order of sketches and its per-op confidences

    def __post_init__(self) -> None:
        for name, least in _INTEGER_MINIMUMS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an integer of at least {least}; got {value!r}")
        for name in ("hole_threshold", "verify_screen_score", "first_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{name} must be a number in [0, 1]; got {value!r}")
        if not isinstance(self.meta_model, str) or not (
            self.meta_model in CHECKPOINTS or self.meta_model.endswith((".pt", ".pth"))
        ):
            raise ConfigError(
                f"meta_model must be one of {', '.join(CHECKPOINTS)} or a .pt file; got {self.meta_model!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        for name in ABLATION_SWITCHES:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false; got {getattr(self, name)!r}")

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the defaults."""
        default = SearchConfig()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


def save_config(config: SearchConfig, path: str | os.PathLike, provenance: dict | None = None) -> None:
    """Write `config` as JSON, with where it came from (a study, its figures)."""
    document = {"format": CONFIG_FORMAT, "params": dataclasses.asdict(config), "provenance": provenance or {}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def read_config(path: str | os.PathLike) -> SearchConfig:
    """The config in a file written by `save_config`; ConfigError otherwise."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"{path}: cannot read a search config ({type(err).__name__}: {err})") from None
    if not isinstance(document, dict) or document.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{path}: not a {CONFIG_FORMAT} file")
    params = document.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: 'params' must be an object of search config keys; got {params!r}")
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown search config keys {unknown}")
    return SearchConfig(**params)


def config_source() -> Path | None:
    """The file `load_config()` reads, or None when it uses the defaults."""
    named = os.environ.get("RASPSYNTH_CONFIG")
    if named:
        return Path(named)
    return TUNED_CONFIG if TUNED_CONFIG.exists() else None


def load_config() -> SearchConfig:
    """The config synthesize() uses by default (see the module docstring)."""
    source = config_source()
    return SearchConfig() if source is None else read_config(source)
