"""Self-check for the exercises at the end of each notebook.

A learner writes an answer into a variable (``None`` until attempted) and the self-check cell
calls ``check``: an unattempted exercise prints a reminder (so notebooks run top to bottom in
CI), a wrong answer raises ``AssertionError`` with a hint, a right one prints a tick.
"""

import math


def check(name: str, answer, expected, tolerance: float = 0.0, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers within a relative ``tolerance``).

    Returns True when correct, False when not attempted (``answer is None``).
    """
    if answer is None:
        print(f"{name}: not attempted yet (set your answer, then rerun this cell)")
        return False
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        ok = math.isclose(float(answer), float(expected), rel_tol=tolerance, abs_tol=tolerance)
    else:
        ok = answer == expected
    if not ok:
        raise AssertionError(f"{name}: {answer!r} is not right yet. {hint}".strip())
    print(f"{name}: correct")
    return True
