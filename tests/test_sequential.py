"""``--budget auto``: the sequential design's replay, and claims that decide themselves
on real MNIST."""

import json

import pytest
from typer.testing import CliRunner

from normlab.analysis.sequential import Design, replay
from normlab.analysis.verdict import Reading
from normlab.claims.auto import auto_study, design_of, first_seed, sequential
from normlab.claims.definitions import CLAIMS
from normlab.cli import app
from normlab.errors import InputError
from normlab.spec.settings import SEED


def test_replay_keeps_first_decided_readings_and_stops_when_all_are_decided():
    said = {4: {"a": Reading.OPEN, "b": Reading.FOR},
            6: {"a": Reading.OPEN, "b": Reading.AGAINST},  # b's first reading stands
            9: {"a": Reading.NEGLIGIBLE, "b": Reading.OPEN}}  # fmt: skip
    looks = replay(Design(20), lambda n, level: (n, said[n]))
    assert [look.seeds for look in looks] == [4, 6, 9]
    assert looks[-1].readings == {"a": Reading.NEGLIGIBLE, "b": Reading.FOR}
    assert [look.stopped for look in looks] == ["", "", "decided"]
    # data that stop short: the looks so far, the design going on
    partial = replay(Design(20), lambda n, level: (n, said[n]) if n < 9 else None)
    assert [look.stopped for look in partial] == ["", ""]
    # never decided: it stops at the cap
    open_ = replay(Design(9), lambda n, level: (n, {"a": Reading.OPEN}))
    assert [(look.seeds, look.stopped) for look in open_] == [(4, ""), (6, ""), (9, "cap")]


def test_auto_designs_draw_fresh_seeds_and_name_their_studies():
    design = design_of("auto")
    assert design == Design(20) and design_of("auto30") == Design(30)
    assert design_of("quick") is None
    spec = auto_study(CLAIMS[4], SEED, design, 6)
    assert spec.name == "claim-04-regularization-auto20"
    assert spec.grid["seed"] == list(range(20_000, 20_006)) and first_seed(design) == 20_000
    assert not sequential(CLAIMS[13]) and sequential(CLAIMS[4])


def test_a_bad_cap_is_a_clear_error(tmp_path):
    from normlab.app.api import judge_claims

    with pytest.raises(InputError, match="at least 4 seeds"):
        judge_claims([7], "auto", max_seeds=2, db=tmp_path / "x.db")
    done = CliRunner().invoke(app, ["claims", "--budget", "auto", "--max-seeds", "2", "--db",
                                    str(tmp_path / "x.db")])  # fmt: skip
    assert done.exit_code == 2 and "at least 4 seeds" in done.output


@pytest.mark.slow
def test_claims_decide_themselves_on_real_mnist(tmp_path, data_root):
    """Claim 7 on real MNIST with a cap of 6: rounds of fresh seeds until decided; the
    JSON says how many seeds and why it stopped; the report reads the same verdict back
    from the database, and a second call trains nothing."""
    db = tmp_path / "auto.db"
    args = ["claims", "--only", "7", "--budget", "auto", "--max-seeds", "6", "--json",
            "--db", str(db), "--data-dir", str(data_root)]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    (v,) = json.loads(done.output[done.output.index("[") :])
    assert v["stopped"] in ("decided", "cap") and v["seeds_used"] in Design(6).seeds
    assert [look["seeds"] for look in v["looks"]] == list(Design(6).seeds[: len(v["looks"])])
    assert v["regime"]["seeds"] == v["seeds_used"]

    from normlab.analysis.records import records
    from normlab.claims.stored import stored_claims
    from normlab.store.db import Store

    with Store(db) as store:
        runs = records(store, "claim-07-inference-overhead-auto6")
        (sc,) = stored_claims(store, "auto6", [7])
    assert {r.config.seed for r in runs} == set(range(6000, 6000 + v["seeds_used"]))
    assert sc.result.verdict == v["verdict"] and sc.result.seeds_used == v["seeds_used"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "to train" not in again.output
    assert json.loads(again.output[again.output.index("[") :]) == [v]
