"""Training and evaluation speed of every experiment at a scale (not a test).

    python benchmarks/speed.py --steps 10 [--data synthetic] [--scale cpu] [--only baseline both]

Prints, per experiment: parameters, training stories/s (forward + backward + step), evaluation
stories/s (forward + greedy generation) and the share of training step time spent waiting for
the next batch. Honours STORYLIB_THREADS like training does.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from storylib.config import available_experiments, load_experiment_config
from storylib.data.dataset import iterate_batches
from storylib.data.prepare import prepare_data
from storylib.models import build_model, count_parameters
from storylib.training import apply_thread_setting, make_optimizer, resolve_device, weighted_loss


def measure(experiment: str, scale: str, data: str, steps: int) -> dict:
    cfg = load_experiment_config(experiment, scale, overrides={"data.source": data})
    prepared = prepare_data(cfg.data, progress=False)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size).to(device)
    optimizer = make_optimizer(model, cfg.train)
    batches = iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True, device=device)
    wait = compute = 0.0
    stories = 0
    model.train()
    for step in range(steps + 1):  # step 0 warms up and is not counted
        started = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            batches = iterate_batches(prepared.train, cfg.train.batch_size, shuffle=True, epoch=step, device=device)
            batch = next(batches)
        loaded = time.perf_counter()
        loss = weighted_loss(model(batch).losses, cfg.train, cfg.train.kl_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            wait += loaded - started
            compute += time.perf_counter() - loaded
            stories += batch["target_frame"].shape[0]
    model.eval()
    evaluated, started = 0, time.perf_counter()
    with torch.no_grad():
        for batch in itertools.islice(iterate_batches(prepared.test, cfg.eval.batch_size, device=device), max(1, steps // 4)):
            model(batch)
            model.generate_text(batch, cfg.eval.max_generation_length, eos_id=prepared.tokenizer.eos_id)
            evaluated += batch["target_frame"].shape[0]
    eval_seconds = time.perf_counter() - started
    return {
        "experiment": experiment,
        "parameters": count_parameters(model),
        "train_stories_per_s": stories / (wait + compute),
        "eval_stories_per_s": evaluated / eval_seconds,
        "data_wait_share": wait / (wait + compute),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    apply_thread_setting()
    print(f"{'experiment':18} {'parameters':>11} {'train st/s':>10} {'eval st/s':>10} {'data wait':>9}")
    for experiment in args.only or available_experiments():
        row = measure(experiment, args.scale, args.data, args.steps)
        print(
            f"{row['experiment']:18} {row['parameters']:>11,} {row['train_stories_per_s']:>10.1f} "
            f"{row['eval_stories_per_s']:>10.1f} {row['data_wait_share']:>9.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
