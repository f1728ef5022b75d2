"""best.pt as a second name of last.pt: stored once, and unchanged when last.pt moves on."""

import torch

from storylib.training import link_checkpoint, load_checkpoint, save_checkpoint


def test_linked_best_keeps_its_epoch_when_last_is_saved_again(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(last, {"model": {"w": torch.ones(3)}, "epoch": 1})
    link_checkpoint(last, best)
    assert best.stat().st_ino == last.stat().st_ino  # one file, two names
    save_checkpoint(last, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    assert load_checkpoint(best)["epoch"] == 1 and torch.equal(load_checkpoint(best)["model"]["w"], torch.ones(3))
    assert load_checkpoint(last)["epoch"] == 2
    link_checkpoint(last, best)  # an improved epoch replaces the old best
    assert load_checkpoint(best)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left
