"""The `distill` command line. Heavy imports (torch, transformers) live inside the commands."""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import click

from .cli_group import Group
from .options import data_options, data_options_from

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _default(config_cls, name):
    return {f.name: f.default for f in fields(config_cls)}[name]


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from error


def _rows(data_summary: dict) -> str:
    """'80 rows', or '10 of 80 rows' for a subsample."""
    rows, in_file = data_summary["rows"], data_summary.get("file_rows", data_summary["rows"])
    return f"{rows} rows" if rows == in_file else f"{rows} of {in_file} rows"


def _progress(wanted: bool) -> bool:
    """--quiet also silences transformers' own progress bars and log lines."""
    if not wanted:
        from .predict import silence_transformers

        silence_transformers()
    return wanted


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(package_name="distill-edge")
def main():
    """distill-edge: labelled text file -> teacher BERT -> small student -> int8 ONNX bundle
    that runs with numpy alone."""


def _apply(f, options):
    for option in reversed(options):
        f = option(f)
    return f


def shared_training_options(C) -> list:
    """The options `teach` and `student` share (DESIGN.md), defaults from the config class C."""
    length_default = "" if C.max_length is not None else " Default: the teacher's training max_length."
    return [
        click.option("--train", required=True, type=click.Path(dir_okay=False),
                     help="Labelled training file (.csv, .tsv, .jsonl or headerless text<TAB>label .txt)."),
        click.option("--eval", "eval_path", type=click.Path(dir_okay=False), default=None,
                     help="Labelled evaluation file: accuracy, macro-F1 and AUC after every epoch."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Output model directory (written atomically)."),
        click.option("--epochs", type=float, default=C.epochs, show_default=True, help="Training epochs."),
        click.option("--lr", type=float, default=C.lr, show_default=True, help="Peak learning rate (AdamW)."),
        click.option("--batch-size", type=int, default=C.batch_size, show_default=True, help="Training batch size."),
        click.option("--eval-batch-size", type=int, default=C.eval_batch_size, show_default=True,
                     help="Batch size for evaluation."),
        click.option("--max-length", type=int, default=C.max_length, show_default=C.max_length is not None,
                     help="Truncate texts to this many tokens (batches are padded dynamically)." + length_default),
        click.option("--weight-decay", type=float, default=C.weight_decay, show_default=True,
                     help="AdamW's decoupled weight decay (not applied to biases and LayerNorm weights)."),
        click.option("--warmup", type=float, default=C.warmup, show_default=True,
                     help="Linear warmup: a fraction of all steps if < 1, else a whole number of steps; "
                          "then linear decay to 0."),
        click.option("--early-stopping", type=int, default=None, metavar="PATIENCE",
                     help="Stop after PATIENCE epochs without improving --metric on --eval, "
                          "and keep the best epoch's weights."),
        click.option("--metric", type=click.Choice(["accuracy", "macro_f1", "auc", "loss"]),
                     default=C.metric, show_default=True, help="Metric for early stopping and the best checkpoint."),
        click.option("--seed", type=int, default=C.seed, show_default=True, help="Random seed (data order, init, subsets)."),
        click.option("--max-train-samples", type=int, default=None,
                     help="Train on a seeded random subset of this many rows."),
        click.option("--logging-steps", type=int, default=C.logging_steps, show_default=True,
                     help="Log the training loss every N steps."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint "
                     "(kept in OUT.checkpoints/)."),
        click.option("--force", is_flag=True, help="Replace an existing --out directory."),
        click.option("--keep-checkpoints", is_flag=True, help="Keep OUT.checkpoints/ after success."),
        click.option("--quiet", is_flag=True, help="No progress bars and no transformers log lines: the summary alone."),
    ]


def teach_options(f):
    from .teacher import TeachConfig as C

    options = shared_training_options(C) + [
        click.option("--model", default=None, metavar="NAME_OR_PATH",
                     help="BERT-family checkpoint (local path or hub id). Default: the packaged "
                          "all-MiniLM-L6-v2 (offline)."),
        click.option("--dropout", type=float, default=None,
                     help="Override hidden, attention and classifier dropout (default: the checkpoint's)."),
        click.option("--freeze-encoder", is_flag=True, help="Train the classification head only "
                     "(pooler + classifier); embeddings and layers stay fixed."),
        click.option("--class-weights", type=click.Choice(["none", "balanced"]), default=C.class_weights,
                     show_default=True, help="'balanced': weighted cross-entropy, n / (k * count) per class "
                     "(as scikit-learn's compute_class_weight)."),
        click.option("--resample", type=click.Choice(["none", "over", "under"]), default=C.resample,
                     show_default=True, help="Random over-sampling to the largest class, or under-sampling "
                     "to the smallest, of the training rows."),
        click.option("--extend-vocab", is_flag=True,
                     help="Add the characters of the training texts that the vocabulary lacks (e.g. CJK "
                          "characters for an English teacher), so that no training word becomes [UNK] "
                          "(except words over 100 characters, which WordPiece never splits); the "
                          "embeddings grow (see --extend-vocab-init); the extended vocab.txt is saved."),
        click.option("--extend-vocab-init", type=click.Choice(["sample", "mean"]), default=C.extend_vocab_init,
                     show_default=True, help="With --extend-vocab, a new character's row: sample draws it "
                     "from a normal with the old rows' mean and per-dimension variance (seeded); mean gives "
                     "every new character the same mean row, which the encoder cannot tell apart at first."),
        click.option("--extend-vocab-words", type=int, default=C.extend_vocab_words, show_default=True,
                     metavar="N", help="With --extend-vocab: also add up to N of the most frequent training "
                     "words that WordPiece splits into pieces, among those seen at least twice, of 2+ "
                     "characters and without CJK (row = mean of the pieces' rows)."),
        click.option("--few-shot", type=click.Choice(["prompt", "contrastive", "pet"]), default=None,
                     help="Teach from a few labelled rows: prompt (cosine similarity to label "
                          "descriptions, no training), contrastive (SetFit-style pair tuning + logistic "
                          "regression), pet (cloze pattern + verbaliser; needs a masked-LM checkpoint)."),
        click.option("--shots", type=int, default=None, metavar="N",
                     help="With --few-shot: N rows per class drawn (seeded) from --train; 0: zero-shot "
                          "(prompt), the file then only names the labels. Default: every row."),
        click.option("--template", default=None,
                     help="prompt, contrastive: label description with {label} (default 'This review "
                          "is {label}.'); pet: cloze pattern with {text} and [MASK] (default '{text} It "
                          "was [MASK].')."),
        click.option("--label-descriptions", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="prompt, contrastive: label descriptions instead of --template: "
                          "label<TAB>description lines, a label on as many lines as it has "
                          "descriptions (prompt averages their embeddings, contrastive uses each as "
                          "an example), or one plain line per label in label order."),
        click.option("--logit-scale", type=float, default=None,
                     help="prompt: logits = scale * cosine (a temperature). Default: fitted on the "
                          "labelled rows (leave-one-out); zero-shot 50."),
        click.option("--pairs", type=int, default=None,
                     help="contrastive: number of training pairs, half same-class (default 40 per example: "
                          "per labelled row and per label description)."),
        click.option("--contrastive-epochs", type=float, default=C.contrastive_epochs, show_default=True,
                     help="contrastive: passes over the pairs."),
        click.option("--verbalizer", default=None, metavar="LABEL=WORD,...",
                     help="pet: one single-token word per label, e.g. positive=great,negative=terrible."),
        click.option("--final-epochs", type=float, default=C.final_epochs, show_default=True,
                     help="pet: epochs of the final classifier on the cloze model's soft labels."),
        click.option("--unlabeled", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="pet: raw texts (one per line, or the --text-column) that the cloze model "
                          "soft-labels for the final classifier. (A prompt or contrastive teacher takes "
                          "unlabelled texts in `distill student --unlabeled`.)"),
    ]
    return data_options(_apply(f, options))


@main.command(context_settings=CONTEXT)
@teach_options
def teach(**kwargs):
    """Fine-tune a teacher BERT classifier on a labelled file.

    Writes a Hugging Face model directory (config with labels, model.safetensors, tokenizer
    files) and training.json (settings, data hashes, per-epoch metrics, final evaluation).
    Runs unchanged under `torchrun --nproc_per_node N`.
    """
    from .data import DataError
    from .savedir import OutputExistsError
    from .teacher import TeachConfig, TeachError, teach as run_teach

    data = data_options_from(kwargs)
    kwargs["eval"] = kwargs.pop("eval_path")
    kwargs["progress"] = _progress(not kwargs.pop("quiet"))
    config = TeachConfig(**kwargs, data=data)
    try:
        if config.few_shot:      # an option a method does not use is refused even at its default value
            from .fewshot import check_few_shot
            check_few_shot(config, given=_given_options())
        report = run_teach(config)
    except (DataError, TeachError, OutputExistsError, PermissionError, OSError) as error:
        _fail(error)
    if report is not None:
        click.echo(summary(report, config.out))


def _given_options() -> frozenset:
    """The current command's parameters named on the command line."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return frozenset(p.name for p in ctx.command.params
                     if ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE)


def summary(report: dict, out: str) -> str:
    from .data import LabelList, describe_skipped, format_labels
    from .metrics import format_report

    lines = [f"\n== {report['command']} -> {out}",
             f"model: {report['model_source']}  ({report['parameters']:,} parameters)",
             f"labels: {format_labels(report['labels'])}",
             *([f"new weights (not in the checkpoint, drawn with --seed): {', '.join(report['new_weights'])}"]
               if report.get("new_weights") else []),
             *([f"classifier head: {report['classifier_head']}"] if report.get("classifier_head") else []),
             f"train: {_rows(report['data']['train'])} ({report['data']['train_rows_used']} used), "
             f"{report['train_seconds']:.0f} s" + (f", {report['train_samples_per_second']:.1f} samples/s"
                                                   if report.get("train_samples_per_second") else ""),
             *([few_shot_line(report["few_shot"])] if report.get("few_shot") else [])]
    counts = report["data"].get("train_class_counts") or []
    rows = report["data"]["train_rows_used"]
    if len(report["labels"]) > 50 and rows < 2 * len(report["labels"]) and not report.get("few_shot"):
        column = ((report.get("config") or {}).get("data") or {}).get("label_column")
        lines.append(f"warning: {len(report['labels']):,} labels for {rows:,} training rows, fewer than 2 rows a "
                     f"label: is {'column ' + repr(column) if column else 'the label column'} the label? "
                     "(--text-column, --label-column)")
    names = LabelList(report["labels"])
    twins = next(((name, other) for name in names if (other := names.written_otherwise(name))), None)
    if twins:
        lines.append(f"warning: labels {' and '.join(map(ascii, twins))} are the same text in two Unicode "
                     "normal forms, so they print alike but are different classes: write them one way")
    unlearnt = [name for name, count in zip(report["labels"], counts) if count == 0]
    if unlearnt and not report.get("few_shot"):      # a prompt teacher knows a class by its description
        lines.append(f"warning: no training rows labelled {format_labels(unlearnt)}: "
                     f"the model will not learn {'that class' if len(unlearnt) == 1 else 'those classes'}")
    files = {**report["data"], "unlabeled": report["data"].get("unlabeled")
             or (report.get("few_shot") or {}).get("unlabeled")}      # PET records it with its method
    for name in ("train", "eval", "unlabeled"):
        skipped = describe_skipped((files.get(name) or {}).get("skipped") or {})
        if skipped:
            lines.append(f"{name} ({files[name]['path']}): {skipped}")
    if report.get("vocab_extension"):
        v = report["vocab_extension"]
        lines.append(f"vocabulary extended: {v['vocab_before']:,} -> {v['vocab_after']:,} tokens "
                     f"({v['added_characters']} characters, {v['added_words']} words)")
    for epoch in report["epochs"]:
        parts = [f"{k}={v:.4f}" for k, v in epoch.items() if k not in ("epoch", "step") and isinstance(v, float)]
        lines.append(f"  epoch {epoch['epoch']}: " + "  ".join(parts))
    stop = early_stop_line(report)
    if stop:
        lines.append(stop)
    if report.get("final_eval"):
        lines.append(format_report(report["final_eval"]))
    ensemble = report.get("distillation", {}).get("ensemble")
    if ensemble and ensemble.get("eval"):
        lines.append(f"teacher ensemble ({1 + len(ensemble['members'])} models, mean logits): accuracy "
                     f"{ensemble['eval']['accuracy']:.4f}; student retention {ensemble['student_retention']:.4f}")
    lines.append(f"report: {Path(out) / 'training.json'}")
    return "\n".join(lines)


def few_shot_line(f: dict) -> str:
    """What a few-shot teacher did, from training.json's few_shot record."""
    per_class = "" if f.get("shots_per_class") is None else f" ({f['shots_per_class']} per class)"
    line = f"few-shot {f['method']}: {f['rows']} labelled rows{per_class}"
    if f["method"] == "prompt":
        line += f"; logit scale {f['logit_scale']:g} ({f['logit_scale_source']})"
        if f.get("leave_one_out_accuracy") is not None:
            line += f", leave-one-out accuracy {f['leave_one_out_accuracy']:.4f}"
    elif f["method"] == "contrastive":
        pairs = f["pairs"]
        line += (f"; {pairs['total']} pairs ({pairs['similar']} similar) x {f['contrastive_epochs']:g} "
                 f"epoch(s), head train accuracy {f['classifier']['train_accuracy']:.4f}")
    elif f["method"] == "pet":
        cloze = (f.get("cloze") or {}).get("eval")
        line += f"; pattern {f['template']!r}" + (f", cloze model accuracy {cloze['accuracy']:.4f}"
                                                  if cloze else "")
    return line


def early_stop_line(report: dict) -> str | None:
    """With --early-stopping: how many epochs ran and which epoch's weights were kept."""
    config = report["config"]
    if config.get("early_stopping") is None or not report["epochs"]:
        return None
    ran, planned = report["epochs"][-1]["epoch"], config["epochs"]
    best = next((e for e in report["epochs"] if e["step"] == report.get("best_step")), None)
    metric = config["metric"]
    key = "eval_loss" if metric == "loss" else metric           # the epoch history's name for it
    how = (f"stopped after epoch {ran} of {planned:g}, {config['early_stopping']} epoch(s) without a "
           f"better {metric}" if ran < planned - 1e-3 else f"ran all {planned:g} epochs")
    kept = f"kept epoch {best['epoch']}'s weights ({metric} {best[key]:.4f})" if best and \
        best.get(key) is not None else "no epoch scored a best: kept the last epoch's weights"
    return f"early stopping: {how}; {kept}"


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,2,4, got {value!r}") from None


def _name_list(ctx, param, value):
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def _model_pair(ctx, param, value):
    if value is None:
        return None
    pair = tuple(v.strip() for v in value.split(","))
    if len(pair) != 2 or not all(pair):
        raise click.BadParameter("expected FORWARD_MODEL,BACKWARD_MODEL (two local seq2seq model paths)")
    for path in pair:
        if not Path(path).is_dir():
            raise click.BadParameter(f"{path}: not a directory (local seq2seq model expected)")
    return pair


def student_options(f):
    from .student import StudentConfig as C
    from .vocab_trim import CHARACTER_CHOICES, RANK_CHOICES

    options = shared_training_options(C) + [
        click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Teacher model directory (written by `distill teach`)."),
        click.option("--ensemble-teacher", "ensemble", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="Another teacher with the same labels (repeatable): the student learns from the "
                          "mean of all the teachers' logits, each teacher scoring with its own tokenizer "
                          "(cached). Layers, vocabulary and max length still come from --teacher."),
        click.option("--layers", type=int, default=None,
                     help="Student layers, initialised from teacher layers floor(i * L / N) "
                          "(3 of 6 -> 0,2,4; 3 of 4 -> 0,1,2). Default: half the teacher's."),
        click.option("--layer-map", callback=_int_list, default=None, metavar="I,J,...",
                     help="The teacher layer for each student layer, e.g. 0,2,4."),
        click.option("--hidden-size", type=int, default=None,
                     help="Student hidden size (default: the teacher's). Any of --hidden-size, "
                          "--intermediate-size, --heads other than the teacher's makes a random student."),
        click.option("--intermediate-size", type=int, default=None,
                     help="Student feed-forward size (default: the teacher's)."),
        click.option("--heads", type=int, default=None, help="Student attention heads (default: the teacher's)."),
        click.option("--init", type=click.Choice(["teacher", "random"]), default=None,
                     help="Copy the teacher's weights (embeddings, chosen layers, pooler, classifier; a "
                          "few-shot teacher's hand-set pooler and classifier are drawn anew) or initialise "
                          "randomly. Default: teacher, random when a size differs from the teacher's."),
        click.option("--trim-vocab", is_flag=True,
                     help="Keep only the WordPiece tokens of the training, augmented and unlabelled "
                          "texts, the special tokens and every single-character token; shrinks the "
                          "embedding table."),
        click.option("--trim-min-count", type=click.IntRange(min=1), default=C.trim_min_count, show_default=True,
                     help="With --trim-vocab: keep a multi-character token only if those texts use it at "
                          "least this often; rarer words then split into the longest kept pieces."),
        click.option("--trim-characters", type=click.Choice(CHARACTER_CHOICES), default=C.trim_characters,
                     show_default=True,
                     help="With --trim-vocab: which single-character tokens to keep. all: every one of the "
                          "vocabulary, so any word still splits into characters; seen: only those of the "
                          "characters the texts hold (110 of the default teacher's 1,994 on SST-2), so a "
                          "word with an unseen character (e.g. CJK in English text) becomes [UNK]."),
        click.option("--trim-max-tokens", type=int, default=None, metavar="N",
                     help="With --trim-vocab: keep at most N tokens in all, for a size budget (each token is "
                          "one embedding row of hidden-size floats): the special and single-character tokens, "
                          "then the tokens the texts use most (see --trim-rank). Default: no limit."),
        click.option("--trim-rank", type=click.Choice(RANK_CHOICES), default=C.trim_rank, show_default=True,
                     help="With --trim-max-tokens: which of the used tokens fill the budget. count: the "
                          "ones the texts use most (ties: lower id); vocab: the vocabulary's own order, "
                          "lower id first (BERT's vocab.txt lists words roughly by pretraining frequency). "
                          "On SST-2 at 2x, vocab split more eval texts into pieces and cost more (0.95 "
                          "points against 0.65): the texts' own counts are the better guess there."),
        click.option("--trim-after-training", is_flag=True,
                     help="With --trim-vocab: train with the teacher's full vocabulary and trim the final "
                          "model, instead of trimming before training. The words --trim-min-count or "
                          "--trim-max-tokens drop are then learnt whole and split only at inference, which "
                          "costs less (SST-2, 2x smaller: 0.27 points against 0.65). Per-epoch eval metrics "
                          "and checkpoints are the untrimmed model's; the final evaluation is the trimmed one's."),
        click.option("--temperature", type=float, default=C.temperature, show_default=True,
                     help="Softmax temperature T of the KD term (scaled by T^2)."),
        click.option("--alpha", type=float, default=C.alpha, show_default=True,
                     help="Weight of the KD term; 1 - alpha weights the cross-entropy of a labelled row. "
                          "Rows without a label (transfer data) get KD at weight 1. The loss is the mean "
                          "over all the batch's rows, so the more transfer rows, the smaller the labels' "
                          "share."),
        click.option("--kd-loss", type=click.Choice(["kl", "mse"]), default=C.kd_loss, show_default=True,
                     help="kl: T^2 * KL(teacher || student) on softened outputs; mse: squared error on logits."),
        click.option("--augment-factor", type=int, default=C.augment_factor, show_default=True,
                     help="New texts per training text (synonym replacement, random insertion, swap, "
                          "deletion), labelled by the teacher. 0: none."),
        click.option("--augment-ops", callback=_name_list, default=",".join(C.augment_ops), show_default=True,
                     help="Augmentation ops to draw from."),
        click.option("--augment-rate", type=float, default=C.augment_rate, show_default=True,
                     help="Fraction of a text's words (characters for CJK) each op changes, at least "
                          "one (swap exchanges two units per change)."),
        click.option("--synonym-neighbours", type=int, default=C.synonym_neighbours, show_default=True,
                     help="Synonyms: the k nearest tokens in the teacher's input-embedding space (cosine)."),
        click.option("--unlabeled", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Raw texts (.txt one per line, or a --text-column of .csv/.tsv/.jsonl) the "
                          "teacher labels: transfer data."),
        click.option("--max-unlabeled", type=int, default=None, help="Use a seeded random subset of the unlabelled texts."),
        click.option("--shots", type=int, default=None, metavar="N",
                     help="Keep N labelled rows per class of --train, drawn as `distill teach --few-shot "
                          "--shots N` draws them with the same --seed (a few-shot teacher's own rows); 0: "
                          "none, the student learns from the teacher's labels of --unlabeled alone."),
        click.option("--back-translate", callback=_model_pair, default=None, metavar="FWD,BWD",
                     help="Also add one back-translation per training text through two local seq2seq "
                          "model directories (e.g. Marian zh->en and en->zh)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Teacher-logits cache. Default: ~/.cache/distill-edge ($DISTILL_CACHE_DIR)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the teacher-logits cache."),
        click.option("--teacher-batch-size", type=int, default=C.teacher_batch_size, show_default=True,
                     help="Batch size of the teacher's one scoring pass (and of back-translation)."),
    ]
    return data_options(_apply(f, options))


@main.command(context_settings=CONTEXT)
@student_options
def student(**kwargs):
    """Distil a teacher into a smaller, faster student.

    The teacher scores every training, augmented and unlabelled text once (cached); the student
    (fewer teacher layers, or random init) learns alpha * T^2 * KL(teacher || student)
    + (1 - alpha) * cross-entropy. Writes a model directory like `teach`, whose training.json
    puts teacher and student side by side. Runs unchanged under `torchrun --nproc_per_node N`.
    """
    from .data import DataError
    from .savedir import OutputExistsError
    from .student import StudentConfig, StudentError, distill_student
    from .student_config import check_config

    data = data_options_from(kwargs)
    kwargs["eval"] = kwargs.pop("eval_path")
    kwargs["progress"] = _progress(not kwargs.pop("quiet"))
    config = StudentConfig(**kwargs, data=data)
    try:
        check_config(config, given=_given_options())    # --alpha 0.5 named with --shots 0: refused too
        report = distill_student(config)
    except (DataError, StudentError, OutputExistsError, PermissionError, OSError, ValueError) as error:
        _fail(error)
    if report is not None:
        click.echo(summary(report, config.out))
        click.echo(comparison_table(report))


def _logits_part(name: str, part: dict) -> str:
    """'augmented 720 (cached)' or 'augmented 720 (scored in 2 s)'."""
    how = "cached" if part["cache_hit"] else f"scored in {part['seconds']:.0f} s"
    return f"{name} {part['rows']:,} ({how})"


def comparison_table(report: dict) -> str:
    """Teacher and student side by side (from training.json's comparison)."""
    c = report["comparison"]
    d = report["distillation"]
    rows = [("accuracy", "accuracy", "{:.4f}"), ("macro-F1", "macro_f1", "{:.4f}"),
            ("parameters", "parameters", "{:,}"), ("size (MB)", "size_bytes", None),
            ("CPU samples/s", "samples_per_second", "{:.1f}")]
    layers = (f"{report['config']['layers']} layers (random init)" if d["init"] == "random"
              else f"layers {d['layer_map']} of the teacher")
    loss = f"T={d['temperature']} alpha={d['alpha']} (kl)" if d["kd_loss"] == "kl" else f"alpha={d['alpha']} (mse)"
    lines = [f"distillation: {loss}, {layers}"]
    if d.get("teacher_logits"):
        lines.append("teacher logits: " + ", ".join(_logits_part(name, part)
                                                     for name, part in d["teacher_logits"].items()))
    lines.append(f"{'':16}{'teacher':>14}{'student':>14}")
    for title, key, fmt in rows:
        cells = []
        for side in ("teacher", "student"):
            value = c[side].get(key)
            cells.append("-" if value is None else f"{value / 1e6:.1f}" if fmt is None else fmt.format(value))
        lines.append(f"{title:16}{cells[0]:>14}{cells[1]:>14}")
    extras = [f"{name} {c[key]:.3f}" for name, key in (("retention", "retention"), ("speed-up", "speedup"),
                                                        ("smaller by", "size_ratio")) if c.get(key)]
    lines.append("  ".join(extras))
    if d.get("vocab"):
        v = d["vocab"]
        lines.append(f"vocabulary trimmed: {v['vocab_before']:,} -> {v['vocab_after']:,} tokens")
        if v.get("eval_retokenized"):
            r = v["eval_retokenized"]
            lines.append(f"  {r['changed']:,} of {r['texts']:,} eval texts ({100 * r['fraction']:.1f}%) now split "
                         "into other pieces (words the kept tokens lack)")
    return "\n".join(lines)


@main.command("eval", context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Labelled file to evaluate on (labels must be known to the model).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the report (accuracy, macro_f1, auc, n, labels, per_class, confusion_matrix) here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a confusion-matrix PNG here.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Inference batch size; the default is the export's check's and runtime.Classifier's "
                   "(an int8 bundle quantizes its activations per batch, so its score can depend on it).")
@click.option("--max-length", type=click.IntRange(min=2), default=None,
              help="Token limit for every engine (default: the model's training max_length, or the "
                   "bundle's); at most the bundle's max_length or the model's position embeddings.")
@click.option("--engine", type=click.Choice(["auto", "torch", "onnxruntime", "numpy"]), default="auto",
              show_default=True, help="torch for a model directory; onnxruntime or the numpy runtime for "
              "an ONNX bundle. auto: torch for a model directory, onnxruntime for a bundle.")
@click.option("--quiet", is_flag=True, default=False,
              help="Print the report alone: no progress bars or model-loading messages.")
@data_options
def eval_command(model, data_path, json_path, plot_path, batch_size, max_length, engine, quiet, **kwargs):
    """Evaluate a model directory or an ONNX bundle on a labelled file.

    Prints accuracy, macro-F1, ROC-AUC, per-class precision/recall/F1 and the confusion matrix.
    """
    from .data import DataError, describe_skipped
    from .evaluation import EvalError, check_outputs, evaluate_path, make_parent
    from .metrics import format_report, plot_confusion_matrix
    from .savedir import write_json

    options = data_options_from(kwargs)
    try:
        check_outputs(data_path, {"--json": json_path, "--plot": plot_path}, model)
        report = evaluate_path(model, data_path, options, engine=engine, batch_size=batch_size,
                               max_length=max_length, progress=_progress(not quiet))
    except (DataError, EvalError) as error:
        _fail(error)
    skipped = describe_skipped(report["skipped"])
    click.echo(f"{model} on {data_path} ({report['engine']}, {report['n']} rows"
               f"{'; ' + skipped if skipped else ''})")
    click.echo(format_report(report))
    if json_path:
        make_parent(json_path)
        write_json(json_path, report)
        click.echo(f"report: {json_path}")
    if plot_path:
        make_parent(plot_path)
        try:
            note = plot_confusion_matrix(report, plot_path, title=f"{Path(model).name} on {Path(data_path).name}")
        except (OSError, ValueError, RuntimeError, MemoryError) as error:   # after the report: say which step
            raise click.ClickException(f"--plot {plot_path}: the confusion matrix could not be drawn: "
                                       f"{type(error).__name__}: {error}") from error
        click.echo(f"plot: {plot_path}")
        if note:
            click.echo(f"note: {note}", err=True)


def _attach_optional_groups():
    try:
        from export.cli import export_group
    except ModuleNotFoundError as error:  # only while export/cli.py does not exist
        if error.name not in ("export", "export.cli"):
            raise
        return
    main.add_command(export_group, "export")


_attach_optional_groups()


def _attach_pipeline():
    from .pipeline import pipeline_command

    main.add_command(pipeline_command)


_attach_pipeline()


if __name__ == "__main__":
    sys.exit(main())
