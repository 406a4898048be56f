"""The pipeline's stages: one module per command and rule, each a function of plain arguments that writes files.

- ``data``: ``data split``, ``data references`` (rule ``data_split``)
- ``models``: ``models fetch`` (rule ``fetch_model``), ``models lock`` (no rule: once, online)
- ``generate``: ``generate`` (no rule: direct generation on its own)
- ``train``: ``train`` (rule ``train_agent``)
- ``run``: ``run`` (rule ``run_cell``)
- ``evaluate``: ``evaluate``, ``evaluate-cell`` (rule ``evaluate_cell``)
- ``aggregate``: ``aggregate`` (rule ``aggregate``)
- ``report``: ``stats``, ``tables``, ``figures``, ``provenance``, ``audit`` (rules of the same names;
  ``audit``'s is ``leakage_audit``)
- ``cell``: ``cell`` (rule ``cell_row``: a reviewer's cell, as its row of the tables)
- ``cost``: ``cost`` (no rule: the bill of a grid before it runs)

``cli.py`` parses arguments and calls these; each prints one line saying what it wrote. The science
lives below them (``data``, ``evaluation``, ``generation``, ``strategies``, ``agent``, ``analysis``).
"""
