"""What the suite writes and reads back, torch-free: the results contract (:mod:`.contract`)."""
