"""`--few-shot pet`: pattern-exploiting training (Schick & Schuetze 2021) on a masked-language model.

1. Cloze: each text is wrapped in `--template` ("{text} It was [MASK]."; the text is truncated,
   never the pattern) and the model's MLM logits at [MASK] for the verbaliser tokens
   (`--verbalizer positive=great,negative=terrible`, one single-token word per label) are the
   class scores. The MLM is fine-tuned on the labelled rows with cross-entropy over those scores.
2. Saved model: a cloze model needs its pattern around every input and reads the [MASK]
   position, which a sequence classifier fed the raw text (what `distill eval`, `distill
   student` and the ONNX runtime feed) cannot reproduce. So, as PET's own last step, the cloze
   model soft-labels the training rows and the `--unlabeled` texts, and a standard
   `*ForSequenceClassification` with the fine-tuned encoder (new pooler and classifier) learns
   those soft labels (T^2 KL at temperature PET_TEMPERATURE, plus cross-entropy on the labelled
   rows) for `--final-epochs`. training.json reports the cloze model's own accuracy beside it.

Checkpoints without an MLM head (the default all-MiniLM-L6-v2 is a sentence encoder) are
rejected, as are verbalisations that are not exactly one token of the vocabulary.
"""
from __future__ import annotations

import math
import shutil
import time

import numpy as np

from .data import LabelledData, file_sha256, read_texts, unlabeled_options
from .fewshot import FewShotError, template_for
from .predict import quiet_transformers

PET_TEMPERATURE = 2.0   # soft labels for the final classifier, as in PET
PET_ALPHA = 0.5         # labelled rows: 0.5 * KD + 0.5 * cross-entropy; unlabelled rows: KD only


def load_masked_lm(source: str):
    """(masked-LM model, tokenizer), or FewShotError when the checkpoint has no trained MLM head."""
    from transformers import AutoModelForMaskedLM

    from .tokenization import load_tokenizer

    try:
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except (ValueError, KeyError) as error:
        raise FewShotError(f"{source}: --few-shot pet needs a masked-language model; this checkpoint "
                           f"has none ({error})") from error
    prefix = model.base_model_prefix + "."
    head_missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith(prefix))
    if head_missing:
        raise FewShotError(
            f"{source}: no masked-language-model head in this checkpoint (missing "
            f"{', '.join(head_missing[:3])}{', ...' if len(head_missing) > 3 else ''}); --few-shot pet "
            "needs one, e.g. bert-base-uncased saved with BertForMaskedLM. (The default "
            "all-MiniLM-L6-v2 is a sentence encoder without it: use --few-shot prompt or contrastive.)")
    tokenizer = load_tokenizer(source)
    if tokenizer.mask_token_id is None:
        raise FewShotError(f"{source}: the tokenizer has no mask token")
    return model, tokenizer


def parse_verbalizer(spec: str | None, labels: list[str], tokenizer) -> list[int]:
    """'positive=great,negative=terrible' -> the token id of each label's word, in label order.
    Every label needs exactly one word that is a single vocabulary token (not [UNK])."""
    if not spec:
        raise FewShotError(f"--few-shot pet needs --verbalizer, e.g. "
                           f"{','.join(f'{name}=WORD' for name in labels)}")
    words: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise FewShotError(f"--verbalizer: {item.strip()!r} is not LABEL=WORD")
        name, word = (part.strip() for part in item.split("=", 1))
        if name not in labels:
            raise FewShotError(f"--verbalizer: unknown label {name!r} (labels: {', '.join(labels)})")
        if name in words:
            raise FewShotError(f"--verbalizer: label {name!r} given twice")
        if not word:
            raise FewShotError(f"--verbalizer: empty word for label {name!r}")
        words[name] = word
    missing = [name for name in labels if name not in words]
    if missing:
        raise FewShotError(f"--verbalizer: no word for label(s) {', '.join(missing)}")
    ids = []
    for name in labels:
        pieces = tokenizer.tokenize(words[name])
        if len(pieces) != 1:
            raise FewShotError(
                f"--verbalizer: {name}={words[name]!r} is {len(pieces)} tokens ({' '.join(pieces)}); "
                "PET here scores one [MASK], so each verbalisation must be a single vocabulary token")
        token_id = tokenizer.convert_tokens_to_ids(pieces[0])
        if token_id == tokenizer.unk_token_id:
            raise FewShotError(f"--verbalizer: {name}={words[name]!r} is not in the vocabulary ([UNK])")
        if token_id in tokenizer.all_special_ids:
            raise FewShotError(f"--verbalizer: {name}={words[name]!r} is a special token, not a word")
        ids.append(int(token_id))
    if len(set(ids)) != len(ids):
        raise FewShotError("--verbalizer: two labels share a verbalisation token")
    return ids


def split_template(template: str, tokenizer) -> tuple[list[int], list[int], int]:
    """(prefix ids, suffix ids, index of the mask among prefix + [text] + suffix counted from the
    end when it is in the suffix (negative), or from the start (>= 0) when in the prefix)."""
    mask = tokenizer.mask_token
    if template.count("{text}") != 1:
        raise FewShotError(f"--template {template!r} must contain {{text}} exactly once")
    if template.count(mask) != 1:
        raise FewShotError(f"--template {template!r} must contain {mask} exactly once")
    if "{label}" in template:
        raise FewShotError(f"--template {template!r}: {{label}} belongs to prompt and contrastive "
                           "templates; a pet pattern names the label through --verbalizer")
    before, after = template.split("{text}")
    prefix = tokenizer(before, add_special_tokens=False)["input_ids"] if before.strip() else []
    suffix = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    if mask in before:
        return prefix, suffix, prefix.index(tokenizer.mask_token_id)
    return prefix, suffix, suffix.index(tokenizer.mask_token_id) - len(suffix)


def encode_cloze(tokenizer, texts, template: str, max_length: int) -> tuple[list[dict], list[int]]:
    """Rows [CLS] prefix text suffix [SEP] (text truncated to fit max_length) and the [MASK]
    position of each."""
    prefix, suffix, where = split_template(template, tokenizer)
    room = max_length - 2 - len(prefix) - len(suffix)
    if room < 1:
        raise FewShotError(f"--template needs {len(prefix) + len(suffix) + 3} tokens; --max-length "
                           f"{max_length} leaves no room for the text")
    bodies = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=room)["input_ids"]
    rows, positions = [], []
    for body in bodies:
        ids = [tokenizer.cls_token_id] + prefix + body + suffix + [tokenizer.sep_token_id]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "token_type_ids": [0] * len(ids)})
        positions.append(1 + where if where >= 0 else len(ids) - 1 + where)
    return rows, positions


def cloze_scores(model, batch: dict, positions, verbaliser):
    """MLM logits at each row's [MASK] for the verbaliser tokens. -> (B, K)"""
    import torch

    logits = model(**batch).logits                                       # (B, T, V)
    device = logits.device
    at_mask = logits[torch.arange(logits.shape[0], device=device), torch.as_tensor(positions, device=device)]  # (B, V)
    return at_mask[:, torch.as_tensor(verbaliser, device=device)]         # (B, K)


def cloze_predict(model, tokenizer, rows, positions, verbaliser, batch_size: int) -> np.ndarray:
    import torch

    from .predict import length_sorted_batches, model_device

    out = np.zeros((len(rows), len(verbaliser)), dtype=np.float32)
    model.eval()
    device = model_device(model)
    with torch.inference_mode():
        for idx in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
            batch = tokenizer.pad([rows[i] for i in idx], return_tensors="pt").to(device)
            out[idx] = cloze_scores(model, batch, [positions[i] for i in idx], verbaliser).float().cpu().numpy()
    return out


def train_cloze(model, tokenizer, rows, positions, labels, verbaliser, config) -> list[dict]:
    """Cross-entropy over the verbaliser scores at [MASK]; AdamW (no decay on biases and LayerNorm),
    linear warmup and decay."""
    import torch

    from .training import adamw_with_schedule

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = max(1, math.ceil(per_epoch * config.epochs))
    optimizer, schedule = adamw_with_schedule(model, config.lr, config.weight_decay, config.warmup, total)
    y = np.asarray(labels, dtype=np.int64)
    model.train()
    history, step = [], 0
    while step < total:
        order = rng.permutation(len(rows))
        losses = []
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            idx = order[start:start + config.batch_size]
            batch = tokenizer.pad([rows[i] for i in idx], return_tensors="pt")
            scores = cloze_scores(model, batch, [positions[i] for i in idx], verbaliser)
            loss = torch.nn.functional.cross_entropy(scores.float(), torch.as_tensor(y[idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
        history.append({"epoch": len(history) + 1, "step": step, "train_loss": float(np.mean(losses))})
    model.eval()
    return history


def classifier_from_masked_lm(mlm, labels: list[str]):
    """A sequence classifier whose encoder is the MLM's (pooler and classifier newly initialised)."""
    from transformers import AutoModelForSequenceClassification

    config = mlm.config.__class__.from_dict(
        {**mlm.config.to_dict(), "id2label": dict(enumerate(labels)),
         "label2id": {name: i for i, name in enumerate(labels)},
         "problem_type": "single_label_classification", "architectures": None})
    model = AutoModelForSequenceClassification.from_config(config)
    missing, unexpected = model.base_model.load_state_dict(mlm.base_model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise FewShotError(f"cannot move the MLM encoder into a classifier: missing {missing}, "
                           f"unexpected {unexpected}")
    return model


def train_final_classifier(model, tokenizer, texts, labels, soft, dev, config) -> list[dict]:
    """PET's last step: fit the classifier to the cloze model's soft labels (T^2 KL) and, on
    labelled rows, the labels. labels: id or -100 per text; soft: (n, K) cloze logits."""
    from transformers import DataCollatorWithPadding

    from .teacher import checkpoint_dir_for
    from .trainer import DistillationArguments, DistillationTrainer
    from .training import EpochHistory, encode_rows, metrics_function, training_arguments

    checkpoints = checkpoint_dir_for(config.out)
    args = training_arguments(
        DistillationArguments, checkpoint_dir=checkpoints, epochs=config.final_epochs, lr=config.lr,
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
        weight_decay=config.weight_decay, warmup=config.warmup, seed=config.seed,
        has_eval=dev is not None, early_stopping=None, metric=config.metric,
        logging_steps=config.logging_steps, progress=config.progress, save_total_limit=1,
        temperature=PET_TEMPERATURE, alpha=PET_ALPHA, kd_loss="kl", remove_unused_columns=False)
    train_rows = encode_rows(tokenizer, texts, config.max_length, labels=list(labels),
                             teacher_logits=np.asarray(soft, dtype=np.float32).tolist())
    dev_rows = encode_rows(tokenizer, dev.texts, config.max_length, labels=dev.labels) if dev else None
    history = EpochHistory()
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=train_rows, eval_dataset=dev_rows,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_metrics=metrics_function(dev.label_names) if dev else None, callbacks=[history])
    history.attach(trainer)
    try:
        trainer.train()
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return history.epochs


def pet_teacher(config, source: str, train: LabelledData, dev) -> dict:
    from .losses import IGNORE
    from .metrics import evaluate
    from .predict import softmax

    start = time.time()
    labels = train.label_names
    mlm, tokenizer = load_masked_lm(source)
    verbaliser = parse_verbalizer(config.verbalizer, labels, tokenizer)
    template = template_for(config)
    split_template(template, tokenizer)
    unlabeled, skipped = read_texts(config.unlabeled, unlabeled_options(config.unlabeled, config.data)) \
        if config.unlabeled else ([], {})

    rows, positions = encode_cloze(tokenizer, train.texts, template, config.max_length)
    cloze_history = train_cloze(mlm, tokenizer, rows, positions, train.labels, verbaliser, config)
    cloze_eval = None
    if dev is not None:
        dev_rows, dev_positions = encode_cloze(tokenizer, dev.texts, template, config.max_length)
        dev_scores = cloze_predict(mlm, tokenizer, dev_rows, dev_positions, verbaliser, config.eval_batch_size)
        cloze_eval = evaluate(np.asarray(dev.labels), softmax(dev_scores), labels)

    texts = list(train.texts) + unlabeled
    cloze_rows, cloze_positions = encode_cloze(tokenizer, texts, template, config.max_length)
    soft = cloze_predict(mlm, tokenizer, cloze_rows, cloze_positions, verbaliser, config.eval_batch_size)
    row_labels = list(train.labels) + [IGNORE] * len(unlabeled)
    model = classifier_from_masked_lm(mlm, labels)
    del mlm
    final_history = train_final_classifier(model, tokenizer, texts, row_labels, soft, dev, config)
    few_shot = {"method": "pet", "template": template, "verbalizer": {
                    name: tokenizer.convert_ids_to_tokens(i) for name, i in zip(labels, verbaliser)},
                "verbalizer_token_ids": verbaliser, "shots_per_class": config.shots, "rows": len(train),
                "unlabeled": {"path": config.unlabeled, "sha256": file_sha256(config.unlabeled),
                              "rows": len(unlabeled), "skipped": skipped} if config.unlabeled else None,
                "cloze": {"epochs": cloze_history, "eval": cloze_eval},
                "final_classifier": {"soft_labels_from": "the cloze model", "temperature": PET_TEMPERATURE,
                                     "alpha": PET_ALPHA, "epochs": config.final_epochs,
                                     "texts": len(texts)},
                "head": {"pooling": "first token (the architecture's own pooler), trained on soft labels"}}
    return {"model": model, "tokenizer": tokenizer, "few_shot": few_shot, "epochs": final_history,
            "train_seconds": time.time() - start}
