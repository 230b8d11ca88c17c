"""`distill pipeline` settings: stage defaults < TOML file < command-line flags.

A pipeline file has top-level `train`, `eval`, `out` and one table per stage:

    train = "reviews_train.csv"        # relative paths are relative to this file
    eval = "reviews_test.csv"
    out = "../models/demo"
    [data]      # DataOptions: format, text_column, label_column, label_names, skip_bad_rows
    [teach]     # any `distill teach` setting (TeachConfig field), e.g. epochs = 3
    [student]   # any `distill student` setting (StudentConfig field), e.g. layers = 3
    [export]    # weight_type, per_channel, opset, max_length, max_accuracy_drop
    [baseline]  # TF-IDF + linear SVM: enabled, analyzer, ngram_range, C, ...
    [report]    # batch_size, rounds, plots

Keys may be written with dashes or underscores (`max-length` = `max_length`). The command line
overrides any key with `--set SECTION.KEY=VALUE` (VALUE is read as a TOML value, else a string),
and the common ones with their own flags (`--teacher-epochs`, `--student-epochs`, `--layers`,
...). `--set SECTION.KEY=default` (the bare word) drops the key from the file and the flags, so
it takes its built-in default: TOML has no null, and this is how an optional key the file sets
(student.early_stopping, student.trim_max_tokens, ...) goes back to unset; the string "default"
itself is `--set 'SECTION.KEY="default"'`. Unknown sections or keys are errors that list the
valid ones. Every value is checked (type, range, choice, input files, each stage's own checks)
before the first stage runs (pipeline_checks); errors name the section.key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .data import DataOptions

SECTIONS = ("data", "teach", "student", "export", "baseline", "report")
TOP_KEYS = ("train", "eval", "out")
# TeachConfig / StudentConfig fields the pipeline sets itself
OWNED = {"train", "eval", "out", "data", "resume", "force", "progress", "keep_checkpoints", "teacher"}
OWNED_BY = {"train": "a top-level key", "eval": "a top-level key", "out": "a top-level key",
            "data": "the [data] section", "teacher": "the teacher stage's output",
            None: "--force, --quiet and reruns decide it"}
# keys holding paths, resolved relative to the TOML file that names them
PATH_KEYS = {("", "train"), ("", "eval"), ("", "out"), ("data", "label_names"), ("teach", "model"),
             ("teach", "label_descriptions"), ("teach", "unlabeled"), ("student", "unlabeled"),
             ("student", "cache_dir"), ("student", "back_translate"),
             ("student", "ensemble")}


class PipelineConfigError(ValueError):
    """A pipeline file or flag that cannot be used (unknown key, wrong type, missing file)."""


@dataclass
class ExportStage:
    """The `distill export onnx` settings both exports share (fp32 ignores the int8 ones)."""
    weight_type: str = "quint8"
    per_channel: bool = False
    opset: int = 18
    max_length: int | None = None       # None: the student's training max_length
    max_accuracy_drop: float = 1.0      # int8 may lose at most this many points vs fp32 on eval
    # no samples / seed: they size and seed `export onnx`'s generated parity texts, which the
    # pipeline never uses (its eval file is required, and the export checks on its texts)


INT8_ONLY = ("weight_type", "per_channel", "max_accuracy_drop")


@dataclass
class BaselineStage:
    """TF-IDF + linear SVM on the teacher's training rows (the classical baseline)."""
    enabled: bool = True
    analyzer: str = "auto"              # auto: char n-grams for CJK text or texts without words, else word n-grams
    ngram_range: tuple[int, int] | None = None   # None: (1, 2) words, (1, 3) characters
    C: float = 0.5
    sublinear_tf: bool = True
    min_df: int = 1
    max_features: int | None = None


@dataclass
class ReportStage:
    """The final evaluation: every artifact on the eval file, one thread, side by side."""
    batch_size: int = 32                # every engine, the teacher included (torch, fp32)
    rounds: int = 1                     # timed passes per engine (interleaved); the best counts
    plots: bool = True


def _stage_classes() -> dict:
    from .student import StudentConfig
    from .teacher import TeachConfig

    return {"data": DataOptions, "teach": TeachConfig, "student": StudentConfig,
            "export": ExportStage, "baseline": BaselineStage, "report": ReportStage}


def settable_keys(section: str) -> list[str]:
    return [f.name for f in fields(_stage_classes()[section]) if f.name not in settable_keys_excluded(section)]


def settable_keys_excluded(section: str) -> set[str]:
    return set() if section == "data" else OWNED


# ---------------------------------------------------------------- reading values

def load_toml(path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:        # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise PipelineConfigError(f"--config {path}: no such file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PipelineConfigError(f"{path}: not valid TOML: {error}") from error


DEFAULT = object()    # `--set KEY=default`: the key takes its built-in default


def parse_value(text: str):
    """A --set value: DEFAULT for the bare word default, a TOML value (2, 0.5, true, "x", [0, 2])
    or else the plain string."""
    if text == "default":
        return DEFAULT
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, str, object]:
    """'student.layers=2' -> ('student', 'layers', 2); 'train=x.csv' -> ('', 'train', 'x.csv')."""
    if "=" not in text:
        raise PipelineConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. student.layers=2")
    key, value = text.split("=", 1)
    section, _, name = key.strip().rpartition(".")
    return section, name, parse_value(value.strip())


def normal_key(name: str) -> str:
    return name.replace("-", "_")


def _coerce(section: str, key: str, value, annotation: str):
    """Type checks against the field annotation; lists become tuples where tuples are kept."""
    where = f"{section}.{key}" if section else key
    if isinstance(value, dict):
        raise PipelineConfigError(f"{where}: expected a value, got a table")
    if annotation.startswith("tuple"):
        return _coerce_tuple(where, value, annotation)
    if annotation.startswith("bool"):
        if not isinstance(value, bool):
            raise PipelineConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation.startswith(("int", "float")):
        return _coerce_number(where, value, annotation)
    if isinstance(value, int) and not isinstance(value, bool) and (key.endswith("_column") or not section):
        return str(value)            # a column index of a headerless file; `--set out=2024`
    if not isinstance(value, str):
        raise PipelineConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _coerce_number(where: str, value, annotation: str):
    integer = annotation.startswith("int")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise PipelineConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value if integer else float(value)


def _coerce_tuple(where: str, value, annotation: str) -> tuple:
    """A list, a comma-separated string (as --set gives it) or one entry -> a tuple of the
    annotated item type: tuple[int, ...] any length, tuple[str, str] exactly two."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not isinstance(value, list):
        value = [value]
    items = annotation[annotation.index("[") + 1:annotation.index("]")].split(", ")
    kind = "an integer" if items[0] == "int" else "a string"
    if items[-1] != "..." and len(value) != len(items):
        raise PipelineConfigError(f"{where}: expected {len(items)} entries, got {len(value)}: {value!r}")
    if items[0] == "int":
        converted = [int(v) if isinstance(v, str) and v.lstrip("+-").isdecimal() else v for v in value]
    else:
        converted = value
    if not all(isinstance(v, int if items[0] == "int" else str) and not isinstance(v, bool) for v in converted):
        raise PipelineConfigError(f"{where}: expected a list, each entry {kind}, got {value!r}")
    return tuple(converted)


def _resolve_path(value, base: Path | None, must_exist_to_rebase: bool):
    """Relative paths in a file are relative to that file's directory. A value that only might be
    a path (teach.model: a hub id or a directory) is rebased only when that directory exists."""
    if base is None or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve_path(v, base, must_exist_to_rebase) for v in value)
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    rebased = base / path
    if must_exist_to_rebase and not rebased.exists():
        return value
    return str(rebased)


def check_table(table: dict, base: Path | None, source: str) -> dict:
    """Validate a parsed TOML-shaped dict -> {section: {key: value}} with '' for top-level keys."""
    classes = _stage_classes()
    out: dict = {"": {}}
    for name, value in table.items():
        name = normal_key(name)
        if isinstance(value, dict):
            if name not in SECTIONS:
                raise PipelineConfigError(f"{source}: unknown section [{name}]; sections: {', '.join(SECTIONS)}")
            out.setdefault(name, {})
            for key, item in value.items():
                out[name][normal_key(key)] = item
        elif name in TOP_KEYS:
            out[""][name] = value
        else:
            raise PipelineConfigError(f"{source}: unknown top-level key {name!r}; top-level keys: "
                                      f"{', '.join(TOP_KEYS)} and the sections {', '.join(SECTIONS)}")
    checked: dict = {"": {}}
    for section, values in out.items():
        for key, value in values.items():
            if section == "":
                annotation = "str"
            else:
                annotations = {f.name: str(f.type) for f in fields(classes[section])}
                if key in annotations and key in settable_keys_excluded(section):
                    raise PipelineConfigError(f"{source}: {section}.{key} is set by the pipeline itself "
                                              f"({OWNED_BY.get(key, OWNED_BY[None])})")
                if key not in annotations:
                    raise PipelineConfigError(
                        f"{source}: unknown key {key!r} in [{section}]; valid keys: "
                        f"{', '.join(settable_keys(section))}")
                annotation = annotations[key]
            if value is DEFAULT:          # dropped once the layers are merged
                checked.setdefault(section, {})[key] = value
                continue
            value = _coerce(section, key, value, annotation)
            if (section, key) in PATH_KEYS:
                value = _resolve_path(value, base, must_exist_to_rebase=(section, key) == ("teach", "model"))
            checked.setdefault(section, {})[key] = value
    return checked


def merge(*layers: dict) -> dict:
    """Later layers win, key by key within each section."""
    merged: dict = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


# ---------------------------------------------------------------- the resolved settings

@dataclass
class PipelineSettings:
    train: str
    eval: str
    out: str
    data: DataOptions = DataOptions()
    teach: dict = field(default_factory=dict)      # overrides of TeachConfig defaults
    student: dict = field(default_factory=dict)    # overrides of StudentConfig defaults
    export: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    config_file: str | None = None
    force: bool = False                            # rerun every stage
    progress: bool = True

    # Each *_settings() is the full resolved dict of a stage: the stage's fingerprint hashes it.
    def teach_settings(self) -> dict:
        from .teacher import TeachConfig

        return _resolved(TeachConfig, self.teach)

    def student_settings(self) -> dict:
        """The student inherits the teacher's training subset, few-shot rows and seed unless
        [student] sets them, so it distils on the rows the teacher learnt from."""
        from .student import StudentConfig

        inherited = {k: self.teach[k] for k in ("max_train_samples", "shots", "seed") if k in self.teach}
        return _resolved(StudentConfig, {**inherited, **self.student})

    def export_settings(self, int8: bool) -> dict:
        values = _resolved(ExportStage, self.export)
        return values if int8 else {k: v for k, v in values.items() if k not in INT8_ONLY}

    def baseline_settings(self) -> dict:
        return _resolved(BaselineStage, self.baseline)

    def report_settings(self) -> dict:
        return _resolved(ReportStage, self.report)

    def teach_config(self, out: Path, resume: bool):
        from .teacher import TeachConfig

        return TeachConfig(**self.teach_settings(), train=self.train, eval=self.eval, out=str(out),
                           data=self.data, resume=resume, force=True, progress=self.progress)

    def student_config(self, teacher: Path, out: Path, resume: bool):
        from .student import StudentConfig

        values = self.student_settings()
        if values.get("cache_dir") is None and not values.get("no_cache"):
            values["cache_dir"] = str(Path(self.out) / "cache")
        return StudentConfig(**values, teacher=str(teacher), train=self.train, eval=self.eval,
                             out=str(out), data=self.data, resume=resume, force=True, progress=self.progress)


def _resolved(cls, overrides: dict) -> dict:
    values = {f.name: f.default for f in fields(cls) if f.name not in OWNED}
    unknown = set(overrides) - set(values)
    if unknown:
        raise PipelineConfigError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    values.update(overrides)
    return values


def build_settings(config_file: str | None, flags: dict, assignments=(), force: bool = False,
                   progress: bool = True) -> PipelineSettings:
    """Defaults < the TOML file < flags ({section: {key: value}}, paths as given) < --set pairs."""
    layers = []
    if config_file:
        path = Path(config_file)
        layers.append(check_table(load_toml(path), path.resolve().parent, str(path)))
    layers.append(check_table(_nest(flags), None, "command line"))
    sets: dict = {}
    for text in assignments:
        section, key, value = parse_assignment(text)
        sets.setdefault(section, {})[key] = value
    layers.append(check_table(_nest(sets), None, "--set"))
    merged = {section: {k: v for k, v in values.items() if v is not DEFAULT}
              for section, values in merge(*layers).items()}
    top = merged.get("", {})
    missing = [k for k in TOP_KEYS if not top.get(k)]
    if missing:
        raise PipelineConfigError(f"missing {', '.join('--' + k for k in missing)} (on the command line "
                                  f"or as top-level keys of --config)")
    for key in ("train", "eval"):
        if not Path(top[key]).is_file():
            raise PipelineConfigError(f"{key} (--{key}, or the key {key} of --config): no such file: {top[key]}")
    data = replace(DataOptions(), **merged.get("data", {}))
    settings = PipelineSettings(
        train=str(top["train"]), eval=str(top["eval"]), out=str(top["out"]), data=data,
        **{s: merged.get(s, {}) for s in ("teach", "student", "export", "baseline", "report")},
        config_file=str(config_file) if config_file else None, force=force, progress=progress)
    from .pipeline_checks import check_settings  # it reads this module's names

    check_settings(settings)
    return settings


def _nest(values: dict) -> dict:
    """{section: {key: v}} with '' for top-level keys -> the shape of a TOML document."""
    table: dict = {}
    for section, items in values.items():
        if section == "":
            table.update(items)
        else:
            table.setdefault(section, {}).update(items)
    return table


def describe(settings: PipelineSettings) -> dict:
    """Everything the run used, for report.json."""
    return {"train": settings.train, "eval": settings.eval, "out": settings.out,
            "config_file": settings.config_file, "data": asdict(settings.data),
            "teach": settings.teach_settings(), "student": settings.student_settings(),
            "export": settings.export_settings(int8=True), "baseline": settings.baseline_settings(),
            "report": settings.report_settings()}
