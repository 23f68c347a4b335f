"""Models from a Hugging Face ``transformers`` config, without weights: a ``config.json``, a folder holding one, or
``hf:ORG/NAME`` (read from the local Hugging Face cache, or downloaded where the network allows).

The architecture comes from ``--task`` (``causal-lm``, ``seq2seq``, ``encoder`` ...) or else from the config's
``architectures``; the model is built with random weights (on the meta device: with no storage at all), so a 70B
configuration is profiled on a laptop from a 1 KB file. ``transformers`` is an optional extra (``modelprof[hf]``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import types
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelprof.errors import ModelError, UsageError, one_line

INSTALL = "pip install 'modelprof[hf]'"


class Task(StrEnum):
    """The head a config is built with; each names a ``transformers`` auto class."""

    CAUSAL_LM = "causal-lm"
    SEQ2SEQ = "seq2seq"
    ENCODER = "encoder"
    MASKED_LM = "masked-lm"
    SEQUENCE_CLASSIFICATION = "sequence-classification"
    IMAGE_CLASSIFICATION = "image-classification"
    SPEECH_SEQ2SEQ = "speech-seq2seq"

    @property
    def auto_class(self) -> str:
        return {
            "causal-lm": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM", "encoder": "AutoModel",
            "masked-lm": "AutoModelForMaskedLM", "sequence-classification": "AutoModelForSequenceClassification",
            "image-classification": "AutoModelForImageClassification",
            "speech-seq2seq": "AutoModelForSpeechSeq2Seq",
        }[self.value]


def is_config_target(target: str) -> bool:
    """True for ``hf:ORG/NAME``, a ``.json`` file, or a folder holding a ``config.json``."""
    if target.startswith("hf:"):
        return True
    path = Path(target).expanduser()
    return target.endswith(".json") or (path.is_dir() and (path / "config.json").is_file())


def import_transformers() -> Any:
    """``transformers``, imported so that it works here: torchvision's compiled ops may not load against this
    torch build, transformers imports torchvision when present, and builds language models without it."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import transformers
    except ImportError:
        raise UsageError(f"a config TARGET needs transformers: {INSTALL}") from None
    return transformers


@contextlib.contextmanager
def _hub_quiet() -> Iterator[None]:
    """The hub's own log lines (a warning per retry when there is no network) kept off stderr: modelprof says
    what failed in one line."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "transformers")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_config(target: str) -> Any:
    """The ``transformers`` config a config TARGET names."""
    transformers = import_transformers()
    if target.startswith("hf:"):
        name = target.removeprefix("hf:")
        try:
            return transformers.AutoConfig.from_pretrained(name, local_files_only=True)
        except Exception:  # not in the local cache: try the hub
            try:
                with _hub_quiet():
                    return transformers.AutoConfig.from_pretrained(name)
            except Exception as remote:
                raise UsageError(f"{target}: not in the local Hugging Face cache, and it could not be downloaded "
                                 f"({one_line(remote)}); give a local config.json instead") from None
    path = Path(target).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"config '{target}' does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"config '{target}' is not a JSON file ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise UsageError(f"config '{target}' has no 'model_type'; give a transformers config.json")
    try:
        return transformers.AutoConfig.for_model(**data)
    except Exception as exc:
        raise UsageError(f"config '{target}': transformers cannot read it ({one_line(exc)})") from None


def build_from_config(target: str, task: str | None = None) -> Any:
    """A model with random weights for the config TARGET names, with the head ``task`` asks for (default: the
    config's first ``architectures`` entry, else the bare encoder). Build it under ``torch.device("meta")`` for no
    storage at all."""
    transformers = import_transformers()
    config = load_config(target)
    architectures = getattr(config, "architectures", None) or []
    try:
        if task is None and architectures and hasattr(transformers, architectures[0]):
            return getattr(transformers, architectures[0])._from_config(config)
        auto = getattr(transformers, Task(task or Task.ENCODER).auto_class)
        return auto.from_config(config)
    except UsageError:
        raise
    except Exception as exc:
        raise ModelError(f"building '{target}' from its config failed: {type(exc).__name__}: {one_line(exc)}") \
            from exc
