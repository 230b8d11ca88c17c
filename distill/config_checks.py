"""Checks that `teach`, `teach --few-shot` and `student` apply alike to their settings
dataclasses; each passes the exception its command reports (TeachError, StudentError, ...)."""
from __future__ import annotations

# settings that may change on --resume: they do not change what the checkpoints hold
# (not early stopping or its metric: the Trainer saves its state with the checkpoints, and resuming
# with it added or removed fails at the next save)
RESUMABLE_CHANGES = frozenset({"resume", "force", "keep_checkpoints", "progress", "epochs", "eval",
                               "eval_batch_size", "logging_steps", "cache_dir", "no_cache",
                               "teacher_batch_size"})


def check_counts(values: dict, error) -> None:
    """Options that count something ({'--option': value}): at least 1 when given."""
    for option, value in values.items():
        if value is not None and value < 1:
            raise error(f"{option} must be at least 1, got {value}")


def check_positive(values: dict, error) -> None:
    """Options that must be above 0 ({'--option': value})."""
    for option, value in values.items():
        if value <= 0:
            raise error(f"{option} must be > 0, got {value}")


def check_minimum(option: str, value, minimum, error) -> None:
    if value is not None and value < minimum:
        raise error(f"{option} must be at least {minimum}, got {value}")


SEED_MAX = 2**32 - 1        # numpy's and the Trainer's seeds are 32-bit


def check_seed(seed, error) -> None:
    """A seed outside 0..2^32-1 failed deep in the Trainer (after OUT.checkpoints was made)."""
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise error(f"--seed {seed}: must be in 0..{SEED_MAX}")


def check_schedule(config, error) -> None:
    """AdamW's warmup and weight decay cannot be negative; a warmup of 1 or more counts steps, so
    it must be whole (2.5 was silently cut to 2)."""
    check_minimum("--warmup", config.warmup, 0, error)
    check_minimum("--weight-decay", config.weight_decay, 0, error)
    if config.warmup is not None and config.warmup >= 1 and config.warmup != int(config.warmup):
        raise error(f"--warmup {config.warmup:g}: below 1 it is a fraction of the steps, from 1 a whole "
                    "number of steps")


def changed_from_default(config, names, given: frozenset = frozenset()) -> list[str]:
    """The fields among `names` set away from the dataclass's defaults, or named in `given` (the
    command line's options, even at their default value), as --option names (a list and a
    tuple of the same items count as equal)."""
    defaults = type(config)()

    def value(settings, name):
        v = getattr(settings, name)
        return tuple(v) if isinstance(v, list) else v

    return [f"--{name.replace('_', '-')}" for name in names
            if name in given or value(config, name) != value(defaults, name)]


def check_metric_defined(config, dev, error) -> None:
    """--early-stopping on --metric auc needs two classes in the eval rows: with one, ROC-AUC is
    undefined every epoch, no epoch counts as the best, and the run would stop after
    patience + 1 epochs keeping the last weights."""
    if config.early_stopping is None or config.metric != "auc" or dev is None:
        return
    present = sorted(set(dev.labels))
    if len(present) < 2:
        raise error(f"--metric auc: ROC-AUC needs at least 2 classes in the eval rows; every row of "
                    f"{dev.path} is {dev.label_names[present[0]]!r} (use --metric accuracy or macro_f1)")
