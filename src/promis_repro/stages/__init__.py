"""The pipeline's stages: one module per command and rule, each a function of plain arguments that writes files.

| module      | command(s)                                   | rule(s)                          |
|-------------|----------------------------------------------|----------------------------------|
| `data`      | `data split`, `data references`              | `data_split`                     |
| `models`    | `models fetch`                               | `fetch_model`                    |
| `generate`  | `generate`                                   | (none: direct generation only)   |
| `train`     | `train`                                      | `train_agent`                    |
| `run`       | `run`                                        | `run_cell`                       |
| `evaluate`  | `evaluate`, `evaluate-cell`                  | `evaluate_cell`                  |
| `aggregate` | `aggregate`                                  | `aggregate`                      |
| `report`    | `stats`, `tables`, `figures`, `provenance`   | `stats`, `tables`, `figures`, `provenance` |

``cli.py`` parses arguments and calls these; each prints one line saying what it wrote. The science
lives below them (``data``, ``evaluation``, ``generation``, ``strategies``, ``agent``, ``analysis``).
"""
