"""normlab: rigorous, fast experiments on normalization layers and batch size.

The application layer is ``normlab.app.api``; its calls are here too::

    import normlab
    report = normlab.run_study("examples/bn-small-batches.toml", db="bn.db")
    verdicts = normlab.judge_claims([4], budget="quick", db="bn.db")
    normlab.write_report("bn.db", out="bn.html")  # one HTML page, opens offline
    live = normlab.live_report("bn.db")            # served as the study runs: live.url
    normlab.export_study("bn.csv", db="bn.db")    # its rows, as ``normlab export``

``import normlab`` loads nothing heavy: the calls load torch when first used, and
``normlab --help`` answers at once.
"""

__version__ = "0.1.0"

_API = ("run_study", "judge_claims", "plan_study", "reproduce_studies", "fold", "InputError")
__all__ = ["__version__", *_API, "export_study", "write_report", "live_report"]


def __getattr__(name: str):
    if name == "InputError":
        from normlab.experiments.errors import InputError

        return InputError
    if name == "export_study":
        from normlab.app.exporting import export_study

        return export_study
    if name == "write_report":
        from normlab.report.build import write_report

        return write_report
    if name == "live_report":
        from normlab.report.live import live_report

        return live_report
    if name in _API:
        from normlab.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
