"""The update engine's rule read element by element, in the gateware's order: the
independent reference both the golden engine (test_update_engine.py) and the training loop
built on it (test_engine_training.py) are checked against."""

from golden.update_engine import Request


def scalar_rule(acc: list[list[int]], t: int, margin: int, logits, y: int, x, words: int,
                lanes: int, acc_min: int = -2048, acc_max: int = 2047) -> list[Request]:
    """One image: its requests; `acc` (lists of ints) updated in place. A label outside the
    logits (no class) asks for nothing."""
    logits = [int(v) for v in logits]
    if not 0 <= y < len(logits):
        return []
    j = None
    for k in range(len(logits)):
        if k != y and (j is None or logits[k] > logits[j]):
            j = k
    if logits[y] - logits[j] > margin:
        return []
    reqs = []
    for w in range(words):
        for row, sign in ((y, 1), (j, -1)):
            for c in range(lanes):
                i = c * words + w
                a = min(max(acc[row][i] + sign * int(x[i]), acc_min), acc_max)
                if a >= t:
                    a -= t
                    reqs.append(Request(row, i, False))
                elif a <= -t:
                    a += t
                    reqs.append(Request(row, i, True))
                acc[row][i] = a
    return reqs
