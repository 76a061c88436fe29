"""What a report says was run: the facts of a set of runs (where and with what they
trained, how long, when) and the command that reproduces a stored study."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from pydantic import ValidationError

from normlab.analysis.records import RunRecord, StudyRecord
from normlab.claims.definitions import CLAIMS
from normlab.spec.study import BUDGETS, StudySpec
from normlab.types import FINISHED, Status


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "2.5 min", "1.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _values(runs: Sequence[RunRecord], describe) -> str:
    seen = Counter(describe(r) for r in runs if r.environment)
    return "; ".join(f"{v} ({n} runs)" if len(seen) > 1 else v for v, n in seen.items()) or "—"


def run_facts(runs: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """Runs (by outcome), device, software and compute time of ``runs``."""
    status = Counter(r.status for r in runs)
    unfinished = sum(n for s, n in status.items() if s not in FINISHED)
    parts = [f"{status[s]} {s}" for s in (Status.DONE, Status.DIVERGED, Status.FAILED)
             if status[s]]  # fmt: skip
    if unfinished - status[Status.FAILED]:
        parts.append(f"{unfinished - status[Status.FAILED]} not trained yet")
    outcome = ", ".join(parts)

    def device(r: RunRecord) -> str:
        e = r.environment
        where = e.get("gpu") or f"{e.get('cpu', '?')}, {e.get('threads', '?')} threads"
        return f"{e.get('device', '?')} ({where})"

    def software(r: RunRecord) -> str:
        e = r.environment
        return f"normlab {e.get('normlab')}, PyTorch {e.get('torch')}, Python {e.get('python')}"

    seconds = sum(r.seconds or 0.0 for r in runs)
    return [
        ("runs", f"{len(runs)}: {outcome or 'none trained'}"),
        ("device", _values(runs, device)),
        ("software", _values(runs, software)),
        ("compute", f"{duration(seconds)} (the runs' shares of their stacks' wall time)"),
    ]


def study_facts(study: StudyRecord) -> list[tuple[str, str]]:
    """The study's declaration: name, description, what is fixed and what varies."""
    spec = study.spec
    facts = [("study", study.name)]
    if spec.get("description"):
        facts.append(("description", " ".join(str(spec["description"]).split())))
    if study.runs:

        def values(field: str) -> str:
            return " / ".join(dict.fromkeys(str(getattr(r.config, field)) for r in study.runs))

        data = f"{values('dataset')} ({values('inputs')} inputs)"
        facts.append(("data, model", f"{data}, {values('model')}, {values('semantics')} semantics"))
    for key in ("fixed", "grid"):
        if spec.get(key):
            facts.append((key, ", ".join(f"{k} = {json.dumps(v)}" for k, v in spec[key].items())))
    if "procedure" in spec:
        facts.append(("settings", ", ".join(f"{k} = {json.dumps(v)}" for k, v in spec.items())))
    seeds = sorted({r.config.seed for r in study.runs})
    if seeds:
        facts.append(("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))})"))
    facts.append(("recorded", f"{study.created_at} to {study.updated_at} (UTC)"))
    return facts


def reproduce_command(study: StudyRecord, db: str) -> tuple[str, tuple[str, str] | None]:
    """The command that reruns ``study`` into ``db`` (finished runs are reused, so it
    also finishes an interrupted study), and the study file it needs, if any."""
    spec, name = study.spec, study.name
    if spec.get("procedure") == "reproduce":
        sizes = ",".join(map(str, spec["batch_sizes"]))
        return (
            f"normlab reproduce --seeds {spec['seeds']} --epochs {spec['epochs']} "
            f"--batch-sizes {sizes} --inputs {spec['inputs']} --semantics "
            f"{spec['semantics']} --db {db}"
        ), None
    if spec.get("procedure") == "faithful":
        return (
            f"normlab reproduce --faithful --inputs {spec['inputs']} --semantics "
            f"{spec['semantics']} --db {db}"
        ), None
    for budget in BUDGETS:
        ids = [c.id for c in CLAIMS.values() if name == f"claim-{c.study}-{budget}"]
        if ids:
            only = ",".join(map(str, ids))
            return f"normlab claims --budget {budget} --only {only} --db {db}", None
    try:
        text = StudySpec(**spec).to_toml()
    except (TypeError, ValidationError):  # a spec this normlab cannot write back
        return f"normlab run <study file of {name}> --db {db}", None
    return f"normlab run {name}.toml --db {db}", (f"{name}.toml", text)
