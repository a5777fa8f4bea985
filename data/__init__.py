"""The course's task data, installed inside ptlib as the package ``ptlib.tasks``.

pyproject.toml maps this folder to ``ptlib.tasks`` (package-dir), so a wheel carries it and
``ptlib.data`` finds it with ``importlib.resources`` wherever ptlib is installed: ``tasks.json``
indexes the tasks, ``tasks/<name>.jsonl`` holds their facts and ``README.md`` is the data card.
"""
