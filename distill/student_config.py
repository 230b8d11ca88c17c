"""The settings of `distill student` (StudentConfig) and their checks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .augment import OPS, AugmentOptions
from .config_checks import (changed_from_default, check_counts, check_minimum, check_positive, check_schedule,
                            check_seed)
from .data import DataOptions
from .vocab_trim import CHARACTER_CHOICES, RANK_CHOICES

TEACHER_DIR_HELP = "a model directory written by `distill teach`"


@dataclass
class StudentConfig:
    """Every `distill student` setting; the CLI takes its defaults from here, training.json records it."""
    teacher: str = ""
    ensemble: tuple[str, ...] = ()      # more teachers whose logits are averaged with the teacher's
    train: str = ""
    out: str = ""
    eval: str | None = None
    # the student
    layers: int | None = None            # None: half the teacher's layers (3 of 6)
    layer_map: tuple[int, ...] | None = None  # teacher layer per student layer; None: evenly spread
    hidden_size: int | None = None       # narrower student (random init) when set
    intermediate_size: int | None = None
    heads: int | None = None
    init: str | None = None              # teacher | random; None: teacher unless narrower
    trim_vocab: bool = False
    trim_min_count: int = 1              # with trim_vocab: keep a multi-character token seen this often
    trim_characters: str = "all"         # with trim_vocab: single-character tokens kept, all | seen
    trim_max_tokens: int | None = None   # with trim_vocab: at most this many tokens, the most used kept
    trim_rank: str = "count"             # with trim_max_tokens: which used tokens first, count | vocab
    trim_after_training: bool = False    # with trim_vocab: train on the full vocabulary, trim the result
    # the loss
    temperature: float = 2.0
    alpha: float = 0.5                   # weight of the KD term; 1 - alpha weights cross-entropy
    kd_loss: str = "kl"                  # kl | mse
    # transfer data, labelled by the teacher
    augment_factor: int = 2              # new texts per training text (0: none)
    augment_ops: tuple[str, ...] = OPS
    augment_rate: float = 0.1
    synonym_neighbours: int = 5
    unlabeled: str | None = None
    max_unlabeled: int | None = None
    back_translate: tuple[str, str] | None = None
    cache_dir: str | None = None         # None: ~/.cache/distill-edge (or $DISTILL_CACHE_DIR)
    no_cache: bool = False
    teacher_batch_size: int = 128
    # training (the options shared with teach)
    epochs: float = 3.0
    lr: float = 1e-4
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int | None = None        # None: the teacher's training max_length
    weight_decay: float = 0.01
    warmup: float = 0.1
    early_stopping: int | None = None
    metric: str = "accuracy"
    seed: int = 42
    max_train_samples: int | None = None
    shots: int | None = None             # labelled rows per class, drawn as `teach --few-shot --shots`
                                         # draws them with the same seed (0: none, KD on transfer texts)
    logging_steps: int = 50
    resume: bool = False
    force: bool = False
    keep_checkpoints: bool = False
    progress: bool = True
    data: DataOptions = DataOptions()

    def augment_options(self) -> AugmentOptions:
        return AugmentOptions(factor=self.augment_factor, ops=tuple(self.augment_ops), rate=self.augment_rate,
                              neighbours=self.synonym_neighbours, seed=self.seed,
                              back_translate=tuple(self.back_translate) if self.back_translate else None)


def check_unused_by_choice(config: StudentConfig) -> None:
    """Options another choice makes moot: refused, not recorded as if they had acted."""
    if config.kd_loss == "mse" and changed_from_default(config, ("temperature",)):
        raise StudentError("--temperature: not used by --kd-loss mse (it compares raw logits)")
    random_init = config.init == "random" or any(
        v is not None for v in (config.hidden_size, config.intermediate_size, config.heads))
    if random_init and config.layer_map is not None:
        raise StudentError("--layer-map picks teacher layers to copy, and a random-init student copies "
                           "none: give --layers N")
    if changed_from_default(config, ("synonym_neighbours",)) and not {"synonym", "insert"} & set(config.augment_ops):
        raise StudentError("--synonym-neighbours only acts with the synonym or insert augmentation ops")
    same = [other for other in config.ensemble if Path(other).resolve() == Path(config.teacher).resolve()]
    if same:
        raise StudentError(f"--ensemble-teacher {same[0]} is --teacher itself: its logits would count twice")


class StudentError(Exception):
    """A setting that cannot work, reported before any training."""


def check_labelled_options(config: StudentConfig, given: frozenset = frozenset()) -> None:
    """--shots 0 keeps no labelled row: an --alpha below 1 or an --augment-factor above 0 set
    away from its default, or named in `given` (the command line's options, even at the default
    value), would act on nothing. Their defaults, not given, are left unused."""
    if config.shots != 0:
        return
    moot = [option for option in changed_from_default(config, ("alpha", "augment_factor"), given)
            if (config.alpha < 1 if option == "--alpha" else config.augment_factor > 0)]
    if moot:
        raise StudentError(f"{', '.join(moot)}: no labelled row to weigh or augment with --shots 0 "
                           "(unlabelled texts get the KD loss alone, at weight 1)")


def check_config(config: StudentConfig, given: frozenset = frozenset()) -> None:
    """Every setting that cannot work, refused before anything is read or trained. `given`: the
    options named on the command line (see check_labelled_options)."""
    if not (Path(config.teacher) / "config.json").is_file():
        raise StudentError(f"--teacher {config.teacher}: not {TEACHER_DIR_HELP} (no config.json)")
    for other in config.ensemble:
        if not (Path(other) / "config.json").is_file():
            raise StudentError(f"--ensemble-teacher {other}: not {TEACHER_DIR_HELP} (no config.json)")
    if config.early_stopping is not None and not config.eval:
        raise StudentError("--early-stopping needs --eval")
    if not 0 <= config.alpha <= 1:
        raise StudentError(f"--alpha must be in [0, 1], got {config.alpha}")
    if config.kd_loss not in ("kl", "mse") or config.init not in (None, "teacher", "random"):
        raise StudentError("--kd-loss must be kl or mse, --init teacher or random")
    check_positive({"--temperature": config.temperature, "--epochs": config.epochs, "--lr": config.lr,
                    "--batch-size": config.batch_size}, StudentError)
    check_minimum("--max-length", config.max_length, 2, StudentError)
    check_counts({"--eval-batch-size": config.eval_batch_size, "--logging-steps": config.logging_steps,
                  "--teacher-batch-size": config.teacher_batch_size,
                  "--max-train-samples": config.max_train_samples, "--max-unlabeled": config.max_unlabeled,
                  "--early-stopping": config.early_stopping}, StudentError)
    check_schedule(config, StudentError)
    check_seed(config.seed, StudentError)
    check_counts({"--layers": config.layers, "--hidden-size": config.hidden_size,
                  "--intermediate-size": config.intermediate_size, "--heads": config.heads}, StudentError)
    check_minimum("--shots", config.shots, 0, StudentError)
    if config.shots == 0 and not config.unlabeled:
        raise StudentError("--shots 0 keeps no labelled row: give --unlabeled texts for the teacher to label")
    check_labelled_options(config, given)
    if config.max_unlabeled is not None and not config.unlabeled:
        raise StudentError("--max-unlabeled only acts with --unlabeled")
    if config.cache_dir is not None and config.no_cache:
        raise StudentError("--cache-dir with --no-cache: the cache is off, so the directory would go unused")
    if config.early_stopping is None and changed_from_default(config, ("metric",)):
        raise StudentError("--metric only acts with --early-stopping")
    changed = changed_from_default(config, ("augment_ops", "augment_rate", "synonym_neighbours"))
    if changed and config.augment_factor == 0:
        raise StudentError(f"{', '.join(changed)} only {'acts' if len(changed) == 1 else 'act'} with "
                           "--augment-factor above 0")
    check_unused_by_choice(config)
    if config.trim_min_count < 1 or (config.trim_min_count > 1 and not config.trim_vocab):
        raise StudentError("--trim-min-count must be at least 1, and more than 1 only with --trim-vocab")
    if config.trim_characters not in CHARACTER_CHOICES or (config.trim_characters != "all" and not config.trim_vocab):
        raise StudentError("--trim-characters must be all or seen, and seen only with --trim-vocab")
    if config.trim_max_tokens is not None and (config.trim_max_tokens < 1 or not config.trim_vocab):
        raise StudentError("--trim-max-tokens must be positive, and set only with --trim-vocab")
    if config.trim_rank not in RANK_CHOICES or (config.trim_rank != "count" and config.trim_max_tokens is None):
        raise StudentError("--trim-rank must be count or vocab, and vocab only with --trim-max-tokens")
    if config.trim_after_training and not config.trim_vocab:
        raise StudentError("--trim-after-training is only for --trim-vocab")
    check_minimum("--augment-factor", config.augment_factor, 0, StudentError)
    if not 0 < config.augment_rate <= 1:
        raise StudentError(f"--augment-rate must be in (0, 1], got {config.augment_rate}")
    check_minimum("--synonym-neighbours", config.synonym_neighbours, 1, StudentError)
    try:
        config.augment_options()        # what is left to refuse is the ops
    except ValueError as error:
        raise StudentError(f"--augment-ops: {error}") from error
