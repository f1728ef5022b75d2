"""storylib: visual story continuation on StoryReasoning, with honest floors.

Data flow: source → stories → windows → cached tensors → StoryPredictor → Trainer →
metrics beside floors → comparison report and frame browser. See ``README.md``.
"""

__version__ = "0.1.0"
