"""The comparison report from a results folder, torch-free: statistics (:mod:`.stats`), tables
(:mod:`.tables`), the answer first (:mod:`.answer`), figures (:mod:`.figures`) and the files
``results.csv``, ``Results.md`` and ``report.html`` (:mod:`.files`); :mod:`storylib.reporting`
gathers them for notebook 03."""
