"""A committed, resumable study: the many-seed runs behind the course's verdicts.

The notebooks can afford two or three seeds on two CPU cores; a verdict needs more. A study
config (``studies/course_study.json``) names a grid (``config``), the runner appends each
finished run to a JSON-lines results file as one record with its full config, seed, dev
curve, per-fact test outcomes (for paired statistics), wall time, commit and machine
(``runner``, ``records``), and ``Study`` reads the records back for statistics (``results``).
"""

from ptlib.course.study.config import METHODS, RunSpec, StudyConfig, parse_only, plan
from ptlib.course.study.records import append_result, read_results, run_key
from ptlib.course.study.results import Study, compute_table
from ptlib.course.study.runner import run_one, run_study

__all__ = ["METHODS", "RunSpec", "Study", "StudyConfig", "append_result", "parse_only", "plan",
           "compute_table", "read_results", "run_key", "run_one", "run_study"]
