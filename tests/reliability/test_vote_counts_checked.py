"""The vote's tables are checked against its inputs' counts before success is reported: when the
tables written do not hold every distinct voted source of the detection-level outputs (here a vote
partition loses its ambiguous table after writing it, as a second writer into the staging directory
did before run directories were locked), ``vote-shards`` refuses in one line naming the run directory
and both counts, and the previous vote (tables and ``vote.json``) is left as it was."""
import contextlib
import json
import logging

import pandas as pd
import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


@pytest.mark.slow      # a Dask run and a vote (~6 s): the default suite stays under 5 minutes on 2 cores
def test_a_vote_that_lost_sources_is_refused_and_the_previous_vote_kept(tmp_path, capsys, catalogue, fitted_model,
                                                                        monkeypatch):
    import distributed

    import xsift.distributed
    import xsift.distributed.vote as vote
    model, _ = fitted_model
    df = catalogue()
    shards = tmp_path / "shards"
    shards.mkdir()
    write_table(df.iloc[:1000].reset_index(drop=True), shards / "part-0.parquet")
    write_table(df.iloc[1000:].reset_index(drop=True), shards / "part-1.parquet")
    run = tmp_path / "run"
    assert main(["classify-shards", str(shards), "--model", str(model), "--out", str(run), "--workers", "1"]) == 0
    capsys.readouterr()
    det = pd.concat([pd.read_parquet(p) for p in sorted((run / "detection_level").glob("*.parquet"))])
    voted = det.loc[~det["no_usable_class"].astype(bool), "name"].nunique()        # the oracle
    good = json.loads((run / "vote.json").read_text())
    assert good["uniquely_classified"] + good["ambiguous"] == voted and good["ambiguous"] > 0
    before = {sub: pd.read_parquet(run / sub) for sub in ("uniquely_classified", "ambiguous")}

    original = vote._vote_partition

    def losing_partition(part, index, out_root, classes, aggregation, *args, **kwargs):
        counts = original(part, index, out_root, classes, aggregation, *args, **kwargs)
        import pathlib
        (pathlib.Path(out_root) / "ambiguous" / f"part-{index:05d}.parquet").unlink(missing_ok=True)
        return counts

    @contextlib.contextmanager
    def in_process_client(scheduler=None, *, n_workers=None, device=None):
        # threads in this process, so the monkeypatched partition function is the one that runs
        with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None,
                                silence_logs=logging.CRITICAL) as client:
            yield client

    monkeypatch.setattr(vote, "_vote_partition", losing_partition)
    monkeypatch.setattr(xsift.distributed, "dask_client", in_process_client)
    code = main(["vote-shards", str(run)])
    # Dask's own log lines of the in-process cluster (its shuffle plugin logs at WARNING when another
    # test left a stderr handler configured) are not the command's output
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if " - distributed." not in line)
    line = refused(code, err, str(run), f"{voted:,} distinct voted sources",
                   f"{good['uniquely_classified']:,} uniquely classified + 0 ambiguous")
    assert "not saved" in line
    assert json.loads((run / "vote.json").read_text()) == good
    for sub, table in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(run / sub), table)
    assert not (run / ".vote-staging").exists()
