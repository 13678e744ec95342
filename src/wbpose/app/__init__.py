"""Applications, the top layer: one module per command, each with the ``main`` of its console command
(``pyproject.toml`` ``[project.scripts]``; ``scripts/<name>.py`` runs the same ``main``), and the Hydra config
helpers (``config``, ``extras``, ``startup``, ``resume``)."""
