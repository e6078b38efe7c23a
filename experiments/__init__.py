"""The paper's experiments on top of the library: the catalog, planning and run status, single runs (``train``),
sweeps on this machine or SLURM (``sweep``), and results: ``aggregate`` -> CSVs, ``plots``, ``notebooks``,
``report``. Experiments, datasets and methods are declared once, where they are registered (``catalog``,
``data``, ``methods``; docs/extending.md)."""
