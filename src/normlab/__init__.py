"""normlab: rigorous, fast experiments on normalization layers and batch size.

The application layer is ``normlab.app.api``; its calls are here too::

    import normlab
    report = normlab.run_study("examples/bn-small-batches.toml", db="bn.db")
    print(normlab.summary(db="bn.db"))             # the latest study's final metrics
    verdicts = normlab.judge_claims([4], budget="quick", db="bn.db")
    done = normlab.reproduce(seeds=2, faithful=True, db="bn.db")  # data: summary, faithful
    run = normlab.Execution(db="bn.db", executor="pool")          # one value for every call
    normlab.run_study("examples/bn-small-batches.toml", run)
    normlab.write_report("bn.db", out="bn.html")  # one HTML page, opens offline
    live = normlab.live_report("bn.db")            # served as the study runs: live.url
    normlab.export_study("bn.csv", db="bn.db")    # its rows, as ``normlab export``

``import normlab`` loads nothing heavy: the calls load torch when first used, and
``normlab --help`` answers at once.
"""

__version__ = "0.1.0"

# Each public name and the module it lives in, loaded when first asked for: the torch-free
# ones (reading, exporting, errors) never load the trainer.
_WHERE = {
    "run_study": "normlab.app.api",
    "judge_claims": "normlab.app.api",
    "plan_study": "normlab.app.api",
    "reproduce": "normlab.app.api",
    "reproduce_studies": "normlab.app.api",
    "fold": "normlab.app.api",
    "summary": "normlab.app.reading",
    "export_study": "normlab.app.exporting",
    "Execution": "normlab.app.execution",
    "InputError": "normlab.errors",
    "write_report": "normlab.report.build",
    "live_report": "normlab.report.live",
}
__all__ = ["__version__", *_WHERE]


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
