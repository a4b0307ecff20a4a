"""Reference solutions of the exercises: what a check compares an answer with.

Not part of the learner's API. A check imports its day's module here lazily, inside the
check, so ``grading.day1`` and its neighbours expose scenarios and checks but no solver; the
feedback of a check names what is right or wrong, never a reference value of a hidden case.
Batch grading (``cloudmart grade``) loads the same modules. A learner who reads the package
can still find them: this keeps the answer out of the learner's namespace and out of the
notebooks, it does not make it secret (see the grading README).
"""
