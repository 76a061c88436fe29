import json
import math

import pytest

from normlab.experiments.plan import (
    MEMORY_BUDGET,
    choose_stack_size,
    physical_memory,
    plan,
    stack_size,
)
from normlab.experiments.reproduce import corrected, faithful
from normlab.models.cnn.settings import CNNSettings
from normlab.models.mlp.settings import MLPSettings
from normlab.spec.config import RunConfig
from normlab.spec.study import StudyError, load_study

GOOD = """
name = "demo"
seeds = 2
[fixed]
inputs = "scaled"
epochs = 1
[grid]
norm = ["none", "batch"]
batch_size = [32, 256]
lr = [1e-3, 1e-2]
"""


def _write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_grid_expands_to_cartesian_product_grouped_by_cohort(tmp_path):
    spec = load_study(_write(tmp_path, GOOD))
    runs = spec.runs()
    assert len(runs) == 2 * 2 * 2 * 2
    assert {r.inputs for r in runs} == {"scaled"}
    units = plan(runs, max_stack=16)
    assert len(units) == 4 and all(len(u.configs) == 4 for u in units)  # seeds x lrs stack
    assert len(plan(runs, max_stack=3)) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name="x"\n[grid]\nnorm=["none","batchy"]',
            "study.toml: grid.norm: Input should be 'none', 'batch', 'layer', 'group', 'rms', "
            "'batch_renorm', 'ghost_batch', 'noisy_batch' or 'virtual_batch' (got 'batchy')",
        ),
        ('name="x"\n[fixed]\nlr=-1', "study.toml: fixed.lr: Input should be greater than 0"),
        ('name="x"\n[fixed]\nlearning_rate=0.1', "study.toml: fixed.learning_rate: unknown field"),
        ('name="x"\n[grid]\nnorm=[]', "study.toml: grid.norm: empty list of values"),
        ('name="x"\n[grid]\nnorm="batch"', "study.toml: grid.norm: Input should be a valid list"),
        ('[grid]\nnorm=["none"]', "study.toml: name: Field required"),
        ('name="x"\ncolour="red"', "study.toml: colour: unknown key"),
        (
            'name="x"\n[fixed]\nnorm="group"\nhidden=[100]',
            "study.toml: groups 32 must divide every layer's width (100,)",
        ),
        (
            'name="x"\n[fixed]\nnorm="batch"\n[grid]\nbatch_size=[1, 8]',
            "study.toml: norm 'batch' needs batch_size >= 2, got 1 (at batch_size=1)",
        ),
        ('name="x"\nseeds=2\n[grid]\nseed=[1]', "give either seeds or a seed field"),
        ("name = ", "study.toml: not valid TOML"),
        ('name="x"\n[fixed]\nstream=1', "study.toml: fixed.stream: unknown field"),
        ('name="x"\n[grid]\ncarried_from=["abc"]', "study.toml: grid.carried_from: unknown field"),
        ('name="x"\n[fixed]\nchannels=[8]', "channels describes a cnn model"),
        ('name="x"\n[fixed]\nprobes=["inference"]', "probe 'inference' folds the norm"),
        ('name="x"\n[fixed]\nprobes=["modes"]', "probe 'modes' is a model family's own"),
        ('name="x"\n[fixed]\nprobes=["ghosts"]', "fixed.probes: unknown probe 'ghosts'"),
        ('name="x"\n[fixed]\nmodel="rnn"',
         "study.toml: fixed.model: Input should be one of 'mlp', 'cnn', 'gan' (got 'rnn')"),
        ('name="x"\n[fixed]\nmodel="cnn"\nkernel=0',
         "study.toml: fixed.kernel: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_files_get_one_line_errors(tmp_path, text, message):
    with pytest.raises(StudyError) as info:
        load_study(_write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "nope.toml")


def test_depth_and_width_shorthands(tmp_path):
    spec = load_study(_write(tmp_path, 'name="d"\n[fixed]\nwidth=64\n[grid]\ndepth=[1,3]'))
    assert [r.hidden for r in spec.runs()] == [(64,), (64, 64, 64)]
    with pytest.raises(StudyError, match="either hidden or depth/width"):
        load_study(_write(tmp_path, 'name="d"\n[fixed]\nwidth=64\nhidden=[3]'))


def test_run_identity_and_semantics_defaults():
    a, b = RunConfig(seed=1), RunConfig(seed=1, init="glorot_uniform")
    assert a.run_id == b.run_id  # init resolved from the keras preset
    assert RunConfig(semantics="torch").init == "torch_default"
    assert RunConfig(seed=1).cohort_key == RunConfig(seed=2, lr=0.1).cohort_key
    assert RunConfig(batch_size=64).cohort_key != RunConfig().cohort_key
    settings = RunConfig(semantics="torch").norm_settings()
    assert (settings.eps, settings.momentum, settings.unbiased_running_var) == (1e-5, 0.1, True)


def test_reproduce_procedures():
    proc = corrected(seeds=3)
    assert len(proc.configs) == 2 * 4 * 3
    assert len(plan(proc.configs)) == 8
    nb = faithful()
    units = plan(nb.configs)
    chains = [u for u in units if u.chain]
    assert len(chains) == 1 and [c.batch_size for c in chains[0].configs] == [32, 64, 128, 256]
    assert all(c.norm == "none" and c.val_size == 0 for c in nb.configs)
    assert nb.cell12[0].carried_from is None and nb.cell12[1].carried_from == nb.cell12[0].run_id


def _size(hidden, n_runs, **options):
    return stack_size(RunConfig(hidden=hidden), n_runs, **options)


def test_stack_size_is_capped_by_stacking_and_memory_and_evened_out():
    narrow = (128,)  # small members: stacking pays up to the cap of 16
    assert _size(narrow, 10) == 10
    assert _size(narrow, 20) == 10  # two stacks of 10, not 16 + 4
    assert _size(narrow, 40) == 14  # three stacks of 14, 14, 12
    assert _size(narrow, 40, max_stack=4) == 4
    family = RunConfig().family
    one = family.member_bytes(RunConfig(hidden=narrow).model_spec(), 32)
    params = family.member_parameters(RunConfig(hidden=narrow).model_spec())
    assert choose_stack_size(params, one, 16, memory_budget=5 * one) == 4
    assert choose_stack_size(params, one, 16, memory_budget=one // 2) == 1
    wide, seed = RunConfig(hidden=(2048,)).model_spec(), RunConfig().model_spec()
    assert family.member_bytes(wide, 32) > 3 * family.member_bytes(seed, 32)
    # where the cost curves stop paying: the seed's width stacks 7, width 2048 not at all
    assert _size((512,), 40) == 7
    assert _size((2048,), 40) == 1
    # on a GPU stacking paid at every width measured: only max_stack and memory limit it
    assert _size((2048,), 40, device_type="cuda") == 14
    assert len(plan([RunConfig(seed=s) for s in range(10)], device_type="cuda")) == 1


def test_the_memory_budget_where_the_system_does_not_say_how_much_it_has(monkeypatch):
    """os.sysconf is POSIX only: without it (Windows) the budget is the 2 GiB default."""
    assert physical_memory() > 0  # this machine says
    wide = RunConfig(hidden=(4096, 4096))
    spec, family = wide.model_spec(), wide.family
    member = family.member_bytes(spec, 32)
    fits = MEMORY_BUDGET // member
    monkeypatch.delattr("os.sysconf")
    assert physical_memory() is None
    size = choose_stack_size(family.member_parameters(spec), member, 40, device_type="cuda")
    assert size == math.ceil(40 / math.ceil(40 / fits)) and size < 16
    sizes = [len(u.configs) for u in plan([RunConfig(seed=s) for s in range(10)])]
    assert sizes == [5, 5]


def test_a_family_owns_its_section_of_a_run_and_reads_flat():
    """A CNN run's conv settings are its family's section, declared in models/cnn; the
    run reads and writes them flat, and an MLP run's stored form carries none of them
    (so every run id stays what it was: tests/test_store.py checks stored ones)."""
    cnn = RunConfig(model="cnn", channels=(8, 16), hidden=(32,))
    assert cnn.arch == CNNSettings(channels=(8, 16)) and cnn.channels == (8, 16)
    assert cnn.model_dump()["kernel"] == 3 and "latent" not in cnn.model_dump()
    assert RunConfig.from_stored(cnn.model_dump_json()) == cnn
    mlp = RunConfig()
    assert mlp.arch == MLPSettings() and "channels" not in mlp.model_dump()
    with pytest.raises(AttributeError):
        mlp.channels  # noqa: B018  (an MLP has no conv blocks)
    # a stored configuration from before the sections, every family's field in it
    old = {**mlp.model_dump(mode="json"), "channels": [32, 64], "kernel": 3, "latent": 64}
    assert RunConfig.from_stored(json.dumps(old)) == mlp
