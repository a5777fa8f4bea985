"""Fill the statistics block of data/README.md from a run: counts per split, the fraction of
objects that are one SmolLM2 token, the majority-class baseline and each manual template's test
P@1 on the embedded model.

    python bench/data_card.py          # rewrites the block between the STATS markers
"""

import json
import re
from pathlib import Path

from ptlib import list_tasks, load_lm, load_task, manual_prompts
from ptlib.data import DATA_DIR, SPLITS
from ptlib.template import encode_target

CARD = DATA_DIR / "README.md"


def task_stats(lm, name: str) -> dict:
    task = load_task(name)
    single = sum(len(encode_target(lm.tokenizer, f.y)) == 1 for f in task.facts)
    manual = manual_prompts(lm, task, "test")
    return {
        "task": name,
        "counts": {s: len(task.split(s)) for s in SPLITS},
        "single_token_fraction": single / len(task.facts),
        "majority_object": task.majority_object(),
        "majority_test_p_at_1": task.majority_p_at_1("test"),
        "manual_test": manual,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| task | train | dev | test | one-token objects | majority (test P@1) | "
        "manual test P@1: best | worst | best template |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        manual = sorted(row["manual_test"], key=lambda r: r["p_at_1"])
        counts = row["counts"]
        lines.append(
            f"| `{row['task']}` | {counts['train']} | {counts['dev']} | {counts['test']} | "
            f"{row['single_token_fraction']:.2f} | {row['majority_test_p_at_1']:.2f} "
            f"({row['majority_object']}) | {manual[-1]['p_at_1']:.2f} | "
            f"{manual[0]['p_at_1']:.2f} | `{manual[-1]['template']}` |"
        )
    return "\n".join(lines)


def main() -> None:
    lm = load_lm()
    rows = [task_stats(lm, name) for name in list_tasks()]
    block = (
        "<!-- STATS:BEGIN -->\n"
        "Measured by `python bench/data_card.py` on the embedded SmolLM2-135M-Instruct "
        "(fp32, CPU). P@1 is exact match of every object token under greedy teacher forcing.\n\n"
        f"{table(rows)}\n<!-- STATS:END -->"
    )
    text = CARD.read_text(encoding="utf-8")
    text = re.sub(r"<!-- STATS:BEGIN -->.*?<!-- STATS:END -->", block, text, flags=re.S)
    CARD.write_text(text, encoding="utf-8")
    Path("bench/data_card.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
