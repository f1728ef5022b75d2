"""Training and evaluation speed (not a test: prints figures).

    python benchmarks/speed.py [--steps 10] [--data synthetic] [--only baseline both]
                               [--parts experiments step fixed attention published eval shift]

- ``experiments``: per experiment at the cpu scale, parameters, training stories/s (forward +
  backward + step), evaluation stories/s (``storylib.evaluation.evaluate``: forward, greedy
  generation, scoring) and the share of training time spent waiting for the next batch;
- ``published``: ``baseline`` at the published configuration (BERT-size vocabulary 30,522,
  120-token descriptions, batch 8, 60×125) beside :class:`PlainCourseModel`, a plain
  implementation of the course model written here, stepped alternately in one process on the
  same batches; twice: with the data's own descriptions (trailing padding is trimmed) and with
  every description 120 tokens long (nothing to trim). Then where a step's time goes
  (``torch.profiler``, operators by self CPU time);
- ``step``: a training step of ``enhanced`` at the cpu scale with the miniature text side
  (``at_most:`` in ``params/scales/cpu.yaml``) against the published widths, alternately on the
  same batches, and where the miniature step's time goes;
- ``fixed``: a training step of ``shots`` with what does not change between epochs done once
  (the warp decoder's motion features precomputed per split) and the 0-weighted context head
  run without a graph, against both as before, alternately on the same batches, and where its
  time goes;
- ``attention``: a training step of ``shots_crossmodal`` with the cross-modal attention as it
  runs against its definition (``nn.MultiheadAttention`` over every cell and token);
- ``eval``: the model work of evaluation (frame, greedy text, VAE samples) of ``vae`` with one
  encoding per batch against the earlier three;
- ``shift``: the floors' shift search, vectorised against the one-shift-at-a-time reference,
  on the test windows' frames 3 → 4, and how often the two agree.

Everything runs on one thread (``torch.set_num_threads(1)``) unless ``--threads``; times are
CPU seconds (user + sys of this process), which a machine shared with other work inflates less
than wall time, and the ratios are of runs interleaved in this one process.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from storylib import classical, evaluation
from storylib.config import available_experiments, load_experiment_config
from storylib.data.dataset import CONTEXT_MOTION, iterate_batches, make_batch
from storylib.data.prepare import prepare_data
from storylib.models import build_model, count_parameters
from storylib.training import make_optimizer, weighted_loss

BERT_VOCABULARY = 30_522
PUBLISHED_TEXT_LENGTH = 120


def cpu_seconds() -> float:
    """User + sys CPU time of this process."""
    return time.process_time()


# --------------------------------------------------------------------------- the plain model


def _encoder_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.ReLU(), nn.Conv2d(16, 32, 5, 2, 2), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten())


class PlainCourseModel(nn.Module):
    """The course model as it is usually written: a content and a context CNN, an LSTM over the
    whole padded description (its last hidden state), a GRU with additive attention over the four
    frames, a conv image decoder and a context decoder, an LSTM text decoder teacher-forced over
    every position, cross-entropy that ignores padding. Width 16 everywhere, as ``baseline``."""

    def __init__(self, vocab: int, size: tuple[int, int], width: int = 16):
        super().__init__()
        self.size, self.width = size, width
        self.content, self.context = _encoder_cnn(), _encoder_cnn()
        flat = self.content(torch.zeros(1, 3, *size)).shape[1]
        self.content_fc, self.context_fc = nn.Linear(flat, width), nn.Linear(flat, width)
        self.embedding = nn.Embedding(vocab, width, padding_idx=0)
        self.text_lstm = nn.LSTM(width, width, batch_first=True)
        self.gru = nn.GRU(3 * width, width, batch_first=True)
        self.att_keys, self.att_query, self.att_score = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, 1)
        self.to_z = nn.Linear(2 * width, width)
        self.start = (64, -(-size[0] // 8), -(-size[1] // 8))
        self.image_fc, self.context_dec_fc = (nn.Linear(width, int(np.prod(self.start))) for _ in range(2))
        self.image_up, self.context_up = (nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Sigmoid()) for _ in range(2))
        self.init_h, self.init_c = nn.Linear(width, width), nn.Linear(width, width)
        self.dec_lstm = nn.LSTM(width, width, batch_first=True)
        self.vocab_out = nn.Linear(width, vocab)

    def decode(self, fc: nn.Linear, up: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
        return up(fc(z).view(-1, *self.start))[..., : self.size[0], : self.size[1]]

    def forward(self, frames: torch.Tensor, texts: torch.Tensor, target_frame: torch.Tensor,
                target_text: torch.Tensor) -> torch.Tensor:
        batch, count = frames.shape[:2]
        content = self.content_fc(self.content(frames.flatten(0, 1))).view(batch, count, -1)
        context = self.context_fc(self.context(frames.mean(1))).unsqueeze(1).expand_as(content)
        _, (text_state, _) = self.text_lstm(self.embedding(texts.flatten(0, 1)))
        steps = torch.cat([content, context, text_state[-1].view(batch, count, -1)], dim=-1)
        outputs, last = self.gru(steps)
        scores = self.att_score(torch.tanh(self.att_keys(outputs) + self.att_query(last[-1]).unsqueeze(1)))
        attended = (F.softmax(scores, dim=1) * outputs).sum(1)
        z = self.to_z(torch.cat([last[-1], attended], dim=-1))
        image = self.decode(self.image_fc, self.image_up, z)
        context_image = self.decode(self.context_dec_fc, self.context_up, z)
        state = (torch.tanh(self.init_h(z)).unsqueeze(0), torch.tanh(self.init_c(z)).unsqueeze(0))
        decoded, _ = self.dec_lstm(self.embedding(target_text[:, :-1]), state)
        logits = self.vocab_out(decoded)
        text = F.cross_entropy(logits.flatten(0, 1), target_text[:, 1:].flatten(), ignore_index=0)
        return F.l1_loss(image, target_frame) + text + 0.2 * F.mse_loss(context_image, frames.mean(1))


# --------------------------------------------------------------------------- measurements


def experiment_speed(experiment: str, data: str, steps: int) -> dict:
    """Training and evaluation stories/s of ``experiment`` at the cpu scale."""
    cfg = load_experiment_config(experiment, "cpu", overrides={"data.source": data, "train.device": "cpu"})
    prepared = prepare_data(cfg.data, progress=False)
    torch.manual_seed(0)
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    model.precompute(prepared.train)  # as training does: what is fixed per window, once
    optimizer = make_optimizer(model, cfg.train)
    batches = iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True)
    wait = compute = 0.0
    stories = 0
    model.train()
    for step in range(steps + 1):  # step 0 warms up and is not counted
        started = cpu_seconds()
        batch = next(batches, None)
        if batch is None:
            batches = iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True, epoch=step)
            batch = next(batches)
        loaded = cpu_seconds()
        loss = weighted_loss(model(batch).losses, cfg.train, cfg.train.kl_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            wait += loaded - started
            compute += cpu_seconds() - loaded
            stories += batch["target_frame"].shape[0]
    test = prepared.test.head(max(cfg.eval.batch_size, 64))
    started = cpu_seconds()
    evaluation.evaluate(model, test, prepared.tokenizer, cfg)
    eval_seconds = cpu_seconds() - started
    return {
        "experiment": experiment,
        "parameters": count_parameters(model),
        "widths": f"{cfg.model.embedding_dim}/{cfg.model.lstm_layers}x{cfg.model.text_hidden}",
        "train_stories_per_s": stories / (wait + compute),
        "eval_stories_per_s": len(test) / eval_seconds,
        "data_wait_share": wait / (wait + compute),
    }


def published_speed(data: str, steps: int, full_length_texts: bool) -> dict:
    """``baseline`` and :class:`PlainCourseModel` at the published configuration, alternately."""
    cfg = load_experiment_config("baseline", "full", overrides={
        "data.source": data, "train.device": "cpu", "data.max_text_length": PUBLISHED_TEXT_LENGTH})
    prepared = prepare_data(cfg.data, progress=False)
    split = prepared.train
    size = split.image_size
    torch.manual_seed(0)
    ours = build_model(cfg, BERT_VOCABULARY, size)
    plain = PlainCourseModel(BERT_VOCABULARY, size)
    ours_optimizer, plain_optimizer = make_optimizer(ours, cfg.train), torch.optim.Adam(plain.parameters(), lr=1e-3)
    generator = np.random.default_rng(0)
    batches = []
    for _ in range(steps + 1):
        batch = make_batch(split, generator.choice(len(split), cfg.train.batch_size, replace=False))
        if full_length_texts:  # every description fills all 120 tokens: nothing to trim
            for key, shape in (("context_text_ids", (cfg.train.batch_size, 4)), ("target_text_ids", (cfg.train.batch_size,))):
                batch[key] = torch.from_numpy(generator.integers(1, BERT_VOCABULARY, (*shape, PUBLISHED_TEXT_LENGTH)))
        batches.append(batch)

    def padded(ids: torch.Tensor) -> torch.Tensor:  # the plain model sees the cache's full width
        return F.pad(ids, (0, PUBLISHED_TEXT_LENGTH - ids.shape[-1]))

    def ours_step(batch: dict) -> None:
        _step(ours, ours_optimizer, cfg, batch)

    def plain_step(batch: dict) -> None:
        loss = plain(batch["context_frames"], padded(batch["context_text_ids"]), batch["target_frame"],
                     padded(batch["target_text_ids"]))
        plain_optimizer.zero_grad()
        loss.backward()
        plain_optimizer.step()

    seconds = alternate({"plain": plain_step, "ours": ours_step}, batches)
    stories = cfg.train.batch_size
    return {
        "texts": "every description 120 tokens" if full_length_texts else "the data's own descriptions",
        "mean_text_tokens": float(np.mean([(b["context_text_ids"] != 0).sum(-1).float().mean().item() for b in batches])),
        "ours_parameters": count_parameters(ours),
        "plain_parameters": sum(p.numel() for p in plain.parameters()),
        "ours_stories_per_s": stories / seconds["ours"],
        "plain_stories_per_s": stories / seconds["plain"],
        "ratio": seconds["plain"] / seconds["ours"],
        "profile": lambda: profile_step(ours_step, batches[1:4]),
    }


def step_speed(data: str, steps: int, experiment: str = "enhanced") -> dict:
    """Training steps of ``experiment`` at the cpu scale: miniature against published widths."""
    models, optimizers, configs = {}, {}, {}
    for name in ("miniature", "published"):
        overrides = {"data.source": data, "train.device": "cpu"}
        if name == "published":
            full = load_experiment_config(experiment, "full").model
            overrides.update({"model.embedding_dim": full.embedding_dim, "model.text_hidden": full.text_hidden})
        configs[name] = cfg = load_experiment_config(experiment, "cpu", overrides=overrides)
        prepared = prepare_data(cfg.data, progress=False)
        torch.manual_seed(0)
        models[name] = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size).train()
        optimizers[name] = make_optimizer(models[name], cfg.train)
    batches = [batch for _, batch in zip(range(steps + 1), iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True))]

    def stepper(name: str) -> Callable[[dict], None]:
        return lambda batch: _step(models[name], optimizers[name], configs[name], batch)

    seconds = alternate({name: stepper(name) for name in ("published", "miniature")}, batches)
    summary = (f"{experiment} at the cpu scale, batch {cfg.train.batch_size}: a training step takes "
               f"{seconds['miniature']:.2f} s with the miniature text side (128 / 2x128), {seconds['published']:.2f} s "
               f"with the published one (512 / 2x256): {seconds['published'] / seconds['miniature']:.2f}x.")
    return {"summary": summary, "profile": lambda: profile_step(stepper("miniature"), batches[1:4])}


def fixed_work_speed(data: str, steps: int, experiment: str = "shots") -> dict:
    """Training steps of the learning family with the work that does not change between epochs
    done once (the motion features precomputed per split) and the 0-weighted context head run
    without a graph, against both as before (motion measured every step, the head's backward
    run into the encoders), alternately on the same batches."""
    def as_before(model: nn.Module) -> None:
        model.context_head_learns = True  # a graph: the 0-weighted term's backward runs through the head

    row = step_two_ways(data, steps, experiment, as_before,
                        before_batch=lambda batch: {key: value for key, value in batch.items() if key != CONTEXT_MOTION})
    row["summary"] = (
        f"{experiment} at the cpu scale, batch {row['batch']}: a training step takes {row['now_s']:.2f} s with the motion "
        f"features precomputed per split ({row['precompute_s']:.1f} s once for {row['windows']} windows) and the "
        f"0-weighted context head without a graph, {row['before_s']:.2f} s as before: {row['ratio']:.2f}x.")
    return row


def attention_speed(data: str, steps: int, experiment: str = "shots_crossmodal") -> dict:
    """Training steps of ``experiment`` with :class:`CrossModalAttention` as it runs (no cell,
    key or value formed per cell or token) against its ``plain_forward`` (``nn.MultiheadAttention``
    over every cell and token), alternately on the same batches from the same weights."""
    def as_before(model: nn.Module) -> None:
        model.cross_modal.forward = model.cross_modal.plain_forward

    row = step_two_ways(data, steps, experiment, as_before)
    row["summary"] = (
        f"{experiment} at the cpu scale, batch {row['batch']}: a training step takes {row['now_s']:.2f} s with the "
        f"cross-modal attention computed in its cheaper order, {row['before_s']:.2f} s with nn.MultiheadAttention "
        f"over every cell and token: {row['ratio']:.2f}x.")
    return row


def step_two_ways(
    data: str, steps: int, experiment: str, as_before: Callable[[nn.Module], None],
    before_batch: Callable[[dict], dict] = lambda batch: batch,
) -> dict:
    """A training step of ``experiment`` at the cpu scale as the code runs it ("now") and on a
    copy of the same weights that ``as_before`` changes back ("before", fed ``before_batch`` of
    each batch), alternately on the same batches: mean CPU seconds of each, their ratio, and a
    profile of "now"."""
    cfg = load_experiment_config(experiment, "cpu", overrides={"data.source": data, "train.device": "cpu"})
    prepared = prepare_data(cfg.data, progress=False)
    torch.manual_seed(0)
    now = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size).train()
    started = cpu_seconds()
    now.precompute(prepared.train)
    precompute_seconds = cpu_seconds() - started
    before = copy.deepcopy(now)
    as_before(before)
    optimizers = {"now": make_optimizer(now, cfg.train), "before": make_optimizer(before, cfg.train)}
    batches = [batch for _, batch in zip(range(steps + 1), iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True))]
    steppers = {"before": lambda batch: _step(before, optimizers["before"], cfg, before_batch(batch)),
                "now": lambda batch: _step(now, optimizers["now"], cfg, batch)}
    seconds = alternate(steppers, batches)
    return {"batch": cfg.train.batch_size, "now_s": seconds["now"], "before_s": seconds["before"],
            "ratio": seconds["before"] / seconds["now"], "precompute_s": precompute_seconds,
            "windows": len(prepared.train), "profile": lambda: profile_step(steppers["now"], batches[1:4])}


def alternate(steps: dict[str, Callable[[dict], None]], batches: list[dict]) -> dict[str, float]:
    """Mean CPU seconds of each step over ``batches[1:]`` (batch 0 warms up), the steps taking
    turns on each batch in alternating order, so that a machine's drift affects all alike."""
    names = list(steps)
    seconds = dict.fromkeys(names, 0.0)
    for index, batch in enumerate(batches):
        for name in (names[::-1] if index % 2 else names):
            started = cpu_seconds()
            steps[name](batch)
            if index:
                seconds[name] += cpu_seconds() - started
    return {name: total / max(1, len(batches) - 1) for name, total in seconds.items()}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, cfg, batch: dict) -> None:
    loss = weighted_loss(model(batch).losses, cfg.train, 0.0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def eval_speed(data: str, windows: int = 128, repeats: int = 4, experiment: str = "vae") -> dict:
    """Evaluation's model work with one encoding per batch against one per call (as before)."""
    cfg = load_experiment_config(experiment, "cpu", overrides={"data.source": data, "train.device": "cpu"})
    prepared = prepare_data(cfg.data, progress=False)
    torch.manual_seed(0)
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size).eval()
    test, eos, length = prepared.test.head(windows), prepared.tokenizer.eos_id, cfg.eval.max_generation_length

    def encoding_per_call() -> None:
        for batch in iterate_batches(test, cfg.eval.batch_size):
            model(batch)
            model.generate_text(batch, length, eos_id=eos)
            model.sample_frames(batch, cfg.model.vae_samples)

    def encoding_once() -> None:
        for batch in iterate_batches(test, cfg.eval.batch_size):
            encoded = model.encode(batch, sample=False)
            model(batch, encoded=encoded)
            model.generate_text(batch, length, eos_id=eos, encoded=encoded)
            model.sample_frames(batch, cfg.model.vae_samples, encoded=encoded)

    seconds = {"per_call": 0.0, "once": 0.0}
    functions = {"per_call": encoding_per_call, "once": encoding_once}
    with torch.no_grad():
        for repeat in range(repeats):
            for name in (("per_call", "once") if repeat % 2 == 0 else ("once", "per_call")):
                started = cpu_seconds()
                functions[name]()
                seconds[name] += cpu_seconds() - started
    return {"experiment": experiment, "windows": len(test), "per_call_s": seconds["per_call"] / repeats,
            "once_s": seconds["once"] / repeats, "ratio": seconds["per_call"] / seconds["once"]}


def profile_step(step: Callable[[dict], None], batches: list[dict], rows: int = 10) -> str:
    """Operators of a few training steps by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for batch in batches:
            step(batch)
    return recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def shift_speed(data: str, windows: int, repeats: int) -> dict:
    """Vectorised against reference shift search on frames 3 → 4 of the first test windows."""
    cfg = load_experiment_config("baseline", "cpu", overrides={"data.source": data})
    split = prepare_data(cfg.data, progress=False).test.head(windows)
    batch = make_batch(split, np.arange(len(split)))
    before, after = batch["context_frames"][:, 2], batch["context_frames"][:, 3]
    seconds = {"reference": 0.0, "vectorised": 0.0}
    results = {}
    functions = {"reference": classical.estimate_shift_reference, "vectorised": classical._search_shifts}  # no cache
    for repeat in range(repeats):
        for name in (("reference", "vectorised") if repeat % 2 == 0 else ("vectorised", "reference")):
            started = cpu_seconds()
            results[name] = functions[name](before, after)
            seconds[name] += cpu_seconds() - started
    agree = (results["reference"][0] == results["vectorised"][0]).all(dim=1)
    return {"windows": len(split), "reference_s": seconds["reference"] / repeats,
            "vectorised_s": seconds["vectorised"] / repeats, "ratio": seconds["reference"] / seconds["vectorised"],
            "same_shift": int(agree.sum()), "score_max_difference": float((results["reference"][1] - results["vectorised"][1]).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--only", nargs="*", default=None, help="experiments of the 'experiments' part")
    parts = ["experiments", "step", "fixed", "attention", "published", "eval", "shift"]
    parser.add_argument("--parts", nargs="*", default=parts, choices=parts)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); CPU seconds (user + sys)", flush=True)
    if "experiments" in args.parts:
        print(f"\n{'experiment':18} {'parameters':>11} {'text':>9} {'train st/s':>10} {'eval st/s':>10} {'data wait':>9}")
        for experiment in args.only or available_experiments():
            row = experiment_speed(experiment, args.data, args.steps)
            print(f"{row['experiment']:18} {row['parameters']:>11,} {row['widths']:>9} {row['train_stories_per_s']:>10.1f} "
                  f"{row['eval_stories_per_s']:>10.1f} {row['data_wait_share']:>9.1%}", flush=True)
    for part, measure in (("step", step_speed), ("fixed", fixed_work_speed), ("attention", attention_speed)):
        if part in args.parts:  # one step two ways, side by side
            row = measure(args.data, args.steps)
            print(f"\n{row['summary']} Where the step's time goes:", flush=True)
            print(row["profile"](), flush=True)
    if "published" in args.parts:
        print("\nbaseline at the published configuration (vocabulary 30,522, 120 tokens, batch 8, 60x125), training:")
        for full_length in (False, True):
            row = published_speed(args.data, args.steps, full_length)
            print(f"  {row['texts']} (mean {row['mean_text_tokens']:.0f} tokens): storylib {row['ours_stories_per_s']:.1f} "
                  f"stories/s ({row['ours_parameters']:,} parameters), plain course model {row['plain_stories_per_s']:.1f} "
                  f"stories/s ({row['plain_parameters']:,}): {row['ratio']:.2f}x", flush=True)
            print(row["profile"](), flush=True)
    if "eval" in args.parts:
        row = eval_speed(args.data)
        print(f"\nevaluation's model work, {row['experiment']} on {row['windows']} test windows: encoding per call "
              f"{row['per_call_s']:.2f} s, once per batch {row['once_s']:.2f} s: {row['ratio']:.2f}x", flush=True)
    if "shift" in args.parts:
        row = shift_speed(args.data, 64, 3)
        print(f"\nshift search, frames 3 -> 4 of {row['windows']} test windows, 533 shifts: reference "
              f"{row['reference_s']:.2f} s, vectorised {row['vectorised_s']:.2f} s: {row['ratio']:.2f}x; same shift in "
              f"{row['same_shift']} of {row['windows']} windows, scores differ by at most {row['score_max_difference']:.1e}")


if __name__ == "__main__":
    main()
