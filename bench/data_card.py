"""Fill the statistics block of data/README.md from the files and a run, so the card states no
number by hand: facts and split sizes, facts with accepted alternatives, the fraction of
canonical objects that are one SmolLM2 token, the majority-class baseline, each manual template's
test exact match (EM) and first-token P@1 on the embedded model, and which UN member states each
country task leaves out.

Before loading the model it checks the card against the files: every UN member state a country
task leaves out must be named in that task's section of the card (where its reason is given), and
every subject of a country task must be a UN member (plus Vatican City in country_continent).

    python bench/data_card.py          # check, run, rewrite the block between the STATS markers
    python bench/data_card.py --check  # only the checks (seconds, no model)
"""

import argparse
import json
import re
import sys
from pathlib import Path

from ptlib import evaluate, list_tasks, load_lm, load_task, parse_template
from ptlib.data import DATA_DIR, SPLITS
from ptlib.template import encode_target

CARD = DATA_DIR / "README.md"
RESULTS = Path(__file__).resolve().parent / "data_card.json"
STATS = re.compile(r"<!-- STATS:BEGIN -->.*?<!-- STATS:END -->", flags=re.S)

# The 193 UN member states, spelt as the card's country conventions spell them.
UN_MEMBERS = (
    "Afghanistan", "Albania", "Algeria", "Andorra", "Angola", "Antigua and Barbuda", "Argentina",
    "Armenia", "Australia", "Austria", "Azerbaijan", "Bahamas", "Bahrain", "Bangladesh",
    "Barbados", "Belarus", "Belgium", "Belize", "Benin", "Bhutan", "Bolivia",
    "Bosnia and Herzegovina", "Botswana", "Brazil", "Brunei", "Bulgaria", "Burkina Faso",
    "Burundi", "Cape Verde", "Cambodia", "Cameroon", "Canada", "Central African Republic", "Chad",
    "Chile", "China", "Colombia", "Comoros", "Republic of the Congo", "Costa Rica", "Ivory Coast",
    "Croatia", "Cuba", "Cyprus", "Czech Republic", "Democratic Republic of the Congo", "Denmark",
    "Djibouti", "Dominica", "Dominican Republic", "Ecuador", "Egypt", "El Salvador",
    "Equatorial Guinea", "Eritrea", "Estonia", "Eswatini", "Ethiopia", "Fiji", "Finland",
    "France", "Gabon", "Gambia", "Georgia", "Germany", "Ghana", "Greece", "Grenada", "Guatemala",
    "Guinea", "Guinea-Bissau", "Guyana", "Haiti", "Honduras", "Hungary", "Iceland", "India",
    "Indonesia", "Iran", "Iraq", "Ireland", "Israel", "Italy", "Jamaica", "Japan", "Jordan",
    "Kazakhstan", "Kenya", "Kiribati", "Kuwait", "Kyrgyzstan", "Laos", "Latvia", "Lebanon",
    "Lesotho", "Liberia", "Libya", "Liechtenstein", "Lithuania", "Luxembourg", "Madagascar",
    "Malawi", "Malaysia", "Maldives", "Mali", "Malta", "Marshall Islands", "Mauritania",
    "Mauritius", "Mexico", "Federated States of Micronesia", "Moldova", "Monaco", "Mongolia",
    "Montenegro", "Morocco", "Mozambique", "Myanmar", "Namibia", "Nauru", "Nepal", "Netherlands",
    "New Zealand", "Nicaragua", "Niger", "Nigeria", "North Korea", "North Macedonia", "Norway",
    "Oman", "Pakistan", "Palau", "Panama", "Papua New Guinea", "Paraguay", "Peru", "Philippines",
    "Poland", "Portugal", "Qatar", "Romania", "Russia", "Rwanda", "Saint Kitts and Nevis",
    "Saint Lucia", "Saint Vincent and the Grenadines", "Samoa", "San Marino",
    "São Tomé and Príncipe", "Saudi Arabia", "Senegal", "Serbia", "Seychelles", "Sierra Leone",
    "Singapore", "Slovakia", "Slovenia", "Solomon Islands", "Somalia", "South Africa",
    "South Korea", "South Sudan", "Spain", "Sri Lanka", "Sudan", "Suriname", "Sweden",
    "Switzerland", "Syria", "Tajikistan", "Tanzania", "Thailand", "East Timor", "Togo", "Tonga",
    "Trinidad and Tobago", "Tunisia", "Turkey", "Turkmenistan", "Tuvalu", "Uganda", "Ukraine",
    "United Arab Emirates", "United Kingdom", "United States", "Uruguay", "Uzbekistan",
    "Vanuatu", "Venezuela", "Vietnam", "Yemen", "Zambia", "Zimbabwe",
)
assert len(set(UN_MEMBERS)) == 193
COUNTRY_TASKS = {"capital_of": (), "country_language": (), "country_continent": ("Vatican City",),
                 "country_currency": ()}


# --- checks that need no model --------------------------------------------------------------

def card_section(card: str, task: str) -> str:
    """The text of the card's ``### `task` ...`` section, up to the next heading, with line
    breaks and indentation folded to single spaces (names may wrap across lines)."""
    match = re.search(rf"^### `{task}`.*?(?=^##)", card, flags=re.S | re.M)
    if not match:
        raise SystemExit(f"{CARD}: no section '### `{task}`'")
    return re.sub(r"\s+", " ", match.group(0))


def names(text: str, country: str) -> bool:
    """Whether ``text`` names ``country`` as a whole name (not inside a longer UN name such as
    'Guinea' inside 'Papua New Guinea', or 'Niger' inside 'Nigeria')."""
    for longer in UN_MEMBERS:
        if country in longer and longer != country:
            text = text.replace(longer, "")
    return re.search(rf"(?<![\w-]){re.escape(country)}(?![\w-])", text) is not None


def coverage(card: str) -> dict:
    """Per country task: UN members in the file, those left out, and the problems found."""
    result, problems = {}, []
    for name, also in COUNTRY_TASKS.items():
        subjects = {f.x for f in load_task(name).facts}
        section = card_section(card, name)
        absent = [c for c in UN_MEMBERS if c not in subjects]
        problems += [f"{name}: subject {s!r} is not a UN member state"
                     for s in sorted(subjects - set(UN_MEMBERS) - set(also))]
        problems += [f"{name}: UN member {c!r} is not in the file and not named in the card's "
                     f"section (say why it is left out)" for c in absent if not names(section, c)]
        result[name] = {"in_file": len(subjects & set(UN_MEMBERS)), "absent": absent}
    if problems:
        raise SystemExit("data/README.md does not match the files:\n  " + "\n  ".join(problems))
    return result


# --- measurements ---------------------------------------------------------------------------

def task_stats(lm, name: str) -> dict:
    task = load_task(name)
    single = sum(len(encode_target(lm.tokenizer, f.y)) == 1 for f in task.facts)
    manual = []
    for text in task.templates:
        result = evaluate(lm, parse_template(text), task.split("test"))
        manual.append({"template": text} | result.as_dict()
                      | {"first_token_p_at_1": result.first_token_p_at_1})
    return {
        "task": name,
        "facts": len(task.facts),
        "counts": {s: len(task.split(s)) for s in SPLITS},
        "with_alternatives": sum(bool(f.alternatives) for f in task.facts),
        "single_token_fraction": single / len(task.facts),
        "majority_object": task.majority_object(),
        "majority_test_exact_match": task.majority_exact_match("test"),
        "manual_test": manual,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| task | facts | train | dev | test | with alternatives | one-token objects | "
        "majority (test EM) | manual test EM: best | worst | best template |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        manual = sorted(row["manual_test"], key=lambda r: r["exact_match"])
        counts = row["counts"]
        lines.append(
            f"| `{row['task']}` | {row['facts']} | {counts['train']} | {counts['dev']} | "
            f"{counts['test']} | {row['with_alternatives']} | "
            f"{row['single_token_fraction']:.2f} | {row['majority_test_exact_match']:.2f} "
            f"({row['majority_object']}) | {manual[-1]['exact_match']:.2f} | "
            f"{manual[0]['exact_match']:.2f} | `{manual[-1]['template']}` |"
        )
    return "\n".join(lines)


def template_table(rows: list[dict]) -> str:
    lines = ["| task | template | test EM | first-token P@1 | NLL |", "|---|---|---|---|---|"]
    for row in rows:
        for entry in row["manual_test"]:
            lines.append(f"| `{row['task']}` | `{entry['template']}` | "
                         f"{entry['exact_match']:.2f} | {entry['first_token_p_at_1']:.2f} | "
                         f"{entry['nll']:.2f} |")
    return "\n".join(lines)


def coverage_table(result: dict) -> str:
    lines = ["| task | UN members in the file | left out (each named, with its reason, in the "
             "task's section above) |", "|---|---|---|"]
    for name, entry in result.items():
        lines.append(f"| `{name}` | {entry['in_file']} | {len(entry['absent'])}: "
                     f"{', '.join(entry['absent'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the card (no model)")
    args = parser.parse_args()
    card = CARD.read_text(encoding="utf-8")
    covered = coverage(card)
    print(coverage_table(covered))
    if args.check:
        return
    lm = load_lm()
    rows = [task_stats(lm, name) for name in list_tasks()]
    block = (
        "<!-- STATS:BEGIN -->\n"
        "Measured by `python bench/data_card.py` on the embedded SmolLM2-135M-Instruct "
        "(fp32, CPU), test split. EM (exact match): every object token is the "
        "greedy argmax under teacher forcing, for the canonical object or any accepted "
        "alternative; first-token P@1 likewise takes the best accepted object; NLL is on the "
        "canonical object. One-token objects and the majority class count canonical objects; "
        "the majority baseline scores a hit where the majority object is any accepted object.\n\n"
        f"{table(rows)}\n\n"
        "Each manual template on the test split:\n\n"
        f"{template_table(rows)}\n\n"
        "UN member states per country task:\n\n"
        f"{coverage_table(covered)}\n"
        "<!-- STATS:END -->"
    )
    if not STATS.search(card):
        raise SystemExit(f"{CARD}: no STATS markers")
    CARD.write_text(STATS.sub(lambda _: block, card), encoding="utf-8")
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
