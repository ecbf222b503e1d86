"""One module per lab: ``labNN.py`` registers the exercises of the notebook ``NN_topic.ipynb``.

``qlearn.grading.EXERCISES`` imports every ``labNN`` module here on first use (found with
``pkgutil``), so adding a lab means adding a file, nothing else. ``lab00.py`` is the worked example:
a reference function, a ``cases(rng)`` function with random and edge cases, a hint, and the
typical wrong answers that the test suite proves are rejected.
"""

__all__: list[str] = []
